"""The `/page` grammar, parsed from configuration alone (answered in the acknowledgement)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from bot.config import FileConfig
from bot.slack.grammar import ParseError

HELP = """*`/page` commands*
• `/page @person <message>`: page someone now (they must be in `people:`)
• `/page schedule:NAME <message>`: page whoever is on call
• `/page policy:NAME <message>` or `/page service:NAME <message>`: page through an escalation policy
• `/page ack <id>`: acknowledge (stops escalation at once)
• `/page escalate <id>`: skip the wait and run the next step now
• `/page resolve <id>`: resolve
Typed in an incident channel, the page belongs to that incident and appears in its timeline."""

_MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")
_ID = re.compile(r"^(?:p-)?(\d+)$", re.IGNORECASE)
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
        match = _ID.match(rest)
        if not match:
            raise ParseError(
                f"Usage: `/page {first.lower()} <id>`, e.g. `/page {first.lower()} 12`."
            )
        verb = "ack" if first.lower().startswith("ack") else first.lower()
        return Act(verb, int(match.group(1)))
    target = _target(first, config)
    if not rest:
        raise ParseError(f"Say what it is about: `/page {first} <message>`.")
    return Trigger(target, rest)


def _target(word: str, config: FileConfig) -> str:
    mention = _MENTION.match(word)
    if mention:
        name = config.name_by_slack_id(mention.group(1))
        if name is None:
            raise ParseError(
                f"{word} is not in `people:` in the configuration, so I don't know how to "
                "reach them. Add them there, or page a schedule or policy."
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
            choices = ", ".join(names) or "none configured"
            raise ParseError(f"There is no {kind.lower()} `{name}`. Known: {choices}.")
        return f"{kind.lower()}:{name}"
    if word.removeprefix("@") in config.people:
        return f"user:{word.removeprefix('@')}"
    raise ParseError(
        f"`{word}` is not something I can page. Use @person, schedule:NAME, policy:NAME or "
        "service:NAME.\n\n" + HELP
    )
