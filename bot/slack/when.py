"""Instants in Slack text: a date token each reader sees in their own time zone."""

from __future__ import annotations

from datetime import datetime


def when(moment: datetime, style: str = "{date_short_pretty} {time}") -> str:
    """A Slack date token: shown in the reader's time zone, UTC ISO text as the fallback."""
    return f"<!date^{int(moment.timestamp())}^{style}|{moment.strftime('%Y-%m-%d %H:%M UTC')}>"
