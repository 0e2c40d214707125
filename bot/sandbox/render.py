"""The JSON shapes Slack uses for conversations, messages and users."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.sandbox.state import Conversation, Post, User, Workspace


def channel_json(channel: Conversation, ws: Workspace) -> dict[str, Any]:
    if channel.is_im:
        return {
            "id": channel.id,
            "created": channel.created,
            "is_im": True,
            "is_channel": False,
            "is_group": False,
            "is_mpim": False,
            "is_private": True,
            "is_org_shared": False,
            "is_archived": channel.is_archived,
            "user": channel.name,
            "is_user_deleted": False,
            "priority": 0,
        }
    return {
        "id": channel.id,
        "name": channel.name,
        "name_normalized": channel.name,
        "is_channel": True,
        "is_group": False,
        "is_im": False,
        "is_mpim": False,
        "is_private": channel.is_private,
        "created": channel.created,
        "creator": channel.creator,
        "is_archived": channel.is_archived,
        "is_general": False,
        "unlinked": 0,
        "is_shared": False,
        "is_ext_shared": False,
        "is_org_shared": False,
        "is_pending_ext_shared": False,
        "pending_shared": [],
        "context_team_id": ws.team_id,
        "is_member": ws.bot_user_id in channel.members,
        "num_members": len(channel.members),
        "topic": {
            "value": channel.topic,
            "creator": channel.topic_creator,
            "last_set": channel.topic_last_set,
        },
        "purpose": {
            "value": channel.purpose,
            "creator": channel.purpose_creator,
            "last_set": channel.purpose_last_set,
        },
        "previous_names": [],
    }


def message_json(post: Post, ws: Workspace) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "message", "user": post.user, "text": post.text, "ts": post.ts}
    body["team"] = ws.team_id
    if post.user == ws.bot_user_id:
        body["bot_id"] = ws.bot_id
        body["app_id"] = "A0SANDBOX"
    if post.blocks is not None:
        body["blocks"] = copy.deepcopy(post.blocks)
    if post.thread_ts is not None:
        body["thread_ts"] = post.thread_ts
    if post.edited:
        body["edited"] = {"user": post.user, "ts": post.ts}
    if post.files:
        from bot.sandbox.files import file_json

        body["files"] = [file_json(ws.files[f], ws) for f in post.files if f in ws.files]
        body["upload"] = True
    if post.reactions:
        body["reactions"] = [
            {"name": name, "users": list(users), "count": len(users)}
            for name, users in post.reactions.items()
        ]
    return body


def _tz_offset(tz: str) -> int:
    try:
        offset = datetime.now(UTC).astimezone(ZoneInfo(tz)).utcoffset()
    except (ZoneInfoNotFoundError, ValueError):
        return 0
    return int(offset.total_seconds()) if offset is not None else 0


def user_json(user: User, ws: Workspace) -> dict[str, Any]:
    profile: dict[str, Any] = {
        "real_name": user.real_name,
        "display_name": user.name,
        "real_name_normalized": user.real_name,
        "display_name_normalized": user.name,
        "team": ws.team_id,
    }
    if user.email is not None:
        profile["email"] = user.email
    return {
        "id": user.id,
        "team_id": ws.team_id,
        "name": user.name,
        "deleted": False,
        "real_name": user.real_name,
        "tz": user.tz,
        "tz_label": user.tz,
        "tz_offset": _tz_offset(user.tz),
        "is_bot": user.is_bot,
        "is_admin": False,
        "is_owner": False,
        "is_app_user": False,
        "profile": profile,
    }
