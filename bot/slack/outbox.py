"""Sending the outbox (`bot.outbox`) to Slack, and finishing incidents left half set up.

`deliver(ids)` is called right after the transaction that wrote the items, by the process
that wrote them; whatever Slack did not take (an outage, a 429) waits with backoff and
`Retry-After`, and the scheduler leader's `reconcile` sends it when it is due. Items of an
incident go out in order. A refresh re-renders the topic, pinned summary and announcement
from the incident as it is then, so a late refresh never shows an older state.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import outbox
from bot.clock import Clock
from bot.db import Database, background_writes, describe, unavailable, where
from bot.incidents import service
from bot.incidents.models import Incident
from bot.slack import alerts
from bot.slack.channels import IncidentChannels, SetupFailed, slack_error

log = logging.getLogger(__name__)
# Errors that no retry can mend: the post is recorded as failed in the incident's timeline.
PERMANENT = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_blocks",
        "invalid_blocks_format",
        "msg_too_long",
        "no_text",
        "missing_scope",
        "not_authed",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
    }
)
GRACE = timedelta(seconds=2)  # a just-due item is being sent by its maker
# How long one `deliver` goes on starting sends (its own items, then what queued up behind
# them); the rest is the next sender's, or the leader's reconcile pass's. The pass itself
# stops sooner: it runs every 5 s and has escalations and setups to look after too.
FOLLOW_FOR = 30.0
RECONCILE_BUDGET = 3.0
MAX_ROUNDS = 10_000  # a bound, never reached: each round sends at least one item
SETUP_RETRY = timedelta(seconds=30)  # how often reconcile retries an unfinished setup
# A setup younger than this is left to whoever declared the incident: it is still running
# (its steps are lock-guarded; this only keeps reconcile from waiting on the lock for nothing).
SETUP_GRACE = timedelta(seconds=5)


@dataclass(frozen=True)
class Delivery:
    sent: int
    waiting: int  # items asked for that are still queued (Slack did not take them yet)


# What `files_upload_v2` calls (named here so the manifest's scope check sees them).
UPLOAD_METHODS = (WebClient.files_getUploadURLExternal, WebClient.files_completeUploadExternal)


def upload_draft(client: WebClient, body: dict[str, object]) -> str | None:
    """Upload a postmortem draft (outbox kind `upload`) with files.getUploadURLExternal,
    the upload URL and files.completeUploadExternal; returns the file id."""
    response = client.files_upload_v2(
        channel=str(body["channel"]),
        content=str(body["content"]),
        filename=str(body["filename"]),
        title=str(body.get("title") or body["filename"]),
        initial_comment=str(body.get("comment") or "") or None,
    )
    file = response.get("file") or {}
    return str(file.get("id")) if isinstance(file, dict) and file.get("id") else None


def record_drafted(
    session: Session, item: outbox.Claimed, file_id: str | None, now: datetime
) -> None:
    """The `postmortem_drafted` fact, in the transaction that marks the upload sent."""
    from bot.timeline import record

    record(
        session,
        "postmortem_drafted",
        now=now,
        actor=str(item.body.get("user") or "firebreak"),
        incident_id=item.incident_id,
        data={
            "template": item.body.get("template"),
            "path": item.body.get("path"),
            "file": file_id,
        },
    )


class SlackOutbox:
    def __init__(
        self, db: Database, client: WebClient, channels: IncidentChannels, clock: Clock
    ) -> None:
        self.db = db
        self.client = client
        self.channels = channels
        self.clock = clock
        self._setup_tries: dict[int, datetime] = {}
        self._setup_lock = threading.Lock()

    def deliver(self, ids: list[int] | None = None, *, budget: float = FOLLOW_FOR) -> Delivery:
        """Send these items (or every due one), in order per incident, until none is left
        that can go now; then go on with whatever became due behind them in the incidents
        they belong to. No new round starts after `budget` seconds.

        Only one item of an incident is out at a time, so when many are queued at once (a
        burst of notes in one channel) most makers find theirs waiting behind another's.
        The sender that finishes an item takes the next one of its incident, so the queue
        drains at the pace Slack answers, not one item per incident per reconcile pass
        (1,120 notes into one channel were posted 70 s after the last acknowledgement)."""
        if ids is not None and not ids:
            return Delivery(0, 0)  # nothing queued: no transaction
        sent = 0
        followed: set[int] = set()  # incidents this call sent an item of
        until = time.monotonic() + budget
        for _ in range(MAX_ROUNDS):  # each round unblocks the next item of each incident
            with self.db.session_scope() as session:
                claimed = outbox.claim(session, self.clock(), ids)
                if not claimed and followed:
                    claimed = outbox.claim(session, self.clock(), incidents=sorted(followed))
            if not claimed:
                break
            for item in claimed:
                done = self._attempt(item)
                sent += done
                if done and item.incident_id is not None:
                    followed.add(item.incident_id)
            if time.monotonic() >= until:
                break
        if ids is None:
            return Delivery(sent, 0)
        with self.db.session_scope() as session:
            still = session.scalars(
                select(outbox.OutboxItem.id).where(
                    outbox.OutboxItem.id.in_(ids), outbox.OutboxItem.status.in_(outbox.WAITING)
                )
            ).all()
        return Delivery(sent, len(still))

    def _attempt(self, item: outbox.Claimed) -> int:
        error, retryable, retry_after = None, True, None
        file_id: str | None = None
        try:
            if item.kind == outbox.POST:
                self.client.chat_postMessage(
                    channel=item.body["channel"],
                    text=item.body["text"],
                    blocks=item.body.get("blocks"),
                    unfurl_links=False,
                    unfurl_media=False,
                )
            elif item.kind == outbox.UPLOAD:
                file_id = upload_draft(self.client, item.body)
            elif item.kind == outbox.REFRESH and item.incident_id is not None:
                self.channels.refresh(item.incident_id, strict=True)
            elif item.kind == alerts.ALERTS:
                alerts.send_summary(self.db, self.client, self.clock, int(item.body["group"]))
        except SlackApiError as failure:
            error = slack_error(failure)
            retryable = error not in PERMANENT
            header = (failure.response.headers or {}).get("Retry-After") or (
                failure.response.headers or {}
            ).get("retry-after")
            seconds = str(header or "")
            retry_after = float(seconds) if seconds.isascii() and seconds.isdigit() else None
        except (OSError, SlackRequestError) as failure:  # the upload URL failed: retried
            error = slack_error(failure) if isinstance(failure, OSError) else str(failure)
        except alerts.ChannelNotReady as failure:  # the setup is still running: retried
            error = str(failure)
        except Exception as failure:  # a bug must not wedge the queue: retried, and logged
            if unavailable(failure):  # a refresh reads the incident; the database failed
                error = f"the database failed: {describe(failure)}"
            else:
                log.exception("outbox item %s failed", item.id)
                error = f"{type(failure).__name__}: {failure}"

        def record(session: Session) -> None:
            row = session.get(outbox.OutboxItem, item.id, with_for_update=True)
            if row is None or row.status != "sending":  # recorded by an earlier try
                return
            again = outbox.finish(
                session,
                item.id,
                now=self.clock(),
                error=error,
                retryable=retryable,
                retry_after=retry_after,
            )
            if error is None and item.kind == outbox.UPLOAD and item.incident_id is not None:
                record_drafted(session, item, file_id, self.clock())
            if error is not None and again is None and item.incident_id is not None:
                what = {
                    outbox.POST: "post in the channel",
                    outbox.UPLOAD: "upload the postmortem draft",
                }.get(item.kind, "refresh the topic and summary")
                service.record(
                    session,
                    service.get(session, item.incident_id),
                    "slack_error",
                    now=self.clock(),
                    data={"step": what, "error": error},
                )

        # Retried while the database fails: were this lost with a dropped connection, the
        # item would stay "sending" and be sent again once its lease ran out.
        self.db.retrying(record)
        if error is not None:
            log.warning("outbox item %s (%s) not sent: %s", item.id, item.kind, error)
        return int(error is None)

    # -- the leader's reconcile pass -------------------------------------------------

    def reconcile(self) -> None:
        """Send what is due (past its maker's grace), and finish unfinished setups."""
        now = self.clock()
        try:
            with self.db.session_scope() as session:
                due = [item_id for item_id, at in outbox.due_times(session) if at <= now - GRACE]
            if due:
                # The safety net's sends let this process's requests write first (SQLite).
                with background_writes():
                    self.deliver(due, budget=RECONCILE_BUDGET)
        except Exception as error:
            if not unavailable(error):
                raise
            log.warning(
                "sending the outbox stopped at %s, the database failed (%s); the next pass goes on",
                where(error),
                describe(error),
            )
        self.finish_setups()

    def finish_setups(self) -> None:
        """Run the setup of every open incident that was left half done (a Slack outage, a
        crash, the database failing), past SETUP_GRACE after its declaration and at most
        every SETUP_RETRY per incident while Slack fails it (at once again if it was the
        database that failed); `IncidentChannels.open` is idempotent and takes the
        incident's lock, so it never doubles a step."""
        now = self.clock()
        with self.db.session_scope() as session:
            unfinished = session.execute(
                select(Incident.id, Incident.declared_by).where(
                    Incident.set_up_at.is_(None),
                    Incident.resolved_at.is_(None),
                    Incident.declared_at <= now - SETUP_GRACE,
                )
            ).all()
        with self._setup_lock:
            open_ids = {incident_id for incident_id, _ in unfinished}
            for stale in set(self._setup_tries) - open_ids:
                del self._setup_tries[stale]
            due = [
                (incident_id, declared_by)
                for incident_id, declared_by in unfinished
                if self._setup_tries.get(incident_id, now - SETUP_RETRY) <= now - SETUP_RETRY
            ]
            for incident_id, _ in due:
                self._setup_tries[incident_id] = now
        for incident_id, declared_by in due:
            try:
                # The safety net's setups let requests go first (bot.priority); the look-up
                # above does not wait (on SQLite every transaction takes a write turn).
                with background_writes():
                    self.channels.open(incident_id, declared_by)
            except SetupFailed as failed:
                log.info("incident %s: setup still unfinished: %s", incident_id, failed)
            except Exception as error:
                if not unavailable(error):
                    raise
                with self._setup_lock:  # Slack was not the trouble: the next pass tries again
                    self._setup_tries.pop(incident_id, None)
                log.warning(
                    "incident %s: setup stopped at %s, the database failed (%s); the next "
                    "pass goes on",
                    incident_id,
                    where(error),
                    describe(error),
                )
