"""`firebreak report [--since 90d] [--format table|csv|json]`: numbers across incidents.

Counts by severity and service and the median and p90 of time to acknowledge, mitigate and
resolve, per month in the team's zone (`postmortem.timezone`); see `bot.postmortem.report`.
A bad `--since` or `--format`, or a bad configuration, is one `error:` line and exit 2.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta

import click

from bot.cli_support import fail, settings_or_fail, upgraded_session

FORMATS = ("table", "csv", "json")
_SINCE = re.compile(r"([0-9]{1,4})([dw])")


def parse_since(text: str, now: datetime) -> datetime:
    """`90d`, `12w` or a date `2026-01-01` (UTC midnight); ValueError saying the forms."""
    match = _SINCE.fullmatch(text.strip().lower())
    if match:
        amount = int(match.group(1))
        if amount >= 1:
            days = amount * (7 if match.group(2) == "w" else 1)
            return now - timedelta(days=days)
    else:
        try:
            day = datetime.strptime(text.strip(), "%Y-%m-%d")
        except ValueError:
            pass
        else:
            return day.replace(tzinfo=UTC)
    raise ValueError(
        f"--since {text[:40]!r} is not a period; give days like 90d, weeks like 12w, "
        "or a date like 2026-01-01"
    )


def render(report: object, fmt: str) -> str:
    from bot.postmortem.report import Report, rows, table

    assert isinstance(report, Report)
    if fmt == "table":
        return table(report)
    flat = rows(report)
    if fmt == "json":
        return (
            json.dumps(
                {
                    "since": report.since.isoformat(),
                    "until": report.until.isoformat(),
                    "zone": report.zone,
                    "months": flat,
                },
                indent=2,
            )
            + "\n"
        )
    out = io.StringIO()
    fields = ["month", "incidents", "severities", "services"]
    fields += [
        f"{d}_{s}"
        for d in ("acknowledge", "mitigate", "resolve")
        for s in ("count", "median_s", "p90_s")
    ]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in flat:
        cells = dict(row)
        for key in ("severities", "services"):
            value = cells[key]
            assert isinstance(value, dict)
            cells[key] = ";".join(f"{name}={count}" for name, count in value.items())
        writer.writerow({k: "" if v is None else v for k, v in cells.items()})
    return out.getvalue()


@click.command("report")
@click.option(
    "--since",
    "since",
    default="90d",
    show_default=True,
    metavar="PERIOD",
    help="How far back: 90d, 12w, or a date like 2026-01-01.",
)
@click.option(
    "--format",
    "fmt",
    default="table",
    show_default=True,
    metavar="FORMAT",
    help="table, csv or json.",
)
def report(since: str, fmt: str) -> None:
    """Incidents per month: counts by severity and service, median and p90 of time to
    acknowledge, mitigate and resolve."""
    from bot.clock import system_now
    from bot.postmortem import report as numbers

    now = system_now()
    if fmt not in FORMATS:
        fail(f"--format {fmt[:40]!r} is not a format; choose one of: {', '.join(FORMATS)}")
    try:
        start = parse_since(since, now)
    except ValueError as error:
        fail(str(error))
    settings = settings_or_fail()
    section = settings.file.postmortem
    with upgraded_session(settings) as session:
        result = numbers.build(
            session,
            since=start,
            now=now,
            zone=section.zone,
            mitigated_statuses=section.mitigated_statuses,
        )
    click.echo(render(result, fmt), nl=False)
