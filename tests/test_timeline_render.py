"""Every kind of timeline fact has a Slack rendering and a plain-text rendering, and neither
lets user text act as Slack markup."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bot import terminal
from bot.sentences import SENTENCES
from bot.slack import timeline as slack
from bot.timeline import KINDS, TimelineEvent

AT = datetime(2026, 3, 2, 10, 0, 5, tzinfo=UTC)
SAMPLES: dict[str, Any] = {
    "severity": "sev2",
    "title": "Checkout down",
    "description": "",
    "from": "investigating",
    "to": "monitoring",
    "role": "ops",
    "user": "U0BOB",
    "previous": "U0ALICE",
    "text": "scaled the consumers",
    "resolution": "rolled back v42",
    "channel": "C0INC",
    "ts": "1700000000.000100",
    "author": "U0CAROL",
    "name": "inc-7-checkout-down",
    "adopted": False,
    "topic": "SEV2 · investigating",
    "step": 2,
    "error": "ratelimited",
    "target": "policy:payments",
    "message": "DB is on fire",
    "cycle": 1,
    "people": ["alice", "bob"],
    "targets": ["schedule:primary"],
    "person": "alice",
    "attempt": 3,
    "final": False,
    "alert": 12,
    "source": "alertmanager",
    "summary": "Error rate above 5% on checkout",
    "group": 4,
    "run": 12,
    "runbook": "disk-usage",
    "risk": "high",
    "hosts": ["web-1", "web-2"],
    "reason": "U0BOB holds none of the roles commander, ops",
    "needs_approval": True,
    "requester": "U0BOB",
    "approver": "U0CAROL",
    "running": True,
    "host": "web-1",
    "exit_code": 3,
    "duration": 1.25,
    "outcome": "failed",
    "rollback": False,
    "fingerprint": "SHA256:q2Zx8oVf1Vb0Xz",
    "detail": "the host key differs from the pinned one",
    "counts": {"succeeded": 1, "failed": 1},
    "item": 5,
    "owner": "U0BOB",
    "due": "2026-12-01",
    "template": "default",
    "path": "postmortems/INC-7.md",
    "file": "F0123ABC",
    "reminders": 2,
}


def event(kind: str, actor: str = "U0ALICE", **data: Any) -> TimelineEvent:
    facts = {key: SAMPLES[key] for key in KINDS[kind]}
    facts.update(data)
    return TimelineEvent(
        id=1,
        incident_id=7,
        page_id=3 if kind.startswith("page_") else None,
        kind=kind,
        actor=actor,
        occurred_at=AT,
        data=facts,
    )


# Facts kept for other readers (postmortems, audits) that a one-line sentence leaves out.
NOT_SHOWN = {
    ("resolved", "from"),
    ("pinned_message", "channel"),
    ("channel_created", "name"),  # Slack shows the channel link; the terminal shows its name
    ("channel_created", "channel"),
}


def test_every_kind_has_a_sentence() -> None:
    assert set(SENTENCES) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_renders_its_facts_in_slack_and_plain_text(kind: str) -> None:
    fact = event(kind)
    for text in (slack.sentence(fact), terminal.sentence(fact)):
        assert text and "recorded" not in text
        for key in KINDS[kind]:
            value = fact.data[key]
            if (kind, key) in NOT_SHOWN:
                continue
            if isinstance(value, str) and key not in ("user", "previous", "author", "ts"):
                shown = value if key != "severity" else value.upper()
                assert shown in text or shown in text.replace("→", "->"), (kind, key, text)
        if fact.page_id is not None:
            assert "P-3" in text
    assert slack.line(fact).startswith(f"<!date^{int(AT.timestamp())}^")
    assert terminal.line(fact).startswith("2026-03-02 10:00:05Z  ")
    assert "<" not in terminal.sentence(fact)


@pytest.mark.parametrize(
    ("actor", "in_slack", "in_terminal"),
    [
        ("U0BOB", "<@U0BOB>", "U0BOB"),
        ("firebreak", "Firebreak", "Firebreak"),
        ("cli:ops", "ops (terminal)", "ops (terminal)"),
    ],
)
def test_actors_are_shown_as_each_surface_names_them(
    actor: str, in_slack: str, in_terminal: str
) -> None:
    fact = event("note_added", actor=actor)
    assert slack.sentence(fact).startswith(in_slack)
    assert terminal.sentence(fact).startswith(in_terminal)


@pytest.mark.parametrize(
    ("kind", "key"),
    [
        ("note_added", "text"),
        ("declared", "title"),
        ("resolved", "resolution"),
        ("pinned_message", "text"),
        ("page_triggered", "message"),
        ("page_delivery_failed", "error"),
    ],
)
def test_user_text_never_pings_or_links_in_slack(kind: str, key: str) -> None:
    attack = "<!channel> <!here> <!subteam^S0OPS> <https://evil.example|your bank> & co"
    rendered = slack.post(event(kind, **{key: attack}))
    for raw in ("<!channel>", "<!here>", "<!subteam", "<https://evil"):
        assert raw not in rendered
    assert "&lt;!channel&gt;" in rendered and "&amp; co" in rendered


def test_mentions_slack_wrote_stay_mentions_in_slack_and_read_as_names_in_plain_text() -> None:
    fact = event("note_added", text="handed to <@U0BOB|bob> in <#C0OPS|ops>, a &lt; b")
    assert "<@U0BOB|bob>" in slack.sentence(fact) and "<#C0OPS|ops>" in slack.sentence(fact)
    assert terminal.sentence(fact) == "U0ALICE added a note: handed to @bob in #ops, a < b"


def test_channel_posts_read_as_sentences() -> None:
    assert (
        slack.post(event("severity_changed", actor="U0BOB", **{"from": "sev2", "to": "sev1"}))
        == ":rotating_light: <@U0BOB> changed severity sev2 → sev1"
    )
    assert slack.post(event("page_acknowledged", actor="U0BOB")) == (
        ":white_check_mark: <@U0BOB> acknowledged P-3"
    )
    assert slack.sentence(event("page_step_notified")) == (
        "P-3 step 2 (repeat 1): notified alice, bob"
    )
    failed = event(
        "page_delivery_failed", channel="slack", final=True, attempt=5, error="user_not_found"
    )
    assert terminal.sentence(failed) == (
        "P-3: slack to alice failed for good after 5 tries: user_not_found"
    )


def test_runbook_facts_say_which_run_host_step_and_outcome() -> None:
    assert terminal.sentence(event("runbook_step_finished", step="status")) == (
        "runbook disk-usage (R-12) on web-1: step status failed (exit 3, 1.2s)"
    )
    assert terminal.sentence(event("runbook_finished")) == (
        "runbook disk-usage (R-12) finished: failed (1 failed, 1 succeeded)"
    )
    assert slack.sentence(event("runbook_approved", actor="U0CAROL")) == (
        "<@U0CAROL> approved runbook disk-usage (R-12) requested by <@U0BOB>"
    )
    started = terminal.sentence(event("runbook_started", approver=None))
    assert started == ("runbook disk-usage (R-12) started on web-1, web-2 (requested by U0BOB)")
    rejected = slack.post(event("runbook_host_key_rejected"))
    assert rejected.startswith(":rotating_light: SECURITY: runbook disk-usage (R-12): host key")
    assert "SHA256:q2Zx8oVf1Vb0Xz" in rejected and "nothing ran there" in rejected
    rollback = terminal.sentence(event("runbook_step_finished", rollback=True, exit_code=None))
    assert "rollback step 2 failed (no exit code, 1.2s)" in rollback
