"""Timeline events as plain text, for the terminal and logs.

Slack-stored text (a note with `<@U123|alice>` or `&lt;`) is shown as a person reads it
(`@alice`, `<`), through `bot.slack.text.plain`; no markup of any surface is emitted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.slack.text import plain
from bot.timeline import BOT, TimelineEvent


def actor(who: str | None) -> str:
    if not who:
        return "someone"
    if who == BOT:
        return "Firebreak"
    if who.startswith("cli:"):
        return f"{who.removeprefix('cli:')} (terminal)"
    return who


def _t(value: Any) -> str:
    return plain(str(value)) if value is not None else ""


def _page(event: TimelineEvent) -> str:
    return f"P-{event.page_id}" if event.page_id is not None else "the page"


def _repeat(data: dict[str, Any]) -> str:
    return f" (repeat {data['cycle']})" if data.get("cycle") else ""


def _role(data: dict[str, Any]) -> str:
    was = f" (was {actor(data['previous'])})" if data.get("previous") else ""
    return f"made {actor(data.get('user'))} {data.get('role')}{was}"


def _failed(event: TimelineEvent) -> str:
    data = event.data
    how = (
        f"for good after {data.get('attempt')} tries"
        if data.get("final")
        else f"(try {data.get('attempt')}, will retry)"
    )
    return f"{_page(event)}: {data.get('channel')} to {data.get('person')} failed {how}: {_t(data.get('error'))}"


_SENTENCES: dict[str, Callable[[TimelineEvent], str]] = {
    "declared": lambda e: (
        f"declared {str(e.data.get('severity')).upper()}: {_t(e.data.get('title'))}"
    ),
    "severity_changed": lambda e: f"changed severity {e.data.get('from')} -> {e.data.get('to')}",
    "status_changed": lambda e: f"changed status {e.data.get('from')} -> {e.data.get('to')}",
    "reopened": lambda e: (
        f"reopened the incident: status {e.data.get('from')} -> {e.data.get('to')}"
    ),
    "role_assigned": lambda e: _role(e.data),
    "note_added": lambda e: f"added a note: {_t(e.data.get('text'))}",
    "resolved": lambda e: (
        "resolved the incident"
        + (f": {_t(e.data['resolution'])}" if e.data.get("resolution") else "")
    ),
    "pinned_message": lambda e: (
        f"pinned a message by {actor(e.data.get('author'))}: {_t(e.data.get('text'))}"
    ),
    "channel_created": lambda e: (
        f"{'adopted' if e.data.get('adopted') else 'created'} channel #{e.data.get('name')}"
    ),
    "responder_invited": lambda e: f"invited {actor(e.data.get('user'))}",
    "topic_set": lambda e: f"set the topic: {_t(e.data.get('topic'))}",
    "summary_posted": lambda e: "posted the incident summary",
    "summary_pinned": lambda e: "pinned the summary",
    "announced": lambda e: f"announced the incident in {e.data.get('channel')}",
    "slack_error": lambda e: f"could not {e.data.get('step')} in Slack: {_t(e.data.get('error'))}",
    "page_triggered": lambda e: (
        f"paged {e.data.get('target')}: {_t(e.data.get('message'))} ({_page(e)})"
    ),
    "page_step_notified": lambda e: (
        f"{_page(e)} step {e.data.get('step')}{_repeat(e.data)}: notified "
        + (", ".join(e.data.get("people") or []) or "nobody")
    ),
    "page_step_nobody": lambda e: (
        f"{_page(e)} step {e.data.get('step')}{_repeat(e.data)}: nobody to notify ("
        + ", ".join(e.data.get("targets") or [])
        + ")"
    ),
    "page_escalated": lambda e: f"escalated {_page(e)} to its next step",
    "page_acknowledged": lambda e: f"acknowledged {_page(e)}",
    "page_resolved": lambda e: f"resolved {_page(e)}",
    "page_exhausted": lambda e: (
        f"{_page(e)}: nobody acknowledged; every step and repeat went unanswered"
    ),
    "page_delivered": lambda e: (
        f"{_page(e)}: {e.data.get('channel')} to {e.data.get('person')} delivered"
    ),
    "page_delivery_failed": _failed,
}
_IMPERSONAL = {
    "page_step_notified",
    "page_step_nobody",
    "page_exhausted",
    "page_delivered",
    "page_delivery_failed",
}


def sentence(event: TimelineEvent) -> str:
    render = _SENTENCES.get(event.kind)
    what = render(event) if render else f"recorded {event.kind}"
    return what if event.kind in _IMPERSONAL else f"{actor(event.actor)} {what}"


def line(event: TimelineEvent) -> str:
    """`2026-11-21 10:04:05Z  alice changed severity sev2 -> sev1` (UTC)."""
    return f"{event.occurred_at:%Y-%m-%d %H:%M:%S}Z  {sentence(event)}"
