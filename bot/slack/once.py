"""One Slack request, one effect: retries and copies delivered to other replicas do nothing.

Slack retries an event it thinks we missed (`X-Slack-Retry-Num`), a load balancer may
deliver one request to two replicas, and a proxy may repeat a POST. Each of those copies
carries the same identity, so the first one to record it acts and the others are
acknowledged (HTTP 200, empty) without reaching a listener:

| request                                   | key                                         |
|-------------------------------------------|---------------------------------------------|
| Events API (`event_callback`)             | `event:<event_id>`                          |
| slash command, block action, view         | `trigger:<trigger_id>` (one per invocation) |
| submission, shortcut                      |                                             |
| block action without a trigger id         | `action:<message ts or view id>:<action_ts>:<user>` |
| view submission without a trigger id      | `view:<view id>:<view hash>`                |

Requests that change nothing (`block_suggestion`, `view_closed`, URL verification, SSL
checks) are not recorded. The key is inserted in its own short transaction before the
listener runs (`INSERT ... ON CONFLICT DO NOTHING` on the primary key), so of two copies
arriving at once on two replicas exactly one inserts; the other waits for it to commit,
finds the key and does nothing.

The record is at-most-once: if a process dies after recording a key but before doing the
work (killed mid-request), Slack's retry of that request is dropped too. What matters is
covered elsewhere: a declaration is also idempotent on its own key (`declare_key`) and is
finished by declaring again, pages and their escalations live in rows the leader's
reconcile pass completes, and a person who sees no answer runs the command again (a new
invocation, a new trigger id).

If the database cannot record the key because it failed (`bot.db.unavailable`: a terminated
connection, a restart), the request is not handled: a slash command is answered at once,
privately, that nothing was recorded and to run it again; anything else gets a 503, which
makes Slack retry an event (and show an interaction as failed). Letting it through would
break "one request, one effect" exactly when retries are likeliest, for work that would
mostly fail anyway. Any other failure to record (a bug) is logged and the request let
through: the product keeps working without the guard.

Keys are kept for a day (Slack retries for minutes); each process prunes older rows at
most every ten minutes, in the request that finds the prune due.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from slack_bolt import BoltRequest, BoltResponse
from slack_bolt.middleware import Middleware
from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite

from bot.db import Database, describe, unavailable, urgent_writes
from bot.idempotency import SlackRequest
from bot.slack import payloads

log = logging.getLogger(__name__)

KEEP = timedelta(days=1)
PRUNE_EVERY = timedelta(minutes=10)
MAX_KEY = 200
# Interactions that only read (option lists) or change nothing (a modal closed).
NOT_RECORDED = frozenset({"block_suggestion", "dialog_suggestion", "view_closed"})


def request_key(body: dict[str, Any]) -> tuple[str, str] | None:
    """(key, kind) identifying this request across retries and replicas, or None for a
    request that is not recorded. Any body shape is accepted: what is not a string where a
    string belongs counts as missing."""
    kind = _text(body.get("type"))
    if kind == "event_callback":
        event_id = _text(body.get("event_id"))
        return (_bounded(f"event:{event_id}"), "event") if event_id else None
    if kind in NOT_RECORDED or kind == "url_verification":
        return None
    if _text(body.get("command")):
        kind = "command"
    trigger_id = _text(body.get("trigger_id"))
    if trigger_id:
        return _bounded(f"trigger:{trigger_id}"), kind or "interaction"
    if kind == "block_actions":
        return _block_action_key(body), kind
    if kind == "view_submission":
        view = _object(body.get("view"))
        if _text(view.get("id")):
            return _bounded(f"view:{_text(view.get('id'))}:{_text(view.get('hash'))}"), kind
    return None


def _block_action_key(body: dict[str, Any]) -> str:
    container = _object(body.get("container"))
    where = _text(container.get("message_ts")) or _text(container.get("view_id"))
    actions = body.get("actions") if isinstance(body.get("actions"), list) else []
    stamps = ",".join(_text(_object(action).get("action_ts")) for action in actions or [])
    user = _text(_object(body.get("user")).get("id"))
    return _bounded(f"action:{where}:{stamps}:{user}")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _bounded(key: str) -> str:
    """Keys fit the column; an over-long one (never seen from Slack) is hashed."""
    if len(key) <= MAX_KEY:
        return key
    prefix = key.split(":", 1)[0]
    return f"{prefix}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


class Once(Middleware):
    """Global bolt middleware: lets the first delivery of each request through, once."""

    def __init__(self, db: Database, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.clock = clock
        self._prune_lock = threading.Lock()
        self._next_prune: datetime | None = None

    def process(
        self,
        *,
        req: BoltRequest,
        resp: BoltResponse,
        next: Callable[[], BoltResponse],
    ) -> BoltResponse | None:
        identity = request_key(req.body) if isinstance(req.body, dict) else None
        if identity is None:
            return next()
        key, kind = identity
        now = self.clock()
        try:
            first = self.record(key, kind, now)
        except Exception as error:
            if not unavailable(error):
                log.warning(
                    "could not record Slack request %s; handling it anyway", key, exc_info=True
                )
                return next()
            log.warning(
                "Slack request %s not handled: the database failed (%s)", key, describe(error)
            )
            return _database_failed(req.body)
        if not first:
            retry = req.headers.get("x-slack-retry-num", [""])[0]
            reason = req.headers.get("x-slack-retry-reason", [""])[0]
            log.info(
                "duplicate delivery of %s ignored (retry %s, reason %s)",
                key,
                retry or "-",
                reason or "-",
            )
            return BoltResponse(status=200, body="")
        self._prune_if_due(now)
        return next()

    def record(self, key: str, kind: str, now: datetime) -> bool:
        """Insert the key in its own transaction; False if it was already there."""
        values = {"key": key, "kind": kind[:40], "received_at": now}
        if self.db.engine.dialect.name == "postgresql":
            statement: Any = postgresql.insert(SlackRequest).values(values).on_conflict_do_nothing()
        else:
            statement = sqlite.insert(SlackRequest).values(values).on_conflict_do_nothing()
        # Slack waits on this (3 s, then it tells the person the command failed): on SQLite
        # it goes ahead of the other writers of this process, such as the posts queued by
        # the commands acknowledged before it.
        with urgent_writes(), self.db.engine.begin() as connection:
            inserted = connection.execute(statement.returning(SlackRequest.key)).first()
        return inserted is not None

    def prune(self, now: datetime) -> int:
        """Forget keys older than KEEP; returns how many."""
        with self.db.engine.begin() as connection:
            removed = connection.execute(
                delete(SlackRequest).where(SlackRequest.received_at < now - KEEP)
            ).rowcount
        return int(removed or 0)

    def _prune_if_due(self, now: datetime) -> None:
        with self._prune_lock:
            if self._next_prune is not None and now < self._next_prune:
                return
            self._next_prune = now + PRUNE_EVERY
        try:
            removed = self.prune(now)
        except Exception as error:  # the next prune that is due tries again
            if unavailable(error):
                log.warning("pruning old Slack request keys failed: %s", describe(error))
            else:
                log.warning("pruning old Slack request keys failed", exc_info=True)
            return
        if removed:
            log.info("pruned %d Slack request keys received before %s", removed, now - KEEP)


def _database_failed(body: dict[str, Any]) -> BoltResponse:
    """The answer to a request whose key could not be recorded: nothing was done."""
    if _text(body.get("command")):
        return BoltResponse(
            status=200, body={"response_type": "ephemeral", "text": f":x: {payloads.NOT_RECORDED}"}
        )
    return BoltResponse(status=503, body={"ok": False, "error": "database_unavailable"})
