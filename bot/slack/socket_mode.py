"""Slack over Socket Mode: the same bolt App, fed from a WebSocket instead of /slack/events.

`SlackSocket` runs bolt's `SocketModeHandler` (slack_sdk's built-in Socket Mode client: no
extra dependency) on the one bolt App that `bot.app.build` makes, so every listener, the
ack-then-work flow and the one-effect-per-request middleware (`bot.slack.once`) run exactly
as they do for HTTP. What differs is only the edge:

- `apps.connections.open` goes to `SLACK_API_URL` (the sandbox in tests and demos) with the
  app-level token (`SLACK_APP_TOKEN`, `xapp-`, scope `connections:write`).
- Each envelope's payload passes the same body checks as an HTTP request
  (`bot.slack.requests.parse`, fed the body Slack would have POSTed), so bolt never sees a
  shape it would crash on and the errors are the same.
- The acknowledgement carries bolt's answer (a slash command's reply, a modal's errors).
  A request no listener takes is acknowledged empty (Slack would otherwise send it again);
  one that failed (the database was down: status 503) is not acknowledged, so Slack
  redelivers it and the retry finds the request unrecorded.
- slack_sdk reconnects by itself: on Slack's `disconnect` message it opens a new connection
  before closing the old one; a connection that stops answering pings is replaced after
  about four ping intervals. One case it misses: a peer (or a proxy) that closes the TCP
  connection without a WebSocket close frame. slack_sdk's receiver then reads end-of-file in
  a busy loop (a CPU core) until the ping check gives up, ~4 ping intervals later. A watch
  thread here looks for that end-of-file every WATCH_INTERVAL and replaces the connection.
- And a race: when slack_sdk installs a new connection it sets `current_session` and then a
  new `current_session_state`; its receiving thread, restarting in between, revives the old
  state (`terminated = False`) and loops on it. No one ends that state any more, so after
  the next reconnect the receiver waits forever on a closed connection: nothing more is
  read, and `close()` (which joins that thread) never returns. The watch thread ends each
  state it has seen that is no longer current (one current for at least WATCH_INTERVAL),
  and `close` makes the connection inactive before ending the states, then gives
  slack_sdk's `close()` CLOSE_TIMEOUT. A state current for less than that can still be
  revived unseen: slack_sdk has to fix this (it must not revive a state it replaced).

`state()` is "connected", "connecting" (starting, or replacing a lost connection) or
"disconnected" (closed, or the token was refused); `/readyz` is not ready unless connected.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import threading
import time
from typing import Any, Literal
from urllib.parse import urlencode

from prometheus_client import Counter, Gauge
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.socket_mode.internals import build_headers
from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from bot.metrics import Metrics
from bot.slack import requests as slack_requests

log = logging.getLogger(__name__)
State = Literal["connected", "connecting", "disconnected"]
ENVELOPE_TYPES = ("slash_commands", "interactive", "events_api")
PING_INTERVAL = 5.0  # seconds; a connection silent for ~4 of these is replaced
RETRY_CONNECT = 5.0  # seconds between first connection attempts while Slack is unreachable
WATCH_INTERVAL = 0.25  # seconds between looks for a connection the peer closed
CLOSE_TIMEOUT = 10.0  # seconds close() waits for slack_sdk's threads
# What apps.connections.open answers for a token that will never work: stop and say so.
REFUSED = {
    "not_authed": "SLACK_APP_TOKEN is empty",
    "invalid_auth": "SLACK_APP_TOKEN was refused (invalid_auth); copy the xapp- token again",
    "not_allowed_token_type": (
        "SLACK_APP_TOKEN must be an app-level token (xapp-), not a bot or user token"
    ),
    "missing_scope": "the app-level token lacks the connections:write scope; create a new one with it",
    "token_revoked": "SLACK_APP_TOKEN was revoked; create a new app-level token",
    "account_inactive": "the app behind SLACK_APP_TOKEN is deleted or disabled",
}


class SocketRefused(Exception):
    """Slack will never open a connection with this token: what is wrong and what to do."""


class SlackSocket:
    """One Socket Mode connection (kept open, replaced as Slack asks) for one bolt App."""

    def __init__(
        self,
        bolt: App,
        app_token: str,
        api_url: str,
        *,
        metrics: Metrics | None = None,
        ping_interval: float = PING_INTERVAL,
        concurrency: int = 16,
    ) -> None:
        self.bolt = bolt
        self.app_token = app_token
        self.ping_interval = ping_interval  # may be changed until `start`
        self.concurrency = concurrency
        self.metrics = metrics
        self.web_client = WebClient(
            base_url=api_url,
            timeout=10,
            retry_handlers=[
                RateLimitErrorRetryHandler(max_retry_count=3),
                ConnectionErrorRetryHandler(max_retry_count=2),
                ServerErrorRetryHandler(max_retry_count=2),
            ],
        )
        self.handler: _Handler | None = None
        self._started = False
        self._closed = threading.Event()
        self._refused: str | None = None
        self._retrying: threading.Thread | None = None
        self._hellos = 0
        self._watching: threading.Thread | None = None
        self._states: list[Any] = []  # slack_sdk's ConnectionStates seen, newest last
        self.counts = _SocketCounts(metrics, self.state) if metrics is not None else None

    @property
    def client(self) -> SocketModeClient:
        if self.handler is None:
            raise RuntimeError("the Socket Mode connection is not started")
        return self.handler.client

    def start(self) -> None:
        """Open the first connection. A token Slack refuses raises SocketRefused now; an
        unreachable Slack is retried in the background (state "connecting" meanwhile)."""
        if self.handler is not None or self._closed.is_set():
            return
        # slack_sdk's client starts its threads when it is made: make it here, not before.
        self.handler = _Handler(
            self.bolt,
            self.app_token,
            self,
            logger=logging.getLogger("slack_sdk.socket_mode.firebreak"),  # quiet below warnings
            web_client=self.web_client,
            ping_interval=self.ping_interval,
            concurrency=self.concurrency,
        )
        self._started = True
        self._states = [self.client.current_session_state]  # before the first connect
        self._watching = threading.Thread(target=self._watch, name="socket-mode-watch", daemon=True)
        self._watching.start()
        try:
            self._connect_once()
        except SocketRefused:
            raise
        except Exception as error:
            log.warning(
                "Socket Mode: cannot reach Slack yet (%s: %s); retrying every %.0f s",
                type(error).__name__,
                error,
                RETRY_CONNECT,
            )
            self._retrying = threading.Thread(
                target=self._retry_connect, name="socket-mode-connect", daemon=True
            )
            self._retrying.start()

    def _connect_once(self) -> None:
        try:
            self.client.connect()
        except SlackApiError as error:
            code = str(error.response.get("error", ""))
            if code in REFUSED:
                self._refused = code
                raise SocketRefused(
                    f"Socket Mode: apps.connections.open failed: {REFUSED[code]}"
                ) from None
            raise

    def _retry_connect(self) -> None:
        while not self._closed.wait(RETRY_CONNECT):
            try:
                self._connect_once()
                log.info("Socket Mode: connected")
                return
            except SocketRefused as refused:
                log.error("%s", refused)
                return
            except Exception as error:
                log.warning("Socket Mode: still cannot reach Slack (%s)", type(error).__name__)

    def _watch(self) -> None:
        """Replace a connection whose peer closed it without a close frame (see above)."""
        while not self._closed.wait(WATCH_INTERVAL):
            client = self.client
            self._end_stale_states(client)
            session = client.current_session
            sock = session.sock if session is not None else None
            if session is None or sock is None or not _peer_closed(sock):
                continue
            log.info("Socket Mode: the connection was closed without a close frame; reconnecting")
            session.disconnect()
            try:
                client.connect_to_new_endpoint()
            except Exception as error:  # slack_sdk's monitor tries again every ping interval
                log.warning("Socket Mode: cannot reconnect yet (%s)", type(error).__name__)

    def _end_stale_states(self, client: SocketModeClient, *, all_of_them: bool = False) -> None:
        """Set `terminated` on every connection state slack_sdk no longer uses (all, when
        closing), so its receiver never loops on one that is not current (see above)."""
        current = client.current_session_state
        if not any(seen is current for seen in self._states):
            self._states = [*self._states[-7:], current]
        for seen in self._states:
            if (all_of_them or seen is not current) and not seen.terminated:
                seen.terminated = True

    def state(self) -> State:
        if self._closed.is_set() or self._refused is not None or not self._started:
            return "disconnected"
        client = self.client
        if not client.is_connected():
            return "connecting"
        session = client.current_session
        heard = session.last_ping_pong_time if session is not None else None
        if heard is not None and time.time() - heard > 3 * self.ping_interval:
            return "connecting"  # silent: slack_sdk is about to replace this connection
        return "connected"

    def wait_connected(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state() == "connected":
                return True
            if self._refused is not None or self._closed.is_set():
                return False
            time.sleep(0.02)
        return False

    def close(self) -> None:
        """Stop receiving: Slack sends what is not acknowledged to another connection."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._watching is not None:  # first: it must not reconnect what is closing
            self._watching.join(timeout=RETRY_CONNECT + 1)
        if self.handler is not None:
            _close_quickly(self.handler.client, self._end_stale_states)
        if self._retrying is not None:
            self._retrying.join(timeout=RETRY_CONNECT + 1)

    def _heard(self, _client: Any, message: dict[str, Any], _raw: str | None) -> None:
        """Every message from Slack: a `hello` opens each connection, the first included."""
        if message.get("type") == "hello":
            self._hellos += 1
            if self._hellos > 1 and self.counts is not None:
                self.counts.reconnects.inc()


class _SocketCounts:
    """The socket's families on /metrics (only in Socket Mode): whether it is connected,
    envelopes by type, delivery and outcome, and connections replaced."""

    def __init__(self, metrics: Metrics, state: Any) -> None:
        r = metrics.registry
        metrics.socket_state = state  # firebreak_ready includes it, as /readyz does
        connected = Gauge(
            "firebreak_slack_socket_connected",
            "Socket Mode: 1 if the WebSocket to Slack is connected (what /readyz reports), else 0",
            registry=r,
        )
        connected.set_function(lambda: 1.0 if state() == "connected" else 0.0)
        self.envelopes = Counter(
            "firebreak_slack_socket_envelopes",
            "Socket Mode envelopes received, by type (slash_commands, interactive, events_api, "
            "other), delivery (first, or retry: Slack sent it again) and outcome (acked; "
            "refused: malformed or unhandled, acknowledged empty; unacknowledged: failed, "
            "Slack sends it again)",
            ["type", "delivery", "outcome"],
            registry=r,
        )
        self.reconnects = Counter(
            "firebreak_slack_socket_reconnects",
            "Socket Mode connections opened to replace another (Slack asked, or it was lost)",
            registry=r,
        )

    def envelope(self, req: SocketModeRequest, outcome: str) -> None:
        kind = req.type if req.type in ENVELOPE_TYPES else "other"
        delivery = "retry" if req.retry_attempt else "first"
        self.envelopes.labels(kind, delivery, outcome).inc()


_HANGUP = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR


def _peer_closed(sock: socket.socket) -> bool:
    """True if the peer closed the connection (end-of-file), without reading from it: Linux
    says so with POLLRDHUP; elsewhere a readable socket is peeked at."""
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN | _HANGUP)
        events = poller.poll(0)
    except (OSError, ValueError):  # closed meanwhile: slack_sdk handles that itself
        return False
    if not events:
        return False
    if events[0][1] & _HANGUP:
        return True
    if hasattr(select, "POLLRDHUP"):
        return False  # readable: data, which slack_sdk's receiver reads
    try:  # may wait up to the socket's timeout if the receiver took the data meanwhile
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (TimeoutError, BlockingIOError):
        return False
    except OSError:
        return True


def _close_quickly(client: SocketModeClient, end_states: Any) -> None:
    """`client.close()` without its waits: its receiving thread holds the socket for up to
    3 s in `recv` and its message thread for 1 s in a queue `get`, so wake both first. The
    connection goes inactive before its states end, so a restarting receiver cannot revive
    one (see the module docstring); and close() runs with a bound, as a last resort."""
    client.closed = True
    client.auto_reconnect_enabled = False  # the woken receiver must not reconnect
    session = client.current_session
    sock = session.sock if session is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    client.disconnect()
    end_states(client, all_of_them=True)
    client.message_queue.put(None)  # skipped by the message thread, which then sees closed
    closing = threading.Thread(target=client.close, name="socket-mode-close", daemon=True)
    closing.start()
    closing.join(timeout=CLOSE_TIMEOUT)
    if closing.is_alive():
        log.warning(
            "Socket Mode: slack_sdk's client did not stop within %.0f s; leaving its threads",
            CLOSE_TIMEOUT,
        )


class _Handler(SocketModeHandler):
    """Bolt's built-in Socket Mode handler, with the HTTP edge's body checks and acks."""

    def __init__(self, bolt: App, app_token: str, socket: SlackSocket, **kwargs: Any) -> None:
        super().__init__(bolt, app_token, **kwargs)
        self.socket = socket
        self.client.message_listeners.append(socket._heard)

    def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        started = time.perf_counter()
        response = self.dispatch(req)
        metrics = self.socket.metrics
        if metrics is not None:
            metrics.slack_response_seconds.observe(time.perf_counter() - started)
            metrics.slack_requests.labels(str(response.status)).inc()
        counts = self.socket.counts
        if response.status == 200:
            client.send_socket_mode_response(_acknowledgement(req, response))
            if counts is not None:
                counts.envelope(req, "acked")
        elif response.status in (400, 404):
            # Never acted on, and a redelivery would not be either: acknowledge it.
            client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
            if counts is not None:
                counts.envelope(req, "refused")
        else:
            if counts is not None:
                counts.envelope(req, "unacknowledged")
            log.warning(
                "Socket Mode: %s envelope %s not acknowledged (status %s); Slack will resend it",
                req.type,
                req.envelope_id,
                response.status,
            )

    def dispatch(self, req: SocketModeRequest) -> BoltResponse:
        checked = slack_requests.parse(*_as_http_body(req.type, req.payload))
        if isinstance(checked, slack_requests.Refused):
            log.info("refused a Socket Mode %s envelope: %s", req.type, checked.message)
            return BoltResponse(status=checked.status, body=checked.json())
        request = BoltRequest(mode="socket_mode", body=checked.body, headers=build_headers(req))
        return self.app.dispatch(request)


def _as_http_body(kind: str, payload: Any) -> tuple[bytes, str]:
    """The body Slack would have POSTed to /slack/events for this envelope's payload."""
    if kind == "slash_commands" and isinstance(payload, dict):
        fields = {str(key): str(value) for key, value in payload.items()}
        return urlencode(fields).encode(), "application/x-www-form-urlencoded"
    if kind == "interactive":
        return urlencode({"payload": json.dumps(payload)}).encode(), (
            "application/x-www-form-urlencoded"
        )
    return json.dumps(payload).encode(), "application/json"


def _acknowledgement(req: SocketModeRequest, response: BoltResponse) -> SocketModeResponse:
    """bolt's answer as the ack's payload (as bolt's own handler builds it)."""
    if not response.body:
        return SocketModeResponse(envelope_id=req.envelope_id)
    content_type = response.headers.get("content-type", [""])[0]
    if content_type.startswith("application/json"):
        return SocketModeResponse(envelope_id=req.envelope_id, payload=json.loads(response.body))
    return SocketModeResponse(envelope_id=req.envelope_id, payload={"text": response.body})
