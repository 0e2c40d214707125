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
from datetime import date

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
• `/incident action <text> [@owner] [due 2026-12-01]`: add an action item (also after resolving)
• `/incident actions`: the action items, with a button to mark each done (only to you)
• `/incident postmortem [template:NAME]`: render the postmortem draft, save it and upload it here
• `/incident postmortem done`: the postmortem is written: stop the reminders
_Anywhere:_
• `/incident report [90d]`: incidents per month by severity and service, with time to acknowledge, mitigate and resolve (only to you)
• `/incident web`: a personal sign-in link to the web view, valid 10 minutes and once (only to you)
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
class Postmortem:
    template: str = "default"


@dataclass(frozen=True)
class PostmortemDone:
    pass


@dataclass(frozen=True)
class AddAction:
    text: str
    owner: str | None = None
    due: date | None = None


@dataclass(frozen=True)
class ListActions:
    pass


@dataclass(frozen=True)
class ShowReport:
    days: int = 90


@dataclass(frozen=True)
class WebLink:
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
    | Postmortem
    | PostmortemDone
    | AddAction
    | ListActions
    | ShowReport
    | WebLink
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
    "action",
    "actions",
    "postmortem",
    "report",
    "list",
    "web",
    "help",
)
# The postmortem's commands, dispatched by `bot.slack.postmortem`.
POSTMORTEM_COMMANDS = (Postmortem, PostmortemDone, AddAction, ListActions, ShowReport)
MAX_ACTION = 500
_DUE = re.compile(r"\s+due\s+(\S+)\s*$", re.IGNORECASE)
_TEMPLATE = re.compile(r"template:([A-Za-z0-9_.-]{1,64})")
_SINCE = re.compile(r"([0-9]{1,4})d")


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
    if verb == "action":
        return _action(rest, config)
    if verb == "postmortem":
        return _postmortem(rest)
    if verb == "report":
        return _report(rest)
    if verb in ("timeline", "alerts", "actions", "list", "web", "help") and rest:
        raise ParseError(f"`/incident {verb}` takes no arguments.")
    if verb == "timeline":
        return ShowTimeline()
    if verb == "alerts":
        return ShowAlerts()
    if verb == "actions":
        return ListActions()
    if verb == "list":
        return ListOpen()
    if verb == "web":
        return WebLink()
    if verb == "help":
        return Help()
    raise ParseError(
        f"`{quote(verb, 30)}` is not an `/incident` command. Commands: "
        + ", ".join(SUBCOMMANDS)
        + ".\n\n"
        + HELP
    )


def _action(rest: str, config: FileConfig) -> AddAction:
    """`<text> [@owner] [due YYYY-MM-DD]`: the owner and due date are read from the end."""
    usage = "Usage: `/incident action <text> [@owner] [due 2026-12-01]`."
    due: date | None = None
    match = _DUE.search(" " + rest)
    if match:
        try:
            due = date.fromisoformat(match.group(1))
        except ValueError:
            raise ParseError(
                f"`{quote(match.group(1))}` is not a date; write the due date like "
                f"`due 2026-12-01`. {usage}"
            ) from None
        rest = (" " + rest)[: match.start()].strip()
    owner: str | None = None
    words = rest.rsplit(maxsplit=1)
    if len(words) == 2 and (MENTION.match(words[1]) or words[1].startswith("@")):
        owner, rest = _user_id(words[1], config), words[0]
    text = clean(rest, what="action item", limit=MAX_ACTION, one_line=True)
    if not text:
        raise ParseError(f"The action item has no text. {usage}")
    return AddAction(text, owner, due)


def _postmortem(rest: str) -> Postmortem | PostmortemDone:
    usage = "Usage: `/incident postmortem [template:NAME]` or `/incident postmortem done`."
    if not rest:
        return Postmortem()
    if rest.lower() == "done":
        return PostmortemDone()
    match = _TEMPLATE.fullmatch(rest)
    if match is None:
        raise ParseError(f"`{quote(rest, 40)}` is not understood. {usage}")
    return Postmortem(match.group(1))


def _report(rest: str) -> ShowReport:
    if not rest:
        return ShowReport()
    match = _SINCE.fullmatch(rest.lower())
    if match is None or not 1 <= int(match.group(1)) <= 3660:
        raise ParseError(
            f"`{quote(rest, 30)}` is not a period; give days like `/incident report 30d` "
            "(1d to 3660d; the default is 90d)."
        )
    return ShowReport(int(match.group(1)))


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
