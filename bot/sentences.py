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


def _run(e: TimelineEvent, s: Style) -> str:
    """`runbook disk-usage (R-12)`: which runbook, which run."""
    return f"runbook {_t(s, e.data.get('runbook'))} (R-{e.data.get('run')})"


def _seconds(value: Any) -> str:
    return f"{float(value):.1f}s" if isinstance(value, int | float) else "?"


def _counts(value: Any) -> str:
    if not isinstance(value, dict) or not value:
        return "no hosts"
    return ", ".join(f"{count} {status}" for status, count in sorted(value.items()))


def _confirmed(e: TimelineEvent, s: Style) -> str:
    then = "awaiting approval" if e.data.get("needs_approval") else "queued to run"
    return f"confirmed {_run(e, s)}; {then}"


def _step_finished(e: TimelineEvent, s: Style) -> str:
    kind = "rollback step" if e.data.get("rollback") else "step"
    code = e.data.get("exit_code")
    exit_text = f"exit {code}" if code is not None else "no exit code"
    return (
        f"{_run(e, s)} on {_t(s, e.data.get('host'))}: {kind} {_t(s, e.data.get('step'))} "
        f"{_t(s, e.data.get('outcome'))} ({exit_text}, {_seconds(e.data.get('duration'))})"
    )


def _host_finished(e: TimelineEvent, s: Style) -> str:
    key = f", host key {_t(s, e.data['fingerprint'])}" if e.data.get("fingerprint") else ""
    return (
        f"{_run(e, s)} on {_t(s, e.data.get('host'))}: {_t(s, e.data.get('outcome'))} "
        f"in {_seconds(e.data.get('duration'))}{key}"
    )


def _started(e: TimelineEvent, s: Style) -> str:
    approved = f", approved by {s.actor(e.data['approver'])}" if e.data.get("approver") else ""
    return (
        f"{_run(e, s)} started on {_names(s, e.data.get('hosts'))} "
        f"(requested by {s.actor(e.data.get('requester'))}{approved})"
    )


def _action_added(e: TimelineEvent, s: Style) -> str:
    owner = f" for {s.actor(e.data['owner'])}" if e.data.get("owner") else ""
    due = f", due {_t(s, e.data['due'])}" if e.data.get("due") else ""
    return f"added action item A-{e.data.get('item')}{owner}{due}: {_t(s, e.data.get('text'))}"


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
    "runbook_requested": lambda e, s: (
        f"requested {_run(e, s)}: {_t(s, e.data.get('title'))} on "
        f"{_names(s, e.data.get('hosts'))} (risk {_t(s, e.data.get('risk'))})"
    ),
    "runbook_refused": lambda e, s: f"was refused {_run(e, s)}: {_t(s, e.data.get('reason'))}",
    "runbook_confirmed": _confirmed,
    "runbook_approved": lambda e, s: (
        f"approved {_run(e, s)} requested by {s.actor(e.data.get('requester'))}"
    ),
    "runbook_approval_refused": lambda e, s: (
        f"could not approve {_run(e, s)} requested by {s.actor(e.data.get('requester'))}: "
        f"{_t(s, e.data.get('reason'))}"
    ),
    "runbook_approval_expired": lambda e, s: (
        f"{_run(e, s)} requested by {s.actor(e.data.get('requester'))} expired unapproved"
    ),
    "runbook_cancelled": lambda e, s: (
        f"cancelled {_run(e, s)}"
        + ("; running steps are being stopped" if e.data.get("running") else "")
    ),
    "runbook_started": _started,
    "runbook_step_finished": _step_finished,
    "runbook_host_finished": _host_finished,
    "runbook_host_key_rejected": lambda e, s: (
        f"SECURITY: {_run(e, s)}: host key of {_t(s, e.data.get('host'))} rejected "
        f"(offered {_t(s, e.data.get('fingerprint') or 'unknown')}): "
        f"{_t(s, e.data.get('detail'))}; nothing ran there"
    ),
    "runbook_finished": lambda e, s: (
        f"{_run(e, s)} finished: {_t(s, e.data.get('outcome'))} ({_counts(e.data.get('counts'))})"
    ),
    "runbook_interrupted": lambda e, s: (
        f"{_run(e, s)} was interrupted (Firebreak stopped mid-run); unfinished hosts: "
        f"{_names(s, e.data.get('hosts'))}"
    ),
    "action_added": _action_added,
    "action_done": lambda e, s: (
        f"marked action item A-{e.data.get('item')} done: {_t(s, e.data.get('text'))}"
    ),
    "postmortem_drafted": lambda e, s: (
        f"drafted the postmortem with template {_t(s, e.data.get('template'))}, saved as "
        f"{_t(s, e.data.get('path'))} (file {_t(s, e.data.get('file'))})"
    ),
    "postmortem_done": lambda e, s: "marked the postmortem done",
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
        "runbook_approval_expired",
        "runbook_started",
        "runbook_step_finished",
        "runbook_host_finished",
        "runbook_host_key_rejected",
        "runbook_finished",
        "runbook_interrupted",
    }
)


def sentence(event: TimelineEvent, style: Style) -> str:
    """What happened, in `style`, with the actor in front unless the fact is impersonal."""
    render = SENTENCES.get(event.kind)
    what = render(event, style) if render else f"recorded {style.text(event.kind)}"
    return what if event.kind in IMPERSONAL else f"{style.actor(event.actor)} {what}"
