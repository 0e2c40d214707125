"""Everything a postmortem draft shows, gathered from the database into plain data.

`build(session, incident_id, ...)` reads the incident, its timeline, roles, alerts, pages
(and their notifications) and returns a `Context`: frozen dataclasses of strings, `Md`
(already Markdown) and small lists, nothing with a session or a method worth calling, so
a template sees data and only data. User text stays `str` (names put in for Slack ids);
the template environment escapes it for Markdown when it is shown.

Action items come from `bot.postmortem.actions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from bot.alerts.records import AlertGroup, StoredAlert
from bot.incidents.models import Incident, RoleAssignment
from bot.oncall.models import Page, PageNotification
from bot.people import Person
from bot.postmortem import metrics as measure
from bot.postmortem.config import PostmortemSection
from bot.postmortem.markdown import Md, Names, cell, escape, link, sentence_renderer
from bot.timeline import TimelineEvent

SLACK_CHANNEL_URL = "https://slack.com/app_redirect?channel={channel}"


class UnknownIncident(LookupError):
    """No incident has this id; the message names it and is shown as is."""


@dataclass(slots=True)  # many of these: plain slots construct fastest
class Event:
    """One timeline event as read for a draft (the columns of `TimelineEvent`)."""

    id: int
    kind: str
    actor: str
    page_id: int | None
    incident_id: int | None
    occurred_at: datetime
    data: dict[str, Any]


@dataclass(slots=True)  # many of these: plain slots construct fastest
class When:
    """One instant, as UTC and as the team's clock."""

    utc: str  # 2026-03-29 00:30:00 UTC
    local: str  # 2026-03-29 01:30:00 CET (the same as utc when the team zone is UTC)
    iso: str  # 2026-03-29T00:30:00+00:00


class Clock:
    """Formats instants for one team zone (caches nothing per instant: it must stay cheap)."""

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self.is_utc = zone.key == "UTC"

    def when(self, moment: datetime) -> When:
        moment = moment.astimezone(UTC)
        utc = f"{moment:%Y-%m-%d %H:%M:%S} UTC"
        local = utc if self.is_utc else f"{moment.astimezone(self.zone):%Y-%m-%d %H:%M:%S %Z}"
        return When(utc=utc, local=local, iso=moment.isoformat())

    def maybe(self, moment: datetime | None) -> When | None:
        return None if moment is None else self.when(moment)


@dataclass(frozen=True)
class Channel:
    id: str | None
    name: str | None
    link: Md  # [#inc-7-checkout](https://slack.com/app_redirect?channel=C...), or the name


@dataclass(frozen=True)
class IncidentView:
    id: int
    reference: str  # INC-7
    title: str
    description: str
    severity: str
    severity_meaning: str
    status: str
    resolved: bool
    resolution: str
    declared_by: str
    declared: When
    resolved_at: When | None
    services: list[str]
    channel: Channel


@dataclass(frozen=True)
class Duration:
    text: str  # `1 h 05 min`, or `—` when unknown
    seconds: int | None
    at: When | None


@dataclass(frozen=True)
class MetricsView:
    acknowledge: Duration
    acknowledged_by: str | None
    mitigate: Duration
    resolve: Duration
    reopened: int
    mitigated_statuses: list[str]


@dataclass(frozen=True)
class RoleHolder:
    role: str
    name: str


@dataclass(frozen=True)
class Actor:
    name: str
    actions: int
    first: When


@dataclass(frozen=True)
class People:
    commander: str | None
    roles: list[RoleHolder]
    acted: list[Actor]


@dataclass(frozen=True)
class AlertView:
    summary: str
    source: str
    status: str
    service: str | None
    fired: When
    resolved: When | None
    links: list[Md]
    labels: str  # `alertname=HighErrorRate, service=checkout`


@dataclass(frozen=True)
class Notified:
    name: str
    channels: str  # `slack (sent), email (failed)`
    first: When | None


@dataclass(frozen=True)
class PageView:
    reference: str
    target: str
    message: str
    state: str
    created: When
    notified: list[Notified]
    acknowledged_by: str | None
    acknowledged: When | None
    resolved_by: str | None
    resolved: When | None


@dataclass(frozen=True)
class HostOutcome:
    host: str
    outcome: str


@dataclass(frozen=True)
class RunbookRunView:
    reference: str
    runbook: str
    started_by: str
    started: When
    outcome: str
    hosts: list[HostOutcome]


@dataclass(frozen=True)
class ActionItem:
    text: str
    owner: str | None
    due: str | None
    done: bool


@dataclass(slots=True)  # many of these: plain slots construct fastest
class Row:
    at: When
    actor: str
    kind: str
    what: Md


@dataclass(frozen=True)
class Prompt:
    key: str
    title: str
    prompt: str


PROMPTS: tuple[Prompt, ...] = (
    Prompt("summary", "Summary", "What happened, in two or three sentences a newcomer follows."),
    Prompt("impact", "Impact", "Who was affected, how, for how long; numbers where you have them."),
    Prompt(
        "root_cause",
        "Root cause",
        "Why it happened: the chain of causes, not the person who pressed the button.",
    ),
    Prompt("went_well", "What went well", "What helped detect, respond and recover quickly."),
    Prompt("went_wrong", "What went wrong", "What slowed detection, response or recovery."),
    Prompt("lessons", "Lessons", "What we learned, and what we will change (add action items)."),
)


@dataclass(frozen=True)
class Zone:
    name: str
    is_utc: bool


@dataclass(frozen=True)
class Context:
    incident: IncidentView
    metrics: MetricsView
    people: People
    alerts: list[AlertView]
    pages: list[PageView]
    runbook_runs: list[RunbookRunView]
    action_items: list[ActionItem]
    timeline: list[Row]
    timeline_table: Md  # `timeline` as a Markdown table, ready to show
    notes: list[Row]  # notes and pinned messages, also in `timeline`
    prompts: list[Prompt]
    zone: Zone
    generated: When
    extra: dict[str, Any] = field(default_factory=dict)

    def variables(self) -> dict[str, Any]:
        """The template's top-level names."""
        return {
            "incident": self.incident,
            "metrics": self.metrics,
            "people": self.people,
            "alerts": self.alerts,
            "pages": self.pages,
            "runbook_runs": self.runbook_runs,
            "action_items": self.action_items,
            "timeline": self.timeline,
            "timeline_table": self.timeline_table,
            "notes": self.notes,
            "prompts": self.prompts,
            "zone": self.zone,
            "generated": self.generated,
            **self.extra,
        }


def parse_reference(text: str) -> int | None:
    """`INC-7`, `inc-7` or `7` -> 7; None when it is none of those."""
    from bot.slack.text import number_id

    return number_id(text.strip(), prefix="inc-")


def build(
    session: Session,
    incident_id: int,
    *,
    people: Mapping[str, Person],
    severities: Mapping[str, str],
    section: PostmortemSection,
    now: datetime,
) -> Context:
    """The draft's data for incident `incident_id`; raises UnknownIncident."""
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise UnknownIncident(f"there is no incident INC-{incident_id}")
    clock = Clock(section.zone)
    channels = {incident.channel_id: incident.channel_name} if incident.channel_id else {}
    names = Names(
        {person.slack: name for name, person in people.items()},
        {key: value for key, value in channels.items() if key and value},
    )
    events = _events(session, incident.id)
    numbers = measure.compute(
        events, declared_at=incident.declared_at, mitigated_statuses=section.mitigated_statuses
    )
    groups = list(session.scalars(_groups_query(incident.id)))
    alerts = _alerts(session, groups, clock)
    pages = _pages(session, incident.id, {e.page_id for e in events if e.page_id}, names, clock)
    rows = _rows(events, names, clock)
    zone = Zone(section.timezone, clock.is_utc)
    return Context(
        incident=_incident(incident, names, severities, clock, groups, alerts, pages),
        metrics=_metrics(numbers, names, clock, section),
        people=_people(session, incident, events, names, clock),
        alerts=alerts,
        pages=pages,
        runbook_runs=_runbook_runs(session, incident.id, names, clock),
        action_items=_action_items(session, incident.id, names),
        timeline=rows,
        timeline_table=_table(rows, zone),
        notes=[row for row in rows if row.kind in ("note_added", "pinned_message")],
        prompts=list(PROMPTS),
        zone=zone,
        generated=clock.when(now),
    )


def _incident(
    incident: Incident,
    names: Names,
    severities: Mapping[str, str],
    clock: Clock,
    groups: list[AlertGroup],
    alerts: list[AlertView],
    pages: list[PageView],
) -> IncidentView:
    if incident.channel_id:
        label = f"#{incident.channel_name or incident.channel_id}"
        channel_link = link(label, SLACK_CHANNEL_URL.format(channel=incident.channel_id))
    else:
        channel_link = Md("no channel")
    return IncidentView(
        id=incident.id,
        reference=incident.reference,
        title=names.text(incident.title),
        description=names.text(incident.description or ""),
        severity=incident.severity,
        severity_meaning=severities.get(incident.severity, ""),
        status=incident.status,
        resolved=incident.is_resolved,
        resolution=names.text(incident.resolution or ""),
        declared_by=names.person(incident.declared_by),
        declared=clock.when(incident.declared_at),
        resolved_at=clock.maybe(incident.resolved_at),
        services=_services(groups, alerts, pages),
        channel=Channel(incident.channel_id, incident.channel_name, channel_link),
    )


def _services(
    groups: list[AlertGroup], alerts: list[AlertView], pages: list[PageView]
) -> list[str]:
    """From alert labels `service`; else the routes' services; else pages to `service:NAME`."""
    found = sorted({alert.service for alert in alerts if alert.service})
    if not found:
        found = sorted({group.service for group in groups if group.service})
    if not found:
        found = sorted(
            {
                page.target.removeprefix("service:")
                for page in pages
                if page.target.startswith("service:")
            }
        )
    return found


def _metrics(
    numbers: measure.Metrics, names: Names, clock: Clock, section: PostmortemSection
) -> MetricsView:
    def duration(value: Any, at: datetime | None) -> Duration:
        seconds = None if value is None else int(value.total_seconds())
        return Duration(measure.format_duration(value), seconds, clock.maybe(at))

    return MetricsView(
        acknowledge=duration(numbers.time_to_acknowledge, numbers.acknowledged_at),
        acknowledged_by=names.person(numbers.acknowledged_by) if numbers.acknowledged_by else None,
        mitigate=duration(numbers.time_to_mitigate, numbers.mitigated_at),
        resolve=duration(numbers.time_to_resolve, numbers.resolved_at),
        reopened=numbers.reopened,
        mitigated_statuses=list(section.mitigated_statuses),
    )


def _people(
    session: Session,
    incident: Incident,
    events: list[Event],
    names: Names,
    clock: Clock,
) -> People:
    assignments = session.scalars(
        select(RoleAssignment)
        .where(RoleAssignment.incident_id == incident.id)
        .order_by(RoleAssignment.role)
    )
    roles = [RoleHolder(a.role, names.person(a.user_id)) for a in assignments]
    roles.sort(key=lambda holder: (holder.role != "commander", holder.role))
    commander = next((holder.name for holder in roles if holder.role == "commander"), None)
    counts: dict[str, int] = {}
    first: dict[str, datetime] = {}
    for event in events:
        if measure.is_person(event.actor):
            counts[event.actor] = counts.get(event.actor, 0) + 1
            first.setdefault(event.actor, event.occurred_at)
    acted = [Actor(names.person(who), counts[who], clock.when(first[who])) for who in counts]
    return People(commander, roles, acted)


def _groups_query(incident_id: int) -> Any:
    linked_pages = select(Page.id).where(Page.incident_id == incident_id)
    return (
        select(AlertGroup)
        .where(or_(AlertGroup.incident_id == incident_id, AlertGroup.page_id.in_(linked_pages)))
        .order_by(AlertGroup.opened_at, AlertGroup.id)
    )


def _alerts(session: Session, groups: list[AlertGroup], clock: Clock) -> list[AlertView]:
    if not groups:
        return []
    by_id = {group.id: group for group in groups}
    rows = session.scalars(
        select(StoredAlert)
        .where(StoredAlert.group_id.in_(by_id))
        .order_by(StoredAlert.first_seen_at, StoredAlert.id)
    )
    views = []
    for row in rows:
        group = by_id[row.group_id]
        labels = {str(k): str(v) for k, v in (row.labels or {}).items()}
        links = [
            link(str(item.get("text") or item.get("url") or ""), str(item.get("url") or ""))
            for item in (row.links or {}).get("links", [])
            if isinstance(item, dict)
        ]
        views.append(
            AlertView(
                summary=row.summary,
                source=group.source,
                status=row.status,
                service=labels.get("service") or group.service,
                fired=clock.when(row.starts_at or row.first_seen_at),
                resolved=clock.maybe(row.resolved_at),
                links=links,
                labels=", ".join(f"{key}={value}" for key, value in sorted(labels.items())),
            )
        )
    return views


def _pages(
    session: Session, incident_id: int, page_ids: set[int], names: Names, clock: Clock
) -> list[PageView]:
    condition = Page.incident_id == incident_id
    if page_ids:
        condition = or_(condition, Page.id.in_(page_ids))
    pages = list(session.scalars(select(Page).where(condition).order_by(Page.created_at, Page.id)))
    if not pages:
        return []
    notifications = session.scalars(
        select(PageNotification)
        .where(PageNotification.page_id.in_([page.id for page in pages]))
        .order_by(PageNotification.created_at, PageNotification.id)
    )
    told: dict[int, dict[str, list[PageNotification]]] = {}
    for notification in notifications:
        told.setdefault(notification.page_id, {}).setdefault(notification.person, []).append(
            notification
        )
    views = []
    for page in pages:
        notified = []
        for person, sent in told.get(page.id, {}).items():
            channels = ", ".join(f"{n.channel} ({n.status})" for n in sent)
            times = [n.sent_at for n in sent if n.sent_at is not None]
            notified.append(Notified(person, channels, clock.maybe(min(times) if times else None)))
        views.append(
            PageView(
                reference=page.reference,
                target=page.target,
                message=names.text(page.message),
                state=page.state,
                created=clock.when(page.created_at),
                notified=notified,
                acknowledged_by=names.person(page.acknowledged_by)
                if page.acknowledged_by
                else None,
                acknowledged=clock.maybe(page.acknowledged_at),
                resolved_by=names.person(page.resolved_by) if page.resolved_by else None,
                resolved=clock.maybe(page.resolved_at),
            )
        )
    return views


def _events(session: Session, incident_id: int) -> list[Event]:
    """The incident's timeline, oldest first, as plain rows (no ORM objects to track)."""
    query = (
        select(
            TimelineEvent.id,
            TimelineEvent.kind,
            TimelineEvent.actor,
            TimelineEvent.page_id,
            TimelineEvent.incident_id,
            TimelineEvent.occurred_at,
            TimelineEvent.data,
        )
        .where(TimelineEvent.incident_id == incident_id)
        .order_by(TimelineEvent.occurred_at, TimelineEvent.id)
    )
    return [Event(*row) for row in session.execute(query)]


def _table(rows: list[Row], zone: Zone) -> Md:
    """The timeline as a Markdown table: the same as looping over `timeline` in a template,
    built here because a sandboxed loop over 10,000 rows costs ~10x more."""
    if zone.is_utc:
        lines = ["| Time (UTC) | Who | What |", "|---|---|---|"]
        lines.extend(f"| {r.at.utc} | {cell(r.actor)} | {cell(r.what)} |" for r in rows)
    else:
        lines = [f"| Time (UTC) | Time ({escape(zone.name)}) | Who | What |", "|---|---|---|---|"]
        lines.extend(
            f"| {r.at.utc} | {r.at.local} | {cell(r.actor)} | {cell(r.what)} |" for r in rows
        )
    return Md("\n".join(lines) + "\n")


def _rows(events: list[Event], names: Names, clock: Clock) -> list[Row]:
    sentence = sentence_renderer(names)
    return [
        Row(clock.when(event.occurred_at), names.person(event.actor), event.kind, sentence(event))
        for event in events
    ]


def _runbook_runs(
    session: Session, incident_id: int, names: Names, clock: Clock
) -> list[RunbookRunView]:
    """The incident's runbook runs (`bot.runbooks.records`), oldest first, each with every
    planned host's outcome (its status, and the error when it has one)."""
    from bot.runbooks.records import RunbookRun, RunbookRunHost

    runs = list(
        session.scalars(
            select(RunbookRun)
            .where(RunbookRun.incident_id == incident_id)
            .order_by(RunbookRun.requested_at, RunbookRun.id)
        )
    )
    if not runs:
        return []
    hosts: dict[int, list[HostOutcome]] = {}
    query = (
        select(RunbookRunHost)
        .where(RunbookRunHost.run_id.in_([run.id for run in runs]))
        .order_by(RunbookRunHost.run_id, RunbookRunHost.position)
    )
    for host in session.scalars(query):
        outcome = host.status + (f": {names.text(host.error)}" if host.error else "")
        hosts.setdefault(host.run_id, []).append(HostOutcome(host.name, outcome))
    return [
        RunbookRunView(
            reference=run.reference,
            runbook=run.runbook_id,
            started_by=names.person(run.requester),
            started=clock.when(run.started_at or run.requested_at),
            outcome=run.status,
            hosts=hosts.get(run.id, []),
        )
        for run in runs
    ]


def _action_items(session: Session, incident_id: int, names: Names) -> list[ActionItem]:
    """The incident's action items (`bot.postmortem.actions`), oldest first, with owners
    as names and due dates as ISO dates."""
    from bot.postmortem.actions import for_incident

    return [
        ActionItem(
            text=names.text(item.text),
            owner=names.person(item.owner) if item.owner else None,
            due=item.due.isoformat() if item.due else None,
            done=item.done,
        )
        for item in for_incident(session, incident_id)
    ]
