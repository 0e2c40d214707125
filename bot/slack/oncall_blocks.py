"""How `/oncall` answers and hand-off messages look in Slack.

People are shown as mentions (their Slack ID from `people:`) and times as `<!date^...>`
tokens, so every reader sees them in their own time zone.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.config import FileConfig
from bot.oncall.handoffs import DueHandoff
from bot.oncall.models import OncallOverride
from bot.oncall.rotation import Shift
from bot.oncall.schedules import Status
from bot.slack.blocks import MAX_BLOCKS, Block
from bot.slack.when import when

MAX_OVERRIDES_SHOWN = 10


def who(config: FileConfig, person: str) -> str:
    entry = config.people.get(person)
    return f"<@{entry.slack}>" if entry is not None else person


def _shift_line(config: FileConfig, label: str, shift: Shift) -> str:
    return f"{label} {who(config, shift.person)} until {when(shift.end)} _({shift.source})_"


def status_text(config: FileConfig, status: Status, *, with_overrides: bool) -> str:
    lines = [f"*{status.schedule}* ({status.timezone})"]
    if status.current is not None:
        lines.append(_shift_line(config, "Now:", status.current))
    else:
        lines.append("Now: nobody is on call")
    if status.following:
        next_shift = status.following[0]
        if status.current is not None and next_shift.start == status.current.end:
            lines.append(_shift_line(config, "Next:", next_shift))
        else:
            lines.append(
                f"Next: {who(config, next_shift.person)} from {when(next_shift.start)} "
                f"until {when(next_shift.end)} _({next_shift.source})_"
            )
    else:
        lines.append("Next: nobody within a year")
    if with_overrides:
        lines.extend(override_lines(config, status.overrides))
    return "\n".join(lines)


def override_lines(config: FileConfig, overrides: Sequence[OncallOverride]) -> list[str]:
    if not overrides:
        return ["Overrides: none"]
    lines = ["Overrides:"]
    for override in overrides[:MAX_OVERRIDES_SHOWN]:
        lines.append(
            f"• #{override.id} {who(config, override.person)} {when(override.starts_at)} → "
            f"{when(override.ends_at)} (set by {_actor(override.created_by)})"
        )
    if len(overrides) > MAX_OVERRIDES_SHOWN:
        lines.append(f"…and {len(overrides) - MAX_OVERRIDES_SHOWN} more")
    return lines


def _actor(actor: str) -> str:
    return f"<@{actor}>" if actor[:1] in ("U", "W") and actor.isalnum() else actor


def statuses(config: FileConfig, found: Sequence[Status], *, with_overrides: bool) -> list[Block]:
    """One section per schedule, within Slack's 50-block limit."""
    if not found:
        return [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "No schedules are configured; add `schedules:` to firebreak.yaml.",
                },
            }
        ]
    room = MAX_BLOCKS - 1
    blocks: list[Block] = [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": status_text(config, status, with_overrides=with_overrides)[:3000],
            },
        }
        for status in found[:room]
    ]
    hint = "`/oncall <schedule>` shows overrides · `/oncall help` for more"
    if len(found) > room:
        hint = f"{len(found) - room} more schedules not shown; ask for one by name. " + hint
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": hint}]})
    return blocks


def fallback(found: Sequence[Status]) -> str:
    """The notification text: plain names, no tokens."""
    parts = []
    for status in found:
        now = status.current.person if status.current else "nobody"
        parts.append(f"{status.schedule}: {now}")
    return "On call: " + ("; ".join(parts) or "no schedules")


def handoff_dm(config: FileConfig, handoff: DueHandoff) -> str:
    return (
        f":pager: You are now on call for *{handoff.schedule}* until {when(handoff.ends_at)}. "
        f"`/oncall {handoff.schedule}` shows who is next."
    )


def handoff_announcement(config: FileConfig, handoff: DueHandoff) -> str:
    return (
        f":pager: {who(config, handoff.person)} is now on call for *{handoff.schedule}* "
        f"until {when(handoff.ends_at)}."
    )
