"""Slack's side of the conversation: signed slash commands, interactions and events.

What Slack would POST to `/slack/events`, signed with the signing secret exactly as Slack
signs it (v0 HMAC-SHA256 over `v0:<timestamp>:<body>`). Used by the tests, `firebreak demo`
and the benchmarks. The transport is pluggable: real HTTP, a WSGI test client, or Socket
Mode (`socket_transport`: the same request as an envelope on the app's WebSocket).
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from slack_sdk.signature import SignatureVerifier

from bot.sandbox.server import SlackSandbox
from bot.sandbox.socket_mode import NotAcknowledged


@dataclass(frozen=True)
class Reply:
    status: int
    body: str

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


Transport = Callable[[bytes, dict[str, str]], Reply]


def http_transport(events_url: str, timeout: float = 10.0) -> Transport:
    """POST to a running Firebreak over real HTTP (no proxies: everything is local)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def post(body: bytes, headers: dict[str, str]) -> Reply:
        request = urllib.request.Request(events_url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with opener.open(request, timeout=timeout) as response:
                return Reply(response.status, response.read().decode())
        except urllib.error.HTTPError as error:
            return Reply(error.code, error.read().decode())

    return post


def envelope_of(body: bytes, headers: dict[str, str]) -> tuple[str, dict[str, Any], int]:
    """(envelope type, payload, first retry_attempt) for what would have been POSTed: a
    slash command's form, an interaction's `payload=` form, or an Events API JSON body."""
    text = body.decode("utf-8")
    lowered = {name.lower(): value for name, value in headers.items()}
    retry = int(lowered.get("x-slack-retry-num") or 0)
    if lowered.get("content-type", "").startswith("application/json"):
        return "events_api", json.loads(text), retry
    fields = dict(parse_qsl(text, keep_blank_values=True))
    if "payload" in fields:
        return "interactive", json.loads(fields["payload"]), retry
    return "slash_commands", fields, retry


def socket_transport(sandbox: SlackSandbox | str, timeout: float = 60.0) -> Transport:
    """Deliver over Socket Mode: the sandbox (in this process, or the base URL of one in
    another) sends the request as an envelope on the app's WebSocket and waits for the
    acknowledgement, redelivering as Slack does. The Reply is 200 with the ack's payload as
    its body (what an HTTP answer's body would have been: the text Slack shows the user),
    or 504 when no attempt was acknowledged."""

    def deliver(body: bytes, headers: dict[str, str]) -> Reply:
        kind, payload, retry = envelope_of(body, headers)
        if isinstance(sandbox, str):
            return _remote_deliver(sandbox, kind, payload, retry, timeout)
        try:
            envelope = sandbox.socket_mode.deliver(kind, payload, first_attempt=retry)
        except NotAcknowledged as missed:
            return Reply(
                504, json.dumps({"ok": False, "error": "not_acknowledged", "detail": str(missed)})
            )
        return Reply(200, json.dumps(envelope.response) if envelope.response else "")

    return deliver


def _remote_deliver(
    base_url: str, kind: str, payload: dict[str, Any], retry: int, timeout: float
) -> Reply:
    data = json.dumps({"type": kind, "payload": payload, "first_attempt": retry}).encode()
    request = urllib.request.Request(  # noqa: S310 - a local sandbox URL
        base_url.rstrip("/") + "/_sandbox/socket/deliver",
        data=data,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as error:
        return Reply(error.code, error.read().decode())
    acked = answer.get("response")
    return Reply(200, json.dumps(acked) if acked else "")


def _remote_response_url(sandbox_base_url: str, channel: str | None, user: str) -> str:
    """Ask a sandbox in another process for a response_url (its control API)."""
    body = json.dumps({"channel": channel, "user": user}).encode()
    request = urllib.request.Request(  # noqa: S310 - a local sandbox URL
        sandbox_base_url.rstrip("/") + "/_sandbox/response_urls",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        return str(json.loads(response.read())["url"])


class OutboundSlack:
    """Builds and signs what Slack sends, and delivers it through `transport`.

    `sandbox` gives the response_url of each command: a SlackSandbox in this process, the
    base URL of one in another process, or None for a URL nobody answers.
    """

    def __init__(
        self,
        transport: Transport,
        signing_secret: str,
        sandbox: SlackSandbox | str | None = None,
        *,
        team_id: str = "T0SANDBOX",
    ) -> None:
        self.transport = transport
        self.verifier = SignatureVerifier(signing_secret)
        self.sandbox = sandbox
        self.team_id = team_id

    # -- signing ------------------------------------------------------------------------

    def signed_headers(
        self, body: bytes, content_type: str, *, timestamp: int | None = None
    ) -> dict[str, str]:
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.verifier.generate_signature(timestamp=stamp, body=body.decode())
        return {
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": str(signature),
        }

    def send(
        self,
        body: bytes,
        content_type: str,
        *,
        headers: dict[str, str] | None = None,
        timestamp: int | None = None,
    ) -> Reply:
        all_headers = self.signed_headers(body, content_type, timestamp=timestamp)
        all_headers.update(headers or {})
        return self.transport(body, all_headers)

    def _response_url(self, channel: str | None, user: str) -> str:
        if isinstance(self.sandbox, str):
            return _remote_response_url(self.sandbox, channel, user)
        if self.sandbox is None:
            return "http://127.0.0.1:9/response-url-unused"
        return self.sandbox.new_response_url(channel, user)

    # -- what Slack sends ---------------------------------------------------------------

    def command_body(
        self, text: str, *, user: str, channel: str, command: str = "/incident"
    ) -> bytes:
        form = {
            "token": "unused-verification-token",
            "team_id": self.team_id,
            "team_domain": "sandbox",
            "channel_id": channel,
            "channel_name": channel.lower(),
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": "A0FIREBREAK",
            "response_url": self._response_url(channel, user),
            "trigger_id": f"{int(time.time())}.{secrets.randbelow(10**9)}.{secrets.token_hex(8)}",
        }
        return urlencode(form).encode()

    def command(
        self,
        text: str,
        *,
        user: str,
        channel: str,
        command: str = "/incident",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        body = self.command_body(text, user=user, channel=channel, command=command)
        return self.send(body, "application/x-www-form-urlencoded", headers=headers)

    def interaction(self, payload: dict[str, Any]) -> Reply:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self.send(body, "application/x-www-form-urlencoded")

    def block_action(
        self,
        action_id: str,
        *,
        user: str,
        channel: str,
        message_ts: str = "",
        value: str | None = None,
        selected: str | None = None,
        block_id: str = "actions",
    ) -> Reply:
        action: dict[str, Any] = {
            "action_id": action_id,
            "block_id": block_id,
            "action_ts": f"{time.time():.6f}",
        }
        if selected is not None:
            action.update(
                type="static_select",
                selected_option={
                    "value": selected,
                    "text": {"type": "plain_text", "text": selected},
                },
            )
        else:
            action.update(type="button", value=value or "")
        return self.interaction(
            {
                "type": "block_actions",
                "team": {"id": self.team_id},
                "user": {"id": user},
                "api_app_id": "A0FIREBREAK",
                "trigger_id": f"{int(time.time())}.{secrets.token_hex(8)}",
                "channel": {"id": channel},
                "container": {"type": "message", "channel_id": channel, "message_ts": message_ts},
                "message": {"ts": message_ts},
                "response_url": self._response_url(channel, user),
                "actions": [action],
            }
        )

    def view_submission(
        self,
        view: dict[str, Any],
        values: dict[str, dict[str, Any]],
        *,
        user: str,
        view_id: str = "",
    ) -> Reply:
        """Submit a modal the bot opened; `values` maps block_id -> the action's state."""
        submitted = {
            **view,
            "id": view_id or view.get("id") or f"V{secrets.token_hex(5).upper()}",
            "state": {"values": {block: {"value": state} for block, state in values.items()}},
        }
        return self.interaction(
            {
                "type": "view_submission",
                "team": {"id": self.team_id},
                "user": {"id": user},
                "api_app_id": "A0FIREBREAK",
                "trigger_id": f"{int(time.time())}.{secrets.token_hex(8)}",
                "view": submitted,
            }
        )

    def event(
        self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None
    ) -> Reply:
        envelope = {
            "token": "unused-verification-token",
            "team_id": self.team_id,
            "api_app_id": "A0FIREBREAK",
            "type": "event_callback",
            "event_id": event_id or f"Ev{secrets.token_hex(6).upper()}",
            "event_time": int(time.time()),
            "event": event,
        }
        headers = {}
        if retry_num is not None:
            headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"}
        return self.send(json.dumps(envelope).encode(), "application/json", headers=headers)

    def reaction_added(
        self, *, user: str, channel: str, ts: str, reaction: str = "pushpin", **kwargs: Any
    ) -> Reply:
        return self.event(
            {
                "type": "reaction_added",
                "user": user,
                "reaction": reaction,
                "item": {"type": "message", "channel": channel, "ts": ts},
                "event_ts": f"{time.time():.6f}",
            },
            **kwargs,
        )
