"""Old sign-in links and sessions are purged, live ones are not (issue #12).

Rows are made the way people make them (links from `WebAccess.link`, sessions by opening
a link through the real WSGI app) at pinned instants; the purge runs from the leader's
reconcile pass (`JobRunner.reconcile`) as in production. Both databases.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from werkzeug.test import Client

from bot.app import Firebreak
from bot.webview.auth import LINK_LIFETIME, PURGE_AFTER, PURGE_EVERY, SESSION_LIFETIME
from bot.webview.models import WebSession, WebSignIn

BASE = "http://firebreak.test"


def pin(firebreak: Firebreak, at: datetime) -> None:
    firebreak.clock.use(lambda: at)


def count(firebreak: Firebreak, model: type[WebSignIn] | type[WebSession]) -> int:
    with firebreak.db.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def signed_in_browser(firebreak: Firebreak, user: str = "U0ALICE") -> Client:
    """A browser that opened a fresh sign-in link (one used link, one session)."""
    browser = Client(firebreak.web)
    response = browser.get(firebreak.web_access.link(user, "alice").removeprefix(BASE))
    assert response.status_code == 303, response.get_data(as_text=True)
    return browser


def test_the_reconcile_pass_purges_what_ended_a_day_ago_and_keeps_live_sessions(
    firebreak: Firebreak,
) -> None:
    firebreak.web_access.base_url = BASE
    start = firebreak.clock()
    pin(firebreak, start)
    old_browser = signed_in_browser(firebreak)  # session ends at start + 12 h
    firebreak.web_access.link("U0BOB", "bob")  # never used: expires at start + 10 min
    pin(firebreak, start + timedelta(hours=1))
    revoked_browser = signed_in_browser(firebreak, "U0BOB")
    assert firebreak.web_access.revoke("U0BOB") == 1  # revoked at start + 1 h
    # A second short of a day after alice's first session ended, she signs in again.
    live_at = start + SESSION_LIFETIME + PURGE_AFTER - timedelta(seconds=1)
    pin(firebreak, live_at)
    live_browser = signed_in_browser(firebreak)
    assert count(firebreak, WebSignIn) == 4 and count(firebreak, WebSession) == 3
    firebreak.jobs.reconcile()
    # The three older links expired (used or not) and bob's session was revoked more than a
    # day ago: gone. Alice's first session ended 12 hours in: a second short of a day ago.
    assert count(firebreak, WebSignIn) == 1 and count(firebreak, WebSession) == 2
    assert old_browser.get("/").status_code == 401  # ended, though its row is kept a day
    assert revoked_browser.get("/").status_code == 401

    # A reconcile pass right after does not purge again (at most every PURGE_EVERY) ...
    pin(firebreak, live_at + timedelta(minutes=1))
    firebreak.jobs.reconcile()
    assert count(firebreak, WebSession) == 2
    # ... the next one that is due does: alice's first session goes.
    pin(firebreak, live_at + PURGE_EVERY)
    firebreak.jobs.reconcile()
    assert count(firebreak, WebSignIn) == 1 and count(firebreak, WebSession) == 1
    assert live_browser.get("/").status_code == 200  # the live session survives


def test_purge_keeps_every_row_that_ended_less_than_a_day_ago(firebreak: Firebreak) -> None:
    firebreak.web_access.base_url = BASE
    start = firebreak.clock()
    pin(firebreak, start)
    browsers = [signed_in_browser(firebreak) for _ in range(3)]
    firebreak.web_access.link("U0ALICE", "alice")
    firebreak.web_access.revoke("U0ALICE")  # every session ended now, every link void
    pin(firebreak, start + PURGE_AFTER)  # revoked exactly a day ago: not more
    assert firebreak.web_access.purge() == (0, 0)
    pin(firebreak, start + PURGE_AFTER + timedelta(microseconds=1))
    assert firebreak.web_access.purge() == (0, 3)
    pin(firebreak, start + LINK_LIFETIME + PURGE_AFTER)  # links expired exactly a day ago
    assert firebreak.web_access.purge() == (0, 0)
    assert count(firebreak, WebSignIn) == 4
    pin(firebreak, start + LINK_LIFETIME + PURGE_AFTER + timedelta(microseconds=1))
    assert firebreak.web_access.purge() == (4, 0)
    assert all(browser.get("/").status_code == 401 for browser in browsers)
