"""Timeline events as Slack mrkdwn: the one place facts become Slack text.

`sentence(event)` says what happened ("<@U1> changed severity sev2 → sev1"); `line(event)`
adds the time, for `/incident timeline`; `post(event)` is what the incident channel is told
when a responder changes something. User text (titles, notes, page messages, errors) goes
through `escape`, so `<!channel>` in a note never pings anyone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.slack.text import escape
from bot.slack.when import when
from bot.strict import USER_ID
from bot.timeline import BOT, TimelineEvent


def actor(who: str | None) -> str:
    """A Slack user id as a mention, the bot as "Firebreak", a terminal user by login."""
    if not who:
        return "someone"
    if who == BOT:
        return "Firebreak"
    if USER_ID.fullmatch(who):
        return f"<@{who}>"
    if who.startswith("cli:"):
        return f"{escape(who.removeprefix('cli:'))} (terminal)"
    return escape(who)


def _page(event: TimelineEvent) -> str:
    return f"P-{event.page_id}" if event.page_id is not None else "the page"


def _repeat(data: dict[str, Any]) -> str:
    return f" (repeat {data['cycle']})" if data.get("cycle") else ""


def _names(values: Any) -> str:
    return ", ".join(escape(str(value)) for value in values or []) or "nobody"


def _role(data: dict[str, Any]) -> str:
    was = f" (was {actor(data['previous'])})" if data.get("previous") else ""
    return f"made {actor(data.get('user'))} {escape(str(data.get('role')))}{was}"


def _failed(event: TimelineEvent) -> str:
    data = event.data
    attempt = data.get("attempt")
    how = f"for good after {attempt} tries" if data.get("final") else f"(try {attempt}, will retry)"
    return (
        f"{_page(event)}: {escape(str(data.get('channel')))} to {escape(str(data.get('person')))} "
        f"failed {how}: {escape(str(data.get('error')))}"
    )


# What each kind says after the actor's name (or, for the bot's own facts, on its own).
_SENTENCES: dict[str, Callable[[TimelineEvent], str]] = {
    "declared": lambda e: (
        f"declared {escape(str(e.data.get('severity'))).upper()}: {escape(str(e.data.get('title')))}"
    ),
    "severity_changed": lambda e: f"changed severity {e.data.get('from')} → {e.data.get('to')}",
    "status_changed": lambda e: f"changed status {e.data.get('from')} → {e.data.get('to')}",
    "reopened": lambda e: (
        f"reopened the incident: status {e.data.get('from')} → {e.data.get('to')}"
    ),
    "role_assigned": lambda e: _role(e.data),
    "note_added": lambda e: f"added a note: {escape(str(e.data.get('text')))}",
    "resolved": lambda e: (
        "resolved the incident"
        + (f": {escape(str(e.data['resolution']))}" if e.data.get("resolution") else "")
    ),
    "pinned_message": lambda e: (
        f"pinned a message by {actor(e.data.get('author'))}: {escape(str(e.data.get('text')))}"
    ),
    "channel_created": lambda e: (
        f"{'adopted' if e.data.get('adopted') else 'created'} channel <#{e.data.get('channel')}>"
    ),
    "responder_invited": lambda e: f"invited {actor(e.data.get('user'))}",
    "topic_set": lambda e: f"set the topic: {escape(str(e.data.get('topic')))}",
    "summary_posted": lambda e: "posted the incident summary",
    "summary_pinned": lambda e: "pinned the summary",
    "announced": lambda e: f"announced the incident in <#{e.data.get('channel')}>",
    "slack_error": lambda e: (
        f"could not {escape(str(e.data.get('step')))} in Slack: {escape(str(e.data.get('error')))}"
    ),
    "page_triggered": lambda e: (
        f"paged {escape(str(e.data.get('target')))}: {escape(str(e.data.get('message')))} ({_page(e)})"
    ),
    "page_step_notified": lambda e: (
        f"{_page(e)} step {e.data.get('step')}{_repeat(e.data)}: notified {_names(e.data.get('people'))}"
    ),
    "page_step_nobody": lambda e: (
        f"{_page(e)} step {e.data.get('step')}{_repeat(e.data)}: nobody to notify "
        f"({_names(e.data.get('targets'))})"
    ),
    "page_escalated": lambda e: f"escalated {_page(e)} to its next step",
    "page_acknowledged": lambda e: f"acknowledged {_page(e)}",
    "page_resolved": lambda e: f"resolved {_page(e)}",
    "page_exhausted": lambda e: (
        f"{_page(e)}: nobody acknowledged; every step and repeat went unanswered"
    ),
    "page_delivered": lambda e: (
        f"{_page(e)}: {escape(str(e.data.get('channel')))} to "
        f"{escape(str(e.data.get('person')))} delivered"
    ),
    "page_delivery_failed": _failed,
}
# Facts the bot records about its own work read better without "Firebreak" in front.
_IMPERSONAL = {
    "page_step_notified",
    "page_step_nobody",
    "page_exhausted",
    "page_delivered",
    "page_delivery_failed",
}
_EMOJI = {
    "severity_changed": ":rotating_light:",
    "status_changed": ":arrows_counterclockwise:",
    "reopened": ":arrows_counterclockwise:",
    "role_assigned": ":bust_in_silhouette:",
    "note_added": ":memo:",
    "resolved": ":white_check_mark:",
    "page_triggered": ":pager:",
    "page_acknowledged": ":white_check_mark:",
    "page_resolved": ":white_check_mark:",
    "page_escalated": ":arrow_double_up:",
    "page_exhausted": ":rotating_light:",
}


def sentence(event: TimelineEvent) -> str:
    """What happened, as one line of mrkdwn."""
    render = _SENTENCES.get(event.kind)
    what = render(event) if render else f"recorded {escape(event.kind)}"
    if event.kind in _IMPERSONAL:
        return what
    return f"{actor(event.actor)} {what}"


def post(event: TimelineEvent) -> str:
    """The message an incident channel gets for a change someone made."""
    emoji = _EMOJI.get(event.kind)
    return f"{emoji} {sentence(event)}" if emoji else sentence(event)


def line(event: TimelineEvent) -> str:
    """One timeline line: the time (in the reader's zone), then what happened."""
    return f"{when(event.occurred_at, '{time_secs}')} · {sentence(event)}"
