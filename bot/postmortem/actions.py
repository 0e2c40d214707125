"""Action items: what an incident's responders agreed to do, during or after it.

Domain code: plain data in, rows and timeline facts out. Adding an item records
`action_added` and marking one done records `action_done`, each in the caller's
transaction. Items show in the postmortem draft as a checklist (`bot.postmortem.context`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot import timeline
from bot.db import Base

MAX_TEXT = 500


class ActionItemRow(Base):
    __tablename__ = "action_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(64))
    due: Mapped[date | None] = mapped_column(Date)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    done_by: Mapped[str | None] = mapped_column(String(64))
    done_at: Mapped[datetime | None]

    @property
    def reference(self) -> str:
        return f"A-{self.id}"

    @property
    def done(self) -> bool:
        return self.done_at is not None


class ActionItemError(ValueError):
    """A request about an action item that cannot be done; the message says why."""


@dataclass(frozen=True)
class Recorded:
    """An item and the fact its change recorded (None: nothing changed, e.g. a second
    click on Done)."""

    item: ActionItemRow
    event: timeline.TimelineEvent | None


def add(
    session: Session,
    incident_id: int,
    text: str,
    *,
    owner: str | None,
    due: date | None,
    actor: str,
    now: datetime,
) -> Recorded:
    """A new open item of the incident, and its `action_added` fact."""
    text = text.strip()
    if not text:
        raise ActionItemError("An action item needs a text.")
    if len(text) > MAX_TEXT:
        raise ActionItemError(f"An action item is at most {MAX_TEXT} characters; shorten it.")
    item = ActionItemRow(
        incident_id=incident_id,
        text=text,
        owner=owner,
        due=due,
        created_by=actor,
        created_at=now,
    )
    session.add(item)
    session.flush()
    event = timeline.record(
        session,
        "action_added",
        now=now,
        actor=actor,
        incident_id=incident_id,
        data={
            "item": item.id,
            "text": text,
            "owner": owner,
            "due": due.isoformat() if due else None,
        },
    )
    return Recorded(item, event)


def mark_done(session: Session, item_id: int, *, actor: str, now: datetime) -> Recorded:
    """Mark the item done (under its row lock) and record `action_done`; a second click
    changes nothing."""
    item = session.get(ActionItemRow, item_id, with_for_update=True)
    if item is None:
        raise ActionItemError(f"There is no action item A-{item_id}.")
    if item.done:
        return Recorded(item, None)
    item.done_by, item.done_at = actor, now
    event = timeline.record(
        session,
        "action_done",
        now=now,
        actor=actor,
        incident_id=item.incident_id,
        data={"item": item.id, "text": item.text},
    )
    return Recorded(item, event)


def for_incident(session: Session, incident_id: int) -> list[ActionItemRow]:
    """The incident's items, oldest first."""
    query = (
        select(ActionItemRow)
        .where(ActionItemRow.incident_id == incident_id)
        .order_by(ActionItemRow.created_at, ActionItemRow.id)
    )
    return list(session.scalars(query))
