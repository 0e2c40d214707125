"""One function per emulated Web API method: check Slack's rules, change the workspace, answer.

Each function returns the response body without `"ok": true` or raises `SlackError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bot.sandbox.args import Args, paginate
from bot.sandbox.blocks import message_blocks, modal_view
from bot.sandbox.files import complete_upload_external, get_upload_url_external
from bot.sandbox.render import channel_json, message_json, user_json
from bot.sandbox.state import (
    MAX_PURPOSE,
    MAX_TOPIC,
    Conversation,
    Ephemeral,
    SlackError,
    View,
    Workspace,
)

Body = dict[str, Any]
Method = Callable[[Workspace, Args], Body]
MAX_MESSAGE_TEXT = 40_000


def _channel(ws: Workspace, args: Args, name: str = "channel") -> Conversation:
    return ws.conversation(args.required(name, "channel_not_found"))


def _check_writable(ws: Workspace, channel: Conversation) -> None:
    """Archived channels refuse writes; the bot must be in private ones."""
    if channel.is_archived:
        raise SlackError("is_archived")
    if channel.is_private and ws.bot_user_id not in channel.members:
        raise SlackError("not_in_channel")


def _check_member(ws: Workspace, channel: Conversation) -> None:
    if channel.is_archived:
        raise SlackError("is_archived")
    if ws.bot_user_id not in channel.members:
        raise SlackError("not_in_channel")


def _message_content(args: Args) -> tuple[str, list[dict[str, Any]] | None]:
    text = args.text("text") or ""
    blocks = message_blocks(args.raw("blocks"))
    if not text and blocks is None and not args.raw("attachments"):
        raise SlackError("no_text")
    if len(text) > MAX_MESSAGE_TEXT:
        raise SlackError("msg_too_long")
    return text, blocks


# auth / users -------------------------------------------------------------------------
def auth_test(ws: Workspace, args: Args) -> Body:
    return {
        "url": "https://firebreak-sandbox.slack.com/",
        "team": "Firebreak Sandbox",
        "user": ws.user(ws.bot_user_id).name,
        "team_id": ws.team_id,
        "user_id": ws.bot_user_id,
        "bot_id": ws.bot_id,
        "is_enterprise_install": False,
    }


def users_info(ws: Workspace, args: Args) -> Body:
    return {"user": user_json(ws.user(args.required("user", "user_not_found")), ws)}


def users_lookup_by_email(ws: Workspace, args: Args) -> Body:
    return {"user": user_json(ws.user_by_email(args.required("email", "users_not_found")), ws)}


def users_list(ws: Workspace, args: Args) -> Body:
    page, cursor = paginate(list(ws.users.values()), args, 200)
    return {
        "members": [user_json(user, ws) for user in page],
        "response_metadata": {"next_cursor": cursor},
    }


# conversations ------------------------------------------------------------------------
def conversations_create(ws: Workspace, args: Args) -> Body:
    channel = ws.create_channel(
        args.text("name") or "",
        is_private=args.flag("is_private"),
        creator=ws.bot_user_id,
        members=[],
    )
    return {"channel": channel_json(channel, ws)}


def conversations_invite(ws: Workspace, args: Args) -> Body:
    channel = _channel(ws, args)
    if channel.is_im:
        raise SlackError("method_not_supported_for_channel_type")
    _check_member(ws, channel)
    users = args.id_list("users")
    if not users:
        raise SlackError("no_user")
    for user_id in users:
        ws.user(user_id)
        if user_id == ws.bot_user_id:
            raise SlackError("cant_invite_self")
    new = [user_id for user_id in dict.fromkeys(users) if user_id not in channel.members]
    if not new:
        raise SlackError("already_in_channel")
    channel.members.extend(new)
    return {"channel": channel_json(channel, ws)}


def conversations_set_topic(ws: Workspace, args: Args) -> Body:
    channel = _channel(ws, args)
    _check_member(ws, channel)
    topic = args.text("topic") or ""
    if len(topic) > MAX_TOPIC:
        raise SlackError("too_long")
    channel.topic, channel.topic_creator = topic, ws.bot_user_id
    channel.topic_last_set = int(time.time())
    return {"channel": channel_json(channel, ws)}


def conversations_set_purpose(ws: Workspace, args: Args) -> Body:
    channel = _channel(ws, args)
    _check_member(ws, channel)
    purpose = args.text("purpose") or ""
    if len(purpose) > MAX_PURPOSE:
        raise SlackError("too_long")
    channel.purpose, channel.purpose_creator = purpose, ws.bot_user_id
    channel.purpose_last_set = int(time.time())
    return {"channel": channel_json(channel, ws)}


def conversations_info(ws: Workspace, args: Args) -> Body:
    return {"channel": channel_json(_channel(ws, args), ws)}


def conversations_members(ws: Workspace, args: Args) -> Body:
    page, cursor = paginate(_channel(ws, args).members, args, 100)
    return {"members": page, "response_metadata": {"next_cursor": cursor}}


def conversations_list(ws: Workspace, args: Args) -> Body:
    types = set(args.id_list("types")) or {"public_channel"}
    exclude_archived = args.flag("exclude_archived")

    def listed(channel: Conversation) -> bool:
        if exclude_archived and channel.is_archived:
            return False
        if channel.is_im:
            return "im" in types
        if channel.is_private:
            return "private_channel" in types and ws.bot_user_id in channel.members
        return "public_channel" in types

    channels = [c for c in ws.conversations.values() if listed(c)]
    page, cursor = paginate(channels, args, 100)
    return {
        "channels": [channel_json(c, ws) for c in page],
        "response_metadata": {"next_cursor": cursor},
    }


def conversations_archive(ws: Workspace, args: Args) -> Body:
    channel = _channel(ws, args)
    if channel.is_archived:
        raise SlackError("already_archived")
    if channel.is_im:
        raise SlackError("method_not_supported_for_channel_type")
    if ws.bot_user_id not in channel.members:
        raise SlackError("not_in_channel")
    channel.is_archived = True
    return {}


def conversations_join(ws: Workspace, args: Args) -> Body:
    channel = _channel(ws, args)
    if channel.is_archived:
        raise SlackError("is_archived")
    if channel.is_private or channel.is_im:
        raise SlackError("method_not_supported_for_channel_type")
    if ws.bot_user_id not in channel.members:
        channel.members.append(ws.bot_user_id)
    return {"channel": channel_json(channel, ws)}


def conversations_history(ws: Workspace, args: Args) -> Body:
    channel = _channel(ws, args)
    top = [p for p in reversed(channel.posts.values()) if p.thread_ts in (None, p.ts)]
    page, cursor = paginate(top, args, 100)
    return {
        "messages": [message_json(p, ws) for p in page],
        "has_more": bool(cursor),
        "response_metadata": {"next_cursor": cursor},
    }


def conversations_replies(ws: Workspace, args: Args) -> Body:
    channel = _channel(ws, args)
    parent = channel.posts.get(args.required("ts", "thread_not_found"))
    if parent is None:
        raise SlackError("thread_not_found")
    thread = [p for p in channel.posts.values() if p is parent or p.thread_ts == parent.ts]
    page, cursor = paginate(thread, args, 1000)
    return {
        "messages": [message_json(p, ws) for p in page],
        "has_more": bool(cursor),
        "response_metadata": {"next_cursor": cursor},
    }


# chat ---------------------------------------------------------------------------------
def chat_post_message(ws: Workspace, args: Args) -> Body:
    channel = ws.resolve(args.required("channel", "channel_not_found"))
    _check_writable(ws, channel)
    if ws.bot_user_id not in channel.members and "chat:write.public" not in ws.scopes:
        raise SlackError("not_in_channel")
    text, blocks = _message_content(args)
    post = ws.add_post(channel, ws.bot_user_id, text, blocks, args.text("thread_ts") or None)
    return {"channel": channel.id, "ts": post.ts, "message": message_json(post, ws)}


def chat_post_ephemeral(ws: Workspace, args: Args) -> Body:
    channel = ws.resolve(args.required("channel", "channel_not_found"))
    user = ws.user(args.required("user", "user_not_found")).id
    _check_writable(ws, channel)
    if user not in channel.members:
        raise SlackError("user_not_in_channel")
    text, blocks = _message_content(args)
    ws.ephemerals.append(Ephemeral(channel.id, user, text, blocks))
    return {"message_ts": ws.new_ts()}


def chat_update(ws: Workspace, args: Args) -> Body:
    channel = _channel(ws, args)
    post = channel.post(args.required("ts", "message_not_found"))
    if post.user != ws.bot_user_id:
        raise SlackError("cant_update_message")
    if channel.is_archived:
        raise SlackError("is_archived")
    if args.raw("text") is None and args.raw("blocks") is None:
        raise SlackError("no_text")
    blocks = message_blocks(args.raw("blocks"))
    text = args.text("text")
    if text is not None:
        if len(text) > MAX_MESSAGE_TEXT:
            raise SlackError("msg_too_long")
        post.text = text
    if args.raw("blocks") is not None:
        post.blocks = blocks
    post.edited = True
    return {
        "channel": channel.id,
        "ts": post.ts,
        "text": post.text,
        "message": message_json(post, ws),
    }


# pins, bookmarks, reactions -----------------------------------------------------------
def pins_add(ws: Workspace, args: Args) -> Body:
    channel = _channel(ws, args)
    post = channel.post(args.required("timestamp", "no_item_specified"))
    if post.ts in channel.pins:
        raise SlackError("already_pinned")
    channel.pins.append(post.ts)
    return {}


def pins_remove(ws: Workspace, args: Args) -> Body:
    channel = _channel(ws, args)
    post = channel.post(args.required("timestamp", "no_item_specified"))
    if post.ts not in channel.pins:
        raise SlackError("no_pin")
    channel.pins.remove(post.ts)
    return {}


def pins_list(ws: Workspace, args: Args) -> Body:
    channel = _channel(ws, args)
    items = [
        {
            "type": "message",
            "channel": channel.id,
            "created": int(float(ts)),
            "created_by": ws.bot_user_id,
            "message": message_json(channel.posts[ts], ws),
        }
        for ts in channel.pins
    ]
    return {"items": items}


def bookmarks_add(ws: Workspace, args: Args) -> Body:
    channel = _channel(ws, args, "channel_id")
    title = args.required("title")
    kind = args.required("type")
    if kind != "link":
        raise SlackError("invalid_bookmark_type")
    link = args.required("link")
    if not link.startswith(("http://", "https://")):
        raise SlackError("invalid_link")
    if channel.is_archived:
        raise SlackError("is_archived")
    now = int(time.time())
    bookmark: Body = {
        "id": ws.new_id("Bk"),
        "channel_id": channel.id,
        "title": title,
        "link": link,
        "emoji": args.text("emoji"),
        "icon_url": None,
        "type": kind,
        "entity_id": None,
        "date_created": now,
        "date_updated": 0,
        "rank": str(len(channel.bookmarks)),
        "last_updated_by_user_id": ws.bot_user_id,
        "last_updated_by_team_id": ws.team_id,
        "shortcut_id": None,
        "app_id": None,
    }
    channel.bookmarks.append(bookmark)
    return {"bookmark": dict(bookmark)}


def bookmarks_list(ws: Workspace, args: Args) -> Body:
    channel = _channel(ws, args, "channel_id")
    return {"bookmarks": [dict(b) for b in channel.bookmarks]}


def reactions_add(ws: Workspace, args: Args) -> Body:
    channel = _channel(ws, args)
    name = args.required("name", "invalid_name").strip(":")
    post = channel.post(args.required("timestamp", "no_item_specified"))
    users = post.reactions.setdefault(name, [])
    if ws.bot_user_id in users:
        raise SlackError("already_reacted")
    users.append(ws.bot_user_id)
    return {}


# views --------------------------------------------------------------------------------
def _store_view(
    ws: Workspace,
    submitted: Body,
    view_id: str,
    trigger_id: str | None,
    previous: View | None = None,
) -> Body:
    rendered: Body = {
        "callback_id": "",
        "private_metadata": "",
        "external_id": "",
        "clear_on_close": False,
        "notify_on_close": False,
        "close": None,
        "submit": None,
        "blocks": [],
        **submitted,
        "id": view_id,
        "team_id": ws.team_id,
        "state": {"values": {}},
        "hash": f"{int(time.time())}.{ws.new_id('')}",
        "root_view_id": previous.view["root_view_id"] if previous else view_id,
        "previous_view_id": previous.id if previous else None,
        "app_id": "A0SANDBOX",
        "bot_id": ws.bot_id,
    }
    ws.views[view_id] = View(view_id, trigger_id, rendered, rendered["hash"])
    return {"view": dict(rendered)}


def views_open(ws: Workspace, args: Args) -> Body:
    trigger_id = args.required("trigger_id")
    return _store_view(ws, modal_view(args.raw("view")), ws.new_id("V"), trigger_id)


def views_push(ws: Workspace, args: Args) -> Body:
    trigger_id = args.required("trigger_id")
    previous = next(reversed(ws.views.values()), None)
    return _store_view(ws, modal_view(args.raw("view")), ws.new_id("V"), trigger_id, previous)


def views_update(ws: Workspace, args: Args) -> Body:
    view_id, external_id = args.text("view_id"), args.text("external_id")
    if not view_id and not external_id:
        raise SlackError("invalid_arguments")
    current = next(
        (
            v
            for v in ws.views.values()
            if v.id == view_id or (external_id and v.view.get("external_id") == external_id)
        ),
        None,
    )
    if current is None:
        raise SlackError("not_found")
    submitted = modal_view(args.raw("view"))
    expected = args.text("hash")
    if expected and expected != current.hash:
        raise SlackError("hash_conflict")
    submitted = {"external_id": current.view.get("external_id", ""), **submitted}
    previous = ws.views.get(current.view.get("previous_view_id") or "")
    return _store_view(ws, submitted, current.id, current.trigger_id, previous)


METHODS: dict[str, Method] = {
    "auth.test": auth_test,
    "users.info": users_info,
    "users.lookupByEmail": users_lookup_by_email,
    "users.list": users_list,
    "conversations.create": conversations_create,
    "conversations.invite": conversations_invite,
    "conversations.setTopic": conversations_set_topic,
    "conversations.setPurpose": conversations_set_purpose,
    "conversations.info": conversations_info,
    "conversations.members": conversations_members,
    "conversations.list": conversations_list,
    "conversations.archive": conversations_archive,
    "conversations.join": conversations_join,
    "conversations.history": conversations_history,
    "conversations.replies": conversations_replies,
    "chat.postMessage": chat_post_message,
    "chat.postEphemeral": chat_post_ephemeral,
    "chat.update": chat_update,
    "pins.add": pins_add,
    "pins.remove": pins_remove,
    "pins.list": pins_list,
    "bookmarks.add": bookmarks_add,
    "bookmarks.list": bookmarks_list,
    "reactions.add": reactions_add,
    "views.open": views_open,
    "views.push": views_push,
    "views.update": views_update,
    "files.getUploadURLExternal": get_upload_url_external,
    "files.completeUploadExternal": complete_upload_external,
}
