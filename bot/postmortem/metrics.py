"""Time to acknowledge, mitigate and resolve an incident, computed from its timeline alone.

All three count from the declaration (`Incident.declared_at`). Each is None when the
timeline does not say, and nothing here raises on an odd timeline. The rules:

Acknowledged
    The earliest of: the first `page_acknowledged` of a page in the incident's timeline,
    and the first *responder action*: an event whose actor is a person (a Slack user id or
    `cli:<login>`, never Firebreak itself or an alert source) other than the declaration,
    the commander role the declaration grants (same actor, same instant), and a
    resolution. Declaring is not acknowledging (it would make every declared incident
    0 s), and closing an incident nobody worked on is not acknowledging it either. An
    acknowledgement recorded before the declaration (a page linked to the incident later)
    counts as at the declaration. One recorded after the final resolution does not count:
    an incident resolved before anyone acknowledged has no time to acknowledge.
Mitigated
    The first change (`status_changed` or `reopened`) into one of the configured
    `postmortem.mitigated_statuses` (default identified, monitoring), before the final
    resolution. An incident that went straight to resolved was never marked mitigated: None.
Resolved
    The final resolution: the last `resolved` event, provided no `reopened` follows it. A
    reopened incident is measured to its last resolution; while it is open again (or was
    never resolved) it has no time to resolve.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.strict import USER_ID
from bot.timeline import BOT

NOT_ACKNOWLEDGING = frozenset({"declared", "resolved"})


class Fact(Protocol):
    """What the metrics read of a timeline event (a `TimelineEvent` row has all of it)."""

    @property
    def kind(self) -> str: ...
    @property
    def actor(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def data(self) -> dict[str, Any]: ...


def is_person(actor: str | None) -> bool:
    """A responder: a Slack user id or someone at a terminal; not Firebreak, not a monitor."""
    if not actor or actor == BOT:
        return False
    return actor.startswith("cli:") or bool(USER_ID.match(actor))


@dataclass(frozen=True)
class Metrics:
    declared_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    mitigated_at: datetime | None = None
    resolved_at: datetime | None = None
    reopened: int = 0  # how many times the incident was reopened

    @property
    def time_to_acknowledge(self) -> timedelta | None:
        return _since(self.declared_at, self.acknowledged_at)

    @property
    def time_to_mitigate(self) -> timedelta | None:
        return _since(self.declared_at, self.mitigated_at)

    @property
    def time_to_resolve(self) -> timedelta | None:
        return _since(self.declared_at, self.resolved_at)


def _since(start: datetime, end: datetime | None) -> timedelta | None:
    return None if end is None else max(end - start, timedelta(0))


def compute(
    events: Iterable[Fact], *, declared_at: datetime, mitigated_statuses: Collection[str]
) -> Metrics:
    """The incident's metrics from its timeline (any order; ties keep the given order)."""
    ordered = sorted(events, key=lambda event: event.occurred_at)
    declarer: str | None = None
    resolved_at: datetime | None = None
    reopened = 0
    for event in ordered:
        if event.kind == "declared" and declarer is None:
            declarer = event.actor
        elif event.kind == "resolved":
            resolved_at = event.occurred_at
        elif event.kind == "reopened":
            resolved_at = None
            reopened += 1
    acknowledged: Fact | None = None
    mitigated_at: datetime | None = None
    for event in ordered:
        if resolved_at is not None and event.occurred_at > resolved_at:
            break
        if acknowledged is None and _acknowledges(event, declarer):
            acknowledged = event
        if (
            mitigated_at is None
            and event.kind in ("status_changed", "reopened")
            and event.data.get("to") in mitigated_statuses
        ):
            mitigated_at = event.occurred_at
        if acknowledged is not None and mitigated_at is not None:
            break
    return Metrics(
        declared_at=declared_at,
        acknowledged_at=max(acknowledged.occurred_at, declared_at) if acknowledged else None,
        acknowledged_by=acknowledged.actor if acknowledged else None,
        mitigated_at=mitigated_at,
        resolved_at=resolved_at,
        reopened=reopened,
    )


def _acknowledges(event: Fact, declarer: str | None) -> bool:
    if event.kind == "page_acknowledged":
        return True
    if event.kind in NOT_ACKNOWLEDGING or not is_person(event.actor):
        return False
    if event.kind == "role_assigned" and event.actor == declarer:
        data = event.data
        granted_by_declaring = data.get("user") == declarer and data.get("previous") is None
        return not (granted_by_declaring and data.get("role") == "commander")
    return True


def format_duration(value: timedelta | None) -> str:
    """`—` when unknown; else the two largest units: `42 s`, `5 min 03 s`, `2 h 05 min`,
    `3 d 4 h`."""
    if value is None:
        return "—"
    seconds = int(value.total_seconds())
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"
