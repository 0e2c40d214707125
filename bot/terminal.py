"""Timeline events as plain text, for the terminal and logs.

Slack-stored text (a note with `<@U123|alice>` or `&lt;`) is shown as a person reads it
(`@alice`, `<`), through `bot.slack.text.plain`; no markup of any surface is emitted.
"""

from __future__ import annotations

from bot import sentences
from bot.sentences import Style
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


STYLE = Style(
    text=plain,
    actor=actor,
    channel=lambda data: f"#{data.get('name') or data.get('channel')}",
    arrow="->",
)


def sentence(event: TimelineEvent) -> str:
    return sentences.sentence(event, STYLE)


def line(event: TimelineEvent) -> str:
    """`2026-11-21 10:04:05Z  alice changed severity sev2 -> sev1` (UTC)."""
    return f"{event.occurred_at:%Y-%m-%d %H:%M:%S}Z  {sentence(event)}"
