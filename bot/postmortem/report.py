"""Numbers across incidents: per month (in the team's zone), how many incidents of each
severity and service, and the median and 90th percentile of time to acknowledge, mitigate
and resolve (`bot.postmortem.metrics`, the same rules as the drafts).

Domain code: a session in, plain data out; `bot.cli_report`, `/incident report` and the web
view's `/reports` render it.
Percentiles are nearest-rank (p90 of 1..10 is 9; of one value, that value); an incident whose
duration is unknown (never acknowledged, still open) is left out of that duration only.
An incident's services are its alert groups' services, else the `service:NAME` its pages
targeted, else `(none)`.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.alerts.records import AlertGroup
from bot.incidents.models import Incident
from bot.oncall.models import Page
from bot.postmortem import metrics as measure
from bot.timeline import TimelineEvent

NO_SERVICE = "(none)"
DURATIONS = ("acknowledge", "mitigate", "resolve")


@dataclass(frozen=True)
class Spread:
    """Median and p90 in seconds (None when no incident of the month has the duration)."""

    count: int
    median: float | None
    p90: float | None


@dataclass(frozen=True)
class Month:
    month: str  # 2026-03
    incidents: int
    severities: dict[str, int]
    services: dict[str, int]
    durations: dict[str, Spread]  # acknowledge, mitigate, resolve
    # The same spreads for each severity's incidents of the month (the web view's charts):
    # {"sev1": {"acknowledge": Spread, ...}}, severities in name order.
    by_severity: dict[str, dict[str, Spread]] = field(default_factory=dict)


@dataclass(frozen=True)
class Report:
    since: datetime
    until: datetime
    zone: str
    months: list[Month] = field(default_factory=list)

    @property
    def incidents(self) -> int:
        return sum(month.incidents for month in self.months)


@dataclass(frozen=True, slots=True)
class _Event:
    """What `metrics.compute` reads of a timeline event."""

    kind: str
    actor: str
    occurred_at: datetime
    data: dict[str, Any]


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of `values` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def spread(values: Sequence[float]) -> Spread:
    return Spread(
        len(values),
        float(statistics.median(values)) if values else None,
        percentile(values, 0.9),
    )


def build(
    session: Session,
    *,
    since: datetime,
    now: datetime,
    zone: ZoneInfo,
    mitigated_statuses: Collection[str],
) -> Report:
    """Incidents declared in [since, now], grouped by the month of their declaration."""
    incidents = list(
        session.scalars(
            select(Incident)
            .where(Incident.declared_at >= since, Incident.declared_at <= now)
            .order_by(Incident.declared_at, Incident.id)
        )
    )
    report = Report(since=since, until=now, zone=zone.key)
    if not incidents:
        return report
    ids = [incident.id for incident in incidents]
    # Plain rows, not ORM objects: the metrics read four fields of each, and a year of
    # incidents has tens of thousands of events.
    events: dict[int, list[_Event]] = {}
    for incident_id, kind, actor, occurred_at, data in session.execute(
        select(
            TimelineEvent.incident_id,
            TimelineEvent.kind,
            TimelineEvent.actor,
            TimelineEvent.occurred_at,
            TimelineEvent.data,
        )
        .where(TimelineEvent.incident_id.in_(ids))
        .order_by(TimelineEvent.occurred_at, TimelineEvent.id)
    ):
        events.setdefault(incident_id, []).append(_Event(kind, actor, occurred_at, data))
    services = _services(session, ids)
    grouped: dict[str, list[Incident]] = {}
    for incident in incidents:
        grouped.setdefault(f"{incident.declared_at.astimezone(zone):%Y-%m}", []).append(incident)
    for month, members in sorted(grouped.items()):
        durations: dict[str, list[float]] = {name: [] for name in DURATIONS}
        per_severity: dict[str, dict[str, list[float]]] = {}
        for incident in members:
            numbers = measure.compute(
                events.get(incident.id, []),
                declared_at=incident.declared_at,
                mitigated_statuses=mitigated_statuses,
            )
            severity = per_severity.setdefault(incident.severity, {name: [] for name in DURATIONS})
            for name, value in zip(
                DURATIONS,
                (numbers.time_to_acknowledge, numbers.time_to_mitigate, numbers.time_to_resolve),
                strict=True,
            ):
                if value is not None:
                    durations[name].append(value.total_seconds())
                    severity[name].append(value.total_seconds())
        service_counts: Counter[str] = Counter()
        for incident in members:
            service_counts.update(services.get(incident.id) or [NO_SERVICE])
        report.months.append(
            Month(
                month=month,
                incidents=len(members),
                severities=dict(sorted(Counter(i.severity for i in members).items())),
                services=dict(sorted(service_counts.items())),
                durations={name: spread(values) for name, values in durations.items()},
                by_severity={
                    severity: {name: spread(values) for name, values in lists.items()}
                    for severity, lists in sorted(per_severity.items())
                },
            )
        )
    return report


def _services(session: Session, incident_ids: list[int]) -> dict[int, list[str]]:
    found: dict[int, set[str]] = {}
    for incident_id, service in session.execute(
        select(AlertGroup.incident_id, AlertGroup.service).where(
            AlertGroup.incident_id.in_(incident_ids), AlertGroup.service.is_not(None)
        )
    ):
        if incident_id is not None and service:
            found.setdefault(incident_id, set()).add(service)
    for incident_id, target in session.execute(
        select(Page.incident_id, Page.target).where(Page.incident_id.in_(incident_ids))
    ):
        if incident_id is not None and incident_id not in found and target.startswith("service:"):
            found.setdefault(incident_id, set()).add(target.removeprefix("service:"))
    return {incident_id: sorted(names) for incident_id, names in found.items()}


def seconds_text(value: float | None) -> str:
    """A duration for people: `—` when unknown (as in drafts)."""
    return measure.format_duration(None if value is None else timedelta(seconds=value))


def rows(report: Report) -> list[dict[str, object]]:
    """One flat row per month (for CSV and JSON): counts and durations in seconds."""
    out: list[dict[str, object]] = []
    for month in report.months:
        row: dict[str, object] = {"month": month.month, "incidents": month.incidents}
        row["severities"] = month.severities
        row["services"] = month.services
        for name, value in month.durations.items():
            row[f"{name}_count"] = value.count
            row[f"{name}_median_s"] = value.median
            row[f"{name}_p90_s"] = value.p90
        out.append(row)
    return out


def table(report: Report) -> str:
    """The report as a plain-text table (also shown in Slack inside a code block)."""
    header = (
        f"Incidents declared {report.since:%Y-%m-%d} to {report.until:%Y-%m-%d} "
        f"(months in {report.zone}): {report.incidents}"
    )
    if not report.months:
        return header + "\nNo incidents in this period.\n"
    columns = ["month", "incidents", "TTA median", "TTA p90", "TTM median", "TTM p90"]
    columns += ["TTR median", "TTR p90"]
    lines = []
    for month in report.months:
        cells = [month.month, str(month.incidents)]
        for name in DURATIONS:
            cells += [
                seconds_text(month.durations[name].median),
                seconds_text(month.durations[name].p90),
            ]
        lines.append(cells)
    widths = [max(len(c), *(len(line[i]) for line in lines)) for i, c in enumerate(columns)]
    out = [header, ""]
    out.append("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for line in lines:
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    out.append("")
    for month in report.months:
        severities = ", ".join(f"{k} {v}" for k, v in month.severities.items())
        services = ", ".join(f"{k} {v}" for k, v in month.services.items())
        out.append(f"{month.month}: by severity: {severities}; by service: {services}")
    return "\n".join(out) + "\n"
