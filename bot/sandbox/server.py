"""`SlackSandbox`: the HTTP server, its call log, faults, control endpoints and Python API."""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from bot.manifest import BOT_SCOPES
from bot.sandbox.args import Args
from bot.sandbox.faults import Fault
from bot.sandbox.files import UPLOAD, UPLOAD_PATH, receive_upload
from bot.sandbox.methods import METHODS
from bot.sandbox.response_urls import ResponseTarget, respond
from bot.sandbox.scopes import check_scopes
from bot.sandbox.socket_mode import NotAcknowledged, SocketMode
from bot.sandbox.state import (
    Call,
    Channel,
    Conversation,
    Ephemeral,
    File,
    Message,
    ResponseUrlPost,
    SlackError,
    User,
    View,
    Workspace,
)
from bot.sandbox.wire import bearer_token, decode_body, decode_params

Answer = tuple[int, Any, dict[str, str]]


class SlackSandbox:
    """A local emulator of the Slack Web API, reachable by slack_sdk over real HTTP."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        bot_user_id: str = "UFIREBREAK",
        bot_token: str | None = None,
        team_id: str = "T0SANDBOX",
        scopes: Iterable[str] | None = None,
        app_token: str | None = None,
        app_token_scopes: Iterable[str] = ("connections:write",),
    ) -> None:
        """`scopes` are the bot token's OAuth scopes; by default the manifest's. `app_token`
        is the one app-level token apps.connections.open takes (by default any `xapp-`)."""
        self.host = host
        self.port = port
        self.bot_user_id = bot_user_id
        self.team_id = team_id
        self._bot_token = bot_token
        self._app_token = app_token
        self.app_token_scopes = tuple(app_token_scopes)
        self.socket_mode = SocketMode(host)
        self._lock = threading.RLock()
        self._ws = Workspace(team_id, bot_user_id, BOT_SCOPES if scopes is None else scopes)
        self._calls: list[Call] = []
        self._faults: list[Fault] = []
        self._response_targets: dict[str, ResponseTarget] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle -------------------------------------------------------------------------
    def start(self) -> SlackSandbox:
        if self._server is None:
            server = _Server((self.host, self.port), _Handler)
            server.sandbox = self
            self.port = server.server_address[1]
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"slack-sandbox-{self.port}",
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread
            with self._lock:
                self._ws.upload_base = f"http://{self.host}:{self.port}"
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        self.socket_mode.stop()
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> SlackSandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox is not running; call start() first")
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    @property
    def scopes(self) -> tuple[str, ...]:
        """The bot token's scopes; assign to grant or revoke some (a reinstall, in Slack)."""
        with self._lock:
            return self._ws.scopes

    @scopes.setter
    def scopes(self, scopes: Iterable[str]) -> None:
        with self._lock:
            self._ws.scopes = tuple(dict.fromkeys(scopes))

    # seeding ---------------------------------------------------------------------------
    def add_user(
        self,
        user_id: str,
        name: str,
        *,
        email: str | None = None,
        tz: str = "UTC",
        real_name: str | None = None,
        is_bot: bool = False,
    ) -> None:
        with self._lock:
            self._ws.add_user(User(user_id, name, real_name or name, email, tz, is_bot))

    def add_channel(
        self,
        name: str,
        *,
        members: Iterable[str] = (),
        is_private: bool = False,
        creator: str | None = None,
    ) -> str:
        """A new channel (SlackError, a ValueError, for a name conversations.create refuses)."""
        with self._lock:
            creator_id = creator or self.bot_user_id
            self._ws.user(creator_id)
            channel = self._ws.create_channel(
                name, is_private=is_private, creator=creator_id, members=list(members)
            )
            return channel.id

    def post_user_message(self, channel_id: str, user_id: str, text: str) -> str:
        with self._lock:
            channel = self._known_channel(channel_id)
            if user_id not in self._ws.users:
                raise KeyError(user_id)
            return self._ws.add_post(channel, user_id, text, None).ts

    # inspection ------------------------------------------------------------------------
    def _known_channel(self, channel_id: str) -> Conversation:
        found = self._ws.conversations.get(channel_id)
        if found is None:
            raise KeyError(channel_id)
        return found

    def channel(self, channel_id: str) -> Channel:
        with self._lock:
            return self._known_channel(channel_id).public()

    def channel_by_name(self, name: str) -> Channel | None:
        with self._lock:
            found = self._ws.by_name(name)
            return found.public() if found is not None else None

    def messages(self, channel_id: str) -> list[Message]:
        with self._lock:
            return [post.public() for post in self._known_channel(channel_id).posts.values()]

    def message(self, channel_id: str, ts: str) -> Message:
        with self._lock:
            post = self._known_channel(channel_id).posts.get(ts)
            if post is None:
                raise KeyError(ts)
            return post.public()

    def pins(self, channel_id: str) -> list[str]:
        with self._lock:
            return list(self._known_channel(channel_id).pins)

    def bookmarks(self, channel_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._known_channel(channel_id).bookmarks)

    def ephemerals(self, channel_id: str | None = None, user: str | None = None) -> list[Ephemeral]:
        with self._lock:
            return [
                copy.deepcopy(e)
                for e in self._ws.ephemerals
                if channel_id in (None, e.channel) and user in (None, e.user)
            ]

    def files(self, channel_id: str | None = None) -> list[File]:
        """Files of the external upload flow (completed or not), or those shared in a channel."""
        with self._lock:
            return [
                copy.deepcopy(f)
                for f in self._ws.files.values()
                if channel_id is None or channel_id in f.channels
            ]

    @property
    def upload_url_ttl(self) -> float:
        """Seconds an upload URL from files.getUploadURLExternal stays good (Slack's are
        short-lived); set it lower to test an expired URL."""
        with self._lock:
            return self._ws.upload_url_ttl

    @upload_url_ttl.setter
    def upload_url_ttl(self, seconds: float) -> None:
        with self._lock:
            self._ws.upload_url_ttl = seconds

    def views(self) -> list[View]:
        with self._lock:
            return copy.deepcopy(list(self._ws.views.values()))

    def new_response_url(
        self,
        channel_id: str | None = None,
        user_id: str | None = None,
        *,
        message_ts: str | None = None,
    ) -> str:
        """A response_url; `message_ts` is the message replace/delete_original act on."""
        with self._lock:
            response_id = self._ws.new_id("R")
            self._response_targets[response_id] = ResponseTarget(channel_id, user_id, message_ts)
        return f"{self.base_url}/_sandbox/response/{response_id}"

    def responses(self) -> list[ResponseUrlPost]:
        with self._lock:
            return copy.deepcopy(self._ws.responses)

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return copy.deepcopy(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return copy.deepcopy([call for call in self._calls if call.method == method])

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            ws = self._ws
            channels = [
                {
                    **dataclasses.asdict(conv.public()),
                    "messages": [dataclasses.asdict(p.public()) for p in conv.posts.values()],
                    "pins": list(conv.pins),
                    "bookmarks": copy.deepcopy(conv.bookmarks),
                }
                for conv in ws.conversations.values()
            ]
            return {
                "team_id": ws.team_id,
                "bot_user_id": ws.bot_user_id,
                "users": [dataclasses.asdict(u) for u in ws.users.values()],
                "channels": channels,
                "views": [dataclasses.asdict(v) for v in ws.views.values()],
                "ephemerals": [dataclasses.asdict(e) for e in ws.ephemerals],
                "responses": [dataclasses.asdict(r) for r in ws.responses],
                "socket_mode": self.socket_mode.snapshot(),
            }

    # faults ----------------------------------------------------------------------------
    def inject_fault(
        self,
        method: str,
        *,
        error: str | None = None,
        status: int | None = None,
        retry_after: int | None = None,
        delay: float = 0.0,
        times: int = 1,
    ) -> None:
        fault = Fault(method, error, status, retry_after, delay, times)
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method):
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # the Web API -----------------------------------------------------------------------
    def handle_api(
        self, method: str, query: str, content_type: str, body: bytes, authorization: str | None
    ) -> Answer:
        """Answer one /api/<method> call and log it (without its token)."""
        try:
            params = decode_params(query, content_type, body)
            broken: SlackError | None = None
        except SlackError as err:
            params, broken = {}, err
        token = bearer_token(authorization) or params.get("token")
        params.pop("token", None)
        fault = self._take_fault(method)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        with self._lock:
            if fault is not None and fault.breaks_call:
                status, answer, headers = fault.answer()
            elif broken is not None:
                status, answer, headers = 200, {"ok": False, "error": broken.code}, {}
            else:
                status, answer, headers = self._dispatch(method, params, token)
            self._calls.append(
                Call(method, copy.deepcopy(params), status, copy.deepcopy(answer), time.time())
            )
        return status, answer, headers

    def _dispatch(self, method: str, params: dict[str, Any], token: object) -> Answer:
        try:
            if method == "apps.connections.open":
                return 200, self._open_connection(token), {}
            run = METHODS.get(method)
            if run is None:
                raise SlackError("unknown_method")
            if not token:
                raise SlackError("not_authed")
            valid = token == self._bot_token if self._bot_token else str(token).startswith("xoxb-")
            if not valid:
                raise SlackError("invalid_auth")
            args = Args(params)
            check_scopes(self._ws, method, args)
            return 200, {"ok": True, **run(self._ws, args)}, {}
        except SlackError as err:
            body: dict[str, Any] = {"ok": False, "error": err.code, **err.details}
            if err.messages:
                body["response_metadata"] = {"messages": err.messages}
            return 200, body, {}
        except Exception:  # a sandbox bug: say so loudly rather than answer nonsense
            traceback.print_exc(file=sys.stderr)
            return 500, {"ok": False, "error": "sandbox_internal_error"}, {}

    def _open_connection(self, token: object) -> dict[str, Any]:
        """apps.connections.open: only an app-level token with connections:write."""
        if not token or not isinstance(token, str):
            raise SlackError("not_authed")
        if token.startswith(("xoxb-", "xoxp-")):
            raise SlackError("not_allowed_token_type")
        valid = token == self._app_token if self._app_token else token.startswith("xapp-")
        if not valid:
            raise SlackError("invalid_auth")
        if "connections:write" not in self.app_token_scopes:
            raise SlackError(
                "missing_scope",
                details={
                    "needed": "connections:write",
                    "provided": ",".join(self.app_token_scopes),
                },
            )
        return {"ok": True, "url": self.socket_mode.open_url()}

    def handle_upload(
        self, token: str, content_type: str, body: bytes
    ) -> tuple[int, str, dict[str, str]]:
        """The upload URL (Slack's file upload service): plain text answers, logged as calls
        of the method `upload` (the content is not logged, only its length)."""
        fault = self._take_fault(UPLOAD)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        with self._lock:
            if fault is not None and fault.breaks_call:
                status, answer, headers = fault.answer()
                text = json.dumps(answer)
            else:
                status, text = receive_upload(self._ws, token, content_type, body)
                headers = {}
            self._calls.append(
                Call(
                    UPLOAD,
                    {"length": len(body)},
                    status,
                    {"ok": status == 200, "text": text},
                    time.time(),
                )
            )
        return status, text, headers

    # control endpoints -----------------------------------------------------------------
    def handle_control(self, verb: str, path: str, content_type: str, body: bytes) -> Answer:
        ok: dict[str, Any] = {"ok": True}
        try:
            if verb == "GET" and path == "state":
                return 200, self.snapshot(), {}
            if verb == "GET" and path == "calls":
                return 200, [dataclasses.asdict(c) for c in self.calls], {}
            if verb == "DELETE" and path == "faults":
                self.clear_faults()
                return 200, ok, {}
            if verb == "POST" and path.startswith("response/"):
                return self._post_response(path.removeprefix("response/"), content_type, body)
            if path == "socket" or path.startswith("socket/"):
                return self._socket_control(verb, path.removeprefix("socket").strip("/"), body)
            if verb != "POST" or path not in (
                "faults",
                "users",
                "channels",
                "messages",
                "response_urls",
            ):
                return 404, {"ok": False, "error": "not_found"}, {}
            data = json.loads(body.decode("utf-8") or "{}")
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            if path == "faults":
                fault = Fault.from_json(data)
                with self._lock:
                    self._faults.append(fault)
                return 200, ok, {}
            if path == "users":
                self.add_user(
                    str(data["id"]),
                    str(data["name"]),
                    email=data.get("email"),
                    tz=data.get("tz") or "UTC",
                    real_name=data.get("real_name"),
                    is_bot=bool(data.get("is_bot", False)),
                )
                return 200, ok, {}
            if path == "response_urls":
                url = self.new_response_url(data.get("channel"), data.get("user"))
                return 200, {"ok": True, "url": url}, {}
            if path == "channels":
                channel_id = self.add_channel(
                    str(data["name"]),
                    members=list(data.get("members") or ()),
                    is_private=bool(data.get("is_private", False)),
                    creator=data.get("creator"),
                )
                return 200, {"ok": True, "channel": channel_id}, {}
            ts = self.post_user_message(str(data["channel"]), str(data["user"]), str(data["text"]))
            return 200, {"ok": True, "ts": ts}, {}
        except SlackError as err:
            return 400, {"ok": False, "error": err.code}, {}
        except (KeyError, TypeError, ValueError) as err:
            return 400, {"ok": False, "error": f"bad_request: {err}"}, {}

    def _socket_control(self, verb: str, action: str, body: bytes) -> Answer:
        """Socket Mode from another process: GET socket (connections and envelopes), POST
        socket/deliver {type, payload}, socket/disconnect {reason, link}, socket/drop {link}."""
        socket_mode = self.socket_mode
        if verb == "GET" and action == "":
            return 200, socket_mode.snapshot(), {}
        if verb != "POST" or action not in ("deliver", "disconnect", "drop"):
            return 404, {"ok": False, "error": "not_found"}, {}
        data = json.loads(body.decode("utf-8") or "{}")
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        if action == "disconnect":
            told = socket_mode.disconnect(
                data.get("reason") or "refresh_requested", data.get("link")
            )
            return 200, {"ok": True, "connections": told}, {}
        if action == "drop":
            return 200, {"ok": True, "connections": socket_mode.drop(data.get("link"))}, {}
        payload = data.get("payload")
        if not isinstance(payload, dict):
            raise ValueError("`payload` must be a JSON object")
        try:
            first = int(data.get("first_attempt") or 0)
            envelope = socket_mode.deliver(str(data.get("type")), payload, first_attempt=first)
        except NotAcknowledged as missed:
            return 504, {"ok": False, "error": "not_acknowledged", **missed.envelope.public()}, {}
        return 200, {"ok": True, **envelope.public()}, {}

    def _post_response(self, response_id: str, content_type: str, body: bytes) -> Answer:
        params = decode_body(content_type, body)
        payload: object = params
        if "payload" in params and isinstance(params["payload"], str):  # form-encoded payload=
            payload = json.loads(params["payload"])
        with self._lock:
            target = self._response_targets.get(response_id)
            if target is None:
                return 404, {"ok": False, "error": "expired_url"}, {}
            try:
                respond(self._ws, response_id, target, payload)
            except SlackError as err:
                status = 404 if err.code == "used_url" else 400
                return status, {"ok": False, "error": err.code}, {}
        return 200, {"ok": True}, {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    sandbox: SlackSandbox

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a timeout test, a stopped bot) is not an error."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "SlackSandbox/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: no access log on stderr."""

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def _route(self, verb: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        content_type = self.headers.get("Content-Type") or ""
        sandbox = self.server.sandbox
        if url.path.startswith(UPLOAD_PATH) and verb == "POST":
            token = url.path.removeprefix(UPLOAD_PATH).strip("/")
            status, text, headers = sandbox.handle_upload(token, content_type, body)
            self._send_text(status, text, headers)
        elif url.path.startswith("/api/"):
            method = url.path.removeprefix("/api/").strip("/")
            authorization = self.headers.get("Authorization")
            self._send(*sandbox.handle_api(method, url.query, content_type, body, authorization))
        elif url.path.startswith("/_sandbox/"):
            path = url.path.removeprefix("/_sandbox/").strip("/")
            try:
                self._send(*sandbox.handle_control(verb, path, content_type, body))
            except (SlackError, ValueError) as err:
                self._send(400, {"ok": False, "error": f"bad_request: {err}"}, {})
        else:
            self._send(404, {"ok": False, "error": "not_found"}, {})

    def _send_text(self, status: int, text: str, headers: dict[str, str]) -> None:
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
