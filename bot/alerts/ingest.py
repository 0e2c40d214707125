"""One webhook's alerts into the database: route, dedup, group, page, open the incident.

`ingest` runs in the caller's transaction, so the alerts, their group, the page with its
first step and the incident commit together or not at all: a webhook is answered 2xx only
after this committed, and never half-written. Every source goes through it.

- Identity: a firing alert is one row per group and fingerprint; a repeat updates it (last
  seen, count, annotations) and pages nobody. Alertmanager re-sending a whole group every
  `group_interval` is therefore a no-op for paging.
- Grouping: one open group per source and group key (Alertmanager `groupKey`, PagerDuty
  `dedup_key`), one page per group, and one incident where the route says so. New alerts
  joining an open group are recorded in its incident's timeline.
- Resolve: a resolved alert is recorded; when no alert of a group fires any more the group
  resolves and so does its page. The incident too, if the route says `auto_resolve`.
- Storm control: a route pages at most `storm.max_pages` new groups per `storm.per`; past
  that, groups are still stored (nobody is paged, no incident is opened) and the first
  suppressed group of each window asks for one storm notice.
- Concurrency: the open group is found or inserted under a partial unique index and then
  locked, so the same webhook on two replicas at once gives one group, one page, one
  incident. Routing is decided once, when a group opens.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot import timeline
from bot.alerts import bulk
from bot.alerts.model import Alert, Batch
from bot.alerts.records import FIRING, OPEN, RESOLVED, AlertGroup, AlertStorm, StoredAlert
from bot.alerts.routing import AlertRoute, route_for
from bot.db import insert_unless_taken
from bot.incidents import service as incidents
from bot.incidents.config import IncidentsSection
from bot.incidents.service import Change, IncidentError
from bot.oncall import paging
from bot.oncall.configuration import OncallConfig
from bot.oncall.models import OPEN_STATES
from bot.oncall.paging import Outcome, PagingError, Triggered
from bot.oncall.targets import Target
from bot.timeline import TimelineEvent

log = logging.getLogger(__name__)
MAX_TITLE = 150  # incident titles are at most 200 characters; leave room for a suffix


@dataclass(frozen=True)
class Policy:
    """The configuration ingest reads."""

    routes: Sequence[AlertRoute]
    oncall: OncallConfig
    incidents: IncidentsSection


@dataclass(frozen=True)
class Storm:
    """A route went past its page limit: the first suppressed group of a window."""

    route: str
    max_pages: int
    per: timedelta
    group_id: int
    title: str


@dataclass
class Ingested:
    """What one batch did. `facts` counts the alert facts recorded in the group's timeline
    (`alert_fired`, `alert_resolved`); `outcomes` are the page changes (acknowledged,
    resolved)."""

    group_id: int | None = None
    group_created: bool = False
    route: str | None = None
    new: int = 0
    repeated: int = 0
    resolved: int = 0
    triggered: Triggered | None = None
    incident_id: int | None = None
    incident_created: bool = False
    incident_resolved: Change | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    facts: int = 0
    storm: Storm | None = None  # set for the first group a storm held back in its window
    suppressed: bool = False  # the new group's page was held back by its route's limit
    group_resolved: bool = False

    @property
    def changed_alerts(self) -> bool:
        """Whether the alert summary of the group's incident needs re-rendering."""
        return bool(self.new or self.resolved)


def ingest(session: Session, policy: Policy, batch: Batch, *, now: datetime) -> Ingested:
    """Store one batch and do what it calls for, in the caller's transaction."""
    if batch.action == "acknowledge":
        return _acknowledge(session, batch, now)
    result = Ingested()
    inserted = False  # the group's row was inserted by this transaction: it holds no alerts
    group = _open_group(session, batch.source, batch.group_key)
    if group is None:
        group = _repeated_resolution(session, batch)
    if group is None:
        # Resolutions of a group we never saw open (or already closed) are recorded in a
        # resolved group of their own, so nothing sent is lost, and page nobody.
        firing = any(alert.status == FIRING for alert in batch.alerts)
        matched = route_for(policy.routes, routing_labels(batch))
        group = _new_group(session, batch, matched, now, state=OPEN if firing else RESOLVED)
        if group is None:  # a twin request opened it first; its row is locked from here
            group = _open_group(session, batch.source, batch.group_key)
        else:
            inserted = True
            if group.state == OPEN:
                result.group_created = True
                if matched is not None:
                    _page_and_declare(session, policy, batch, group, matched[1], now, result)
    assert group is not None, "a group that was just found open cannot vanish under its lock"
    result.group_id, result.route, result.incident_id = group.id, group.route, group.incident_id
    group.last_seen_at = now
    _store_all(session, group, batch, now, result, inserted=inserted)
    if group.state == OPEN and result.resolved and not _still_firing(session, group):
        _resolve_group(session, policy, batch, group, now, result)
    return result


# -- groups -----------------------------------------------------------------------------


def _open_group(session: Session, source: str, key: str) -> AlertGroup | None:
    """The open group of this source and key, locked for the rest of the transaction."""
    query = select(AlertGroup).where(
        AlertGroup.source == source, AlertGroup.group_key == key, AlertGroup.state == OPEN
    )
    return session.scalars(query.with_for_update()).one_or_none()


def _repeated_resolution(session: Session, batch: Batch) -> AlertGroup | None:
    """The closed group a batch of resolutions repeats: the key's latest group, when it
    already holds every one of them resolved (a sender's retry, or the same resolve sent to
    two replicas, whose twin closed the group first). The batch then counts as a repeat
    there instead of opening a resolved group of its own with the same alerts again."""
    if not batch.alerts or any(alert.status == FIRING for alert in batch.alerts):
        return None
    latest = session.scalars(
        select(AlertGroup)
        .where(AlertGroup.source == batch.source, AlertGroup.group_key == batch.group_key)
        .order_by(AlertGroup.id.desc())
        .limit(1)
    ).first()
    if latest is None or latest.state == OPEN:
        return None  # an open one would have been found (and locked) by `_open_group`
    fingerprints = {alert.fingerprint for alert in batch.alerts}
    if _resolved_fingerprints(session, latest, sorted(fingerprints)) != fingerprints:
        return None
    return latest


def routing_labels(batch: Batch) -> dict[str, str]:
    """The labels a batch is routed by: those every alert of it shares (what Alertmanager
    calls `commonLabels`), so a group is routed the same whichever alert came first."""
    alerts = [alert.labels for alert in batch.alerts]
    if not alerts:
        return {}
    common = dict(alerts[0])
    for labels in alerts[1:]:
        common = {name: value for name, value in common.items() if labels.get(name) == value}
    return common


def _new_group(
    session: Session,
    batch: Batch,
    matched: tuple[int, AlertRoute] | None,
    now: datetime,
    *,
    state: str,
) -> AlertGroup | None:
    """Insert the group; None when a twin request inserted the same open group first."""
    route = matched[1].label(matched[0]) if matched else None
    if matched is None and state == OPEN:
        log.warning(
            "alert group %s from %s matched no route; stored, nobody paged",
            batch.group_key[:80],
            batch.source,
        )
    return insert_unless_taken(
        session,
        AlertGroup,
        source=batch.source,
        group_key=batch.group_key,
        title=batch.title,
        route=route,
        service=matched[1].service if matched else None,
        state=state,
        suppressed=False,
        opened_at=now,
        last_seen_at=now,
        resolved_at=now if state == RESOLVED else None,
    )


def _route_of(policy: Policy, group: AlertGroup) -> AlertRoute | None:
    for index, route in enumerate(policy.routes):
        if route.label(index) == group.route:
            return route
    return None


def _page_and_declare(
    session: Session,
    policy: Policy,
    batch: Batch,
    group: AlertGroup,
    route: AlertRoute,
    now: datetime,
    result: Ingested,
) -> None:
    """A new routed group: open its incident (if the route says so) and page its service,
    unless the route is past its storm limit."""
    assert group.service is not None
    if _over_limit(session, group, route, now):
        group.suppressed = result.suppressed = True
        result.storm = _storm_notice(session, group, route, now)
        return
    incident_id = _declare(session, policy, batch, group, route, now, result)
    try:
        triggered = paging.trigger(
            session,
            policy.oncall,
            target=Target("service", group.service),
            message=_page_message(batch),
            created_by=batch.source,
            now=now,
            incident_id=incident_id,
            dedup_key=f"alert-group:{group.id}",
            details=page_details(batch),
            new_key=True,  # the group was inserted by this transaction
        )
    except PagingError as error:  # a service whose policy went away: stored, logged
        log.error("alert group %s: nobody paged: %s", group.id, error)
        group.incident_id = incident_id
        return
    # Set together, after the page: one UPDATE of the group's row at the next flush, where
    # setting the incident first had the page's flushes send an UPDATE of its own.
    group.incident_id, group.page_id = incident_id, triggered.page.id
    result.triggered = triggered


def _declare(
    session: Session,
    policy: Policy,
    batch: Batch,
    group: AlertGroup,
    route: AlertRoute,
    now: datetime,
    result: Ingested,
) -> int | None:
    """The group's incident, where its route opens one: its id (None if not)."""
    if route.incident is not None and route.incident.open:
        try:
            declaration = incidents.declare(
                session,
                title=_incident_title(batch.title),
                severity=route.incident.severity,
                description=_description(batch),
                declared_by=timeline.BOT,
                declare_key=f"alert-group:{group.id}",
                policy=policy.incidents,
                now=now,
            )
        except IncidentError as error:  # e.g. a severity removed from the config since
            log.warning("alert group %s: no incident opened: %s", group.id, error)
        else:
            result.incident_id = declaration.incident.id
            result.incident_created = declaration.created
            return declaration.incident.id
    return None


def _over_limit(session: Session, group: AlertGroup, route: AlertRoute, now: datetime) -> bool:
    since = now - route.storm.per
    paged = session.scalar(
        select(func.count(AlertGroup.id)).where(
            AlertGroup.route == group.route,
            AlertGroup.opened_at > since,
            AlertGroup.page_id.is_not(None),
        )
    )
    return int(paged or 0) >= route.storm.max_pages


def _storm_notice(
    session: Session, group: AlertGroup, route: AlertRoute, now: datetime
) -> Storm | None:
    """Count the suppressed group in its route's window; a Storm for the window's first."""
    assert group.route is not None
    window = _window_start(now, route.storm.per)
    storm = session.get(AlertStorm, (group.route, window), with_for_update=True)
    if storm is not None:
        storm.suppressed += 1
        return None
    try:
        with session.begin_nested():
            session.add(
                AlertStorm(route=group.route, window_start=window, suppressed=1, noticed_at=now)
            )
    except IntegrityError:  # another replica noticed this window first
        raced = session.get(AlertStorm, (group.route, window), with_for_update=True)
        if raced is not None:
            raced.suppressed += 1
        return None
    log.warning(
        "alert storm on route %s: more than %s pages in %s; holding further pages back",
        group.route,
        route.storm.max_pages,
        route.storm.per,
    )
    return Storm(group.route, route.storm.max_pages, route.storm.per, group.id, group.title)


def _window_start(now: datetime, per: timedelta) -> datetime:
    seconds = max(int(per.total_seconds()), 1)
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=UTC)


def _incident_title(title: str) -> str:
    title = " ".join(title.split())
    return title if len(title) <= MAX_TITLE else title[: MAX_TITLE - 1] + "…"


def _page_message(batch: Batch) -> str:
    message = " ".join(batch.title.split()) or f"alert group {batch.group_key}"
    return message[: paging.MAX_MESSAGE]


def page_details(batch: Batch) -> dict[str, Any]:
    """What the page shows beside its message: the group's common labels and the links of
    its first alert (source, runbook, dashboard)."""
    first = batch.alerts[0] if batch.alerts else None
    links = [{"text": link.text, "url": link.url} for link in first.links] if first else []
    return {"source": batch.source, "labels": routing_labels(batch), "links": links}


def _description(batch: Batch) -> str:
    first = batch.alerts[0] if batch.alerts else None
    if first is None:
        return ""
    return first.annotations.get("description", "")[:2000]


# -- alerts -----------------------------------------------------------------------------


def _store_all(
    session: Session,
    group: AlertGroup,
    batch: Batch,
    now: datetime,
    result: Ingested,
    *,
    inserted: bool = False,
) -> None:
    """Insert, update or resolve the batch's alert rows (the group is locked: no race here).

    A webhook of a hundred alerts costs a few statements, not hundreds: one SELECT finds
    the batch's firing rows, the new rows go out in one INSERT (which returns their ids)
    and their timeline facts in another. Both INSERTs are Core statements on the mapped
    tables (the same columns, types and constraints as the ORM's), because building an ORM
    object per alert and per fact was most of a webhook's time under a storm; on PostgreSQL
    they take the rows as arrays, one short statement whatever the batch's size
    (`bot.alerts.bulk`). The rows that change (repeats, resolutions) stay ORM objects,
    flushed with the transaction. A group this transaction `inserted` holds no rows yet:
    nothing is looked up.
    """
    firing: dict[str, StoredAlert] = {}
    resolved_before: set[str] = set()
    if not inserted:
        fingerprints = [alert.fingerprint for alert in batch.alerts]
        query = select(StoredAlert).where(
            StoredAlert.group_id == group.id,
            StoredAlert.status == FIRING,
            StoredAlert.fingerprint.in_(fingerprints),
        )
        firing = {row.fingerprint: row for row in session.scalars(query)}
        unseen = [a.fingerprint for a in batch.alerts if a.status != FIRING]
        unseen = [fingerprint for fingerprint in unseen if fingerprint not in firing]
        resolved_before = _resolved_fingerprints(session, group, unseen) if unseen else set()
    fresh: list[dict[str, Any]] = []  # rows to insert
    # The facts to record, in the batch's order: (kind, alert id, or -1 - its index in
    # `fresh` until the INSERT gives it an id, summary).
    facts: list[tuple[str, int, str]] = []
    for alert in batch.alerts:
        row = firing.get(alert.fingerprint)
        if alert.status == FIRING:
            if row is not None:
                _refresh(row, alert, now)
                row.count += 1
                result.repeated += 1
                continue
            facts.append(("alert_fired", -1 - len(fresh), alert.summary))
            fresh.append(_values(group, alert, now))
            result.new += 1
        elif row is None:
            if alert.fingerprint in resolved_before:
                result.repeated += 1
                continue
            values = _values(group, alert, now)  # resolved before we saw it fire: recorded
            values["status"], values["resolved_at"] = RESOLVED, alert.ends_at or now
            fresh.append(values)
        else:
            _refresh(row, alert, now)
            row.status, row.resolved_at = RESOLVED, alert.ends_at or now
            result.resolved += 1
            facts.append(("alert_resolved", row.id, row.summary))
    if fresh:
        ids = _insert_alerts(session, fresh)
        facts = [(kind, ids[-1 - ref] if ref < 0 else ref, text) for kind, ref, text in facts]
    _record_facts(session, group, batch, now, facts, result)


def _insert_alerts(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert the rows in one statement (`bulk.insert_rows`); their ids, in the order of
    `rows`. The ids come back with their fingerprints, distinct within a batch (as the
    parsers require), so no order of RETURNING is relied on."""
    table = cast(Table, StoredAlert.__table__)
    returned = bulk.insert_rows(session, table, rows, returning=("id", "fingerprint"))
    ids = {fingerprint: int(row_id) for row_id, fingerprint in returned}
    return [ids[row["fingerprint"]] for row in rows]


def _record_facts(
    session: Session,
    group: AlertGroup,
    batch: Batch,
    now: datetime,
    facts: list[tuple[str, int, str]],
    result: Ingested,
) -> None:
    """Each alert's fact in its incident's (or page's) timeline, in one INSERT; a group
    with neither (no route, or held back by a storm) keeps its history in its alert rows.

    These are `bot.timeline.record`'s rows (an append-only `TimelineEvent` each, same
    kinds, data keys and transaction), written in one INSERT (`bulk.insert_rows`)."""
    if not facts or (group.incident_id is None and group.page_id is None):
        return
    for kind, _, _ in facts:
        if kind not in timeline.KINDS:  # what timeline.record checks
            raise ValueError(f"unknown timeline event kind {kind!r}")
    rows = [
        {
            "incident_id": group.incident_id,
            "page_id": group.page_id,
            "kind": kind,
            "actor": batch.source,
            "occurred_at": now,
            "data": {
                "alert": alert_id,
                "source": batch.source,
                "summary": summary,
                "group": group.id,
            },
            "dedup_key": None,
        }
        for kind, alert_id, summary in facts
    ]
    bulk.insert_rows(session, cast(Table, TimelineEvent.__table__), rows)
    result.facts += len(rows)


def _resolved_fingerprints(
    session: Session, group: AlertGroup, fingerprints: list[str]
) -> set[str]:
    query = select(StoredAlert.fingerprint).where(
        StoredAlert.group_id == group.id,
        StoredAlert.status == RESOLVED,
        StoredAlert.fingerprint.in_(fingerprints),
    )
    return set(session.scalars(query))


def _values(group: AlertGroup, alert: Alert, now: datetime) -> dict[str, Any]:
    """A new firing alert row's column values."""
    return {
        "group_id": group.id,
        "fingerprint": alert.fingerprint,
        "status": FIRING,
        "summary": alert.summary,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "links": _links(alert),
        "starts_at": alert.starts_at,
        "ends_at": alert.ends_at,
        "first_seen_at": now,
        "last_seen_at": now,
        "resolved_at": None,
        "count": 1,
    }


def _refresh(row: StoredAlert, alert: Alert, now: datetime) -> None:
    row.last_seen_at = now
    row.summary = alert.summary
    row.annotations = dict(alert.annotations)
    row.links = _links(alert)
    row.ends_at = alert.ends_at


def _links(alert: Alert) -> dict[str, Any]:
    return {"links": [{"text": link.text, "url": link.url} for link in alert.links]}


def _still_firing(session: Session, group: AlertGroup) -> bool:
    query = select(StoredAlert.id).where(
        StoredAlert.group_id == group.id, StoredAlert.status == FIRING
    )
    return session.scalars(query.limit(1)).first() is not None


def _resolve_group(
    session: Session,
    policy: Policy,
    batch: Batch,
    group: AlertGroup,
    now: datetime,
    result: Ingested,
) -> None:
    """Every alert of the group resolved: the group and its page resolve; the incident too
    when the route says `auto_resolve`."""
    group.state, group.resolved_at = RESOLVED, now
    result.group_resolved = True
    if group.page_id is not None:
        page = paging.get(session, group.page_id)
        if page.state in OPEN_STATES:
            result.outcomes.append(
                paging.resolve(session, page_id=group.page_id, by=batch.source, now=now)
            )
    route = _route_of(policy, group)
    if group.incident_id is not None and route is not None and route.auto_resolve:
        if _other_groups_firing(session, group):
            return
        incident = incidents.get(session, group.incident_id)
        result.incident_resolved = incidents.resolve(
            session, incident, "every alert resolved", actor=batch.source, now=now
        )


def _other_groups_firing(session: Session, group: AlertGroup) -> bool:
    query = select(AlertGroup.id).where(
        AlertGroup.incident_id == group.incident_id,
        AlertGroup.id != group.id,
        AlertGroup.state == OPEN,
    )
    return session.scalars(query.limit(1)).first() is not None


# -- acknowledge ------------------------------------------------------------------------


def _acknowledge(session: Session, batch: Batch, now: datetime) -> Ingested:
    """PagerDuty `event_action: acknowledge`: as if the person pressed Acknowledge. An
    unknown or closed key is accepted and does nothing, as PagerDuty does."""
    result = Ingested()
    group = _open_group(session, batch.source, batch.group_key)
    if group is None:
        return result
    group.last_seen_at = now
    result.group_id, result.route, result.incident_id = group.id, group.route, group.incident_id
    if group.page_id is not None:
        result.outcomes.append(
            paging.acknowledge(session, page_id=group.page_id, by=batch.source, now=now)
        )
    return result


# -- reading ----------------------------------------------------------------------------


def alerts_of_incident(session: Session, incident_id: int) -> list[tuple[AlertGroup, StoredAlert]]:
    """Every alert of the incident's groups, firing first, newest first."""
    query = (
        select(AlertGroup, StoredAlert)
        .join(StoredAlert, StoredAlert.group_id == AlertGroup.id)
        .where(AlertGroup.incident_id == incident_id)
        .order_by((StoredAlert.status == FIRING).desc(), StoredAlert.id.desc())
    )
    return [(group, alert) for group, alert in session.execute(query).all()]


def alerts_of_group(
    session: Session, group_id: int, *, limit: int | None = None
) -> list[StoredAlert]:
    """The group's alerts, firing first, oldest first; the first `limit` of them if given
    (the summary message shows 20 of a storm's hundreds and counts the rest)."""
    query = (
        select(StoredAlert)
        .where(StoredAlert.group_id == group_id)
        .order_by((StoredAlert.status == FIRING).desc(), StoredAlert.id)
    )
    return list(session.scalars(query if limit is None else query.limit(limit)))


def group_counts(session: Session, group_id: int) -> tuple[int, int]:
    """(firing, all) alerts of the group, counted by the database."""
    query = select(func.count().filter(StoredAlert.status == FIRING), func.count()).where(
        StoredAlert.group_id == group_id
    )
    firing, total = session.execute(query).one()
    return int(firing or 0), int(total or 0)
