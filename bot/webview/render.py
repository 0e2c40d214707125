"""Rendering for the web view: one autoescaping Jinja environment and `Page`.

Every value a template prints is escaped (`autoescape=True`, for every template name), and
nothing here marks user text safe unescaped: timeline sentences are plain text
(`event_text`). HTML is produced outside a template in two places: the postmortem draft,
rendered by markdown-it with raw HTML in the source disabled, and the timeline's lines
(`timeline_item`), where every value is escaped as autoescape would (`escape_text`):
a template loop over an incident's 10,000 events was the slowest part of its page.

`Page.render(template, **context)` renders a page for one viewer: times in their zone,
the navigation (`NAV`), the sandbox banner. A new page adds itself to `NAV`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Environment, PackageLoader, StrictUndefined
from markdown_it import MarkdownIt

from bot import sentences
from bot.people import Person
from bot.sentences import Style
from bot.slack.text import plain
from bot.terminal import actor as terminal_actor
from bot.timeline import TimelineEvent
from bot.webview.queries import Fact

# (label, path) of each page in the navigation bar, in order.
NAV: list[tuple[str, str]] = [
    ("Incidents", "/"),
    ("On call", "/oncall"),
    ("Pages", "/pages"),
    ("Reports", "/reports"),
]
UTC_ZONE = ZoneInfo("UTC")

ENVIRONMENT = Environment(
    loader=PackageLoader("bot.webview", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)
# Text as Slack stored it (`&lt;`, `<@U1|alice>`) as a person reads it; autoescaped after.
ENVIRONMENT.filters["plain"] = plain
# CommonMark plus tables; `html: False` shows raw HTML in the Markdown as text, and
# markdown-it refuses javascript:, vbscript:, file: and data: links by itself.
MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


@dataclass(frozen=True)
class Viewer:
    """Who is reading: their Slack user id, the name to show, and their time zone."""

    user_id: str
    name: str
    zone: ZoneInfo = UTC_ZONE
    sandbox: bool = False  # let in by `serve --sandbox` on loopback, without signing in


def zone_of(person: Person | None) -> ZoneInfo:
    if person is None:
        return UTC_ZONE
    try:
        return ZoneInfo(person.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC_ZONE


def viewer_for(user_id: str, name: str, people: Mapping[str, Person]) -> Viewer:
    person = next((p for p in people.values() if p.slack == user_id), None)
    return Viewer(user_id, name, zone_of(person))


class Names:
    """Timeline actors as people read them: `people:` names for Slack ids."""

    def __init__(self, people: Mapping[str, Person]) -> None:
        self._by_id = {person.slack: name for name, person in people.items()}

    def __call__(self, who: str | None) -> str:
        if who and who in self._by_id:
            return self._by_id[who]
        return terminal_actor(who)


def text_style(names: Names) -> Style:
    """Plain text (the template escapes it), people by name. Texts repeat (statuses,
    severities, names), so each is made plain once per style."""
    cache: dict[str, str] = {}

    def text(value: str) -> str:
        if "<" not in value and "&" not in value:  # nothing `plain` would change
            return value
        shown = cache.get(value)
        if shown is None:
            shown = cache[value] = plain(value)
        return shown

    return Style(
        text=text,
        actor=names,
        channel=lambda data: f"#{data.get('name') or data.get('channel')}",
    )


def event_text(event: TimelineEvent | Fact, style: Style) -> str:
    """What happened, as plain text. A `Fact` has every attribute a sentence reads."""
    return sentences.sentence(cast(TimelineEvent, event), style)


@dataclass(frozen=True, slots=True)
class TimelineRow:
    """One line of the timeline as the page shows it, every piece already text."""

    id: int
    kind: str
    iso: str
    when: str
    text: str


def local_time(moment: datetime, zone: ZoneInfo) -> str:
    """`2026-11-21 15:04:05 CET`: what `strftime("%Y-%m-%d %H:%M:%S %Z")` gives, in half
    the time (it is called once per timeline line)."""
    local = moment.astimezone(zone)
    return "%04d-%02d-%02d %02d:%02d:%02d %s" % (  # noqa: UP031 (faster than f-strings here)
        local.year,
        local.month,
        local.day,
        local.hour,
        local.minute,
        local.second,
        local.tzname(),
    )


def timeline_item(row: TimelineRow) -> str:
    """One timeline line as HTML, the same markup `static/timeline.js` appends, every
    value escaped (`escape_text`)."""
    return (
        f'<li class="event kind-{escape_text(row.kind)}" data-id="{row.id:d}">'
        f'<time datetime="{escape_text(row.iso)}">{escape_text(row.when)}</time> '
        f"<span>{escape_text(row.text)}</span></li>"
    )


def escape_text(text: str) -> str:
    """`text` escaped as autoescape escapes it (markupsafe: `&<>"'`, the same entities),
    without making a `Markup` object per value."""
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )


def markdown_html(source: str) -> str:
    """Markdown as HTML; HTML in the source is shown as text, never passed through."""
    return str(MARKDOWN.render(source))


def age(since: datetime, until: datetime) -> str:
    """`45s`, `12m`, `3h 5m`, `2d 4h`: how long, to a glance's precision."""
    seconds = max(0, int((until - since).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


@dataclass(frozen=True)
class Page:
    """A page rendered for one viewer (None: not signed in) at one instant."""

    viewer: Viewer | None
    now: datetime
    sandbox: bool = False
    path: str = "/"

    @property
    def zone(self) -> ZoneInfo:
        return self.viewer.zone if self.viewer is not None else UTC_ZONE

    def when(self, moment: datetime | None, *, seconds: bool = False) -> str:
        """`2026-11-21 15:04 CET` in the viewer's zone."""
        if moment is None:
            return ""
        local = moment.astimezone(self.zone)
        return local.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")

    def iso(self, moment: datetime | None) -> str:
        return moment.isoformat() if moment is not None else ""

    def age(self, since: datetime, until: datetime | None = None) -> str:
        return age(since, until or self.now)

    def since(self, moment: datetime) -> timedelta:
        return self.now - moment

    def timeline(self, facts: list[Fact], style: Style) -> list[TimelineRow]:
        """Facts as the page's lines, in one pass (10,000 of them cost a template loop
        calling back into Python several times per line)."""
        zone = self.zone
        return [
            TimelineRow(
                fact.id,
                fact.kind,
                fact.occurred_at.isoformat(),
                local_time(fact.occurred_at, zone),
                event_text(fact, style),
            )
            for fact in facts
        ]

    def render(self, template: str, **context: Any) -> str:
        return ENVIRONMENT.get_template(template).render(
            page=self, nav=NAV, viewer=self.viewer, sandbox=self.sandbox, **context
        )
