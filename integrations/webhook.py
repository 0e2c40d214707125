"""Paging by signed webhook: one JSON POST per notification.

Configured by `notifiers.webhook` in firebreak.yaml (url, secret_env, timeout). The body is a
JSON object: page_id, reference, person, slack_user, email, message, subject, text, target,
step, cycle, incident, paged_by and sent_at (ISO 8601, UTC).

Signature scheme (what a receiver must check):

    X-Firebreak-Timestamp: <unix seconds when sent>
    X-Firebreak-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>

The key is the value of the environment variable `secret_env` names (default
FIREBREAK_WEBHOOK_SECRET), UTF-8 encoded. A receiver recomputes the HMAC over the exact bytes
it received, prefixed by the timestamp header and a dot, compares it with the header in
constant time (`hmac.compare_digest`), and rejects timestamps more than 5 minutes from its
clock, so a captured request cannot be replayed later. `verify()` below does all of that.

Answers: any 2xx is delivered. 408, 429, 5xx, timeouts and connection errors are retryable
`NotifyError`s; any other answer (4xx, or a redirect, which is not followed) is not.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import time
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import IO, Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from bot.oncall.configuration import WebhookNotifier as WebhookSettings
from bot.oncall.notify import Notification, NotifyError

SIGNATURE_HEADER = "X-Firebreak-Signature"
TIMESTAMP_HEADER = "X-Firebreak-Timestamp"
TOLERANCE_SECONDS = 300
RETRYABLE_STATUS = frozenset({408, 425, 429})


def sign(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """The X-Firebreak-Signature value: `sha256=` and the hex HMAC of `timestamp.body`."""
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    digest = hmac.new(key, f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def verify(
    secret: str | bytes,
    timestamp: int | str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> bool:
    """True when `signature` is this body's and the timestamp is within `tolerance` seconds."""
    try:
        sent = int(str(timestamp).strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature.strip())


def payload(notification: Notification, sent_at: datetime) -> dict[str, Any]:
    """The JSON object a receiver gets."""
    contact = notification.contact
    return {
        "page_id": notification.page_id,
        "reference": notification.reference,
        "person": notification.person,
        "slack_user": contact.slack,
        "email": contact.email,
        "message": notification.message,
        "subject": notification.subject,
        "text": notification.body,
        "target": notification.target,
        "step": notification.step,
        "cycle": notification.cycle,
        "incident": notification.incident,
        "paged_by": notification.paged_by,
        "sent_at": sent_at.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def _now() -> datetime:
    return datetime.now(UTC)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would turn the POST into a GET that drops the body: report it instead."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


class WebhookNotifier:
    """POSTs each page, signed, to the configured URL."""

    channel: str = "webhook"

    def __init__(
        self,
        settings: WebhookSettings,
        environ: Mapping[str, str],
        *,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._settings = settings
        self._environ = environ
        self._clock = clock
        # The default handlers, proxies from the environment included, minus redirects.
        self._opener = urllib.request.build_opener(_NoRedirects())

    def send(self, notification: Notification) -> None:
        secret = self._secret()
        sent_at = self._clock()
        body = json.dumps(payload(notification, sent_at), separators=(",", ":")).encode()
        timestamp = int(sent_at.timestamp())
        # The configuration accepts only http(s) URLs (WebhookSettings._url).
        request = urllib.request.Request(  # noqa: S310
            self._settings.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": "Firebreak",
                TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: sign(secret, timestamp, body),
            },
        )
        where = f"webhook {_origin(self._settings.url)}"
        try:
            with self._opener.open(request, timeout=self._settings.timeout.total_seconds()) as r:
                r.read(65536)
        except HTTPError as err:
            raise _status_error(where, err) from None
        except (URLError, http.client.HTTPException, OSError) as err:  # timeouts are OSErrors
            reason = err.reason if isinstance(err, URLError) else err
            raise NotifyError(f"{where}: {_describe(reason)}", retryable=True) from None

    def _secret(self) -> str:
        name = self._settings.secret_env
        secret = self._environ.get(name)
        if not secret:
            raise NotifyError(
                f"webhook: environment variable {name} (the signing secret) is not set",
                retryable=False,
            )
        return secret


def _status_error(where: str, err: HTTPError) -> NotifyError:
    status = err.code
    try:
        answer = err.read(300).decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException):
        answer = ""
    finally:
        err.close()
    if 300 <= status < 400:
        detail = f"{status}, a redirect (not followed); configure the final URL"
    else:
        detail = f"{status} {err.reason}" + (f": {answer}" if answer else "")
    retryable = status in RETRYABLE_STATUS or status >= 500
    return NotifyError(f"{where} answered {detail}", retryable=retryable)


def _origin(url: str) -> str:
    """Scheme, host and port only: a webhook URL's path or query often holds a token."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _describe(reason: object) -> str:
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, BaseException):
        return f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
    return str(reason)
