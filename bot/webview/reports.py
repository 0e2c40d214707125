"""`/reports`: the numbers of `firebreak report` as charts and tables.

The figures come from `bot.postmortem.report.build`, the computation behind `firebreak
report` and `/incident report` (the same incidents, the same months in the team's zone
`postmortem.timezone`, the same median and nearest-rank p90), so the page and the terminal
never disagree. This module chooses the period from the query string, turns the report
into chart values (`bot.webview.charts`) and table rows, and says in words when there is
nothing to draw. No Flask here.

The period is whole months in the team's zone: `?months=6` (the default) is this month and
the five before it; `?from=2026-01&to=2026-06` names them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from markupsafe import Markup
from sqlalchemy.orm import Session

from bot.postmortem import report as numbers
from bot.postmortem.report import Report, Spread, seconds_text
from bot.webview import charts

DEFAULT_MONTHS = 6
MAX_MONTHS = 36
MONTH_CHOICES = (1, 3, 6, 12, 24, 36)
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")


@dataclass(frozen=True)
class Period:
    """Whole months `first` to `last` (`(year, month)`), in the team's zone."""

    first: tuple[int, int]
    last: tuple[int, int]
    months: int | None  # set when chosen as "the last N months"

    def start(self, zone: ZoneInfo) -> datetime:
        return datetime(*self.first, 1, tzinfo=zone)

    def end(self, zone: ZoneInfo, now: datetime) -> datetime:
        """The first instant after the period, or now if that is sooner."""
        after = datetime(*_add(self.last, 1), 1, tzinfo=zone)
        return min(after, now)

    @property
    def first_text(self) -> str:
        return f"{self.first[0]:04d}-{self.first[1]:02d}"

    @property
    def last_text(self) -> str:
        return f"{self.last[0]:04d}-{self.last[1]:02d}"

    def month_names(self) -> list[str]:
        """Every month of the period, `2026-01`, oldest first (as the report names them)."""
        span = (self.last[0] - self.first[0]) * 12 + self.last[1] - self.first[1] + 1
        return ["{:04d}-{:02d}".format(*_add(self.first, index)) for index in range(max(span, 0))]

    @classmethod
    def parse(
        cls, args: Mapping[str, str], now: datetime, zone: ZoneInfo
    ) -> tuple[Period, list[str]]:
        """The period the query string asks for, and a message for each wrong value (the
        default period is used instead of a wrong one)."""
        here = now.astimezone(zone)
        this_month = (here.year, here.month)
        default = cls(_add(this_month, 1 - DEFAULT_MONTHS), this_month, DEFAULT_MONTHS)
        problems: list[str] = []
        months_text = args.get("months", "").strip()
        from_text = args.get("from", "").strip()
        to_text = args.get("to", "").strip()
        if months_text and (from_text or to_text):
            problems.append(
                "give either months (the last N months) or from and to (months like "
                "2026-01), not both; showing the last "
                f"{DEFAULT_MONTHS} months"
            )
            return default, problems
        if from_text or to_text:
            first = _month(from_text, "from", problems) if from_text else None
            last = _month(to_text, "to", problems) if to_text else this_month
            if problems or last is None:
                return default, problems
            if first is None:
                first = _add(last, 1 - DEFAULT_MONTHS)
            if last > this_month:
                last = this_month
            if first > last:
                problems.append(
                    f"from {from_text[:12]!r} is after to {(to_text or 'this month')[:12]!r}; "
                    "give the earlier month in from"
                )
                return default, problems
            span = (last[0] - first[0]) * 12 + last[1] - first[1] + 1
            if span > MAX_MONTHS:
                problems.append(
                    f"from {from_text[:12]!r} to {(to_text or 'this month')[:12]!r} is {span} "
                    f"months; give at most {MAX_MONTHS}"
                )
                return default, problems
            return cls(first, last, None), problems
        if months_text:
            if (
                not (months_text.isascii() and months_text.isdigit())
                or not 1 <= int(months_text) <= MAX_MONTHS
            ):
                problems.append(
                    f"months {months_text[:12]!r} is not a number of months from 1 to "
                    f"{MAX_MONTHS}; give one like months=6"
                )
                return default, problems
            count = int(months_text)
            return cls(_add(this_month, 1 - count), this_month, count), problems
        return default, problems


def _add(month: tuple[int, int], count: int) -> tuple[int, int]:
    index = month[0] * 12 + month[1] - 1 + count
    return index // 12, index % 12 + 1


def _month(text: str, name: str, problems: list[str]) -> tuple[int, int] | None:
    match = _MONTH.fullmatch(text)
    if match is None or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1970:
        problems.append(f"{name} {text[:20]!r} is not a month; give it like 2026-01")
        return None
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class DurationRow:
    """One line of a duration's table: a month and a severity's median and p90."""

    month: str
    severity: str
    measured: int  # incidents that have this duration
    median: str
    p90: str


@dataclass(frozen=True)
class DurationChart:
    name: str  # acknowledge | resolve
    chart: Markup | None  # None: no incident of the period has this duration
    unit: str
    rows: list[DurationRow]


@dataclass
class ReportPage:
    """Everything `/reports` shows: the period, the charts and their tables."""

    period: Period
    report: Report
    severities: list[str]
    counts: Markup | None  # incidents by month and severity
    count_rows: list[tuple[str, str, int]]
    durations: list[DurationChart] = field(default_factory=list)
    services: Markup | None = None
    service_rows: list[tuple[str, int]] = field(default_factory=list)

    @property
    def incidents(self) -> int:
        return self.report.incidents


def build(
    session: Session,
    period: Period,
    *,
    now: datetime,
    zone: ZoneInfo,
    mitigated_statuses: Collection[str],
    severity_order: list[str],
) -> ReportPage:
    """The report for `period` (from `bot.postmortem.report.build`) as charts and tables."""
    report = numbers.build(
        session,
        since=period.start(zone),
        now=period.end(zone, now),
        zone=zone,
        mitigated_statuses=mitigated_statuses,
    )
    seen = {name for month in report.months for name in month.severities}
    severities = [s for s in severity_order if s in seen] + sorted(seen - set(severity_order))
    months = period.month_names()
    page = ReportPage(period, report, severities, None, [])
    if not report.months:
        return page
    counts = {
        (month.month, severity): float(count)
        for month in report.months
        for severity, count in month.severities.items()
    }
    page.count_rows = [
        (month.month, severity, month.severities[severity])
        for month in report.months
        for severity in severities
        if severity in month.severities
    ]
    page.counts = charts.grouped_bars(
        chart_id="chart-incidents",
        title="Incidents declared by month and severity",
        desc=_described(
            (f"{month} {severity}", str(count)) for month, severity, count in page.count_rows
        ),
        groups=months,
        series=severities,
        values=counts,
        unit="incidents",
        describe=lambda month, severity, value: (
            f"{month} {severity}: {charts.number(value)} incident" + ("" if value == 1 else "s")
        ),
    )
    for name in ("acknowledge", "resolve"):
        page.durations.append(_duration_chart(report, name, months, severities))
    by_service: Counter[str] = Counter()
    for month in report.months:
        by_service.update(month.services)
    page.service_rows = sorted(by_service.items(), key=lambda item: (-item[1], item[0]))
    page.services = charts.horizontal_bars(
        chart_id="chart-services",
        title="Incidents by service",
        desc=_described((service, str(count)) for service, count in page.service_rows),
        items=[(service, float(count)) for service, count in page.service_rows],
        unit="incidents",
    )
    return page


def _described(pairs: Iterable[tuple[str, str]]) -> str:
    return "; ".join(f"{label}: {value}" for label, value in pairs)


UNITS: tuple[tuple[str, float, float], ...] = (
    # name, seconds in one, use it while the largest value is below this many seconds
    ("minutes", 60.0, 2 * 3600.0),
    ("hours", 3600.0, 3 * 86400.0),
    ("days", 86400.0, float("inf")),
)


def unit_for(largest_seconds: float) -> tuple[str, float]:
    """The unit a duration chart's axis reads best in: minutes, hours or days."""
    for name, size, below in UNITS:
        if largest_seconds < below:
            return name, size
    return UNITS[-1][0], UNITS[-1][1]  # pragma: no cover  (the last bound is infinite)


def _duration_chart(
    report: Report, name: str, months: list[str], severities: list[str]
) -> DurationChart:
    spreads: dict[tuple[str, str], Spread] = {
        (month.month, severity): by_name[name]
        for month in report.months
        for severity, by_name in month.by_severity.items()
        if by_name[name].median is not None
    }
    rows = [
        DurationRow(
            month,
            severity,
            spreads[(month, severity)].count,
            seconds_text(spreads[(month, severity)].median),
            seconds_text(spreads[(month, severity)].p90),
        )
        for month in (m.month for m in report.months)
        for severity in severities
        if (month, severity) in spreads
    ]
    if not spreads:
        return DurationChart(name, None, "", [])
    medians = {key: value.median for key, value in spreads.items() if value.median is not None}
    unit, size = unit_for(max(medians.values()))
    verb: Callable[[str], str] = {
        "acknowledge": lambda s: f"Median time to acknowledge ({s})",
        "resolve": lambda s: f"Median time to resolve ({s})",
    }[name]
    chart = charts.grouped_bars(
        chart_id=f"chart-{name}",
        title=verb(unit),
        desc=_described(
            (f"{row.month} {row.severity}", f"median {row.median}, p90 {row.p90}") for row in rows
        ),
        groups=months,
        series=severities,
        values={key: value / size for key, value in medians.items()},
        unit=unit,
        describe=lambda month, severity, _value: (
            f"{month} {severity}: median {seconds_text(medians[(month, severity)])}, "
            f"p90 {seconds_text(spreads[(month, severity)].p90)}, "
            f"{spreads[(month, severity)].count} measured"
        ),
    )
    return DurationChart(name, chart, unit, rows)
