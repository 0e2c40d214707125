"""Slack's Socket Mode side, emulated: `apps.connections.open` tickets and the WebSocket.

What a Socket Mode app sees from Slack, over a real WebSocket (the `websockets` library):

- `apps.connections.open` (an app-level `xapp-` token with `connections:write`) answers
  `{"ok": true, "url": "ws://127.0.0.1:PORT/link/?ticket=...&app_id=..."}`; a ticket opens
  one connection, once.
- On connecting, the app gets `{"type": "hello", "num_connections": N, ...}`.
- Envelopes: `{"envelope_id", "type": "slash_commands" | "interactive" | "events_api",
  "payload", "accepts_response_payload", "retry_attempt", "retry_reason"}`. The app
  acknowledges with `{"envelope_id": ..., "payload": {...}}` (the payload only where
  `accepts_response_payload` is true: a slash command's answer, a modal's errors). An
  envelope not acknowledged within `ack_deadline` (3 s, as Slack) is sent again, with
  `retry_attempt` counting up and `retry_reason` "timeout", up to `max_retries` times.
- With several connections open, envelopes go round-robin across them (Slack spreads them).
- `disconnect(reason)` sends `{"type": "disconnect", "reason": ...}`: "warning" and
  "refresh_requested" ask the app to reconnect (the link closes after `refresh_grace`
  seconds if the app has not closed it), "link_disabled" closes it at once. `drop()` cuts
  the TCP connection without a closing handshake, as a failed network does.

Every delivery is recorded (`envelopes()`), with each attempt, the connection it went to and
the acknowledgement's payload, which is how a test sees what the user was answered.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

ENVELOPE_TYPES = ("slash_commands", "interactive", "events_api")
DISCONNECT_REASONS = ("warning", "refresh_requested", "link_disabled")
# Interactions whose acknowledgement may carry a response (Slack's accepts_response_payload).
_RESPONDING_INTERACTIONS = {"view_submission", "block_suggestion", "dialog_suggestion"}
APP_ID = "A0FIREBREAK"
MAX_CONNECTIONS = 10  # Slack's limit per app
# websockets logs every connection at INFO: the sandbox keeps to warnings.
_QUIET = logging.getLogger("bot.sandbox.socket_mode.server")
_QUIET.setLevel(logging.WARNING)


class NotAcknowledged(Exception):
    """Every attempt to deliver an envelope went unacknowledged."""

    def __init__(self, envelope: Envelope) -> None:
        super().__init__(
            f"envelope {envelope.envelope_id} ({envelope.type}) was not acknowledged after "
            f"{len(envelope.attempts)} attempt(s)"
        )
        self.envelope = envelope


@dataclass
class Attempt:
    link: str | None  # None: no connection was open to send it on
    sent_at: float
    retry_attempt: int


@dataclass
class Envelope:
    """One delivery, its attempts and its acknowledgement."""

    envelope_id: str
    type: str
    payload: dict[str, Any]
    accepts_response_payload: bool
    attempts: list[Attempt] = field(default_factory=list)
    acked_at: float | None = None
    acked_on: str | None = None
    response: dict[str, Any] | None = None  # the ack's payload, when it had one
    _acked: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def acknowledged(self) -> bool:
        return self.acked_at is not None

    def public(self) -> dict[str, Any]:
        return {
            "envelope_id": self.envelope_id,
            "type": self.type,
            "payload": self.payload,
            "accepts_response_payload": self.accepts_response_payload,
            "attempts": [
                {"link": a.link, "sent_at": a.sent_at, "retry_attempt": a.retry_attempt}
                for a in self.attempts
            ],
            "acknowledged": self.acknowledged,
            "acked_on": self.acked_on,
            "response": self.response,
        }


@dataclass
class Link:
    """One open WebSocket connection of the app."""

    id: str
    connection: ServerConnection
    opened_at: float
    draining: bool = False  # a disconnect was sent: no new envelopes
    closed: bool = False
    delivered: int = 0

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "opened_at": self.opened_at,
            "draining": self.draining,
            "closed": self.closed,
            "delivered": self.delivered,
        }


class SocketMode:
    """The WebSocket server of one sandbox; started on the first `apps.connections.open`."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.ack_deadline = 3.0
        self.max_retries = 3
        self.refresh_grace = 10.0
        self._lock = threading.Condition()
        self._tickets: set[str] = set()
        self._links: dict[str, Link] = {}
        self._envelopes: dict[str, Envelope] = {}
        self._order: list[str] = []
        self._round_robin = itertools.count()
        self._link_ids = itertools.count(1)
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._timers: list[threading.Timer] = []

    # lifecycle -------------------------------------------------------------------------
    def _ensure_started(self) -> int:
        with self._lock:
            if self._server is None:
                server = serve(
                    self._handle,
                    self.host,
                    0,
                    process_request=self._check_ticket,
                    ping_interval=None,
                    close_timeout=2,
                    logger=_QUIET,
                )
                thread = threading.Thread(
                    target=server.serve_forever, name="sandbox-socket-mode", daemon=True
                )
                thread.start()
                self._server, self._thread = server, thread
            port: int = self._server.socket.getsockname()[1]
            return port

    def stop(self) -> None:
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            timers, self._timers = self._timers, []
            links = list(self._links.values())
            self._lock.notify_all()
        for timer in timers:
            timer.cancel()
        for link in links:
            with contextlib.suppress(Exception):
                link.connection.close()
        if server is not None:
            server.shutdown()
        if thread is not None:
            thread.join(timeout=5)

    # apps.connections.open -------------------------------------------------------------
    def open_url(self) -> str:
        """A new single-use WebSocket URL (what apps.connections.open answers)."""
        port = self._ensure_started()
        ticket = secrets.token_hex(16)
        with self._lock:
            self._tickets.add(ticket)
        return f"ws://{self.host}:{port}/link/?ticket={ticket}&app_id={APP_ID}"

    def _check_ticket(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        ticket = (parse_qs(url.query).get("ticket") or [""])[0]
        with self._lock:
            known = url.path.rstrip("/") == "/link" and ticket in self._tickets
            self._tickets.discard(ticket)
            full = len([link for link in self._links.values() if not link.closed])
        if not known:
            return connection.respond(
                HTTPStatus.UNAUTHORIZED,
                "invalid or used ticket: call apps.connections.open again\n",
            )
        if full >= MAX_CONNECTIONS:
            return connection.respond(
                HTTPStatus.TOO_MANY_REQUESTS,
                f"too many connections (Slack allows {MAX_CONNECTIONS})\n",
            )
        return None

    # the connection --------------------------------------------------------------------
    def _handle(self, connection: ServerConnection) -> None:
        with self._lock:
            link = Link(f"L{next(self._link_ids)}", connection, time.time())
            self._links[link.id] = link
            count = len(self.open_links())
        try:
            connection.send(
                json.dumps(
                    {
                        "type": "hello",
                        "num_connections": count,
                        "debug_info": {
                            "host": f"sandbox-{link.id}",
                            "build_number": 1,
                            "approximate_connection_time": int(self.refresh_grace * 1000),
                        },
                        "connection_info": {"app_id": APP_ID},
                    }
                )
            )
            with self._lock:
                self._lock.notify_all()  # a delivery may be waiting for a connection
            for message in connection:
                self._acknowledged(link, message)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                link.closed = True
                self._lock.notify_all()

    def _acknowledged(self, link: Link, message: str | bytes) -> None:
        try:
            data = json.loads(message)
        except ValueError:
            return
        if not isinstance(data, dict) or not isinstance(data.get("envelope_id"), str):
            return
        with self._lock:
            envelope = self._envelopes.get(data["envelope_id"])
            if envelope is None or envelope.acknowledged:
                return
            envelope.acked_at = time.time()
            envelope.acked_on = link.id
            payload = data.get("payload")
            if envelope.accepts_response_payload and isinstance(payload, dict) and payload:
                envelope.response = payload
            envelope._acked.set()

    def open_links(self) -> list[Link]:
        with self._lock:
            return [link for link in self._links.values() if not link.closed]

    def wait_for_links(self, count: int = 1, timeout: float = 10.0) -> list[Link]:
        """Wait until `count` connections are open and taking envelopes; those links."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                ready = [link for link in self.open_links() if not link.draining]
                if len(ready) >= count:
                    return ready
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{len(ready)} Socket Mode connection(s) open, {count} expected"
                    )
                self._lock.wait(left)

    # delivering ------------------------------------------------------------------------
    def deliver(self, kind: str, payload: dict[str, Any], *, first_attempt: int = 0) -> Envelope:
        """Send an envelope and wait for its acknowledgement, redelivering after each
        `ack_deadline` without one; NotAcknowledged after the last attempt."""
        if kind not in ENVELOPE_TYPES:
            raise ValueError(f"envelope type must be one of {', '.join(ENVELOPE_TYPES)}")
        envelope = Envelope(
            envelope_id=f"{time.time():.0f}-{secrets.token_hex(8)}",
            type=kind,
            payload=payload,
            accepts_response_payload=_accepts_response(kind, payload),
        )
        with self._lock:
            self._envelopes[envelope.envelope_id] = envelope
            self._order.append(envelope.envelope_id)
        for retry in range(first_attempt, first_attempt + self.max_retries + 1):
            deadline = time.monotonic() + self.ack_deadline
            link = self._send(envelope, retry, deadline)
            if link is not None and envelope._acked.wait(max(0.0, deadline - time.monotonic())):
                return envelope
            if envelope.acknowledged:
                return envelope
        raise NotAcknowledged(envelope)

    def _send(self, envelope: Envelope, retry: int, deadline: float) -> Link | None:
        """Send on the next open link (waiting for one until `deadline`); the link used."""
        message = json.dumps(
            {
                "envelope_id": envelope.envelope_id,
                "type": envelope.type,
                "payload": envelope.payload,
                "accepts_response_payload": envelope.accepts_response_payload,
                "retry_attempt": retry,
                "retry_reason": "timeout" if retry else "",
            }
        )
        while True:
            with self._lock:
                ready = [
                    link for link in self._links.values() if not link.closed and not link.draining
                ]
                while not ready:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._server is None:
                        envelope.attempts.append(Attempt(None, time.time(), retry))
                        return None
                    self._lock.wait(left)
                    ready = [
                        link
                        for link in self._links.values()
                        if not link.closed and not link.draining
                    ]
                link = ready[next(self._round_robin) % len(ready)]
                envelope.attempts.append(Attempt(link.id, time.time(), retry))
                link.delivered += 1
            try:
                link.connection.send(message)
                return link
            except ConnectionClosed:
                with self._lock:
                    link.closed = True  # try the next one at once

    # connection faults -----------------------------------------------------------------
    def disconnect(
        self, reason: str = "refresh_requested", link_id: str | None = None
    ) -> list[str]:
        """Send `disconnect` on one link or all open ones; the ids of the links told."""
        if reason not in DISCONNECT_REASONS:
            raise ValueError(f"reason must be one of {', '.join(DISCONNECT_REASONS)}")
        told = []
        for link in self._chosen(link_id):
            with self._lock:
                link.draining = True
            message = {"type": "disconnect", "reason": reason, "debug_info": {"host": link.id}}
            with contextlib.suppress(ConnectionClosed):
                link.connection.send(json.dumps(message))
            told.append(link.id)
            if reason == "link_disabled":
                self._close(link)
            else:
                timer = threading.Timer(self.refresh_grace, self._close, args=(link,))
                timer.daemon = True
                with self._lock:
                    self._timers.append(timer)
                timer.start()
        return told

    def drop(self, link_id: str | None = None) -> list[str]:
        """Cut the TCP connection(s) with no closing handshake (a network failure)."""
        dropped = []
        for link in self._chosen(link_id):
            with contextlib.suppress(OSError):
                link.connection.socket.shutdown(socket.SHUT_RDWR)
            dropped.append(link.id)
        return dropped

    def _chosen(self, link_id: str | None) -> list[Link]:
        links = self.open_links()
        if link_id is None:
            return links
        chosen = [link for link in links if link.id == link_id]
        if not chosen:
            raise KeyError(f"no open Socket Mode connection {link_id}")
        return chosen

    def _close(self, link: Link) -> None:
        with contextlib.suppress(Exception):
            link.connection.close(1001, "going away")

    # inspection ------------------------------------------------------------------------
    def envelopes(self) -> list[Envelope]:
        with self._lock:
            return [self._envelopes[key] for key in self._order]

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "connections": [link.public() for link in self._links.values()],
                "envelopes": [self._envelopes[key].public() for key in self._order],
            }


def _accepts_response(kind: str, payload: dict[str, Any]) -> bool:
    if kind == "slash_commands":
        return True
    return kind == "interactive" and payload.get("type") in _RESPONDING_INTERACTIONS
