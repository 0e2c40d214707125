"""Paging by email over SMTP: one plain-text message per notification.

Configured by `notifiers.email` in firebreak.yaml (host, port, sender, starttls, username,
password_env, timeout). The password is read from the environment variable that
`password_env` names, at send time, and is never logged or put in an error message.

Messages are 7-bit clean, so any SMTP server relays them unchanged without `BODY=8BITMIME`:
a body with non-ASCII text (names, an em dash, emoji in an alert) goes as UTF-8 in
quoted-printable, and such a subject as an RFC 2047 encoded word.

Each message carries `X-Firebreak-Page: P-12` (so mail rules and receivers can match a page)
and `Auto-Submitted: auto-generated` (so vacation responders stay quiet). One call is one
delivery attempt; a failure is `NotifyError`, retryable when the server or network may
recover (connection refused, timeout, disconnect, 4xx) and not when it said no for good (5xx,
a refused recipient, failed login, no address).
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid, parseaddr

from bot.oncall.configuration import EmailNotifier as EmailSettings
from bot.oncall.notify import Notification, NotifyError


class EmailNotifier:
    """Sends a page to `notification.contact.email` through the configured SMTP server."""

    channel: str = "email"

    def __init__(self, settings: EmailSettings, environ: Mapping[str, str]) -> None:
        self._settings = settings
        self._environ = environ

    def send(self, notification: Notification) -> None:
        address = notification.contact.email
        if not address:
            raise NotifyError(
                f"email: {notification.person} has no email address in people:",
                retryable=False,
            )
        password = self._password()
        message = build_message(notification, self._settings.sender, address)
        try:
            self._deliver(message, password)
        except smtplib.SMTPRecipientsRefused as err:
            raise _refused(err, address) from None
        except smtplib.SMTPResponseException as err:  # sender or data refused, login failed...
            raise NotifyError(
                f"email to {address}: {self._where()} answered {err.smtp_code} {_text(err)}",
                retryable=_transient(err.smtp_code),
            ) from None
        except smtplib.SMTPNotSupportedError as err:
            raise NotifyError(f"email: {self._where()} {err}", retryable=False) from None
        except smtplib.SMTPServerDisconnected:
            raise NotifyError(
                f"email to {address}: {self._where()} closed the connection", retryable=True
            ) from None
        except ssl.SSLCertVerificationError as err:
            raise NotifyError(
                f"email: STARTTLS with {self._where()} failed: {err.verify_message}",
                retryable=False,
            ) from None
        except (smtplib.SMTPException, OSError) as err:  # refused, timeout, DNS, TLS
            raise NotifyError(
                f"email to {address}: cannot reach {self._where()} ({_describe(err)})",
                retryable=True,
            ) from None

    def _password(self) -> str | None:
        settings = self._settings
        if settings.username is None:
            return None
        if settings.password_env is None:
            raise NotifyError(
                "email: notifiers.email has a username but no password_env", retryable=False
            )
        password = self._environ.get(settings.password_env)
        if password is None:
            raise NotifyError(
                f"email: environment variable {settings.password_env} (the SMTP password) "
                "is not set",
                retryable=False,
            )
        return password

    def _deliver(self, message: EmailMessage, password: str | None) -> None:
        settings = self._settings
        timeout = settings.timeout.total_seconds()
        with smtplib.SMTP(settings.host, settings.port, timeout=timeout) as smtp:
            if settings.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.username is not None and password is not None:
                smtp.login(settings.username, password)
            smtp.send_message(message)

    def _where(self) -> str:
        return f"SMTP server {self._settings.host}:{self._settings.port}"


# Headers and bodies as 7-bit ASCII (RFC 5322 line endings): `cte_type="7bit"` makes the
# generator encode whatever is not, instead of sending 8-bit data the server never accepted.
SEVEN_BIT = SMTP.clone(cte_type="7bit")


def build_message(notification: Notification, sender: str, to: str) -> EmailMessage:
    """The page as a plain-text email with its page reference in a header; 7-bit clean."""
    message = EmailMessage(policy=SEVEN_BIT)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = notification.subject
    message["Date"] = formatdate(usegmt=True)
    # An explicit domain: make_msgid() would otherwise ask DNS for this host's FQDN.
    domain = parseaddr(sender)[1].rpartition("@")[2] or "firebreak.invalid"
    message["Message-ID"] = make_msgid(f"page-{notification.page_id}", domain=domain)
    message["X-Firebreak-Page"] = notification.reference
    message["Auto-Submitted"] = "auto-generated"
    body = notification.body
    # Quoted-printable keeps a mostly-ASCII page readable in the raw message; base64, which
    # the 7-bit policy could pick by itself, does not.
    message.set_content(body, cte=None if body.isascii() else "quoted-printable")
    return message


def _transient(code: int) -> bool:
    """SMTP 4xx means try later; 5xx is a permanent no."""
    return 400 <= code < 500


def _text(err: smtplib.SMTPResponseException) -> str:
    raw = err.smtp_error
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return text.strip()[:200]


def _refused(err: smtplib.SMTPRecipientsRefused, address: str) -> NotifyError:
    answers = [
        (code, reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply))
        for code, reply in err.recipients.values()
    ]
    retryable = bool(answers) and all(_transient(code) for code, _ in answers)
    detail = "; ".join(f"{code} {reply.strip()[:200]}" for code, reply in answers)
    return NotifyError(f"email to {address}: recipient refused ({detail})", retryable=retryable)


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
