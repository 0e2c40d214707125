"""What each kind of timeline fact says, once, for every surface that shows it in words.

A surface supplies a `Style`: how it shows user text (escaped for Slack, plain for the
terminal), actors, channels and the arrow of a change. `sentence(event, style)` is then the
same sentence everywhere, so a new kind is worded in one place (`SENTENCES`) and
`tests/test_timeline_render.py` checks every kind in `bot.timeline.KINDS` has one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.timeline import TimelineEvent


@dataclass(frozen=True)
class Style:
    text: Callable[[str], str]  # user text as this surface shows it safely
    actor: Callable[[str | None], str]  # an actor id as a name or mention
    channel: Callable[[dict[str, Any]], str]  # a channel from facts with "channel"/"name"
    arrow: str = "→"


Sentence = Callable[[TimelineEvent, Style], str]


def _t(style: Style, value: Any) -> str:
    return style.text(str(value)) if value is not None else ""


def _page(event: TimelineEvent) -> str:
    return f"P-{event.page_id}" if event.page_id is not None else "the page"


def _step(event: TimelineEvent) -> str:
    repeat = f" (repeat {event.data['cycle']})" if event.data.get("cycle") else ""
    return f"{_page(event)} step {event.data.get('step')}{repeat}"


def _names(style: Style, values: Any) -> str:
    return ", ".join(style.text(str(value)) for value in values or []) or "nobody"


def _change(what: str) -> Sentence:
    return lambda e, s: f"{what} {e.data.get('from')} {s.arrow} {e.data.get('to')}"


def _role(e: TimelineEvent, s: Style) -> str:
    was = f" (was {s.actor(e.data['previous'])})" if e.data.get("previous") else ""
    return f"made {s.actor(e.data.get('user'))} {_t(s, e.data.get('role'))}{was}"


def _failed(e: TimelineEvent, s: Style) -> str:
    attempt = e.data.get("attempt")
    how = (
        f"for good after {attempt} tries" if e.data.get("final") else f"(try {attempt}, will retry)"
    )
    return (
        f"{_page(e)}: {_t(s, e.data.get('channel'))} to {_t(s, e.data.get('person'))} "
        f"failed {how}: {_t(s, e.data.get('error'))}"
    )


SENTENCES: dict[str, Sentence] = {
    "declared": lambda e, s: (
        f"declared {_t(s, e.data.get('severity')).upper()}: {_t(s, e.data.get('title'))}"
    ),
    "severity_changed": _change("changed severity"),
    "status_changed": _change("changed status"),
    "reopened": _change("reopened the incident: status"),
    "role_assigned": _role,
    "note_added": lambda e, s: f"added a note: {_t(s, e.data.get('text'))}",
    "resolved": lambda e, s: (
        "resolved the incident"
        + (f": {_t(s, e.data['resolution'])}" if e.data.get("resolution") else "")
    ),
    "pinned_message": lambda e, s: (
        f"pinned a message by {s.actor(e.data.get('author'))}: {_t(s, e.data.get('text'))}"
    ),
    "channel_created": lambda e, s: (
        f"{'adopted' if e.data.get('adopted') else 'created'} channel {s.channel(e.data)}"
    ),
    "responder_invited": lambda e, s: f"invited {s.actor(e.data.get('user'))}",
    "topic_set": lambda e, s: f"set the topic: {_t(s, e.data.get('topic'))}",
    "summary_posted": lambda e, s: "posted the incident summary",
    "summary_pinned": lambda e, s: "pinned the summary",
    "announced": lambda e, s: f"announced the incident in {s.channel(e.data)}",
    "slack_error": lambda e, s: (
        f"could not {_t(s, e.data.get('step'))} in Slack: {_t(s, e.data.get('error'))}"
    ),
    "page_triggered": lambda e, s: (
        f"paged {_t(s, e.data.get('target'))}: {_t(s, e.data.get('message'))} ({_page(e)})"
    ),
    "page_step_notified": lambda e, s: f"{_step(e)}: notified {_names(s, e.data.get('people'))}",
    "page_step_nobody": lambda e, s: (
        f"{_step(e)}: nobody to notify ({_names(s, e.data.get('targets'))})"
    ),
    "page_escalated": lambda e, s: f"escalated {_page(e)} to its next step",
    "page_acknowledged": lambda e, s: f"acknowledged {_page(e)}",
    "page_resolved": lambda e, s: f"resolved {_page(e)}",
    "page_exhausted": lambda e, s: (
        f"{_page(e)}: nobody acknowledged; every step and repeat went unanswered"
    ),
    "page_delivered": lambda e, s: (
        f"{_page(e)}: {_t(s, e.data.get('channel'))} to {_t(s, e.data.get('person'))} delivered"
    ),
    "page_delivery_failed": _failed,
    "alert_fired": lambda e, s: (
        f"{_t(s, e.data.get('source'))} alert firing: {_t(s, e.data.get('summary'))}"
    ),
    "alert_resolved": lambda e, s: (
        f"{_t(s, e.data.get('source'))} alert resolved: {_t(s, e.data.get('summary'))}"
    ),
}
# Facts the bot records about its own work read better without "Firebreak" in front.
IMPERSONAL = frozenset(
    {
        "page_step_notified",
        "page_step_nobody",
        "page_exhausted",
        "page_delivered",
        "page_delivery_failed",
        "alert_fired",
        "alert_resolved",
    }
)


def sentence(event: TimelineEvent, style: Style) -> str:
    """What happened, in `style`, with the actor in front unless the fact is impersonal."""
    render = SENTENCES.get(event.kind)
    what = render(event, style) if render else f"recorded {style.text(event.kind)}"
    return what if event.kind in IMPERSONAL else f"{style.actor(event.actor)} {what}"
