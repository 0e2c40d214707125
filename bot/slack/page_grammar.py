"""The `/page` grammar, parsed from configuration alone (answered in the acknowledgement).

Limits are checked here: the message through `text.clean` (no NUL, no control characters,
at most `MAX_MESSAGE`), page ids in 1..2147483647. Raises nothing but ParseError.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.config import FileConfig
from bot.oncall.paging import MAX_MESSAGE
from bot.slack.grammar import ParseError
from bot.slack.text import ID_MAX, MENTION, choices, clean, number_id, quote

HELP = """*`/page` commands*
• `/page @person <message>`: page someone now (they must be in `people:`)
• `/page schedule:NAME <message>`: page whoever is on call
• `/page policy:NAME <message>` or `/page service:NAME <message>`: page through an escalation policy
• `/page ack <id>`: acknowledge (stops escalation at once)
• `/page escalate <id>`: skip the wait and run the next step now
• `/page resolve <id>`: resolve
Typed in an incident channel, the page belongs to that incident and appears in its timeline."""

KINDS = ("user", "schedule", "policy", "service")


@dataclass(frozen=True)
class Trigger:
    target: str
    message: str


@dataclass(frozen=True)
class Act:
    verb: str  # ack | escalate | resolve
    page_id: int


@dataclass(frozen=True)
class PageHelp:
    pass


PageCommand = Trigger | Act | PageHelp


def parse(text: str, config: FileConfig) -> PageCommand:
    words = text.strip().split(maxsplit=1)
    if not words or words[0].lower() == "help":
        return PageHelp()
    first, rest = words[0], (words[1].strip() if len(words) > 1 else "")
    if first.lower() in ("ack", "acknowledge", "escalate", "resolve"):
        verb = "ack" if first.lower().startswith("ack") else first.lower()
        if not rest or len(rest.split()) != 1:
            raise ParseError(f"Usage: `/page {verb} <id>`, e.g. `/page {verb} 12`.")
        page_id = number_id(rest, prefix="p-")
        if page_id is None:
            raise ParseError(
                f"`{quote(rest)}` is not a page id: ids are numbers from 1 to {ID_MAX}, "
                f"like `12` or `P-12`. Usage: `/page {verb} <id>`."
            )
        return Act(verb, page_id)
    target = _target(first, config)
    message = clean(rest, what="message", limit=MAX_MESSAGE)
    if not message:
        raise ParseError(f"Say what it is about: `/page {quote(first)} <message>`.")
    return Trigger(target, message)


def _target(word: str, config: FileConfig) -> str:
    mention = MENTION.match(word)
    if mention:
        name = config.name_by_slack_id(mention.group(1))
        if name is None:
            raise ParseError(
                f"{quote(word)} is not in `people:` in the configuration, so I don't know how "
                "to reach them. Add them there, or page a schedule or policy."
            )
        return f"user:{name}"
    kind, colon, name = word.partition(":")
    if colon and kind.lower() in KINDS and name:
        known: dict[str, Mapping[str, object]] = {
            "user": config.people,
            "schedule": config.schedules,
            "policy": config.escalation_policies,
            "service": config.services,
        }
        names = known[kind.lower()]
        if name not in names:
            raise ParseError(
                f"There is no {kind.lower()} `{quote(name)}`. Known: {choices(names, code=False)}."
            )
        return f"{kind.lower()}:{name}"
    if word.removeprefix("@") in config.people:
        return f"user:{word.removeprefix('@')}"
    raise ParseError(
        f"`{quote(word, 30)}` is not something I can page. Use @person, schedule:NAME, "
        "policy:NAME or service:NAME.\n\n" + HELP
    )
