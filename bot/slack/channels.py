"""Incident channels in Slack: set them up once, keep topic and summary current.

Setting up is a sequence of idempotent steps (create, invite, topic, summary, pin,
announce). Each step that succeeds is written to the incident row and its timeline; a step
that fails is written to the timeline and stops the sequence. Running `open()` again picks
up where it stopped. The planned channel name is saved before `conversations.create`, so if
Slack created the channel but the answer was lost, the next run adopts that channel instead
of leaving a ghost and creating `-2`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from bot import timeline
from bot.clock import Clock
from bot.config import FileConfig
from bot.db import Database, describe, unavailable
from bot.incidents import service
from bot.incidents.models import Incident
from bot.incidents.naming import channel_name
from bot.locks import Held, incident_lock
from bot.slack import blocks
from bot.slack.text import plain
from bot.strict import USER_ID

log = logging.getLogger(__name__)
MAX_NAME_ATTEMPTS = 20
OPEN_ATTEMPTS = 3


class SetupFailed(Exception):
    """A Slack step failed; the message says which, and is in the timeline too."""


@dataclass(frozen=True)
class Message:
    text: str
    blocks: list[blocks.Block]


@dataclass(frozen=True)
class Rendered:
    """What the channel's messages say, rendered from one read of the incident and its
    roles, with the ts of those already posted."""

    channel_id: str | None
    topic: str
    summary: Message
    announcement: Message
    summary_ts: str | None
    announcement_ts: str | None


@dataclass(frozen=True)
class Setup:
    incident_id: int
    reference: str
    channel_id: str


def slack_error(error: Exception) -> str:
    if isinstance(error, SlackApiError):
        return str(error.response.get("error") or f"HTTP {error.response.status_code}")
    return f"{type(error).__name__}: {error}"


class IncidentChannels:
    def __init__(self, db: Database, client: WebClient, config: FileConfig, clock: Clock) -> None:
        self.db = db
        self.client = client
        self.config = config
        self.clock = clock
        self._bot_user_id: str | None = None

    def bot_user_id(self) -> str:
        if self._bot_user_id is None:
            self._bot_user_id = str(self.client.auth_test()["user_id"])
        return self._bot_user_id

    # -- setting up -------------------------------------------------------------------

    def open(self, incident_id: int, requester: str) -> Setup:
        """Run the setup steps still to do, under the incident's lock.

        Whether anything is left to do is decided under the lock, from `set_up_at`: of two
        runs that race (the declaring worker and the reconcile pass), the second finds the
        incident set up and calls Slack no more.

        When the database fails under a step (or the lock is lost with its connection, see
        `bot.locks`), the lock is taken again and the steps still to do are run again from
        the incident's row, OPEN_ATTEMPTS times in all; then the error (`bot.db.unavailable`)
        is raised and the leader's reconcile pass finishes the setup later."""
        for attempt in range(1, OPEN_ATTEMPTS + 1):
            try:
                return self._open(incident_id, requester)
            except Exception as error:
                if attempt == OPEN_ATTEMPTS or not unavailable(error):
                    raise
                log.info(
                    "incident %s: setup stopped, the database failed (%s); again (%d of %d)",
                    incident_id,
                    describe(error),
                    attempt + 1,
                    OPEN_ATTEMPTS,
                )
                time.sleep(0.2 * attempt)
        raise AssertionError("OPEN_ATTEMPTS must be at least 1")

    def _open(self, incident_id: int, requester: str) -> Setup:
        """The steps, each a few short transactions of its own. The incident's columns a
        step writes (channel, summary and announcement ts, `set_up_at`) are written only
        under its lock, so what one read found holds for the whole setup; the messages are
        rendered once, after the channel exists, and a change made meanwhile refreshes
        them when this setup lets go of the lock (`refresh` waits for it)."""
        with incident_lock(self.db, incident_id) as held:
            with self.db.session_scope() as session:
                incident = service.get(session, incident_id)
                declarer, reference = incident.declared_by, incident.reference
                channel_id, planned = incident.channel_id, incident.channel_name
                title, finished = incident.title, incident.set_up_at is not None
            if finished and channel_id is not None:
                # Set up while this run waited for the lock: the incident's own setup and
                # the leader's reconcile pass (which chose it before the lock, while
                # `set_up_at` was NULL) both get here; only the first may call Slack.
                return Setup(incident_id, reference, channel_id)
            if channel_id is None:
                channel_id = self._create_channel(incident_id, held, planned, title)
            rendered = self._render(incident_id)
            created = channel_id
            self._step(
                incident_id,
                "invite",
                lambda: self._invite(incident_id, created, declarer, requester),
            )
            self._step(
                incident_id, "topic", lambda: self._initial_topic(incident_id, created, rendered)
            )
            self._step(
                incident_id,
                "summary",
                lambda: self._post_summary(incident_id, created, held, rendered),
            )
            self._step(
                incident_id, "announcement", lambda: self._announce(incident_id, held, rendered)
            )
            with self.db.session_scope() as session:
                session.execute(
                    update(Incident)
                    .where(Incident.id == incident_id, Incident.set_up_at.is_(None))
                    .values(set_up_at=self.clock())
                    .execution_options(synchronize_session=False)
                )
            return Setup(incident_id, reference, channel_id)

    def _render(self, incident_id: int) -> Rendered:
        with self.db.session_scope() as session:
            incident = service.get(session, incident_id)
            roles = service.roles(session, incident)
            return Rendered(
                channel_id=incident.channel_id,
                topic=blocks.topic(incident, roles.get("commander")),
                summary=Message(
                    blocks.summary_text(incident),
                    blocks.summary(incident, roles, self.config.incidents),
                ),
                announcement=Message(blocks.summary_text(incident), blocks.announcement(incident)),
                summary_ts=incident.summary_ts,
                announcement_ts=incident.announcement_ts,
            )

    def _record(self, incident_id: int, kind: str, **details: Any) -> None:
        """Append one timeline event in a transaction of its own."""
        with self.db.session_scope() as session:
            timeline.record(session, kind, now=self.clock(), incident_id=incident_id, **details)

    def _step(self, incident_id: int, what: str, action: Any) -> None:
        try:
            action()
        except (SlackApiError, OSError) as error:
            raise self._failure(incident_id, what, error) from error

    def _failure(self, incident_id: int, what: str, error: Exception) -> SetupFailed:
        """Record a failed step in the timeline; the caller raises what this returns."""
        reason = slack_error(error)
        log.warning("incident %s: %s failed: %s", incident_id, what, reason)
        self._record(
            incident_id,
            "slack_error",
            data={"step": what, "error": reason},
        )
        return SetupFailed(f"{what} failed ({reason})")

    def _create_channel(self, incident_id: int, held: Held, planned: str | None, title: str) -> str:
        """Create the channel (or adopt the one `planned` whose creation went unanswered)
        and save it to the incident."""
        prefix = self.config.incidents.channel_prefix

        def adoptable(name: str) -> str | None:
            try:
                return self._find_own_channel(name)
            except (SlackApiError, OSError) as error:
                raise self._failure(incident_id, "find channel", error) from error

        if planned:
            adopted = adoptable(planned)
            if adopted:
                return self._save_channel(incident_id, adopted, planned, adopted_channel=True)
        for attempt in range(1, MAX_NAME_ATTEMPTS + 1):
            name = channel_name(prefix, incident_id, plain(title), attempt)
            self._plan(incident_id, name)
            held.check()
            try:
                response = self.client.conversations_create(name=name, is_private=False)
            except SlackApiError as error:
                if error.response.get("error") == "name_taken":
                    adopted = adoptable(name)
                    if adopted:
                        return self._save_channel(incident_id, adopted, name, adopted_channel=True)
                    continue
                raise self._failure(incident_id, "create channel", error) from error
            except OSError as error:
                raise self._failure(incident_id, "create channel", error) from error
            channel = response["channel"]
            return self._save_channel(incident_id, channel["id"], channel["name"])
        taken = RuntimeError(f"{MAX_NAME_ATTEMPTS} names taken")
        raise self._failure(incident_id, "create channel", taken)

    def _plan(self, incident_id: int, name: str) -> None:
        with self.db.session_scope() as session:
            session.execute(
                update(Incident)
                .where(Incident.id == incident_id)
                .values(channel_name=name)
                .execution_options(synchronize_session=False)
            )

    def _find_own_channel(self, name: str) -> str | None:
        """A channel with this name that Firebreak created and no incident owns yet.

        Incident channels are public, so only public channels are listed: private ones
        would need the `groups:read` scope, which Firebreak does not ask for.
        """
        cursor = None
        while True:
            page = self.client.conversations_list(
                types="public_channel",
                exclude_archived=True,
                limit=200,
                cursor=cursor,
            )
            for channel in page["channels"]:
                if channel["name"] == name and channel.get("creator") == self.bot_user_id():
                    with self.db.session_scope() as session:
                        if service.find_by_channel(session, channel["id"]) is None:
                            return str(channel["id"])
                    return None
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None

    def _save_channel(
        self, incident_id: int, channel_id: str, name: str, *, adopted_channel: bool = False
    ) -> str:
        """Record the channel; retried while the database fails (see `_recording`)."""

        def save(session: Session) -> None:
            saved = session.execute(
                update(Incident)
                .where(
                    Incident.id == incident_id,
                    # Saved already: an unanswered COMMIT that did commit.
                    or_(Incident.channel_id.is_(None), Incident.channel_id != channel_id),
                )
                .values(channel_id=channel_id, channel_name=name)
                .execution_options(synchronize_session=False)
            )
            if _rowcount(saved):
                timeline.record(
                    session,
                    "channel_created",
                    now=self.clock(),
                    incident_id=incident_id,
                    data={"channel": channel_id, "name": name, "adopted": adopted_channel},
                )

        self.db.retrying(save)
        return channel_id

    def _invite(self, incident_id: int, channel_id: str, *users: str) -> None:
        """Invite `users` into the channel; each invitation is recorded once. Ids that are
        not Slack users (Firebreak itself declaring for an alert) are skipped."""
        for user in dict.fromkeys(user for user in users if USER_ID.match(user)):
            invite = partial(self.client.conversations_invite, channel=channel_id, users=user)
            _allowing("already_in_channel", invite)
            self._record(
                incident_id,
                "responder_invited",
                data={"user": user},
                dedup_key=f"invite:{user}",
            )

    def invite_quietly(self, incident_id: int, channel_id: str, user: str) -> None:
        """Bring a new role holder into the channel; a failure is recorded, not raised."""
        with incident_lock(self.db, incident_id):
            self._try_update(
                incident_id, "members", lambda: self._invite(incident_id, channel_id, user)
            )

    def _initial_topic(self, incident_id: int, channel_id: str, rendered: Rendered) -> None:
        self.client.conversations_setTopic(channel=channel_id, topic=rendered.topic)
        self._record(
            incident_id, "topic_set", data={"topic": rendered.topic}, dedup_key="topic:initial"
        )

    def _post_summary(
        self, incident_id: int, channel_id: str, held: Held, rendered: Rendered
    ) -> None:
        summary_ts, summary = rendered.summary_ts, rendered.summary
        if summary_ts is None:
            held.check()
            response = self.client.chat_postMessage(
                channel=channel_id, text=summary.text, blocks=summary.blocks
            )
            summary_ts = str(response["ts"])
            self._recording(incident_id, "summary_ts", summary_ts, "summary_posted", {})
        pinned = summary_ts
        _allowing(
            "already_pinned", lambda: self.client.pins_add(channel=channel_id, timestamp=pinned)
        )
        self._record(
            incident_id, "summary_pinned", data={"ts": pinned}, dedup_key=f"pin-summary:{pinned}"
        )

    def _announce(self, incident_id: int, held: Held, rendered: Rendered) -> None:
        announce_channel = self.config.slack.announce_channel
        if announce_channel is None or rendered.announcement_ts is not None:
            return
        held.check()
        message = rendered.announcement
        ts = str(
            self.client.chat_postMessage(
                channel=announce_channel, text=message.text, blocks=message.blocks
            )["ts"]
        )
        self._recording(
            incident_id, "announcement_ts", ts, "announced", {"channel": announce_channel}
        )

    def _recording(
        self, incident_id: int, column: str, ts: str, kind: str, data: dict[str, object]
    ) -> None:
        """Save the ts of a message just posted (the summary, the announcement) and its fact.

        Retried while the database fails (`Database.retrying`): were the write lost with a
        dropped connection, the next run of the setup would post the message again. A rerun
        whose earlier COMMIT did commit finds the ts saved and writes nothing more."""

        def save(session: Session) -> None:
            saved = session.execute(
                update(Incident)
                .where(Incident.id == incident_id, getattr(Incident, column).is_(None))
                .values({column: ts})
                .execution_options(synchronize_session=False)
            )
            if _rowcount(saved):
                timeline.record(
                    session,
                    kind,
                    now=self.clock(),
                    incident_id=incident_id,
                    data={**data, "ts": ts},
                )

        self.db.retrying(save)

    # -- keeping it current -----------------------------------------------------------

    def refresh(self, incident_id: int, *, strict: bool = False) -> None:
        """Bring topic, pinned summary and announcement up to the incident's current state.

        Serialised per incident and reading the state inside the lock, so the last refresh
        always shows the latest state even when two changes race. Each part is tried; a
        failure is logged and written to the timeline, or, when `strict` (the outbox, which
        retries and records what finally failed), raised after trying the others.
        """
        with incident_lock(self.db, incident_id) as held:
            rendered = self._render(incident_id)
            channel_id, topic = rendered.channel_id, rendered.topic
            summary_ts, announcement_ts = rendered.summary_ts, rendered.announcement_ts
            summary, announcement = rendered.summary, rendered.announcement
            if channel_id is None:
                return
            failures: list[Exception] = []
            attempt = partial(self._try_update, incident_id, failures=failures if strict else None)
            held.check()
            attempt(
                "topic",
                lambda: self.client.conversations_setTopic(channel=channel_id, topic=topic),
            )
            if summary_ts is not None:
                held.check()
                attempt("summary", lambda: self._update(channel_id, summary_ts, summary))
            announce_channel = self.config.slack.announce_channel
            if announcement_ts is not None and announce_channel is not None:
                held.check()
                attempt(
                    "announcement",
                    lambda: self._update(announce_channel, announcement_ts, announcement),
                )
            if failures:
                raise failures[0]

    def _update(self, channel_id: str, ts: str, message: Message) -> None:
        self.client.chat_update(channel=channel_id, ts=ts, text=message.text, blocks=message.blocks)

    def _try_update(
        self,
        incident_id: int,
        what: str,
        update: Callable[[], object],
        failures: list[Exception] | None = None,
    ) -> None:
        try:
            update()
        except (SlackApiError, OSError) as error:
            reason = slack_error(error)
            log.warning("incident %s: updating the %s failed: %s", incident_id, what, reason)
            if failures is not None:
                failures.append(error)
                return
            self._record(
                incident_id,
                "slack_error",
                data={"step": f"update {what}", "error": reason},
            )


def _rowcount(result: Any) -> int:
    """Rows an UPDATE matched (`CursorResult.rowcount`; `Session.execute` types it as a
    plain `Result`)."""
    return int(result.rowcount)


def _allowing(harmless_error: str, call: Callable[[], object]) -> None:
    """Make a Web API call for which one error means "already done" (a rerun's repeat)."""
    try:
        call()
    except SlackApiError as error:
        if error.response.get("error") != harmless_error:
            raise
