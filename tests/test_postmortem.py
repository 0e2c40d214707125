"""Postmortem drafts of an incident recorded through the real domain functions, compared with
golden files in tests/fixtures/postmortem/.

The incident (times UTC, 2026-03-29, the night Europe/Berlin moves from CET to CEST at
01:00 UTC): Alertmanager fires at 00:40 and monitoring declares INC-1 and pages the
checkout policy; alice acknowledges at 00:44:30 (and takes command), notes, raises the
severity, hands ops to bob; bob marks it identified at 01:05 (03:05 CEST, after the change),
carol pins a message, bob marks it monitoring at 01:20, the alert resolves at 01:30 and
alice resolves the incident at 01:50. The draft is generated at 02:00.

To regenerate the golden files after an intended change: FIREBREAK_UPDATE_GOLDEN=1, then
read the diff line by line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from freezegun import freeze_time

from bot.alerts import ingest
from bot.alerts.model import Alert, Batch, Link
from bot.config import FileConfig
from bot.db import Database
from bot.incidents import service
from bot.oncall import paging
from bot.postmortem.config import PostmortemSection
from bot.postmortem.draft import render
from bot.postmortem.templates import Templates
from tests.conftest import PEOPLE

GOLDEN = Path(__file__).parent / "fixtures" / "postmortem"
UPDATE = os.environ.get("FIREBREAK_UPDATE_GOLDEN") == "1"
GENERATED_AT = datetime(2026, 3, 29, 2, 0, tzinfo=UTC)
NOTE = (
    "Rolled back <@U0BOB|bob>'s deploy? {{ 7*7 }} {% raw %} | pipe <#C0OPS|ops> "
    "<@U0ZED> &lt;script&gt;alert(1)&lt;/script&gt; *bold* [x](javascript:alert(1))\n"
    "# not a heading"
)


def config_data() -> dict[str, Any]:
    return {
        "people": {name: person.model_dump() for name, person in PEOPLE.items()},
        "schedules": {
            "primary": {
                "timezone": "Europe/Berlin",
                "layers": [
                    {
                        "name": "weekly",
                        "users": ["alice", "bob"],
                        "rotation": "weekly",
                        "handoff": "mon 09:00",
                        "start": "2026-01-05",
                    }
                ],
            }
        },
        "escalation_policies": {
            "payments": {
                "steps": [
                    {"targets": ["schedule:primary"], "wait": "5m"},
                    {"targets": ["user:carol"], "wait": "5m"},
                ]
            }
        },
        "services": {"checkout": {"escalation_policy": "payments"}},
        "alert_routes": [
            {
                "name": "checkout-critical",
                "match": {"service": "checkout"},
                "service": "checkout",
                "incident": {"open": True, "severity": "sev2"},
            }
        ],
    }


def alert(status: str) -> Alert:
    return Alert(
        fingerprint="f00dfeed",
        status=status,  # type: ignore[arg-type]
        labels={"alertname": "HighErrorRate", "service": "checkout", "severity": "critical"},
        summary="Error rate above 5% on checkout | p99 > 2s",
        annotations={"runbook_url": "https://runbooks.example.com/checkout"},
        starts_at=datetime(2026, 3, 29, 0, 39, 30, tzinfo=UTC),
        links=(
            Link("Runbook", "https://runbooks.example.com/checkout"),
            Link("Graph (5m)", "http://prometheus.example.com/graph?g0.expr=rate(errors[5m])"),
        ),
    )


def batch(status: str) -> Batch:
    return Batch(
        source="alertmanager",
        group_key='{}:{service="checkout"}',
        title="HighErrorRate on checkout",
        alerts=(alert(status),),
    )


def record_incident(database_url: str) -> FileConfig:
    """Record the incident of this module's docstring; returns its configuration."""
    config = FileConfig.model_validate(config_data())
    policy = ingest.Policy(config.alert_routes, config.oncall, config.incidents)
    database = Database(database_url)
    statuses = config.incidents

    def at(hour: int, minute: int, second: int = 0) -> datetime:
        frozen.move_to(datetime(2026, 3, 29, hour, minute, second, tzinfo=UTC))
        return datetime.now(UTC)

    try:
        with freeze_time("2026-03-29 00:40:00") as frozen:
            with database.session_scope() as session:
                fired = ingest.ingest(session, policy, batch("firing"), now=at(0, 40))
                assert fired.incident_id == 1 and fired.triggered is not None
                incident = service.get(session, 1)
                incident.channel_id, incident.channel_name = "C0INC1", "inc-1-higherrorrate"
                service.record(
                    session,
                    incident,
                    "channel_created",
                    now=at(0, 40, 2),
                    data={"channel": "C0INC1", "name": "inc-1-higherrorrate", "adopted": False},
                )
            with database.session_scope() as session:
                now = at(0, 40, 5)
                for notification_id, _, _ in paging.claim_notifications(
                    session, config.oncall, now
                ):
                    paging.finish_notification(session, notification_id, now=now)
            with database.session_scope() as session:
                now = at(0, 44, 30)
                paging.acknowledge(session, 1, by="U0ALICE", now=now)
                service.take_command(session, service.get(session, 1), "U0ALICE", now=now)
            with database.session_scope() as session:
                incident = service.get(session, 1)
                service.add_note(session, incident, NOTE, actor="U0ALICE", now=at(0, 47))
                service.set_severity(
                    session, incident, "sev1", actor="U0ALICE", policy=statuses, now=at(0, 52)
                )
                service.assign_role(
                    session,
                    incident,
                    "ops",
                    "U0BOB",
                    actor="U0ALICE",
                    policy=statuses,
                    now=at(0, 55),
                )
                service.set_status(
                    session, incident, "identified", actor="U0BOB", policy=statuses, now=at(1, 5)
                )
                service.record_pinned_message(
                    session,
                    incident,
                    channel_id="C0INC1",
                    message_ts="1774746600.000100",
                    author="U0CAROL",
                    text="Deploy 42 reverted | error rate falling",
                    actor="U0CAROL",
                    now=at(1, 10),
                )
                service.set_status(
                    session, incident, "monitoring", actor="U0BOB", policy=statuses, now=at(1, 20)
                )
            with database.session_scope() as session:
                ingest.ingest(session, policy, batch("resolved"), now=at(1, 30))
            with database.session_scope() as session:
                incident = service.get(session, 1)
                service.resolve(
                    session, incident, "Rolled back v42", actor="U0ALICE", now=at(1, 50)
                )
    finally:
        database.dispose()
    return config


def draft(database_url: str, config: FileConfig, section: PostmortemSection, name: str) -> str:
    database = Database(database_url)
    try:
        with database.session_scope() as session:
            return render(
                session,
                1,
                templates=Templates.load(section.templates_dir),
                template=name,
                people=config.people,
                severities=config.incidents.severities,
                section=section,
                now=GENERATED_AT,
            )
    finally:
        database.dispose()


def compare(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing; run with FIREBREAK_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(encoding="utf-8")


@pytest.fixture
def recorded(database_url: str) -> Iterator[tuple[str, FileConfig]]:
    yield database_url, record_incident(database_url)


@pytest.mark.parametrize(
    ("zone", "template", "golden"),
    [
        ("Europe/Berlin", "default", "inc-1-europe-berlin.md"),
        ("UTC", "default", "inc-1-utc.md"),
        ("America/New_York", "executive", "inc-1-executive-new-york.md"),
    ],
)
def test_the_draft_matches_its_golden_file(
    recorded: tuple[str, FileConfig], zone: str, template: str, golden: str
) -> None:
    database_url, config = recorded
    text = draft(database_url, config, PostmortemSection(timezone=zone), template)
    compare(golden, text)


def test_the_draft_shows_the_facts_of_the_record(recorded: tuple[str, FileConfig]) -> None:
    """What the golden file holds, checked against the record rather than against itself."""
    database_url, config = recorded
    text = draft(database_url, config, PostmortemSection(timezone="Europe/Berlin"), "default")
    assert text.startswith("# INC-1: HighErrorRate on checkout\n")
    # acknowledged 4 min 30 s after the declaration, identified at 25 min, resolved at 1 h 10
    assert (
        "| Time to acknowledge | 4 min 30 s | 2026-03-29 00:44:30 UTC · 2026-03-29 01:44:30 CET by alice |"
        in text
    )
    assert (
        "| Time to mitigate | 25 min 00 s | 2026-03-29 01:05:00 UTC · 2026-03-29 03:05:00 CEST |"
        in text
    )
    assert "| Time to resolve | 1 h 10 min |" in text
    assert "| Services | checkout |" in text
    assert "[\\#inc-1-higherrorrate](https://slack.com/app_redirect?channel=C0INC1)" in text
    assert "- Commander: alice\n- Ops: bob\n" in text
    # the user's text is shown, never evaluated, and cannot break the table or link
    assert "49" not in text.replace("2026-03-29", "")
    assert "{{ 7\\*7 }} {% raw %} \\| pipe \\#ops @U0ZED \\<script\\>" in text
    assert "@bob's deploy" in text and "<br>\\# not a heading" in text
    assert "<script>" not in text and "\\[x\\](javascript:alert(1))" in text
    section = text.split("## Timeline\n")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| 2026-")]
    assert len(rows) == 17  # every event, each row keeping its four cells
    for line in rows:
        assert line.replace("\\|", "").count("|") == 5, line
