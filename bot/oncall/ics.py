"""The calendar feed: a schedule's final shifts as iCalendar, behind a per-schedule token.

Calendar apps poll `GET /oncall/<schedule>.ics?token=...`. Each shift is one VEVENT whose
UID depends on the schedule, the shift's start and the person, so a poll that sees the same
shift updates the same event, and an override replacing someone replaces the event.
The feed holds whole shifts only: it starts at the beginning of the shift holding "now" and
ends at the end of the shift holding "now + 8 weeks" (not at either instant), so every poll
in between returns the same events, and a subscriber never sees a hand-off that is only the
edge of the window. A stretch longer than a year shows cut at a year from those instants.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime, timedelta

from icalendar import Calendar, Event
from sqlalchemy.orm import Session

from bot.oncall import schedules
from bot.oncall.configuration import OncallConfig
from bot.oncall.rotation import Shift, utc

WEEKS_AHEAD = 8
PRODID = "-//Firebreak//On-call schedules//EN"


def ics_token(secret: str, schedule: str) -> str:
    """The token that unlocks one schedule's feed: HMAC-SHA256(secret, "ics:" + schedule)."""
    digest = hmac.new(secret.encode(), f"ics:{schedule}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def token_matches(secret: str, schedule: str, token: str | None) -> bool:
    """Whether `token` unlocks `schedule`'s feed, compared in constant time.

    It does not matter whether `schedule` exists: the caller checks the token first, so an
    unknown name and a known one with a wrong token get the same answer, in the same time.
    """
    expected = ics_token(secret, schedule).encode("ascii")
    given = (token or "").encode("utf-8", "replace")  # compare_digest refuses non-ASCII str
    return hmac.compare_digest(expected, given) and token is not None


def feed_window(
    now: datetime, current: Shift | None, last: Shift | None
) -> tuple[datetime, datetime]:
    """From the start of `current`, the shift holding `now` (else `now`), to the end of
    `last`, the shift holding 8 weeks after `now` (else that instant): whole shifts only."""
    now = utc(now)
    ahead = now + timedelta(weeks=WEEKS_AHEAD)
    start = current.start if current is not None and current.start < now else now
    end = last.end if last is not None and last.end > ahead else ahead
    return start, end


def feed_shifts(
    session: Session, config: OncallConfig, schedule: str, now: datetime
) -> list[Shift]:
    """The feed's shifts: every shift from the one holding `now` to the one holding 8 weeks
    later, each whole (see `feed_window`). Raises OncallError for an unknown schedule."""
    current = schedules.on_call(session, config, schedule, now)
    last = schedules.on_call(session, config, schedule, utc(now) + timedelta(weeks=WEEKS_AHEAD))
    start, end = feed_window(now, current, last)
    return schedules.shifts(session, config, schedule, start, end)


def shift_uid(schedule: str, shift: Shift) -> str:
    key = f"{schedule}|{shift.start.isoformat()}|{shift.person}|{shift.source}"
    return f"{hashlib.sha256(key.encode()).hexdigest()[:24]}@firebreak"


def calendar(schedule: str, shifts: Sequence[Shift], *, generated: datetime) -> bytes:
    """One VEVENT per shift, times in UTC."""
    feed = Calendar()
    feed.add("prodid", PRODID)
    feed.add("version", "2.0")
    feed.add("calscale", "GREGORIAN")
    feed.add("method", "PUBLISH")
    feed.add("x-wr-calname", f"On call: {schedule}")
    feed.add("x-published-ttl", "PT1H")
    for shift in shifts:
        event = Event()
        event.add("uid", shift_uid(schedule, shift))
        event.add("summary", f"On call: {shift.person} ({schedule})")
        event.add("dtstart", utc(shift.start))
        event.add("dtend", utc(shift.end))
        event.add("dtstamp", utc(generated))
        event.add("description", f"From {shift.source}.")
        event.add("transp", "TRANSPARENT")
        feed.add_component(event)
    ical: bytes = feed.to_ical()
    return ical
