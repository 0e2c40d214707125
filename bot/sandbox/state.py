"""The sandbox workspace: its records, the copies handed to callers, and Slack's rules about them.

Nothing here is thread-safe on its own; `SlackSandbox` holds one lock around every use.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MAX_CHANNEL_NAME = 80
MAX_TOPIC = 250
MAX_PURPOSE = 250
_CHANNEL_NAME = re.compile(r"[a-z0-9_-]+")
_USER_ID = re.compile(r"[UW][A-Z0-9]+")


class SlackError(ValueError):
    """A Slack error code, answered as `{"ok": false, "error": code, **details}`."""

    def __init__(
        self, code: str, messages: list[str] | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(code)
        self.code = code
        self.messages = messages or []
        self.details = details or {}


@dataclass(frozen=True)
class User:
    id: str
    name: str
    real_name: str
    email: str | None = None
    tz: str = "UTC"
    is_bot: bool = False


@dataclass(frozen=True)
class Channel:
    id: str
    name: str
    is_private: bool
    created: int
    creator: str
    members: list[str]
    topic: str
    purpose: str
    is_archived: bool
    is_im: bool = False


@dataclass(frozen=True)
class Message:
    ts: str
    channel: str
    user: str
    text: str
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None
    edited: bool
    reactions: dict[str, list[str]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # ids of files shared with the message


@dataclass
class File:
    """A file of the external upload flow (files.getUploadURLExternal, the upload URL,
    files.completeUploadExternal); `content` is None until the upload URL received it."""

    id: str
    name: str
    length: int
    upload_token: str
    url_expires: float
    created: int
    user: str
    title: str = ""
    content: bytes | None = None
    completed: bool = False
    channels: list[str] = field(default_factory=list)
    snippet_type: str | None = None


@dataclass(frozen=True)
class Ephemeral:
    channel: str
    user: str
    text: str
    blocks: list[dict[str, Any]] | None


@dataclass(frozen=True)
class View:
    id: str
    trigger_id: str | None
    view: dict[str, Any]
    hash: str


@dataclass(frozen=True)
class ResponseUrlPost:
    response_id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Call:
    method: str
    params: dict[str, Any]
    status: int
    response: dict[str, Any]
    at: float


@dataclass
class Post:
    """A message as stored; `Message` is the copy callers get."""

    ts: str
    channel: str
    user: str
    text: str
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None = None
    edited: bool = False
    reactions: dict[str, list[str]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def public(self) -> Message:
        return Message(
            ts=self.ts,
            channel=self.channel,
            user=self.user,
            text=self.text,
            blocks=copy.deepcopy(self.blocks),
            thread_ts=self.thread_ts,
            edited=self.edited,
            reactions={name: list(users) for name, users in self.reactions.items()},
            files=list(self.files),
        )


@dataclass
class Conversation:
    """A channel or DM as stored; `Channel` is the copy callers get."""

    id: str
    name: str
    is_private: bool
    created: int
    creator: str
    members: list[str]
    topic: str = ""
    topic_creator: str = ""
    topic_last_set: int = 0
    purpose: str = ""
    purpose_creator: str = ""
    purpose_last_set: int = 0
    is_archived: bool = False
    is_im: bool = False
    posts: dict[str, Post] = field(default_factory=dict)
    pins: list[str] = field(default_factory=list)
    bookmarks: list[dict[str, Any]] = field(default_factory=list)

    def public(self) -> Channel:
        return Channel(
            id=self.id,
            name=self.name,
            is_private=self.is_private,
            created=self.created,
            creator=self.creator,
            members=list(self.members),
            topic=self.topic,
            purpose=self.purpose,
            is_archived=self.is_archived,
            is_im=self.is_im,
        )

    def post(self, ts: str) -> Post:
        found = self.posts.get(ts)
        if found is None:
            raise SlackError("message_not_found")
        return found


def validate_channel_name(name: str) -> None:
    """Slack's conversations.create name rules (uppercase is rejected, not lowered)."""
    if not name:
        raise SlackError("invalid_name_required")
    if len(name) > MAX_CHANNEL_NAME:
        raise SlackError("invalid_name_maxlength")
    if not _CHANNEL_NAME.fullmatch(name):
        raise SlackError("invalid_name_specials")


class Workspace:
    """Users, conversations, views, response_url traffic and bot scopes of one sandbox team."""

    def __init__(self, team_id: str, bot_user_id: str, scopes: Iterable[str] = ()) -> None:
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.scopes = tuple(dict.fromkeys(scopes))
        self.bot_id = "B" + bot_user_id.removeprefix("U")[:10]
        self.users: dict[str, User] = {}
        self.conversations: dict[str, Conversation] = {}
        self.views: dict[str, View] = {}
        self.ephemerals: list[Ephemeral] = []
        self.responses: list[ResponseUrlPost] = []
        self.files: dict[str, File] = {}
        # Where upload URLs point (set by the server once it listens), and how long they live.
        self.upload_base = ""
        self.upload_url_ttl = 600.0
        self._counters: dict[str, int] = {}
        self._last_ts_us = 0
        self.add_user(User(bot_user_id, "firebreak", "Firebreak", is_bot=True))

    # identifiers -----------------------------------------------------------------
    def new_id(self, prefix: str) -> str:
        count = self._counters.get(prefix, 0) + 1
        self._counters[prefix] = count
        return f"{prefix}{count:010d}"

    def new_ts(self) -> str:
        """A unique, strictly increasing message timestamp like "1732150000.000100"."""
        now_us = max(int(time.time() * 1_000_000), self._last_ts_us + 1)
        self._last_ts_us = now_us
        return f"{now_us // 1_000_000}.{now_us % 1_000_000:06d}"

    # users -----------------------------------------------------------------------
    def add_user(self, user: User) -> None:
        self.users[user.id] = user

    def user(self, user_id: str) -> User:
        found = self.users.get(user_id)
        if found is None:
            raise SlackError("user_not_found")
        return found

    def user_by_email(self, email: str) -> User:
        for user in self.users.values():
            if user.email is not None and user.email.lower() == email.lower():
                return user
        raise SlackError("users_not_found")

    # conversations ---------------------------------------------------------------
    def create_channel(
        self, name: str, *, is_private: bool, creator: str, members: list[str]
    ) -> Conversation:
        validate_channel_name(name)
        if self.by_name(name) is not None:
            raise SlackError("name_taken")
        for member in members:
            self.user(member)
        channel = Conversation(
            id=self.new_id("C"),
            name=name,
            is_private=is_private,
            created=int(time.time()),
            creator=creator,
            members=list(dict.fromkeys([creator, *members])),
        )
        self.conversations[channel.id] = channel
        return channel

    def by_name(self, name: str) -> Conversation | None:
        for channel in self.conversations.values():
            if not channel.is_im and channel.name == name:
                return channel
        return None

    def conversation(self, channel_id: str) -> Conversation:
        found = self.conversations.get(channel_id)
        if found is None:
            raise SlackError("channel_not_found")
        return found

    def resolve(self, channel: str) -> Conversation:
        """A `channel` argument of chat.*: a conversation ID, a user ID (their DM) or "#name"."""
        if channel in self.conversations:
            return self.conversations[channel]
        if _USER_ID.fullmatch(channel) and channel in self.users:
            return self.dm_with(channel)
        named = self.by_name(channel.removeprefix("#"))
        if named is None:
            raise SlackError("channel_not_found")
        return named

    def dm_with(self, user_id: str) -> Conversation:
        for channel in self.conversations.values():
            if channel.is_im and channel.name == user_id:
                return channel
        dm = Conversation(
            id=self.new_id("D"),
            name=user_id,
            is_private=True,
            created=int(time.time()),
            creator=self.bot_user_id,
            members=[self.bot_user_id, user_id] if user_id != self.bot_user_id else [user_id],
            is_im=True,
        )
        self.conversations[dm.id] = dm
        return dm

    def add_post(
        self,
        channel: Conversation,
        user: str,
        text: str,
        blocks: list[dict[str, Any]] | None,
        thread_ts: str | None = None,
    ) -> Post:
        post = Post(self.new_ts(), channel.id, user, text, copy.deepcopy(blocks), thread_ts)
        channel.posts[post.ts] = post
        return post
