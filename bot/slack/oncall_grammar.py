"""The `/oncall` grammar: text in, a typed command (or an error listing the choices) out.

    /oncall                                        every schedule: who now, until when, who next
    /oncall <schedule>                             one schedule, with its overrides
    /oncall override <schedule> <@user|name> 2h    someone takes over from now for a while
    /oncall override <schedule> <@user|name> until 18:00 | until tomorrow 09:00
                                                   | until mon 09:00 | until 2026-11-22 09:00
    /oncall override cancel <id>
    /oncall help

Parsing needs only the configuration. An "until" is kept as written and turned into an
instant by `Until.resolve`, in the requester's time zone, at the moment of the request.

Limits are checked here: an override lasts at most a year, an "until" date is before 2100
and not in the past (a date before yesterday in UTC is refused here; the service refuses
an instant already past), override ids are in 1..2147483647. Parsing raises nothing but
ParseError, whatever the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.config import FileConfig
from bot.oncall.timespec import WEEKDAYS, parse_duration, parse_time
from bot.slack.grammar import ParseError
from bot.slack.text import ID_MAX, MENTION, choices, number_id, quote

HELP = """*`/oncall` commands*
• `/oncall`: who is on call now for every schedule, until when, and who is next
• `/oncall <schedule>`: the same for one schedule, with its overrides and their ids
• `/oncall override <schedule> <@person> <duration>`: put someone on call from now, e.g. `2h`, `1d`, `1h30m`
• `/oncall override <schedule> <@person> until <when>`: until `18:00`, `tomorrow 09:00`, `mon 09:00` or `2026-11-22 09:00` (your time zone)
• `/oncall override cancel <id>`: end an override
• `/oncall help`: this text"""

_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
MAX_LENGTH = timedelta(days=365)
LAST_YEAR = 2099
OVERRIDE_USAGE = (
    "Usage: `/oncall override <schedule> <@person> <duration>` (like `2h`) or "
    "`/oncall override <schedule> <@person> until <when>` (like `until 18:00`), "
    "or `/oncall override cancel <id>`."
)


@dataclass(frozen=True)
class ShowAll:
    pass


@dataclass(frozen=True)
class Show:
    schedule: str


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Until:
    """An end written as a wall-clock time: on `day`, or `weekday`, or `days_ahead` from today."""

    at: time
    day: date | None = None
    weekday: int | None = None
    days_ahead: int | None = None

    def resolve(self, now: datetime, zone: ZoneInfo) -> datetime:
        """The instant meant, in UTC; a bare time or weekday means the next one after `now`."""
        local_now = now.astimezone(zone)
        if self.day is not None:
            moment = datetime.combine(self.day, self.at, tzinfo=zone)
        elif self.days_ahead is not None:
            day = local_now.date() + timedelta(days=self.days_ahead)
            moment = datetime.combine(day, self.at, tzinfo=zone)
        else:
            day = local_now.date()
            if self.weekday is not None:
                day += timedelta(days=(self.weekday - day.weekday()) % 7)
            moment = datetime.combine(day, self.at, tzinfo=zone)
            if moment <= local_now:
                moment = datetime.combine(
                    day + timedelta(days=7 if self.weekday is not None else 1), self.at, tzinfo=zone
                )
        return moment.astimezone(UTC)


@dataclass(frozen=True)
class AddOverride:
    schedule: str
    person: str  # a name in `people:`
    length: timedelta | None = None
    until: Until | None = None


@dataclass(frozen=True)
class CancelOverride:
    override_id: int


Command = ShowAll | Show | Help | AddOverride | CancelOverride


def parse(text: str, config: FileConfig, *, today: date | None = None) -> Command:
    """`today` (UTC; the clock by default) bounds an "until" date from below."""
    words = text.split()
    if not words:
        return ShowAll()
    verb = words[0].lower()
    if verb == "help":
        return Help()
    if verb == "override":
        return _override(words[1:], config, today or datetime.now(UTC).date())
    if len(words) > 1:
        raise ParseError(f"`{quote(text, 30)}` is not a command I know.\n\n" + HELP)
    return Show(schedule_name(words[0], config))


def schedule_name(value: str, config: FileConfig) -> str:
    if value in config.schedules:
        return value
    known = choices(config.schedules, empty="none are configured")
    raise ParseError(
        f"`{quote(value)}` is not a schedule. Schedules: {known}. "
        "`/oncall help` lists the commands."
    )


def person_name(value: str, config: FileConfig) -> str:
    """A name in `people:` from an @mention or the name itself."""
    match = MENTION.match(value)
    if match:
        name = config.name_by_slack_id(match.group(1))
        if name is not None:
            return name
    elif value.removeprefix("@").lower() in config.people:
        return value.removeprefix("@").lower()
    known = choices(config.people, empty="none are configured")
    raise ParseError(
        f"{quote(value)} is not someone in `people:` in the configuration, so I cannot put "
        f"them on call. Mention them with @ (like `@alice`) or use one of: {known}."
    )


def _override(words: list[str], config: FileConfig, today: date) -> Command:
    if words and words[0].lower() == "cancel":
        if len(words) != 2:
            raise ParseError(
                "Usage: `/oncall override cancel <id>`; `/oncall <schedule>` lists the ids."
            )
        override_id = number_id(words[1], prefix="#")
        if override_id is None:
            raise ParseError(
                f"`{quote(words[1])}` is not an override id: ids are numbers from 1 to "
                f"{ID_MAX}, like `12` or `#12`; `/oncall <schedule>` lists them."
            )
        return CancelOverride(override_id)
    if len(words) < 3:
        raise ParseError(OVERRIDE_USAGE)
    schedule = schedule_name(words[0], config)
    person = person_name(words[1], config)
    rest = words[2:]
    if rest[0].lower() == "until":
        return AddOverride(schedule, person, until=parse_until(rest[1:], today=today))
    if len(rest) != 1:
        raise ParseError(OVERRIDE_USAGE)
    return AddOverride(schedule, person, length=override_length(rest[0]))


def override_length(word: str) -> timedelta:
    """A duration like `2h` or `1h30m`, longer than zero and at most a year."""
    problem = ParseError(
        f"`{quote(word)}` is not a duration; write it like `2h`, `1d` or `1h30m` (at most a "
        "year), or say `until 18:00`."
    )
    if len(word) > 40:
        raise problem
    try:
        length = parse_duration(word)
    except (ValueError, OverflowError) as error:
        if "longer than a year" not in str(error) and "the limit is" not in str(error):
            raise problem from None
        length = MAX_LENGTH + MAX_LENGTH  # over the limit: the message below says so
    if length > MAX_LENGTH:
        raise ParseError(
            f"`{quote(word)}` is longer than a year; an override lasts at most 365d (52w1d). "
            "For longer, change the schedule in the configuration."
        )
    return length


def parse_until(words: list[str], *, today: date | None = None) -> Until:
    """`18:00`, `tomorrow 09:00`, `today 18:00`, `mon 09:00`, `2026-11-22 09:00`.

    A date must be before 2100 and not before yesterday (UTC: somewhere it is still
    yesterday); `today` defaults to the clock.
    """
    problem = ParseError(
        "After `until` write a time like `18:00`, `tomorrow 09:00`, `mon 09:00` or "
        "`2026-11-22 09:00` (in your time zone)."
    )
    if len(words) == 1 and "T" in words[0]:
        words = words[0].split("T", 1)
    if not words or len(words) > 2:
        raise problem
    try:
        at = parse_time(words[-1])
    except ValueError:
        raise problem from None
    if len(words) == 1:
        return Until(at)
    first = words[0].lower()
    if first in ("today", "tomorrow"):
        return Until(at, days_ahead=0 if first == "today" else 1)
    if first[:3] in WEEKDAYS:
        return Until(at, weekday=WEEKDAYS.index(first[:3]))
    if _DATE.match(first):
        try:
            day = date.fromisoformat(first)
        except ValueError:
            raise problem from None
        if day.year > LAST_YEAR:
            raise ParseError(
                f"`{first}` is too far ahead; an override must end before 2100 (and an end "
                "that far is better written in the configuration)."
            )
        today = today or datetime.now(UTC).date()
        if day < today - timedelta(days=1):
            raise ParseError(f"`{first}` is in the past; an override must end in the future.")
        return Until(at, day=day)
    raise problem
