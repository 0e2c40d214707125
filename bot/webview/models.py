"""The web view's sign-in links and sessions (migration 0009).

A sign-in link carries a nonce; its row says who it is for, until when, and whether it has
been used (a link works once). A session's row is found by the SHA-256 of the cookie's
value, so the database never holds a usable cookie; `revoked_at` ends it early.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.db import Base
from bot.incidents.models import Incident

__all__ = ["WebSession", "WebSignIn"]


class WebSignIn(Base):
    __tablename__ = "web_sign_ins"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)  # Slack user id
    name: Mapped[str] = mapped_column(String(128))  # shown as "signed in as"
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class WebSession(Base):
    __tablename__ = "web_sessions"
    __table_args__ = (Index("ix_web_sessions_user_id", "user_id"),)

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


# The incident list filters and orders by the declaration time; the index belongs to the
# web view's queries, so it is declared here (and created by migration 0009).
ix_incidents_declared_at = Index("ix_incidents_declared_at", Incident.declared_at)
