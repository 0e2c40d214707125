"""The incident lifecycle: declare, change severity, status and roles, note, pin, resolve.

Plain data, a session and the current instant in; the changed incident and the fact it
recorded out. Every change writes exactly one timeline event in the caller's transaction, so
the change and its record commit together. Nothing here knows about Slack: actors are opaque
strings (Slack user ids, `cli:<login>`), and messages are plain text for the edges to show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from bot import timeline
from bot.db import insert_unless_taken
from bot.incidents.config import RESOLVED, IncidentsSection
from bot.incidents.models import Incident, RoleAssignment
from bot.timeline import BOT, TimelineEvent

MAX_TITLE = 200
MAX_NOTE = 3000

__all__ = ["BOT", "Change", "Declaration", "IncidentError"]


class IncidentError(Exception):
    """A request the incident cannot honour; the message is shown to the user as is."""


@dataclass(frozen=True)
class Change:
    """What a request did: the fact it recorded, or (unchanged) why nothing changed."""

    incident: Incident
    event: TimelineEvent | None
    reason: str = ""

    @property
    def changed(self) -> bool:
        return self.event is not None


@dataclass(frozen=True)
class Declaration:
    incident: Incident
    created: bool


def get(session: Session, incident_id: int, *, lock: bool = False) -> Incident:
    query = select(Incident).where(Incident.id == incident_id)
    if lock:
        query = query.with_for_update()
    incident = session.scalars(query).one_or_none()
    if incident is None:
        raise IncidentError(f"There is no incident INC-{incident_id}.")
    return incident


def find_by_channel(session: Session, channel_id: str, *, lock: bool = False) -> Incident | None:
    query = select(Incident).where(Incident.channel_id == channel_id)
    if lock:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def list_open(session: Session) -> list[Incident]:
    query = select(Incident).where(Incident.resolved_at.is_(None)).order_by(Incident.id)
    return list(session.scalars(query))


def roles(session: Session, incident: Incident) -> dict[str, str]:
    query = select(RoleAssignment).where(RoleAssignment.incident_id == incident.id)
    return {assignment.role: assignment.user_id for assignment in session.scalars(query)}


def events(session: Session, incident: Incident) -> list[TimelineEvent]:
    """The incident's whole timeline, oldest first (page facts included)."""
    return timeline.for_incident(session, incident.id)


def record(
    session: Session,
    incident: Incident,
    kind: str,
    *,
    now: datetime,
    actor: str = BOT,
    data: dict[str, object] | None = None,
    dedup_key: str | None = None,
    flush: bool = True,
) -> TimelineEvent | None:
    """Append one fact to the incident's timeline (see `bot.timeline.record`)."""
    return timeline.record(
        session,
        kind,
        now=now,
        actor=actor,
        incident_id=incident.id,
        data=dict(data or {}),
        dedup_key=dedup_key,
        flush=flush,
    )


def _recorded(event: TimelineEvent | None) -> TimelineEvent:
    assert event is not None, "an event without a dedup key is always recorded"
    return event


def validate_title(title: str) -> str:
    title = " ".join(title.split())
    if not title:
        raise IncidentError(
            "Give the incident a title, e.g. `/incident declare sev2 Checkout down`."
        )
    if len(title) > MAX_TITLE:
        raise IncidentError(
            f"The title is {len(title)} characters; keep it to {MAX_TITLE} and put the rest "
            "in the description or a note."
        )
    return title


def validate_severity(severity: str, policy: IncidentsSection) -> str:
    severity = severity.lower()
    if severity not in policy.severities:
        raise IncidentError(
            f"`{severity[:40]}` is not a severity. Choose one of: "
            + ", ".join(policy.severities)
            + "."
        )
    return severity


def declare(
    session: Session,
    *,
    title: str,
    declared_by: str,
    declare_key: str,
    policy: IncidentsSection,
    now: datetime,
    severity: str | None = None,
    description: str = "",
) -> Declaration:
    """Record a new incident, or return the one this request (or its twin) already declared.

    A twin is the same person's open incident of the same title (case-insensitive): a
    double submission, a retry after a Slack failure (the caller finishes its setup), or
    one of many identical requests racing on threads or replicas. The database decides,
    not the look-ups: `declare_key` is unique, and a partial unique index allows one open
    incident per person and title (`bot.idempotency.OPEN_DECLARATION`), so of racing
    declarations one inserts and the others find it.
    """
    title = validate_title(title)
    severity = validate_severity(severity or policy.default_severity, policy)

    def existing() -> Incident | None:
        """This request's incident if it has one, else the latest open twin (one query)."""
        same_request = Incident.declare_key == declare_key
        twin = and_(
            Incident.declared_by == declared_by,
            func.lower(Incident.title) == func.lower(title),
            Incident.resolved_at.is_(None),
        )
        return session.scalars(
            select(Incident)
            .where(or_(same_request, twin))
            .order_by(case((same_request, 0), else_=1), Incident.id.desc())
            .limit(1)
        ).first()

    found = existing()
    if found is not None:
        return Declaration(found, created=False)
    incident = None
    for _ in range(3):
        incident = insert_unless_taken(
            session,
            Incident,
            title=title,
            description=description.strip(),
            severity=severity,
            status=policy.initial_status,
            declared_by=declared_by,
            declared_at=now,
            declare_key=declare_key,
        )
        if incident is not None:
            break
        # The same request, or a twin, committed first (the insert waited for it); unless
        # the twin was resolved in between, when the insert is tried again.
        found = existing()
        if found is not None:
            return Declaration(found, created=False)
    if incident is None:
        raise IncidentError(
            "The incident could not be recorded: declarations like it kept being opened "
            "and resolved at the same moment. Declare it again."
        )
    record(
        session,
        incident,
        "declared",
        now=now,
        actor=declared_by,
        data={"severity": severity, "title": title, "description": incident.description},
        flush=False,  # with the session's next flush (a page's, when monitoring declares)
    )
    if declared_by == BOT:  # opened by monitoring: the first responder to acknowledge leads
        return Declaration(incident, created=True)
    session.add(
        RoleAssignment(
            incident_id=incident.id,
            role="commander",
            user_id=declared_by,
            assigned_by=declared_by,
            assigned_at=now,
        )
    )
    record(
        session,
        incident,
        "role_assigned",
        now=now,
        actor=declared_by,
        data={"role": "commander", "user": declared_by, "previous": None},
    )
    return Declaration(incident, created=True)


def _refuse_if_resolved(incident: Incident, what: str) -> None:
    if incident.is_resolved:
        raise IncidentError(
            f"{incident.reference} is resolved, so its {what} can't change. Reopen it first "
            "with `/incident status <status>`."
        )


def set_severity(
    session: Session,
    incident: Incident,
    severity: str,
    *,
    actor: str,
    policy: IncidentsSection,
    now: datetime,
) -> Change:
    severity = validate_severity(severity, policy)
    _refuse_if_resolved(incident, "severity")
    previous = incident.severity
    if severity == previous:
        return Change(incident, None, f"{incident.reference} is already {severity}.")
    incident.severity = severity
    event = record(
        session,
        incident,
        "severity_changed",
        now=now,
        actor=actor,
        data={"from": previous, "to": severity},
    )
    return Change(incident, _recorded(event))


def set_status(
    session: Session,
    incident: Incident,
    status: str,
    *,
    actor: str,
    policy: IncidentsSection,
    now: datetime,
) -> Change:
    status = status.lower()
    if status not in policy.statuses:
        raise IncidentError(
            f"`{status[:40]}` is not a status. Choose one of: " + ", ".join(policy.statuses) + "."
        )
    if status == RESOLVED:
        return resolve(session, incident, "", actor=actor, now=now)
    previous = incident.status
    if status == previous:
        return Change(incident, None, f"{incident.reference} is already {status}.")
    kind = "status_changed"
    if incident.is_resolved:
        _refuse_a_second_open_twin(session, incident)
        incident.resolved_at = None
        incident.resolution = None
        kind = "reopened"
    incident.status = status
    event = record(
        session, incident, kind, now=now, actor=actor, data={"from": previous, "to": status}
    )
    return Change(incident, _recorded(event))


def _refuse_a_second_open_twin(session: Session, incident: Incident) -> None:
    """A person has one open incident per title (the database's unique index says so too):
    reopening this one while its twin is open would make two."""
    twin = session.scalars(
        select(Incident).where(
            Incident.id != incident.id,
            Incident.declared_by == incident.declared_by,
            func.lower(Incident.title) == incident.title.lower(),
            Incident.resolved_at.is_(None),
        )
    ).first()
    if twin is not None:
        raise IncidentError(
            f"{incident.reference} can't be reopened while {twin.reference}, declared with the "
            f"same title by the same person, is open. Carry on in {twin.reference}, or resolve "
            "it first."
        )


def assign_role(
    session: Session,
    incident: Incident,
    role: str,
    user_id: str,
    *,
    actor: str,
    policy: IncidentsSection,
    now: datetime,
) -> Change:
    role = role.lower()
    if role not in policy.roles:
        raise IncidentError(
            f"`{role[:40]}` is not a role. Choose one of: " + ", ".join(policy.roles) + "."
        )
    _refuse_if_resolved(incident, "roles")
    assignment = session.get(RoleAssignment, (incident.id, role))
    previous = assignment.user_id if assignment else None
    if previous == user_id:
        return Change(incident, None, f"They already hold {role} on {incident.reference}.")
    if assignment is None:
        session.add(
            RoleAssignment(
                incident_id=incident.id,
                role=role,
                user_id=user_id,
                assigned_by=actor,
                assigned_at=now,
            )
        )
    else:
        assignment.user_id, assignment.assigned_by, assignment.assigned_at = user_id, actor, now
    event = record(
        session,
        incident,
        "role_assigned",
        now=now,
        actor=actor,
        data={"role": role, "user": user_id, "previous": previous},
    )
    return Change(incident, _recorded(event))


def take_command(
    session: Session, incident: Incident, user_id: str, *, now: datetime
) -> Change | None:
    """The responder who acknowledges the page of an incident nobody leads (one monitoring
    opened) becomes its commander; None when it already has one or is resolved."""
    if incident.is_resolved:
        return None
    if session.get(RoleAssignment, (incident.id, "commander")) is not None:
        return None
    session.add(
        RoleAssignment(
            incident_id=incident.id,
            role="commander",
            user_id=user_id,
            assigned_by=user_id,
            assigned_at=now,
        )
    )
    event = record(
        session,
        incident,
        "role_assigned",
        now=now,
        actor=user_id,
        data={"role": "commander", "user": user_id, "previous": None},
    )
    return Change(incident, _recorded(event))


def add_note(
    session: Session, incident: Incident, text: str, *, actor: str, now: datetime
) -> Change:
    text = text.strip()
    if not text:
        raise IncidentError("The note is empty. Usage: `/incident note <text>`.")
    if len(text) > MAX_NOTE:
        raise IncidentError(f"The note is {len(text)} characters; keep it to {MAX_NOTE}.")
    event = record(session, incident, "note_added", now=now, actor=actor, data={"text": text})
    return Change(incident, _recorded(event))


def resolve(
    session: Session, incident: Incident, resolution: str, *, actor: str, now: datetime
) -> Change:
    if incident.is_resolved:
        return Change(incident, None, f"{incident.reference} is already resolved.")
    previous = incident.status
    incident.status = RESOLVED
    incident.resolved_at = now
    incident.resolution = resolution.strip() or None
    event = record(
        session,
        incident,
        "resolved",
        now=now,
        actor=actor,
        data={"from": previous, "resolution": incident.resolution},
    )
    return Change(incident, _recorded(event))


def record_pinned_message(
    session: Session,
    incident: Incident,
    *,
    channel_id: str,
    message_ts: str,
    author: str | None,
    text: str,
    actor: str,
    now: datetime,
) -> TimelineEvent | None:
    """Copy a message someone marked with :pushpin: into the timeline, once per message."""
    return record(
        session,
        incident,
        "pinned_message",
        now=now,
        actor=actor,
        data={"channel": channel_id, "ts": message_ts, "author": author, "text": text},
        dedup_key=f"pin:{channel_id}:{message_ts}",
    )
