"""User text as Markdown that shows exactly what was typed, and timeline sentences in Markdown.

Everything a draft shows from Slack (titles, notes, pinned messages, alert summaries) is
data. `escape` makes it inert Markdown: every character that could start emphasis, code, a
link, an image, HTML, a table cell or a block (`\\ ` * _ [ ] < > | ~ & #` and a leading
`+ - = 1.`) is backslash-escaped, and a newline becomes `<br>`, so a value stays inside its
table cell or line. The template environment applies it to every `{{ value }}` that is a
plain `str`; values that are already Markdown are `Md` and pass through.

Slack's wire form is turned into names first (`names`): `<@U123>` becomes `@alice` when
`people:` lists U123 (else Slack's own label, else `@U123`), `<#C123|ops>` becomes `#ops`,
`<!channel>` becomes `@channel` and `&lt;` becomes `<`; the result is escaped like any text,
so an unknown id is shown as-is but can neither mention nor link.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote

from bot import sentences
from bot.sentences import Style
from bot.slack.text import plain
from bot.timeline import BOT, TimelineEvent

_LEADING = re.compile(r"^(\s*)([+\-=]|\d+(?=[.)]))")
_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|([^<>|]*))?>")
_CHANNEL = re.compile(r"<#([CG][A-Z0-9]+)(?:\|([^<>|]*))?>")


class Md(str):
    """Text that is already Markdown: templates show it as it is."""

    __slots__ = ()


_ESCAPES = str.maketrans(
    {**{char: "\\" + char for char in "\\`*_[]<>|~&#"}, "\n": "<br>", "\r": ""}
)


def escape(text: str) -> Md:
    """Plain text as Markdown that renders as exactly this text, on one line."""
    if isinstance(text, Md):
        return text
    escaped = text.translate(_ESCAPES)
    leading = _LEADING.match(escaped)
    if leading:  # `- x`, `+ x`, `1. x` at the start of a line would start a list
        start, mark = leading.group(1), leading.group(2)
        if mark.isdigit():
            escaped = f"{start}{mark}\\{escaped[leading.end() :]}"
        else:
            escaped = f"{start}\\{mark}{escaped[leading.end() :]}"
    return Md(escaped)


def cell(value: Any) -> Md:
    """A table cell. Plain text is escaped (so `|` and newlines are too); Markdown is kept,
    its newlines made `<br>`; an empty cell is a space."""
    if value is None or value == "":
        return Md(" ")
    if isinstance(value, Md):
        return Md(value.replace("\r\n", "<br>").replace("\n", "<br>"))
    return escape(str(value))


def link(text: str, url: str | None) -> Md:
    """`[text](url)` for an http(s) URL; any other URL (javascript:, data:) is shown as text."""
    label = escape(text or url or "")
    if not url or not re.match(r"^https?://[^\s]+$", url, re.IGNORECASE):
        return label if not url else Md(f"{label} ({escape(url)})")
    safe = quote(url, safe="/:?&=#%+@;,.~!$'*-_")
    safe = safe.replace("(", "%28").replace(")", "%29")
    return Md(f"[{label}]({safe})")


class Names:
    """Who Slack ids and actors are, for people reading a document outside Slack."""

    def __init__(
        self, people_by_slack: Mapping[str, str], channels: Mapping[str, str] | None = None
    ) -> None:
        self.people_by_slack = dict(people_by_slack)
        self.channels = dict(channels or {})

    def person(self, who: str | None) -> str:
        """A name for an actor or Slack user id: `alice`, `ops (terminal)`, `Firebreak`."""
        if not who:
            return "someone"
        if who == BOT:
            return "Firebreak"
        if who.startswith("cli:"):
            return f"{who.removeprefix('cli:')} (terminal)"
        return self.people_by_slack.get(who, who)

    def channel(self, channel_id: str | None, name: str | None = None) -> str:
        if not channel_id:
            return f"#{name}" if name else "a channel"
        return "#" + (name or self.channels.get(channel_id) or channel_id)

    def text(self, text: str) -> str:
        """Stored Slack text as plain text with names (not yet escaped)."""
        if "<" not in text and "&" not in text:
            return text  # no mention, link or entity: nothing to read

        def user(match: re.Match[str]) -> str:
            known = self.people_by_slack.get(match.group(1))
            return "@" + (known or match.group(2) or match.group(1))

        def channel(match: re.Match[str]) -> str:
            return self.channel(match.group(1), match.group(2) or None)

        # Mentions become names here; `plain` then reads entities, @channel and links.
        # A name never holds `<`, so `plain` cannot mistake what we wrote for Slack's.
        text = _MENTION.sub(lambda m: user(m).replace("<", "&lt;").replace(">", "&gt;"), text)
        text = _CHANNEL.sub(lambda m: channel(m).replace("<", "&lt;").replace(">", "&gt;"), text)
        return plain(text)

    def markdown(self, text: str) -> Md:
        return escape(self.text(text))


def style(names: Names) -> Style:
    """The Markdown `Style` for `bot.sentences`, for facts whose data `_escaped` made
    Markdown already: text passes as it is, people are named, channels named and escaped."""
    return Style(
        text=lambda value: value,
        actor=lambda who: escape(names.person(who)),
        channel=lambda data: escape(names.channel(data.get("channel"), data.get("name"))),
        arrow="→",
    )


@dataclass(slots=True)
class _Fact:
    """What a sentence reads of an event, with every piece of text in `data` escaped."""

    id: int | None
    kind: str
    actor: str
    page_id: int | None
    incident_id: int | None
    occurred_at: Any
    data: dict[str, Any]


def _escaped(value: Any, names: Names, cache: dict[str, Md]) -> Any:
    """Text in a fact's data as Markdown, at any depth: a sentence that inserts a value
    without `style.text` (a status change, a runbook's counts) still shows only text."""
    if isinstance(value, str):
        known = cache.get(value)
        if known is None:
            known = cache[value] = escape(names.text(value))
        return known
    if isinstance(value, list | tuple):
        return [_escaped(item, names, cache) for item in value]
    if isinstance(value, dict):
        return {key: _escaped(item, names, cache) for key, item in value.items()}
    return value


def sentence_renderer(names: Names) -> Callable[[Any], Md]:
    """A function from a timeline event to its Markdown sentence (one style, built once)."""
    markdown_style = style(names)
    cache: dict[str, Md] = {}  # statuses, severities, names repeat: escape each once

    def render(event: Any) -> Md:
        """`event`: a `TimelineEvent`, or anything with its attributes."""
        fact = _Fact(
            event.id,
            event.kind,
            event.actor,
            event.page_id,
            event.incident_id,
            event.occurred_at,
            {key: _escaped(value, names, cache) for key, value in (event.data or {}).items()},
        )
        return Md(sentences.sentence(cast(TimelineEvent, fact), markdown_style))

    return render
