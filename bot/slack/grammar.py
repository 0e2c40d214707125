"""The `/incident` grammar: text in, a typed command (or a helpful error) out.

Parsing needs only the configuration, never the database, so a mistyped command is answered
in the acknowledgement itself, within milliseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.config import FileConfig

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
React with :pushpin: to a message in an incident channel to copy it into the timeline."""

_MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")


class ParseError(Exception):
    """What was wrong with the command, with the valid choices; shown to the user as is."""


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
    | ListOpen
    | Help
)
# Commands that act on the incident whose channel they are typed in.
CHANNEL_COMMANDS = (SetSeverity, SetStatus, AssignRole, AddNote, Resolve, ShowTimeline)
SUBCOMMANDS = ("declare", "sev", "status", "role", "note", "resolve", "timeline", "list", "help")


def parse(text: str, config: FileConfig) -> Command:
    policy = config.incidents
    words = text.strip().split(maxsplit=1)
    if not words:
        return Help()
    verb, rest = words[0].lower(), (words[1].strip() if len(words) > 1 else "")
    if verb == "declare":
        first, _, remainder = rest.partition(" ")
        if first.lower() in policy.severities:
            return Declare(title=remainder.strip(), severity=first.lower())
        return Declare(title=rest)
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
        if not rest:
            raise ParseError("The note is empty. Usage: `/incident note <text>`.")
        return AddNote(rest)
    if verb == "resolve":
        return Resolve(rest)
    if verb in ("timeline", "list", "help") and rest:
        raise ParseError(f"`/incident {verb}` takes no arguments.")
    if verb == "timeline":
        return ShowTimeline()
    if verb == "list":
        return ListOpen()
    if verb == "help":
        return Help()
    raise ParseError(
        f"`{verb}` is not an `/incident` command. Commands: "
        + ", ".join(SUBCOMMANDS)
        + ".\n\n"
        + HELP
    )


def _one_of(value: str, choices: list[str], what: str, usage: str) -> str:
    value = value.strip().lower()
    if not value:
        raise ParseError(f"Usage: `/incident {usage}`. Choose one of: " + ", ".join(choices) + ".")
    if value not in choices:
        raise ParseError(f"`{value}` is not a {what}. Choose one of: " + ", ".join(choices) + ".")
    return value


def _user_id(value: str, config: FileConfig) -> str:
    match = _MENTION.match(value)
    if match:
        return match.group(1)
    person = config.people.get(value.removeprefix("@").lower())
    if person is not None:
        return person.slack
    raise ParseError(
        f"`{value}` is not a person I know. Mention them with @ so Slack links the name "
        "(like `@alice`), or use a name from `people:` in the configuration."
    )
