"""The `/oncall` slash command (filled in by the schedules work)."""

from __future__ import annotations

from slack_bolt import App

from bot.slack.context import ListenerContext


def register(app: App, ctx: ListenerContext) -> None:
    """Register `/oncall` listeners."""
