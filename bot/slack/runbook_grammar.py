"""The `/runbook` grammar: text in, a typed command (or a helpful error) out.

    /runbook list | show ID | run ID key=value ... [hosts=NAME,NAME|GROUP] | cancel R-N | help

Slack escapes `&`, `<` and `>` in a command's text (`should_escape`); they are unescaped
first, so a value reaches validation exactly as typed. Words are split like a shell's
(`key="two words"` is one word), nothing else is interpreted: the values are checked
against the runbook's declarations later, with every problem reported at once. Parsing
needs no database and raises nothing but ParseError.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from bot.slack.text import ParseError, number_id, quote

HELP = """*`/runbook` commands*
• `/runbook list`: the runbooks you can run
• `/runbook show <id>`: a runbook's parameters, targets and steps
• `/runbook run <id> key=value ... [hosts=NAME,NAME|GROUP]`: plan a run; you confirm it with *Run*
• `/runbook cancel R-<n>`: cancel a run (running steps are killed on the hosts)
• `/runbook help`: this text
Quote a value with spaces: `message="two words"`. In an incident channel the run goes into \
the incident's timeline. High-risk runbooks need an approver with an allowed role who is not \
the requester."""

MAX_TEXT = 4000


@dataclass(frozen=True)
class ListRunbooks:
    pass


@dataclass(frozen=True)
class Show:
    runbook_id: str


@dataclass(frozen=True)
class Run:
    runbook_id: str
    words: tuple[str, ...]


@dataclass(frozen=True)
class Cancel:
    run_id: int


@dataclass(frozen=True)
class Help:
    pass


Command = ListRunbooks | Show | Run | Cancel | Help


def unescape(text: str) -> str:
    """Undo Slack's escaping of a command's text (`&amp;` last, so `&amp;lt;` stays `&lt;`)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def parse(text: str) -> Command:
    if len(text) > MAX_TEXT:
        raise ParseError(
            f"That is {len(text):,} characters; a `/runbook` command takes at most {MAX_TEXT:,}."
        )
    if "\x00" in text:
        raise ParseError(
            "That command contains a NUL byte (\\0), which no runbook id or parameter may "
            "hold. Remove it and send the command again."
        )
    try:
        words = shlex.split(unescape(text), posix=True)
    except ValueError as error:
        raise ParseError(
            f"Could not split that into words ({error}): close every quote, or quote a value "
            'with spaces like `message="two words"`.'
        ) from None
    if not words or words[0].lower() == "help":
        return Help()
    verb, rest = words[0].lower(), words[1:]
    if verb == "list":
        return ListRunbooks()
    if verb == "show":
        if len(rest) != 1:
            raise ParseError("Give one runbook id: `/runbook show <id>` (see `/runbook list`).")
        return Show(rest[0])
    if verb == "run":
        if not rest:
            raise ParseError(
                "Give a runbook id and its parameters: `/runbook run <id> key=value ...` "
                "(see `/runbook list`)."
            )
        return Run(rest[0], tuple(rest[1:]))
    if verb == "cancel":
        run_id = number_id(rest[0], prefix="r-") if len(rest) == 1 else None
        if run_id is None:
            raise ParseError("Give the run to cancel: `/runbook cancel R-12`.")
        return Cancel(run_id)
    raise ParseError(
        f"`{quote(words[0])}` is not a `/runbook` command. Try `list`, `show`, `run`, "
        "`cancel` or `help`."
    )
