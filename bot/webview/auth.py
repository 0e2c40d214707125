"""Sign-in links and sessions for the web view.

A sign-in link is `BASE/signin?token=PAYLOAD.SIGNATURE`: the payload (base64url JSON) names
a stored nonce, the person, the expiry and the page to open; the signature is an HMAC-SHA256
under a key derived from SLACK_SIGNING_SECRET, so a link cannot be forged or altered. It
works once (redeeming marks its nonce used in the same statement that checks it was not) and
for 10 minutes. Redeeming it opens a session of 12 hours: a random cookie value whose
SHA-256 is stored, so the database holds nothing a browser could present. `revoke` ends a
person's sessions and voids their unused links. Rows that ended a day ago are deleted
(`purge`, run from the scheduler leader's reconcile pass), so the tables do not grow forever.

No Flask here: the blueprint (`bot.webview.views`), `/incident web` and the CLI share this.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import quote

from sqlalchemy import CursorResult, delete, or_, select, update

from bot.clock import Clock
from bot.db import Database
from bot.webview.models import WebSession, WebSignIn

LINK_LIFETIME = timedelta(minutes=10)
SESSION_LIFETIME = timedelta(hours=12)
COOKIE = "firebreak_session"
MAX_TOKEN = 1024  # a real token is about 250 characters
ASK_AGAIN = "Ask for a new one with /incident web in Slack."
# Links and sessions that ended (expired, used up or revoked) are deleted this long after,
# by the scheduler leader's reconcile pass at most every PURGE_EVERY (`purge_if_due`).
PURGE_AFTER = timedelta(days=1)
PURGE_EVERY = timedelta(minutes=10)

log = logging.getLogger(__name__)


class SignInRefused(Exception):
    """A sign-in link that does not open a session; the message says why and what to do."""


@dataclass(frozen=True)
class Signed:
    """A session just opened: the cookie value, when it ends, and the page to go to."""

    cookie: str
    expires_at: datetime
    next_path: str


@dataclass(frozen=True)
class SessionHolder:
    user_id: str
    name: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _hash(cookie: str) -> str:
    return hashlib.sha256(cookie.encode("utf-8")).hexdigest()


def safe_path(path: str) -> str:
    """A path on this site only (`/incidents/INC-7`), never `//elsewhere` or a URL."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


class WebAccess:
    """Who may read the web view: sign-in links, sessions, and the sandbox's open door.

    `base_url` is where links point (FIREBREAK_BASE_URL; `serve --sandbox` sets it to the
    URL it listens on). `open_on_loopback`: `serve --sandbox` on a loopback address lets
    requests from loopback in without signing in (every page says so).
    """

    def __init__(self, db: Database, secret: str, clock: Clock, base_url: str | None) -> None:
        self.db = db
        self.clock = clock
        self.base_url = base_url.rstrip("/") if base_url else None
        self.open_on_loopback = False
        self._purge_lock = threading.Lock()
        self._next_purge: datetime | None = None
        self._key = hmac.new(secret.encode(), b"firebreak web view sign-in", "sha256").digest()

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode("ascii"), "sha256").digest())

    def link(self, user_id: str, name: str, *, next_path: str = "/") -> str:
        """A new single-use sign-in link for this person; needs `base_url`."""
        if self.base_url is None:
            raise SignInRefused(
                "the web view's public address is not configured: set FIREBREAK_BASE_URL "
                "(like https://firebreak.example.com) where Firebreak runs"
            )
        now = self.clock()
        nonce = secrets.token_urlsafe(24)
        expires = now + LINK_LIFETIME
        with self.db.session_scope() as session:
            session.add(
                WebSignIn(
                    nonce=nonce,
                    user_id=user_id,
                    name=name[:128],
                    created_at=now,
                    expires_at=expires,
                    used_at=None,
                )
            )
        body = {"n": nonce, "u": user_id, "x": int(expires.timestamp()), "p": safe_path(next_path)}
        payload = _b64(json.dumps(body, separators=(",", ":")).encode("utf-8"))
        token = f"{payload}.{self._sign(payload)}"
        return f"{self.base_url}/signin?token={quote(token)}"

    def redeem(self, token: str) -> Signed:
        """Open a session with a sign-in link's token, or raise SignInRefused saying why."""
        body = self._verified(token)
        now = self.clock()
        if now.timestamp() >= body["x"]:
            raise SignInRefused(
                f"This sign-in link has expired: links work for "
                f"{int(LINK_LIFETIME.total_seconds() // 60)} minutes. {ASK_AGAIN}"
            )
        with self.db.session_scope() as session:
            claimed = session.execute(
                update(WebSignIn)
                .where(
                    WebSignIn.nonce == body["n"],
                    WebSignIn.used_at.is_(None),
                    WebSignIn.expires_at > now,
                )
                .values(used_at=now)
                .returning(WebSignIn.user_id, WebSignIn.name)
            ).first()
            if claimed is None:
                known = session.get(WebSignIn, body["n"]) is not None
                raise SignInRefused(
                    f"This sign-in link was already used (each link works once) or withdrawn. {ASK_AGAIN}"
                    if known
                    else f"This sign-in link is not known here. {ASK_AGAIN}"
                )
            user_id, name = claimed
            cookie = secrets.token_urlsafe(32)
            expires = now + SESSION_LIFETIME
            session.add(
                WebSession(
                    token_hash=_hash(cookie),
                    user_id=user_id,
                    name=name,
                    created_at=now,
                    expires_at=expires,
                    revoked_at=None,
                )
            )
        return Signed(cookie, expires, safe_path(str(body.get("p") or "/")))

    def _verified(self, token: str) -> dict[str, Any]:
        invalid = SignInRefused(
            f"This sign-in link is not valid: it was changed or cut short. Open the whole "
            f"link as Firebreak sent it. {ASK_AGAIN}"
        )
        if not token or len(token) > MAX_TOKEN or token.count(".") != 1:
            raise invalid
        payload, signature = token.split(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            raise invalid
        try:
            body = json.loads(_unb64(payload))
        except (ValueError, binascii.Error):
            raise invalid from None
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("n"), str)
            or not isinstance(body.get("x"), int)
        ):
            raise invalid
        return body

    def session(self, cookie: str | None) -> SessionHolder | None:
        """Who holds this session cookie, if it is live (not expired, not revoked)."""
        if not cookie or len(cookie) > 128:
            return None
        now = self.clock()
        with self.db.session_scope() as session:
            row = session.execute(
                select(WebSession.user_id, WebSession.name).where(
                    WebSession.token_hash == _hash(cookie),
                    WebSession.revoked_at.is_(None),
                    WebSession.expires_at > now,
                )
            ).first()
        return SessionHolder(row.user_id, row.name) if row is not None else None

    def revoke(self, user_id: str) -> int:
        """End this person's live sessions and void their unused links; how many sessions."""
        now = self.clock()
        with self.db.session_scope() as session:
            ended = cast(
                CursorResult[Any],
                session.execute(
                    update(WebSession)
                    .where(
                        WebSession.user_id == user_id,
                        WebSession.revoked_at.is_(None),
                        WebSession.expires_at > now,
                    )
                    .values(revoked_at=now)
                ),
            ).rowcount
            session.execute(
                update(WebSignIn)
                .where(WebSignIn.user_id == user_id, WebSignIn.used_at.is_(None))
                .values(used_at=now)
            )
        return int(ended or 0)

    # -- purging old rows (issue #12) ------------------------------------------------------

    def purge(self, now: datetime | None = None) -> tuple[int, int]:
        """Delete sign-in links that expired, and sessions that ended (expired or revoked),
        more than PURGE_AFTER ago; returns how many (links, sessions). Live sessions and
        links are never touched: every row deleted has been unusable for a day."""
        cutoff = (now or self.clock()) - PURGE_AFTER
        with self.db.session_scope() as session:
            links = cast(
                CursorResult[Any],
                session.execute(delete(WebSignIn).where(WebSignIn.expires_at < cutoff)),
            ).rowcount
            sessions = cast(
                CursorResult[Any],
                session.execute(
                    delete(WebSession).where(
                        or_(WebSession.expires_at < cutoff, WebSession.revoked_at < cutoff)
                    )
                ),
            ).rowcount
        return int(links or 0), int(sessions or 0)

    def purge_if_due(self) -> tuple[int, int] | None:
        """`purge`, at most once every PURGE_EVERY in this process; None when not due. The
        scheduler leader's reconcile pass calls it (every few seconds), so old rows go
        without a job of their own."""
        now = self.clock()
        with self._purge_lock:
            if self._next_purge is not None and now < self._next_purge:
                return None
            self._next_purge = now + PURGE_EVERY
        purged = self.purge(now)
        if any(purged):
            log.info(
                "purged %d web sign-in links and %d web sessions that ended before %s",
                *purged,
                now - PURGE_AFTER,
            )
        return purged
