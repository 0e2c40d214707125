"""The read-only queries behind the web view's pages.

Filters arrive as query-string text and are checked here (`ListFilters.parse`): a wrong
value is a message saying what was wrong and what to give instead, never a 500.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, exists, func, or_, select
from sqlalchemy.orm import Session

from bot.alerts.records import AlertGroup, StoredAlert
from bot.incidents.config import IncidentsSection
from bot.incidents.models import Incident, RoleAssignment
from bot.oncall.models import Page, PageNotification
from bot.postmortem.actions import ActionItemRow
from bot.runbooks.records import RunbookRun, RunbookRunHost
from bot.timeline import TimelineEvent

PER_PAGE = 50
MAX_PAGE = 200  # 10,000 rows deep; older incidents are a date filter away
MAX_SEARCH = 100
REFERENCE = re.compile(r"(?:inc-)?([0-9]{1,12})", re.IGNORECASE)
EVENTS_PER_POLL = 500


@dataclass(frozen=True)
class ListFilters:
    status: str = ""  # "", "open", "resolved" or a configured status
    severity: str = ""
    service: str = ""
    since: date | None = None  # declared on or after this day (viewer's zone)
    until: date | None = None  # declared on or before this day
    search: str = ""
    page: int = 1

    @classmethod
    def parse(
        cls, args: Mapping[str, str], policy: IncidentsSection, services: list[str]
    ) -> tuple[ListFilters, list[str]]:
        """Filters from the query string, and a message for each value that is wrong (the
        wrong value is left out, so the rest still apply)."""
        problems: list[str] = []
        status = args.get("status", "").strip().lower()
        statuses = ["open", "resolved", *[s for s in policy.statuses if s != "resolved"]]
        if status and status not in statuses:
            problems.append(f"status {status[:30]!r} is not one of: {', '.join(statuses)}")
            status = ""
        severity = args.get("severity", "").strip().lower()
        if severity and severity not in policy.severities:
            problems.append(
                f"severity {severity[:30]!r} is not one of: {', '.join(policy.severities)}"
            )
            severity = ""
        service = args.get("service", "").strip()
        if service and service not in services:
            known = ", ".join(services) or "none are configured"
            problems.append(f"service {service[:30]!r} is not a configured service ({known})")
            service = ""
        since = _day(args.get("from", ""), "from", problems)
        until = _day(args.get("to", ""), "to", problems)
        search = args.get("q", "").strip()
        if len(search) > MAX_SEARCH:
            problems.append(f"the search is longer than {MAX_SEARCH} characters; shorten it")
            search = search[:MAX_SEARCH]
        page = 1
        page_text = args.get("page", "").strip()
        if page_text:
            if (
                not (page_text.isascii() and page_text.isdigit())
                or not 1 <= int(page_text) <= MAX_PAGE
            ):
                problems.append(
                    f"page {page_text[:12]!r} is not a page number from 1 to {MAX_PAGE}; "
                    "for older incidents, filter by date"
                )
            else:
                page = int(page_text)
        return cls(status, severity, service, since, until, search, page), problems

    def query_string(self, **changes: Any) -> str:
        """These filters (with `changes`) as a query string, for pagination links."""
        values = {
            "status": self.status,
            "severity": self.severity,
            "service": self.service,
            "from": self.since.isoformat() if self.since else "",
            "to": self.until.isoformat() if self.until else "",
            "q": self.search,
            "page": str(self.page) if self.page > 1 else "",
        }
        values.update({key: str(value) for key, value in changes.items()})
        from urllib.parse import urlencode

        return urlencode({key: value for key, value in values.items() if value and value != "1"})


def _day(text: str, name: str, problems: list[str]) -> date | None:
    text = text.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        problems.append(f"{name} {text[:30]!r} is not a date; give it like 2026-11-21")
        return None


@dataclass(frozen=True)
class ListRow:
    id: int
    title: str
    severity: str
    status: str
    commander: str | None
    declared_at: datetime
    resolved_at: datetime | None
    channel_id: str | None
    channel_name: str | None

    @property
    def reference(self) -> str:
        return f"INC-{self.id}"


def incident_list(
    session: Session, filters: ListFilters, zone: ZoneInfo
) -> tuple[list[ListRow], int]:
    """One page of incidents, open first, newest first; and how many match in all."""
    conditions: list[Any] = []
    if filters.status == "open":
        conditions.append(Incident.resolved_at.is_(None))
    elif filters.status == "resolved":
        conditions.append(Incident.resolved_at.is_not(None))
    elif filters.status:
        conditions.append(Incident.status == filters.status)
    if filters.severity:
        conditions.append(Incident.severity == filters.severity)
    if filters.service:
        conditions.append(
            or_(
                exists().where(
                    AlertGroup.incident_id == Incident.id, AlertGroup.service == filters.service
                ),
                exists().where(
                    Page.incident_id == Incident.id, Page.target == f"service:{filters.service}"
                ),
            )
        )
    if filters.since is not None:
        conditions.append(Incident.declared_at >= _midnight(filters.since, zone))
    if filters.until is not None:
        conditions.append(Incident.declared_at < _midnight(filters.until + timedelta(days=1), zone))
    if filters.search:
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", filters.search.lower()) + "%"
        conditions.append(func.lower(Incident.title).like(pattern, escape="\\"))
    where = and_(*conditions) if conditions else and_(True)
    total = session.scalar(select(func.count()).select_from(Incident).where(where)) or 0
    commander = (
        select(RoleAssignment.user_id)
        .where(RoleAssignment.incident_id == Incident.id, RoleAssignment.role == "commander")
        .scalar_subquery()
    )
    query = (
        select(
            Incident.id,
            Incident.title,
            Incident.severity,
            Incident.status,
            commander.label("commander"),
            Incident.declared_at,
            Incident.resolved_at,
            Incident.channel_id,
            Incident.channel_name,
        )
        .where(where)
        .order_by(
            case((Incident.resolved_at.is_(None), 0), else_=1),
            Incident.declared_at.desc(),
            Incident.id.desc(),
        )
        .offset((filters.page - 1) * PER_PAGE)
        .limit(PER_PAGE)
    )
    rows = [ListRow(*row) for row in session.execute(query)]
    return rows, int(total)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def parse_reference(text: str) -> int | None:
    """`INC-7`, `inc-7` or `7` -> 7."""
    match = REFERENCE.fullmatch(text.strip())
    return int(match.group(1)) if match else None


class Fact(NamedTuple):
    """A timeline event as a plain row: what a sentence reads, no ORM object to track (an
    incident can have 10,000). A tuple made straight from the result row (`Fact._make`):
    a frozen dataclass's `__init__` cost more than reading the row."""

    id: int
    kind: str
    actor: str
    page_id: int | None
    incident_id: int | None
    occurred_at: datetime
    data: dict[str, Any]


_FACT_COLUMNS = (
    TimelineEvent.id,
    TimelineEvent.kind,
    TimelineEvent.actor,
    TimelineEvent.page_id,
    TimelineEvent.incident_id,
    TimelineEvent.occurred_at,
    TimelineEvent.data,
)


@dataclass
class IncidentDetail:
    incident: Incident
    roles: list[tuple[str, str]]
    event_ids: list[int]  # the timeline, in order; its lines come from `bot.webview.lines`
    alerts: list[tuple[AlertGroup, list[StoredAlert]]]
    pages: list[tuple[Page, list[PageNotification]]]
    runs: list[tuple[RunbookRun, list[RunbookRunHost]]]
    actions: list[ActionItemRow]
    services: list[str] = field(default_factory=list)

    @property
    def last_event_id(self) -> int:
        return max(self.event_ids, default=0)


def incident_detail(session: Session, incident_id: int, roles: list[str]) -> IncidentDetail | None:
    incident = session.get(Incident, incident_id)
    if incident is None:
        return None
    order = {role: index for index, role in enumerate(roles)}
    assigned = session.scalars(
        select(RoleAssignment).where(RoleAssignment.incident_id == incident_id)
    )
    held = sorted(
        ((row.role, row.user_id) for row in assigned), key=lambda pair: order.get(pair[0], 99)
    )
    event_ids = list(
        session.scalars(
            select(TimelineEvent.id)
            .where(TimelineEvent.incident_id == incident_id)
            .order_by(TimelineEvent.occurred_at, TimelineEvent.id)
        )
    )
    groups = list(
        session.scalars(
            select(AlertGroup)
            .where(AlertGroup.incident_id == incident_id)
            .order_by(AlertGroup.opened_at, AlertGroup.id)
        )
    )
    alerts_by_group: dict[int, list[StoredAlert]] = defaultdict(list)
    if groups:
        for alert in session.scalars(
            select(StoredAlert)
            .where(StoredAlert.group_id.in_([group.id for group in groups]))
            .order_by(StoredAlert.first_seen_at, StoredAlert.id)
        ):
            alerts_by_group[alert.group_id].append(alert)
    page_ids = {group.page_id for group in groups if group.page_id is not None}
    pages = list(
        session.scalars(
            select(Page)
            .where(or_(Page.incident_id == incident_id, Page.id.in_(page_ids)))
            .order_by(Page.created_at, Page.id)
        )
    )
    notifications: dict[int, list[PageNotification]] = defaultdict(list)
    if pages:
        for note in session.scalars(
            select(PageNotification)
            .where(PageNotification.page_id.in_([page.id for page in pages]))
            .order_by(PageNotification.cycle, PageNotification.step, PageNotification.id)
        ):
            notifications[note.page_id].append(note)
    runs = list(
        session.scalars(
            select(RunbookRun)
            .where(RunbookRun.incident_id == incident_id)
            .order_by(RunbookRun.requested_at, RunbookRun.id)
        )
    )
    hosts: dict[int, list[RunbookRunHost]] = defaultdict(list)
    if runs:
        for host in session.scalars(
            select(RunbookRunHost)
            .where(RunbookRunHost.run_id.in_([run.id for run in runs]))
            .order_by(RunbookRunHost.position)
        ):
            hosts[host.run_id].append(host)
    actions = list(
        session.scalars(
            select(ActionItemRow)
            .where(ActionItemRow.incident_id == incident_id)
            .order_by(ActionItemRow.id)
        )
    )
    return IncidentDetail(
        incident=incident,
        roles=held,
        event_ids=event_ids,
        alerts=[(group, alerts_by_group[group.id]) for group in groups],
        pages=[(page, notifications[page.id]) for page in pages],
        runs=[(run, hosts[run.id]) for run in runs],
        actions=actions,
        services=sorted({group.service for group in groups if group.service}),
    )


def events_after(session: Session, incident_id: int, after: int) -> tuple[list[Fact], bool | None]:
    """The incident's events with ids above `after` (at most EVENTS_PER_POLL), and whether
    it is still open (None: there is no such incident)."""
    resolved = session.execute(
        select(Incident.resolved_at).where(Incident.id == incident_id)
    ).first()
    if resolved is None:
        return [], None
    events = list(
        map(
            Fact._make,
            session.connection()
            .execute(  # Core rows, as `events_by_id`
                select(*_FACT_COLUMNS)
                .where(TimelineEvent.incident_id == incident_id, TimelineEvent.id > after)
                .order_by(TimelineEvent.id)
                .limit(EVENTS_PER_POLL)
            )
            .all(),
        )
    )
    return events, resolved[0] is None


# Ids in one `IN (...)`: well inside SQLite's and PostgreSQL's limits on parameters. More
# than this, and the incident's whole timeline is read instead (one query, no parameters).
IDS_PER_QUERY = 1000


def events_by_id(session: Session, incident_id: int, event_ids: list[int]) -> list[Fact]:
    """These events of the incident (the timeline lines `bot.webview.lines` has not made
    yet), in no particular order, as Core rows: no ORM loading for 10,000 of them."""
    columns = select(*_FACT_COLUMNS)
    if len(event_ids) > IDS_PER_QUERY:
        wanted = set(event_ids)
        rows = session.connection().execute(columns.where(TimelineEvent.incident_id == incident_id))
        return [fact for fact in map(Fact._make, rows.all()) if fact.id in wanted]
    rows = session.connection().execute(columns.where(TimelineEvent.id.in_(event_ids)))
    return list(map(Fact._make, rows.all()))
