"""Events API listeners: a :pushpin: on a message in an incident channel copies it to the timeline."""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from bot.incidents import service
from bot.incidents.service import MAX_NOTE
from bot.slack import flows, payloads
from bot.slack.context import ListenerContext
from bot.slack.text import clean

PIN_REACTIONS = {"pushpin", "round_pushpin"}


def register(app: App, ctx: ListenerContext) -> None:
    @app.event("reaction_added")
    @payloads.answered
    def reaction_added(event: dict[str, Any]) -> None:
        if payloads.string(event, "reaction", default="") not in PIN_REACTIONS:
            return
        if payloads.string(event, "item.type", default="") != "message":
            return
        channel = payloads.slack_id(event, "item.channel")
        ts = payloads.message_ts(event, "item.ts")
        user = payloads.slack_id(event, "user")
        ctx.workers.submit(
            flows.guarded(lambda: _copy_to_timeline(ctx, channel, ts, user), reply=None)
        )

    @app.event("message")
    @payloads.answered
    def ignore_messages() -> None:
        """Messages are not recorded unless pinned; this keeps bolt from warning on each."""


def _copy_to_timeline(ctx: ListenerContext, channel: str, ts: str, user: str) -> None:
    with ctx.db.session_scope() as session:
        if service.find_by_channel(session, channel) is None:
            return
    history = ctx.client.conversations_history(channel=channel, latest=ts, inclusive=True, limit=1)
    found: list[dict[str, Any]] = history.get("messages") or []
    messages = [m for m in found if m.get("ts") == ts]
    if not messages:
        return
    message = messages[0]
    with ctx.db.session_scope() as session:
        incident = service.find_by_channel(session, channel, lock=True)
        if incident is not None:
            service.record_pinned_message(
                session,
                incident,
                channel_id=channel,
                message_ts=ts,
                author=message.get("user") or message.get("bot_id"),
                text=pinned_text(message.get("text")),
                actor=user,
                now=ctx.clock(),
            )


def pinned_text(raw: Any) -> str:
    """A pinned message's text as the timeline keeps it: no NUL or other control characters,
    and at most a note's length (MAX_NOTE), cut with a marker that says how long it was."""
    if not isinstance(raw, str) or not raw.strip():
        return "(no text)"
    text = clean(raw.replace("\x00", ""), what="pinned message", limit=len(raw))
    if not text:
        return "(no text)"
    if len(text) <= MAX_NOTE:
        return text
    marker = f" … (cut: the message is {len(text):,} characters; read it in Slack)"
    return text[: MAX_NOTE - len(marker)].rstrip() + marker
