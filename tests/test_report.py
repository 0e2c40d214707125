"""`firebreak report` and `/incident report`: counts by severity and service and the median
and p90 of time to acknowledge, mitigate and resolve per month in the team's zone, read from
incidents recorded through the domain on the test database (SQLite, and PostgreSQL in the
PostgreSQL pass)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from freezegun import freeze_time

from bot.db import Database
from bot.incidents import service
from bot.incidents.config import IncidentsSection
from bot.postmortem.report import percentile
from bot.sandbox import SlackSandbox
from tests.conftest import Slack, last_response_text
from tests.test_cli import invoke, workdir  # noqa: F401  (the fixture)

POLICY = IncidentsSection()
NOW = datetime(2026, 4, 20, 12, 0, tzinfo=UTC)


def record(database_url: str) -> None:
    """Three incidents: two in March (Berlin), one on 31 Mar 23:30 UTC = 1 Apr in Berlin."""
    database = Database(database_url)
    try:
        plans = [
            (datetime(2026, 3, 2, 9, 0, tzinfo=UTC), "sev1", 5, 20, 60),
            (datetime(2026, 3, 10, 9, 0, tzinfo=UTC), "sev2", 15, None, 120),
            (datetime(2026, 3, 31, 23, 30, tzinfo=UTC), "sev2", None, None, None),
        ]
        for number, (declared, severity, ack, mitigate, resolve) in enumerate(plans, 1):
            with database.session_scope() as session:
                incident = service.declare(
                    session,
                    title=f"Incident {number}",
                    severity=severity,
                    description="",
                    declared_by="U0ALICE",
                    declare_key=f"report-{number}",
                    policy=POLICY,
                    now=declared,
                ).incident
                if ack is not None:
                    service.add_note(
                        session,
                        incident,
                        "on it",
                        actor="U0BOB",
                        now=declared + timedelta(minutes=ack),
                    )
                if mitigate is not None:
                    service.set_status(
                        session,
                        incident,
                        "identified",
                        actor="U0BOB",
                        policy=POLICY,
                        now=declared + timedelta(minutes=mitigate),
                    )
                if resolve is not None:
                    service.resolve(
                        session,
                        incident,
                        "",
                        actor="U0BOB",
                        now=declared + timedelta(minutes=resolve),
                    )
    finally:
        database.dispose()


@pytest.fixture
def config(workdir: Path) -> Path:  # noqa: F811
    path = workdir / "firebreak.yaml"
    path.write_text(yaml.safe_dump({"postmortem": {"timezone": "Europe/Berlin"}}), "utf-8")
    return path


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([], 0.9) is None
    assert percentile([7.0], 0.9) == 7.0
    assert percentile([float(n) for n in range(1, 11)], 0.9) == 9.0


def test_json_csv_and_table(database_url: str, config: Path) -> None:
    record(database_url)
    with freeze_time(NOW):
        result = invoke(
            ["report", "--since", "90d", "--format", "json"],
            DATABASE_URL=database_url,
            FIREBREAK_CONFIG=str(config),
        )
    assert result.exit_code == 0, result.output
    months = json.loads(result.stdout)["months"]
    assert [m["month"] for m in months] == ["2026-03", "2026-04"]
    march, april = months
    assert march["incidents"] == 2 and march["severities"] == {"sev1": 1, "sev2": 1}
    assert march["services"] == {"(none)": 2}
    assert march["acknowledge_median_s"] == 600.0  # 5 and 15 minutes
    assert march["acknowledge_p90_s"] == 900.0
    assert march["mitigate_count"] == 1 and march["mitigate_median_s"] == 1200.0
    assert march["resolve_median_s"] == 5400.0 and march["resolve_p90_s"] == 7200.0
    assert april["incidents"] == 1 and april["resolve_count"] == 0
    assert april["resolve_median_s"] is None

    with freeze_time(NOW):
        table = invoke(["report"], DATABASE_URL=database_url, FIREBREAK_CONFIG=str(config))
        rows = invoke(
            ["report", "--format", "csv", "--since", "2026-03-05"],
            DATABASE_URL=database_url,
            FIREBREAK_CONFIG=str(config),
        )
    assert table.exit_code == 0
    assert "2026-03  2          10 min 00 s" in table.stdout
    assert "by severity: sev1 1, sev2 1" in table.stdout
    parsed = list(csv.DictReader(io.StringIO(rows.stdout)))
    assert [(r["month"], r["incidents"], r["severities"]) for r in parsed] == [
        ("2026-03", "1", "sev2=1"),
        ("2026-04", "1", "sev2=1"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "forever"], "--since 'forever' is not a period"),
        (["--since", "0d"], "is not a period"),
        (["--format", "xml"], "--format 'xml' is not a format; choose one of: table, csv, json"),
    ],
)
def test_bad_options_are_exit_2(
    database_url: str, config: Path, args: list[str], message: str
) -> None:
    result = invoke(["report", *args], DATABASE_URL=database_url, FIREBREAK_CONFIG=str(config))
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output


def test_report_in_slack_is_the_same_summary(
    slack: Slack, sandbox: SlackSandbox, general: str
) -> None:
    slack.run("declare sev2 Checkout latency above 2s", channel=general)
    slack.run("report 30d", channel=general)
    told = last_response_text(sandbox)
    assert "Incidents of the last 30 days" in told and "TTA median" in told
    assert "by severity: sev2 1" in told
