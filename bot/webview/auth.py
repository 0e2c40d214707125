"""Sign-in links and sessions for the web view.

A sign-in link is `BASE/signin?token=PAYLOAD.SIGNATURE`: the payload (base64url JSON) names
a stored nonce, the person, the expiry and the page to open; the signature is an HMAC-SHA256
under a key derived from SLACK_SIGNING_SECRET, so a link cannot be forged or altered. It
works once (redeeming marks its nonce used in the same statement that checks it was not) and
for 10 minutes. Redeeming it opens a session of 12 hours: a random cookie value whose
SHA-256 is stored, so the database holds nothing a browser could present. `revoke` ends a
person's sessions and voids their unused links.

No Flask here: the blueprint (`bot.webview.views`), `/incident web` and the CLI share this.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast
from urllib.parse import quote

from sqlalchemy import CursorResult, select, update

from bot.clock import Clock
from bot.db import Database
from bot.webview.models import WebSession, WebSignIn

LINK_LIFETIME = timedelta(minutes=10)
SESSION_LIFETIME = timedelta(hours=12)
COOKIE = "firebreak_session"
MAX_TOKEN = 1024  # a real token is about 250 characters
ASK_AGAIN = "Ask for a new one with /incident web in Slack."


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
