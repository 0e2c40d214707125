"""response_url endpoints handed to slash commands and interactions.

Slack's contract: POST a JSON payload `{"text", "blocks", "response_type": "ephemeral" |
"in_channel", "replace_original", "delete_original"}`; ephemeral is the default; a URL may be used
at most five times.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from bot.sandbox.blocks import message_blocks
from bot.sandbox.state import Ephemeral, ResponseUrlPost, SlackError, Workspace

MAX_USES = 5


@dataclass
class ResponseTarget:
    """Where a response_url's answers go: the conversation, user and message it came from."""

    channel_id: str | None
    user_id: str | None
    message_ts: str | None = None
    uses: int = 0


def _is_true(value: object) -> bool:
    return value is True or str(value).lower() in ("true", "1")


def respond(ws: Workspace, response_id: str, target: ResponseTarget, payload: object) -> None:
    """Apply one POST to a response_url; SlackError (answered as HTTP 4xx) when refused."""
    if not isinstance(payload, dict):
        raise SlackError("invalid_payload")
    if target.uses >= MAX_USES:
        raise SlackError("used_url")
    channel = ws.conversations.get(target.channel_id or "")
    original = channel.posts.get(target.message_ts or "") if channel else None
    if _is_true(payload.get("delete_original")):
        if channel is not None and original is not None:
            del channel.posts[original.ts]
            if original.ts in channel.pins:
                channel.pins.remove(original.ts)
    else:
        text = payload.get("text")
        text = text if isinstance(text, str) else ""
        blocks = message_blocks(payload.get("blocks"))
        if not text and blocks is None and not payload.get("attachments"):
            raise SlackError("no_text")
        if _is_true(payload.get("replace_original")) and original is not None:
            original.text, original.blocks, original.edited = text, blocks, True
        elif channel is not None and payload.get("response_type") == "in_channel":
            thread_ts = payload.get("thread_ts")
            thread_ts = thread_ts if isinstance(thread_ts, str) else None
            ws.add_post(channel, ws.bot_user_id, text, blocks, thread_ts)
        elif channel is not None:
            ws.ephemerals.append(Ephemeral(channel.id, target.user_id or "", text, blocks))
    target.uses += 1
    ws.responses.append(ResponseUrlPost(response_id, copy.deepcopy(payload)))
