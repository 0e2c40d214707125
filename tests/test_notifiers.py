"""The paging channels against real servers: the sandbox Slack, aiosmtpd and a local HTTP server.

No mocks: every notifier talks over a socket on 127.0.0.1 to something that answers the way
the real service would, including the ways it fails.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator

from bot.app import make_web_client
from bot.config import FileConfig
from bot.oncall.configuration import EmailNotifier as EmailSettings
from bot.oncall.configuration import NotifiersSection
from bot.oncall.configuration import WebhookNotifier as WebhookSettings
from bot.oncall.notify import Notification, NotifyError
from bot.people import Person
from bot.sandbox import SlackSandbox
from bot.slack.blocks import ACTION_PAGE_ACK, ACTION_PAGE_ESCALATE, ACTION_PAGE_RESOLVE
from integrations.email import EmailNotifier
from integrations.notifiers import build_notifiers
from integrations.slack_dm import SlackDMNotifier
from integrations.webhook import WebhookNotifier, sign, verify
from tests.conftest import PEOPLE, TOKEN

WEBHOOK_SECRET = "whsec-test-3f9a"
SMTP_PASSWORD = "smtp-pass-77"


def notification(**changes: Any) -> Notification:
    base = Notification(
        page_id=12,
        reference="P-12",
        person="alice",
        contact=PEOPLE["alice"],
        message="checkout p99 over 2s",
        target="schedule:primary",
        step=2,
        cycle=1,
        incident="INC-3",
        paged_by="alertmanager",
    )
    return replace(base, **changes)


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- Slack DM ---------------------------------------------------------------------------


def quick_retries(client: WebClient) -> WebClient:
    """The production client's retry policy with short waits, so tests stay fast."""
    for handler in client.retry_handlers:
        handler.interval_calculator = FixedValueRetryIntervalCalculator(0.01)
    return client


@pytest.fixture
def slack_client(sandbox: SlackSandbox) -> WebClient:
    return make_web_client(TOKEN, sandbox.api_url)


def dm_of(sandbox: SlackSandbox) -> str:
    posted = [c for c in sandbox.calls_to("chat.postMessage") if c.response.get("ok")]
    assert posted, "nothing was posted"
    return str(posted[-1].response["channel"])


def test_slack_dm_lands_in_the_persons_dm_with_three_buttons(
    sandbox: SlackSandbox, slack_client: WebClient
) -> None:
    SlackDMNotifier(slack_client).send(notification())

    dm = dm_of(sandbox)
    channel = sandbox.channel(dm)
    assert channel.is_im and "U0ALICE" in channel.members
    (message,) = sandbox.messages(dm)
    assert "checkout p99 over 2s" in message.text
    assert message.blocks is not None
    assert message.blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Page P-12", "emoji": True},
    }
    shown = json.dumps(message.blocks)
    for part in ("checkout p99 over 2s", "schedule:primary", "INC-3", "repeat 1", "alertmanager"):
        assert part in shown
    (actions,) = [b for b in message.blocks if b["type"] == "actions"]
    buttons = {e["action_id"]: e for e in actions["elements"]}
    assert list(buttons) == [ACTION_PAGE_ACK, ACTION_PAGE_ESCALATE, ACTION_PAGE_RESOLVE]
    assert {b["value"] for b in buttons.values()} == {"12"}
    assert buttons[ACTION_PAGE_ACK]["style"] == "primary"
    assert buttons[ACTION_PAGE_ACK]["text"]["text"] == "Acknowledge"
    assert buttons[ACTION_PAGE_ESCALATE]["text"]["text"] == "Escalate now"
    assert "confirm" in buttons[ACTION_PAGE_RESOLVE]


def test_slack_dm_keeps_within_block_kit_limits(
    sandbox: SlackSandbox, slack_client: WebClient
) -> None:
    """The sandbox enforces Slack's limits: a huge message is cut, not refused."""
    huge = notification(message="x" * 5000, reference="P-" + "9" * 200, paged_by="U0BOB")
    SlackDMNotifier(slack_client).send(huge)

    (message,) = sandbox.messages(dm_of(sandbox))
    assert message.blocks is not None
    assert len(message.blocks[0]["text"]["text"]) <= 150
    assert len(message.blocks[1]["text"]["text"]) <= 3000
    assert "<@U0BOB>" in json.dumps(message.blocks)


def test_slack_dm_escapes_mentions_in_the_message(
    sandbox: SlackSandbox, slack_client: WebClient
) -> None:
    SlackDMNotifier(slack_client).send(notification(message="<!channel> disk & <b>"))
    (message,) = sandbox.messages(dm_of(sandbox))
    shown = json.dumps(message.blocks)
    assert "<!channel>" not in shown and "&lt;!channel&gt; disk &amp; &lt;b&gt;" in shown


def test_slack_rate_limit_is_waited_out_by_the_client(
    sandbox: SlackSandbox, slack_client: WebClient
) -> None:
    sandbox.inject_fault("chat.postMessage", retry_after=0)

    SlackDMNotifier(slack_client).send(notification())

    assert [c.status for c in sandbox.calls_to("chat.postMessage")] == [429, 200]
    assert len(sandbox.messages(dm_of(sandbox))) == 1


def test_slack_unknown_user_is_not_retryable(
    sandbox: SlackSandbox, slack_client: WebClient
) -> None:
    sandbox.inject_fault("chat.postMessage", error="user_not_found")

    with pytest.raises(NotifyError) as caught:
        SlackDMNotifier(slack_client).send(notification())

    assert caught.value.retryable is False
    assert "user_not_found" in str(caught.value) and TOKEN not in str(caught.value)


def test_slack_user_the_workspace_does_not_know_is_not_retryable(
    slack_client: WebClient,
) -> None:
    stranger = Person(slack="U0NOBODY", email=None)
    with pytest.raises(NotifyError) as caught:
        SlackDMNotifier(slack_client).send(notification(contact=stranger))
    assert caught.value.retryable is False
    assert "channel_not_found" in str(caught.value)


def test_slack_bad_token_is_not_retryable_and_never_shown(sandbox: SlackSandbox) -> None:
    wrong = "xoxb-wrong-secret-token"
    client = make_web_client(wrong, sandbox.api_url)
    with pytest.raises(NotifyError) as caught:
        SlackDMNotifier(client).send(notification())
    assert caught.value.retryable is False
    assert "invalid_auth" in str(caught.value)
    assert wrong not in str(caught.value) and wrong not in repr(caught.value.args)


def test_slack_500_that_outlasts_the_clients_retries_is_retryable(
    sandbox: SlackSandbox, slack_client: WebClient
) -> None:
    client = quick_retries(slack_client)
    (server_errors,) = [h for h in client.retry_handlers if isinstance(h, ServerErrorRetryHandler)]
    attempts = 1 + server_errors.max_retry_count
    sandbox.inject_fault("chat.postMessage", status=500, times=attempts)

    with pytest.raises(NotifyError) as caught:
        SlackDMNotifier(client).send(notification())

    assert caught.value.retryable is True
    assert "HTTP 500" in str(caught.value)
    assert [c.status for c in sandbox.calls_to("chat.postMessage")] == [500] * attempts


def test_slack_unreachable_is_retryable() -> None:
    client = quick_retries(make_web_client(TOKEN, f"http://127.0.0.1:{closed_port()}/api/"))
    with pytest.raises(NotifyError) as caught:
        SlackDMNotifier(client).send(notification())
    assert caught.value.retryable is True
    assert TOKEN not in str(caught.value)


# -- email ------------------------------------------------------------------------------


@dataclass
class Mailbox:
    """An aiosmtpd handler: keeps what it accepts, refuses what the test tells it to."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # address -> SMTP reply

    async def handle_RCPT(  # aiosmtpd's hook names
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


class LocalController(Controller):
    """aiosmtpd's Controller on an OS-chosen port (it insists on knowing the port)."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: object
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"pager", SMTP_PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535


@dataclass
class SmtpServer:
    mailbox: Mailbox
    port: int

    def settings(self, **changes: Any) -> EmailSettings:
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.port,
            "sender": "Firebreak <firebreak@example.com>",
            "timeout": "2s",
        }
        return EmailSettings(**(values | changes))


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    mailbox = Mailbox()
    controller = LocalController(
        mailbox,
        hostname="127.0.0.1",
        port=0,
        auth_require_tls=False,
        authenticator=_authenticate,
        ready_timeout=5.0,
    )
    controller.start()
    try:
        yield SmtpServer(mailbox, controller.port)
    finally:
        controller.stop()


def test_email_is_delivered_through_a_real_smtp_server(smtp: SmtpServer) -> None:
    page = notification()
    EmailNotifier(smtp.settings(), {}).send(page)

    (message,) = smtp.mailbox.messages
    assert message["From"] == "Firebreak <firebreak@example.com>"
    assert message["To"] == "alice@example.com"
    assert message["Subject"] == page.subject
    assert message["X-Firebreak-Page"] == "P-12"
    assert message["Message-ID"].endswith("@example.com>")
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "text/plain"
    assert message.get_content().replace("\r\n", "\n").strip() == page.body
    assert smtp.mailbox.envelopes == [("firebreak@example.com", ["alice@example.com"])]


def test_email_logs_in_with_the_password_from_the_environment(smtp: SmtpServer) -> None:
    settings = smtp.settings(
        username="pager", password_env="FIREBREAK_SMTP_PASSWORD", allow_plaintext_auth=True
    )
    EmailNotifier(settings, {"FIREBREAK_SMTP_PASSWORD": SMTP_PASSWORD}).send(notification())
    assert len(smtp.mailbox.messages) == 1

    with pytest.raises(NotifyError) as caught:
        EmailNotifier(settings, {"FIREBREAK_SMTP_PASSWORD": "wrong-pass"}).send(notification())
    assert caught.value.retryable is False
    assert "535" in str(caught.value) and "wrong-pass" not in str(caught.value)


def test_email_missing_password_variable_is_not_retryable(smtp: SmtpServer) -> None:
    settings = smtp.settings(
        username="pager", password_env="FIREBREAK_SMTP_PASSWORD", allow_plaintext_auth=True
    )
    with pytest.raises(NotifyError) as caught:
        EmailNotifier(settings, {}).send(notification())
    assert caught.value.retryable is False
    assert "FIREBREAK_SMTP_PASSWORD" in str(caught.value)
    assert smtp.mailbox.messages == []


def test_email_recipient_refused_for_good_is_not_retryable(smtp: SmtpServer) -> None:
    smtp.mailbox.refuse["alice@example.com"] = "550 5.1.1 No such user here"
    with pytest.raises(NotifyError) as caught:
        EmailNotifier(smtp.settings(), {}).send(notification())
    assert caught.value.retryable is False
    assert "550" in str(caught.value)


def test_email_recipient_refused_for_now_is_retryable(smtp: SmtpServer) -> None:
    smtp.mailbox.refuse["alice@example.com"] = "450 4.2.1 Mailbox busy, try later"
    with pytest.raises(NotifyError) as caught:
        EmailNotifier(smtp.settings(), {}).send(notification())
    assert caught.value.retryable is True


def test_email_server_down_is_retryable() -> None:
    settings = EmailSettings(host="127.0.0.1", port=closed_port(), timeout="1s")
    with pytest.raises(NotifyError) as caught:
        EmailNotifier(settings, {}).send(notification())
    assert caught.value.retryable is True
    assert "127.0.0.1" in str(caught.value)


def test_email_without_an_address_is_not_retryable(smtp: SmtpServer) -> None:
    with pytest.raises(NotifyError) as caught:
        EmailNotifier(smtp.settings(), {}).send(
            notification(contact=Person(slack="U0ALICE", email=None))
        )
    assert caught.value.retryable is False
    assert "alice" in str(caught.value)


# -- webhook ----------------------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool


@dataclass
class HookServer:
    url: str
    received: list[Received]
    mode: dict[str, Any]  # "status": fixed answer, "sleep": seconds before answering

    def settings(self, **changes: Any) -> WebhookSettings:
        values: dict[str, Any] = {"url": self.url, "secret_env": "HOOK_SECRET"}
        return WebhookSettings(**(values | changes))


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """The timeout test's client hangs up before the answer: not an error."""


@pytest.fixture
def hook() -> Iterator[HookServer]:
    received: list[Received] = []
    mode: dict[str, Any] = {}
    stopping = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            ok = verify(
                WEBHOOK_SECRET,
                self.headers.get("X-Firebreak-Timestamp", ""),
                body,
                self.headers.get("X-Firebreak-Signature", ""),
            )
            received.append(Received(dict(self.headers.items()), body, ok))
            if mode.get("sleep"):
                stopping.wait(mode["sleep"])
            status = mode.get("status") or (200 if ok else 401)
            answer = b'{"ok":true}' if status == 200 else b"no"
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = _QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield HookServer(f"http://127.0.0.1:{server.server_address[1]}/page", received, mode)
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_webhook_posts_signed_json_the_receiver_verifies(hook: HookServer) -> None:
    sent_at = datetime.now(UTC).replace(microsecond=0)
    notifier = WebhookNotifier(
        hook.settings(), {"HOOK_SECRET": WEBHOOK_SECRET}, clock=lambda: sent_at
    )
    page = notification()
    notifier.send(page)

    (got,) = hook.received
    assert got.verified
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"] == "Firebreak"
    assert got.headers["X-Firebreak-Timestamp"] == str(int(sent_at.timestamp()))
    assert got.headers["X-Firebreak-Signature"].startswith("sha256=")
    data = json.loads(got.body)
    assert data == {
        "page_id": 12,
        "reference": "P-12",
        "person": "alice",
        "slack_user": "U0ALICE",
        "email": "alice@example.com",
        "message": "checkout p99 over 2s",
        "subject": page.subject,
        "text": page.body,
        "target": "schedule:primary",
        "step": 2,
        "cycle": 1,
        "incident": "INC-3",
        "paged_by": "alertmanager",
        "sent_at": sent_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    timestamp, signature = (
        got.headers["X-Firebreak-Timestamp"],
        got.headers["X-Firebreak-Signature"],
    )
    tampered = got.body.replace(b'"step":2', b'"step":3')
    assert tampered != got.body
    assert not verify(WEBHOOK_SECRET, timestamp, tampered, signature)
    assert not verify("another-secret", timestamp, got.body, signature)


def test_webhook_signed_with_the_wrong_secret_is_refused_and_not_retryable(
    hook: HookServer,
) -> None:
    with pytest.raises(NotifyError) as caught:
        WebhookNotifier(hook.settings(), {"HOOK_SECRET": "not-the-secret"}).send(notification())
    assert caught.value.retryable is False
    assert "401" in str(caught.value) and "not-the-secret" not in str(caught.value)
    assert [r.verified for r in hook.received] == [False]


def test_sign_and_verify_reject_stale_and_malformed_requests() -> None:
    body = b'{"page_id":1}'
    now = 1_700_000_000
    signature = sign(WEBHOOK_SECRET, now, body)
    assert verify(WEBHOOK_SECRET, str(now), body, signature, now=now + 299)
    assert not verify(WEBHOOK_SECRET, str(now), body, signature, now=now + 301)
    assert not verify(WEBHOOK_SECRET, str(now), body, signature, now=now - 301)
    assert not verify(WEBHOOK_SECRET, str(now + 1), body, signature, now=now)
    assert not verify(WEBHOOK_SECRET, "soon", body, signature, now=now)
    assert not verify(WEBHOOK_SECRET, str(now), body, "sha256=00", now=now)


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (429, True)])
def test_webhook_server_errors_are_retryable(
    hook: HookServer, status: int, retryable: bool
) -> None:
    hook.mode["status"] = status
    with pytest.raises(NotifyError) as caught:
        WebhookNotifier(hook.settings(), {"HOOK_SECRET": WEBHOOK_SECRET}).send(notification())
    assert caught.value.retryable is retryable
    assert str(status) in str(caught.value)


def test_webhook_404_is_not_retryable(hook: HookServer) -> None:
    hook.mode["status"] = 404
    with pytest.raises(NotifyError) as caught:
        WebhookNotifier(hook.settings(), {"HOOK_SECRET": WEBHOOK_SECRET}).send(notification())
    assert caught.value.retryable is False
    assert "404" in str(caught.value)


def test_webhook_timeout_is_retryable(hook: HookServer) -> None:
    hook.mode["sleep"] = 5
    # Below the config's one-second granularity; model_copy skips the YAML-facing parser.
    settings = hook.settings().model_copy(update={"timeout": timedelta(seconds=0.5)})
    started = time.monotonic()
    with pytest.raises(NotifyError) as caught:
        WebhookNotifier(settings, {"HOOK_SECRET": WEBHOOK_SECRET}).send(notification())
    assert caught.value.retryable is True
    assert "timed out" in str(caught.value)
    assert time.monotonic() - started < 3


def test_webhook_unreachable_is_retryable() -> None:
    settings = WebhookSettings(url=f"http://127.0.0.1:{closed_port()}/page")
    with pytest.raises(NotifyError) as caught:
        WebhookNotifier(settings, {"FIREBREAK_WEBHOOK_SECRET": WEBHOOK_SECRET}).send(notification())
    assert caught.value.retryable is True


def test_webhook_missing_secret_is_not_retryable_and_sends_nothing(hook: HookServer) -> None:
    with pytest.raises(NotifyError) as caught:
        WebhookNotifier(hook.settings(), {}).send(notification())
    assert caught.value.retryable is False
    assert "HOOK_SECRET" in str(caught.value)
    assert hook.received == []


def test_webhook_error_never_shows_the_urls_path(hook: HookServer) -> None:
    hook.mode["status"] = 500
    settings = hook.settings(url=hook.url + "/T000/B000/secret-path-token")
    with pytest.raises(NotifyError) as caught:
        WebhookNotifier(settings, {"HOOK_SECRET": WEBHOOK_SECRET}).send(notification())
    assert "secret-path-token" not in str(caught.value)


# -- composition ------------------------------------------------------------------------


def test_build_notifiers_picks_the_configured_channels(slack_client: WebClient) -> None:
    bare = build_notifiers(FileConfig(people=PEOPLE), slack_client, {})
    assert list(bare) == ["slack"]
    assert isinstance(bare["slack"], SlackDMNotifier)

    notifiers = NotifiersSection(
        email=EmailSettings(host="127.0.0.1"),
        webhook=WebhookSettings(url="http://127.0.0.1:9/page"),
    )
    full = build_notifiers(FileConfig(people=PEOPLE, notifiers=notifiers), slack_client, {})
    assert sorted(full) == ["email", "slack", "webhook"]
    assert isinstance(full["email"], EmailNotifier)
    assert isinstance(full["webhook"], WebhookNotifier)
    assert {name: n.channel for name, n in full.items()} == {
        "slack": "slack",
        "email": "email",
        "webhook": "webhook",
    }
