"""The incident lifecycle: declare, change severity, status and roles, note, pin, resolve.

Plain data and a session in, the changed incident out. Every change writes exactly one
timeline event in the caller's transaction, so the change and its record commit together.
Nothing here knows about Slack: callers pass Slack user IDs as opaque actor strings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.config import RESOLVED, IncidentsSection
from bot.db import utcnow
from bot.incidents.models import Incident, RoleAssignment, TimelineEvent

MAX_TITLE = 200
MAX_NOTE = 3000
BOT = "firebreak"
# A second declaration of the same title by the same person within this window is taken
# for a double submission (or a retry after a Slack failure) and resumes the first one.
RESUME_WINDOW = timedelta(minutes=10)


class IncidentError(Exception):
    """A request the incident cannot honour; the message is shown to the user as is."""


@dataclass(frozen=True)
class Change:
    incident: Incident
    changed: bool
    message: str
    event: TimelineEvent | None = None
    data: dict[str, Any] = field(default_factory=dict)


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


def timeline(session: Session, incident: Incident) -> list[TimelineEvent]:
    query = (
        select(TimelineEvent)
        .where(TimelineEvent.incident_id == incident.id)
        .order_by(TimelineEvent.occurred_at, TimelineEvent.id)
    )
    return list(session.scalars(query))


def record(
    session: Session,
    incident: Incident,
    kind: str,
    text: str,
    *,
    actor: str = BOT,
    data: dict[str, Any] | None = None,
    dedup_key: str | None = None,
) -> TimelineEvent | None:
    """Append one timeline event; with a `dedup_key` already recorded, append nothing."""
    event = TimelineEvent(
        incident_id=incident.id,
        kind=kind,
        actor=actor,
        occurred_at=utcnow(),
        text=text,
        data=data or {},
        dedup_key=dedup_key,
    )
    if dedup_key is None:
        session.add(event)
        session.flush()
        return event
    existing = session.scalars(
        select(TimelineEvent.id).where(
            TimelineEvent.incident_id == incident.id, TimelineEvent.dedup_key == dedup_key
        )
    ).first()
    if existing is not None:
        return None
    try:
        with session.begin_nested():
            session.add(event)
    except IntegrityError:
        return None
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
            f"`{severity}` is not a severity. Choose one of: " + ", ".join(policy.severities) + "."
        )
    return severity


def declare(
    session: Session,
    *,
    title: str,
    declared_by: str,
    declare_key: str,
    policy: IncidentsSection,
    severity: str | None = None,
    description: str = "",
) -> Declaration:
    """Record a new incident, or return the one this request (or its twin) already declared."""
    title = validate_title(title)
    severity = validate_severity(severity or policy.default_severity, policy)
    same_request = session.scalars(
        select(Incident).where(Incident.declare_key == declare_key)
    ).one_or_none()
    if same_request is not None:
        return Declaration(same_request, created=False)
    twin = session.scalars(
        select(Incident)
        .where(
            Incident.declared_by == declared_by,
            func.lower(Incident.title) == title.lower(),
            Incident.resolved_at.is_(None),
        )
        .order_by(Incident.id.desc())
    ).first()
    if twin is not None and (
        twin.summary_ts is None or utcnow() - twin.declared_at < RESUME_WINDOW
    ):
        return Declaration(twin, created=False)

    incident = Incident(
        title=title,
        description=description.strip(),
        severity=severity,
        status=policy.initial_status,
        declared_by=declared_by,
        declared_at=utcnow(),
        declare_key=declare_key,
    )
    try:
        with session.begin_nested():
            session.add(incident)
    except IntegrityError:
        # The same request raced us to it; theirs is the incident.
        raced = session.scalars(select(Incident).where(Incident.declare_key == declare_key)).one()
        return Declaration(raced, created=False)
    record(
        session,
        incident,
        "declared",
        f"Declared {severity}: {title}",
        actor=declared_by,
        data={"severity": severity, "title": title, "description": incident.description},
    )
    session.add(
        RoleAssignment(
            incident_id=incident.id,
            role="commander",
            user_id=declared_by,
            assigned_by=declared_by,
            assigned_at=utcnow(),
        )
    )
    record(
        session,
        incident,
        "role_assigned",
        f"<@{declared_by}> is commander (declarer)",
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
    session: Session, incident: Incident, severity: str, *, actor: str, policy: IncidentsSection
) -> Change:
    severity = validate_severity(severity, policy)
    _refuse_if_resolved(incident, "severity")
    previous = incident.severity
    if severity == previous:
        return Change(incident, False, f"{incident.reference} is already {severity}.")
    incident.severity = severity
    event = record(
        session,
        incident,
        "severity_changed",
        f"Severity {previous} → {severity}",
        actor=actor,
        data={"from": previous, "to": severity},
    )
    return Change(incident, True, f"<@{actor}> changed severity {previous} → {severity}", event)


def set_status(
    session: Session, incident: Incident, status: str, *, actor: str, policy: IncidentsSection
) -> Change:
    status = status.lower()
    if status not in policy.statuses:
        raise IncidentError(
            f"`{status}` is not a status. Choose one of: " + ", ".join(policy.statuses) + "."
        )
    if status == RESOLVED:
        return resolve(session, incident, "", actor=actor)
    previous = incident.status
    if status == previous:
        return Change(incident, False, f"{incident.reference} is already {status}.")
    incident.status = status
    kind = "status_changed"
    text = f"Status {previous} → {status}"
    if incident.is_resolved:
        incident.resolved_at = None
        incident.resolution = None
        kind, text = "reopened", f"Reopened: status {previous} → {status}"
    event = record(
        session, incident, kind, text, actor=actor, data={"from": previous, "to": status}
    )
    return Change(incident, True, f"<@{actor}> changed status {previous} → {status}", event)


def assign_role(
    session: Session,
    incident: Incident,
    role: str,
    user_id: str,
    *,
    actor: str,
    policy: IncidentsSection,
) -> Change:
    role = role.lower()
    if role not in policy.roles:
        raise IncidentError(
            f"`{role}` is not a role. Choose one of: " + ", ".join(policy.roles) + "."
        )
    _refuse_if_resolved(incident, "roles")
    assignment = session.get(RoleAssignment, (incident.id, role))
    previous = assignment.user_id if assignment else None
    if previous == user_id:
        return Change(incident, False, f"<@{user_id}> is already {role} of {incident.reference}.")
    if assignment is None:
        session.add(
            RoleAssignment(
                incident_id=incident.id,
                role=role,
                user_id=user_id,
                assigned_by=actor,
                assigned_at=utcnow(),
            )
        )
    else:
        assignment.user_id, assignment.assigned_by, assignment.assigned_at = (
            user_id,
            actor,
            utcnow(),
        )
    handover = f" (was <@{previous}>)" if previous else ""
    event = record(
        session,
        incident,
        "role_assigned",
        f"<@{user_id}> is {role}{handover}",
        actor=actor,
        data={"role": role, "user": user_id, "previous": previous},
    )
    return Change(
        incident, True, f"<@{actor}> made <@{user_id}> {role}{handover}", event, {"user": user_id}
    )


def add_note(session: Session, incident: Incident, text: str, *, actor: str) -> Change:
    text = text.strip()
    if not text:
        raise IncidentError("The note is empty. Usage: `/incident note <text>`.")
    if len(text) > MAX_NOTE:
        raise IncidentError(f"The note is {len(text)} characters; keep it to {MAX_NOTE}.")
    event = record(session, incident, "note", text, actor=actor)
    return Change(incident, True, f":memo: Note from <@{actor}>: {text}", event)


def resolve(session: Session, incident: Incident, resolution: str, *, actor: str) -> Change:
    if incident.is_resolved:
        return Change(incident, False, f"{incident.reference} is already resolved.")
    previous = incident.status
    incident.status = RESOLVED
    incident.resolved_at = utcnow()
    incident.resolution = resolution.strip() or None
    suffix = f": {incident.resolution}" if incident.resolution else ""
    event = record(
        session,
        incident,
        "resolved",
        f"Resolved{suffix}",
        actor=actor,
        data={"from": previous, "resolution": incident.resolution},
    )
    return Change(
        incident,
        True,
        f":white_check_mark: <@{actor}> resolved {incident.reference}{suffix}",
        event,
    )


def record_pinned_message(
    session: Session,
    incident: Incident,
    *,
    channel_id: str,
    message_ts: str,
    author: str | None,
    text: str,
    actor: str,
) -> TimelineEvent | None:
    """Copy a message someone marked with :pushpin: into the timeline, once per message."""
    return record(
        session,
        incident,
        "pinned_message",
        text,
        actor=actor,
        data={"channel": channel_id, "ts": message_ts, "author": author},
        dedup_key=f"pin:{channel_id}:{message_ts}",
    )
