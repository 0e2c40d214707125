"""The `/incident` grammar: text in, a typed command (or a helpful error) out.

Parsing needs only the configuration, never the database, so a mistyped command is answered
in the acknowledgement itself, within milliseconds. Input has limits, checked here: free
text goes through `text.clean` (no NUL, no control characters, a maximum length), names
must be configured ones, and an error quotes what was typed short and escaped. Parsing
raises nothing but ParseError, whatever the text.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from bot.config import FileConfig
from bot.incidents.service import MAX_NOTE, MAX_TITLE
from bot.slack.text import MENTION, choices, clean, quote
from bot.slack.text import ParseError as ParseError

HELP = """*`/incident` commands*
• `/incident declare [sevN] <title>`: declare an incident (no title opens a form)
• `/incident list`: open incidents with their channels
• `/incident help`: this text
_In an incident channel:_
• `/incident sev <sevN>`: change the severity
• `/incident status <status>`: change the status
• `/incident role <role> <@person>`: give someone a role
• `/incident note <text>`: add a note to the timeline
• `/incident resolve [summary]`: resolve the incident
• `/incident timeline`: show the timeline (only to you)
• `/incident alerts`: the incident's alerts from monitoring and their state (only to you)
React with :pushpin: to a message in an incident channel to copy it into the timeline."""

MAX_SUMMARY = MAX_NOTE
# A first word like this after `declare` is meant as a severity, never as the title's start.
_SEVERITY_LIKE = re.compile(r"sev-?[0-9]+")


@dataclass(frozen=True)
class Declare:
    title: str
    severity: str | None = None


@dataclass(frozen=True)
class SetSeverity:
    severity: str


@dataclass(frozen=True)
class SetStatus:
    status: str


@dataclass(frozen=True)
class AssignRole:
    role: str
    user_id: str


@dataclass(frozen=True)
class AddNote:
    text: str


@dataclass(frozen=True)
class Resolve:
    summary: str


@dataclass(frozen=True)
class ShowTimeline:
    pass


@dataclass(frozen=True)
class ShowAlerts:
    pass


@dataclass(frozen=True)
class ListOpen:
    pass


@dataclass(frozen=True)
class Help:
    pass


Command = (
    Declare
    | SetSeverity
    | SetStatus
    | AssignRole
    | AddNote
    | Resolve
    | ShowTimeline
    | ShowAlerts
    | ListOpen
    | Help
)
# Commands that act on the incident whose channel they are typed in.
CHANNEL_COMMANDS = (
    SetSeverity,
    SetStatus,
    AssignRole,
    AddNote,
    Resolve,
    ShowTimeline,
    ShowAlerts,
)
SUBCOMMANDS = (
    "declare",
    "sev",
    "status",
    "role",
    "note",
    "resolve",
    "timeline",
    "alerts",
    "list",
    "help",
)


def parse(text: str, config: FileConfig) -> Command:
    policy = config.incidents
    words = text.strip().split(maxsplit=1)
    if not words:
        return Help()
    verb, rest = words[0].lower(), (words[1].strip() if len(words) > 1 else "")
    if verb == "declare":
        return _declare(rest, config)
    if verb == "sev":
        return SetSeverity(_one_of(rest, list(policy.severities), "severity", "sev <sevN>"))
    if verb == "status":
        return SetStatus(_one_of(rest, policy.statuses, "status", "status <status>"))
    if verb == "role":
        parts = rest.split()
        if len(parts) != 2:
            raise ParseError(
                "Usage: `/incident role <role> <@person>`. Roles: " + ", ".join(policy.roles) + "."
            )
        role = _one_of(parts[0], policy.roles, "role", "role <role> <@person>")
        return AssignRole(role, _user_id(parts[1], config))
    if verb == "note":
        note = clean(rest, what="note", limit=MAX_NOTE)
        if not note:
            raise ParseError("The note is empty. Usage: `/incident note <text>`.")
        return AddNote(note)
    if verb == "resolve":
        return Resolve(clean(rest, what="resolution summary", limit=MAX_SUMMARY))
    if verb in ("timeline", "alerts", "list", "help") and rest:
        raise ParseError(f"`/incident {verb}` takes no arguments.")
    if verb == "timeline":
        return ShowTimeline()
    if verb == "alerts":
        return ShowAlerts()
    if verb == "list":
        return ListOpen()
    if verb == "help":
        return Help()
    raise ParseError(
        f"`{quote(verb, 30)}` is not an `/incident` command. Commands: "
        + ", ".join(SUBCOMMANDS)
        + ".\n\n"
        + HELP
    )


def _declare(rest: str, config: FileConfig) -> Declare:
    policy = config.incidents
    words = rest.split(maxsplit=1)
    first = words[0].lower() if words else ""
    severity: str | None = None
    if first in policy.severities:
        severity, rest = first, (words[1] if len(words) > 1 else "")
    elif looks_like_severity(first, policy.severities):
        example = policy.default_severity
        raise ParseError(
            f"`{quote(first)}` is not a severity. Choose one of: "
            + ", ".join(policy.severities)
            + f". To start the title with that word, give the severity first: "
            f"`/incident declare {example} {quote(first)} …`."
        )
    title = clean(
        rest,
        what="title",
        limit=MAX_TITLE,
        one_line=True,
        hint="Keep the title short; put the rest in a note.",
    )
    return Declare(title=title, severity=severity)


def looks_like_severity(word: str, severities: Collection[str]) -> bool:
    """`sev9`, or a word shaped like the configured names (`p7` when they are `p1`..`p4`).

    A configured name ending in digits, like `p1`, makes its prefix followed by as many
    digits a severity shape (`p0`..`p9`, but not `p99`, which is a latency).
    """
    word = word.lower()
    if _SEVERITY_LIKE.fullmatch(word):
        return True
    for name in severities:
        stem = name.rstrip("0123456789")
        digits = len(name) - len(stem)
        if digits and re.fullmatch(rf"{re.escape(stem)}[0-9]{{1,{digits}}}", word):
            return True
    return False


def _one_of(value: str, names: list[str], what: str, usage: str) -> str:
    value = value.strip().lower()
    if not value:
        raise ParseError(f"Usage: `/incident {usage}`. Choose one of: " + ", ".join(names) + ".")
    if value not in names:
        raise ParseError(
            f"`{quote(value)}` is not a {what}. Choose one of: " + ", ".join(names) + "."
        )
    return value


def _user_id(value: str, config: FileConfig) -> str:
    match = MENTION.match(value)
    if match:
        return match.group(1)
    person = config.people.get(value.removeprefix("@").lower())
    if person is not None:
        return person.slack
    raise ParseError(
        f"`{quote(value)}` is not a person I know. Mention them with @ so Slack links the name "
        "(like `@alice`), or use a name from `people:` in the configuration: "
        + choices(config.people)
        + "."
    )
