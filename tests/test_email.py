"""Page emails are 7-bit clean: sent through a real SMTP server that offers no 8BITMIME.

A strict server (RFC 5321 without extensions) must only be sent 7-bit data. The server here
is a small one written on `socketserver`, on 127.0.0.1, that advertises nothing but its name
and keeps each message's bytes exactly as they came over the socket, with the MAIL command.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from bot.oncall.configuration import EmailNotifier as EmailSettings
from bot.oncall.notify import Notification
from bot.people import Person
from integrations.email import EmailNotifier

NON_ASCII = "Zoë's checkout — p99 over 2 s 🔥 (Straße, 東京)"


@dataclass
class Received:
    mail_commands: list[bytes] = field(default_factory=list)
    ehlo_answers: list[bytes] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)


class PlainSmtpHandler(socketserver.StreamRequestHandler):
    """One SMTP session: EHLO (no extensions), MAIL, RCPT, DATA, QUIT; anything else 502."""

    server: PlainSmtpServer

    def reply(self, line: bytes) -> None:
        self.wfile.write(line + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        received = self.server.received
        self.reply(b"220 strict.test ESMTP")
        while line := self.rfile.readline(1024):
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                answer = b"250 strict.test"  # no 8BITMIME, no SMTPUTF8, no AUTH
                received.ehlo_answers.append(answer)
                self.reply(answer)
            elif verb == b"MAIL":
                received.mail_commands.append(line.rstrip(b"\r\n"))
                self.reply(b"250 OK")
            elif verb == b"RCPT":
                self.reply(b"250 OK")
            elif verb == b"DATA":
                self.reply(b"354 End data with <CR><LF>.<CR><LF>")
                data = bytearray()
                while (chunk := self.rfile.readline(65536)) not in (b".\r\n", b""):
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                received.messages.append(bytes(data))
                self.reply(b"250 Queued")
            elif verb in (b"RSET", b"NOOP"):
                self.reply(b"250 OK")
            elif verb == b"QUIT":
                self.reply(b"221 Bye")
                return
            else:
                self.reply(b"502 Command not implemented")


class PlainSmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), PlainSmtpHandler)
        self.received = Received()


@pytest.fixture
def strict_smtp() -> Iterator[PlainSmtpServer]:
    server = PlainSmtpServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def page(**changes: Any) -> Notification:
    base = Notification(
        page_id=7,
        reference="P-7",
        person="zoe",
        contact=Person(slack="U0ZOE", email="zoe@example.com", timezone="Europe/Berlin"),
        message=NON_ASCII,
        target="schedule:primary",
        step=1,
        cycle=0,
        incident="INC-4",
        paged_by="alertmanager",
        details={"labels": {"team": "paiements-équipe"}},
    )
    return replace(base, **changes)


def send(server: PlainSmtpServer, notification: Notification) -> tuple[bytes, EmailMessage]:
    settings = EmailSettings(
        host="127.0.0.1",
        port=server.server_address[1],
        sender="Firebreak <firebreak@example.com>",
        timeout="5s",
    )
    EmailNotifier(settings, {}).send(notification)
    (raw,) = server.received.messages
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return raw, parsed


def test_a_page_with_non_ascii_text_goes_7_bit_to_a_server_without_8bitmime(
    strict_smtp: PlainSmtpServer,
) -> None:
    notification = page()
    raw, message = send(strict_smtp, notification)

    assert strict_smtp.received.ehlo_answers == [b"250 strict.test"]
    (mail,) = strict_smtp.received.mail_commands
    assert mail.upper() == b"MAIL FROM:<FIREBREAK@EXAMPLE.COM>"  # no BODY=8BITMIME, SMTPUTF8
    eight_bit = sorted({byte for byte in raw if byte >= 0x80})
    assert eight_bit == [], f"8-bit bytes in the message: {eight_bit[:10]}"
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert message["Content-Transfer-Encoding"] == "quoted-printable"
    assert message.get_content_charset() == "utf-8"
    # Decoded, it is the page exactly, with every character the sender wrote.
    body = message.get_content().replace("\r\n", "\n")
    assert body.rstrip("\n") == notification.body
    assert NON_ASCII in body and "team: paiements-équipe" in body and "·" in body
    assert message["Subject"] == notification.subject
    assert NON_ASCII in message["Subject"]


def test_an_ascii_subject_stays_readable_in_the_raw_message(
    strict_smtp: PlainSmtpServer,
) -> None:
    """Mail rules match the subject's text: only a subject that needs it is encoded."""
    notification = page(message="checkout p99 over 2s", details=None)
    raw, message = send(strict_smtp, notification)
    assert all(byte < 0x80 for byte in raw)
    assert b"\r\nSubject: [Firebreak] Page P-7 (INC-4): checkout p99 over 2s\r\n" in raw
    assert b"\r\nX-Firebreak-Page: P-7\r\n" in raw
    assert message.get_content().replace("\r\n", "\n").rstrip("\n") == notification.body
