"""The OAuth scopes a bot token needs, method by method, checked the way Slack checks them.

Conversations methods need the scope of the conversation type they act on (a public
channel needs `channels:*`, a private one `groups:*`, a DM `im:*`). Slack refuses a call
without its scope before looking at the arguments: HTTP 200 and
`{"ok": false, "error": "missing_scope", "needed": ..., "provided": ...}`.

`METHOD_SCOPES` is also what `tests/test_manifest.py` checks the app manifest against.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.sandbox.args import Args
from bot.sandbox.state import Conversation, SlackError, Workspace

PUBLIC = "public_channel"
PRIVATE = "private_channel"
PerType = Mapping[str, str]

READ: PerType = {
    PUBLIC: "channels:read",
    PRIVATE: "groups:read",
    "im": "im:read",
    "mpim": "mpim:read",
}
HISTORY: PerType = {
    PUBLIC: "channels:history",
    PRIVATE: "groups:history",
    "im": "im:history",
    "mpim": "mpim:history",
}
MANAGE: PerType = {
    PUBLIC: "channels:manage",
    PRIVATE: "groups:write",
    "im": "im:write",
    "mpim": "mpim:write",
}

# Web API method -> the scope a bot token needs: one scope, one per conversation type, or None.
METHOD_SCOPES: dict[str, str | PerType | None] = {
    "auth.test": None,
    "users.info": "users:read",
    "users.list": "users:read",
    "users.lookupByEmail": "users:read.email",
    "conversations.create": MANAGE,
    "conversations.invite": MANAGE,
    "conversations.setTopic": MANAGE,
    "conversations.setPurpose": MANAGE,
    "conversations.archive": MANAGE,
    "conversations.info": READ,
    "conversations.members": READ,
    "conversations.list": READ,
    "conversations.join": "channels:join",
    "conversations.history": HISTORY,
    "conversations.replies": HISTORY,
    "chat.postMessage": "chat:write",
    "chat.postEphemeral": "chat:write",
    "chat.update": "chat:write",
    "pins.add": "pins:write",
    "pins.remove": "pins:write",
    "pins.list": "pins:read",
    "bookmarks.add": "bookmarks:write",
    "bookmarks.list": "bookmarks:read",
    "reactions.add": "reactions:write",
    "views.open": None,
    "views.push": None,
    "views.update": None,
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
}

# Scopes that widen what a method may do, needed wherever the method is used that way.
WIDENING: dict[str, tuple[str, ...]] = {
    # post in a public channel the bot has not joined (Firebreak's announce channel)
    "chat.postMessage": ("chat:write.public",),
}

# Scopes Slack grants only together with another one.
COMPANIONS: dict[str, str] = {
    "chat:write.public": "chat:write",
    "users:read.email": "users:read",
}

# Events API event -> the scope its subscription needs (None: no scope).
EVENT_SCOPES: dict[str, str | None] = {
    "reaction_added": "reactions:read",
    "reaction_removed": "reactions:read",
    "app_mention": "app_mentions:read",
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "message.im": "im:history",
    "member_joined_channel": "channels:read",
    "channel_archive": "channels:read",
    "app_home_opened": None,
}


def _all_scopes() -> tuple[str, ...]:
    found: list[str] = []
    for needs in METHOD_SCOPES.values():
        if isinstance(needs, str):
            found.append(needs)
        elif needs is not None:
            found.extend(needs.values())
    for widening in WIDENING.values():
        found.extend(widening)
    return tuple(sorted(set(found)))


ALL_SCOPES = _all_scopes()


def scope_for(method: str, kind: str = PUBLIC) -> str | None:
    """The scope `method` needs on a conversation of type `kind`; KeyError if not emulated."""
    needs = METHOD_SCOPES[method]
    if needs is None or isinstance(needs, str):
        return needs
    return needs.get(kind)


def conversation_kind(channel: Conversation) -> str:
    if channel.is_im:
        return "im"
    return PRIVATE if channel.is_private else PUBLIC


def _kinds(ws: Workspace, method: str, args: Args) -> list[str]:
    """The conversation types one call acts on (public when the channel is unknown)."""
    if method == "conversations.list":
        return args.id_list("types") or [PUBLIC]
    if method == "conversations.create":
        return [PRIVATE if args.flag("is_private") else PUBLIC]
    channel = ws.conversations.get(args.text("channel") or "")
    return [conversation_kind(channel) if channel is not None else PUBLIC]


def check_scopes(ws: Workspace, method: str, args: Args) -> None:
    """SlackError("missing_scope") naming the first scope the call needs and the token lacks."""
    if method not in METHOD_SCOPES:
        return
    for kind in _kinds(ws, method, args):
        needed = scope_for(method, kind)
        if needed is not None and needed not in ws.scopes:
            provided = ",".join(ws.scopes)
            raise SlackError("missing_scope", details={"needed": needed, "provided": provided})
