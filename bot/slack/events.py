"""Events API listeners: a :pushpin: on a message in an incident channel copies it to the timeline."""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from bot.incidents import service
from bot.slack.context import ListenerContext

PIN_REACTIONS = {"pushpin", "round_pushpin"}


def register(app: App, ctx: ListenerContext) -> None:
    @app.event("reaction_added")
    def reaction_added(event: dict[str, Any]) -> None:
        item = event.get("item") or {}
        if event.get("reaction") not in PIN_REACTIONS or item.get("type") != "message":
            return
        ctx.workers.submit(_copy_to_timeline, ctx, item["channel"], item["ts"], event["user"])

    @app.event("message")
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
                text=message.get("text") or "(no text)",
                actor=user,
                now=ctx.clock(),
            )
