"""The calendar feed: a schedule's final shifts as iCalendar, behind a per-schedule token.

Calendar apps poll `GET /oncall/<schedule>.ics?token=...`. Each shift is one VEVENT whose
UID depends on the schedule, the shift's start and the person, so a poll that sees the same
shift updates the same event, and an override replacing someone replaces the event.
The feed starts at the beginning of the current shift (not at "now") for the same reason.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime, timedelta

from icalendar import Calendar, Event

from bot.oncall.rotation import Shift, utc

WEEKS_AHEAD = 8
PRODID = "-//Firebreak//On-call schedules//EN"


def ics_token(secret: str, schedule: str) -> str:
    """The token that unlocks one schedule's feed: HMAC-SHA256(secret, "ics:" + schedule)."""
    digest = hmac.new(secret.encode(), f"ics:{schedule}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def token_matches(secret: str, schedule: str, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(ics_token(secret, schedule), token)


def feed_window(now: datetime, current: Shift | None) -> tuple[datetime, datetime]:
    """From the start of the shift holding `now` (or `now`) to 8 weeks after `now`."""
    now = utc(now)
    start = current.start if current is not None and current.start < now else now
    return start, now + timedelta(weeks=WEEKS_AHEAD)


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
