"""The timeline's lines, built in Python and kept for speed, say what the template said.

`render.timeline_item` replaced a template loop and `bot.webview.lines` keeps each line
once made (issue #12's benchmark: 10,000 events). These check that the escaping is
autoescape's, the times are `strftime`'s, and that kept lines never hide a new event,
never show one reader another's zone, and stay within their bound.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from markupsafe import escape
from werkzeug.test import Client

from bot import timeline
from bot.app import Firebreak
from bot.webview.lines import LIMIT, TimelineLines
from bot.webview.queries import IDS_PER_QUERY
from bot.webview.render import TimelineRow, escape_text, local_time, timeline_item
from bot.webview.views import WebView, web_view_blueprint
from tests.conftest import Slack
from tests.test_webview import BASE, IMG, declare, incident_channel, slack_escaped

HOSTILE = ['"><img src=x onerror=alert(1)>', "<script>alert(1)</script>", "a & b 'c'"]


@given(st.text())
def test_escaping_is_autoescapes(text: str) -> None:
    assert escape_text(text) == str(escape(text))


def test_a_line_escapes_every_value() -> None:
    for text in HOSTILE:
        row = TimelineRow(
            7, 'note"><b', "2026-03-29T01:00:00+00:00", "2026-03-29 03:00:00 CEST", text
        )
        line = timeline_item(row)
        assert "<img" not in line and "<script" not in line and "<b" not in line
        assert f"<span>{escape(text)}</span>" in line
        assert line.startswith('<li class="event kind-note&#34;&gt;&lt;b" data-id="7">')


def test_local_time_is_strftimes_across_dst_changes() -> None:
    zones = [
        ZoneInfo(name) for name in ("Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC")
    ]
    start = datetime(2026, 3, 28, 22, 0, 0, 123456, tzinfo=UTC)  # Berlin springs forward
    for minutes in range(0, 60 * 24 * 240, 97):  # past New York's and Berlin's autumn too
        moment = start + timedelta(minutes=minutes, seconds=minutes % 60)
        for zone in zones:
            expected = moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")
            assert local_time(moment, zone) == expected


# -- kept lines (`bot.webview.lines`) through the real app ------------------------------


def viewer_app(firebreak: Firebreak, limit: int = LIMIT) -> tuple[Flask, WebView]:
    """Another web view over the same database, configuration and clock, with its own kept
    lines (as another process would have)."""
    view = WebView(firebreak.db, firebreak.settings.file, firebreak.clock, firebreak.web_access)
    view.lines = TimelineLines(limit)
    app = Flask("another")
    app.register_blueprint(web_view_blueprint(view))
    return app, view


def browser(firebreak: Firebreak, app: Flask, user: str, name: str) -> Client:
    client = Client(app)
    link = firebreak.web_access.link(user, name).removeprefix(BASE)
    assert client.get(link).status_code == 303
    return client


def timeline_of(page: str) -> list[str]:
    return re.findall(r'<li class="event[^"]*" data-id="\d+">.*</li>', page)


def test_kept_lines_show_new_events_and_match_a_fresh_process(
    firebreak: Firebreak, slack: Slack, general: str
) -> None:
    firebreak.web_access.base_url = BASE
    firebreak.clock.use(lambda: datetime(2026, 3, 29, 0, 30, tzinfo=UTC))  # Berlin's DST day
    declare(slack, general, "checkout errors")
    channel = incident_channel(firebreak)
    slack.run(f"note first {slack_escaped(IMG)}", channel=channel)
    app, view = viewer_app(firebreak)
    alice = browser(firebreak, app, "U0ALICE", "alice")  # Europe/Berlin
    bob = browser(firebreak, app, "U0BOB", "bob")  # America/New_York
    first = alice.get("/incidents/INC-1").get_data(as_text=True)
    kept = len(view.lines)
    assert kept == len(timeline_of(first)) > 0
    firebreak.clock.use(lambda: datetime(2026, 3, 29, 1, 30, tzinfo=UTC))  # now CEST
    slack.run("note second", channel=channel)
    again = alice.get("/incidents/INC-1").get_data(as_text=True)
    lines = timeline_of(again)
    assert lines[: len(timeline_of(first))] == timeline_of(first)  # kept, in order
    assert "alice added a note: second" in lines[-1] and "CEST" in lines[-1]
    assert "CET</time> <span>alice added a note: first &#34;&gt;&lt;img" in again
    assert f"({len(lines)} events)" in again
    # Bob reads the same events in his zone: his lines are his own.
    bobs = timeline_of(bob.get("/incidents/INC-1").get_data(as_text=True))
    assert len(bobs) == len(lines) and all(" EDT</time>" in line for line in bobs)
    # A process that kept nothing renders the very same page.
    fresh_app, _ = viewer_app(firebreak)
    fresh = browser(firebreak, fresh_app, "U0ALICE", "alice")
    assert fresh.get("/incidents/INC-1").get_data(as_text=True) == again


def test_kept_lines_are_bounded_and_the_page_stays_whole(
    firebreak: Firebreak, slack: Slack, general: str
) -> None:
    firebreak.web_access.base_url = BASE
    declare(slack, general, "checkout errors")
    channel = incident_channel(firebreak)
    for number in range(6):
        slack.run(f"note number {number}", channel=channel)
    app, view = viewer_app(firebreak, limit=4)
    alice = browser(firebreak, app, "U0ALICE", "alice")
    pages = [alice.get("/incidents/INC-1").get_data(as_text=True) for _ in range(2)]
    assert len(view.lines) == 4
    assert pages[0] == pages[1]
    notes = [line for line in timeline_of(pages[1]) if "added a note: number" in line]
    assert [note.split("number ")[1][0] for note in notes] == ["0", "1", "2", "3", "4", "5"]


def test_a_long_timeline_is_whole_when_read_at_once_and_in_pieces(
    firebreak: Firebreak, slack: Slack, general: str
) -> None:
    """More lines to make than one `IN (...)` takes: the whole timeline is read at once;
    then the few new ones by id. Either way every event is on the page, in order."""
    firebreak.web_access.base_url = BASE
    declare(slack, general, "checkout errors")
    start = firebreak.clock()
    with firebreak.db.session_scope() as session:
        for number in range(IDS_PER_QUERY + 100):
            timeline.record(
                session,
                "note_added",
                now=start + timedelta(seconds=number),
                actor="U0BOB",
                incident_id=1,
                data={"text": f"bulk {number} <@U0ALICE|alice>"},
                flush=False,
            )
    app, view = viewer_app(firebreak)
    alice = browser(firebreak, app, "U0ALICE", "alice")
    lines = timeline_of(alice.get("/incidents/INC-1").get_data(as_text=True))
    assert len(view.lines) == len(lines)
    bulk = [line for line in lines if "bob added a note: bulk " in line]
    assert [line.split("bulk ")[1].split(" ")[0] for line in bulk] == [
        str(number) for number in range(IDS_PER_QUERY + 100)
    ]
    assert "bulk 0 @alice</span>" in bulk[0]
    later = start + timedelta(hours=1)  # after the last bulk note
    firebreak.clock.use(lambda: later)
    slack.run("note one more", channel=incident_channel(firebreak))
    again = alice.get("/incidents/INC-1").get_data(as_text=True)
    assert timeline_of(again)[: len(lines)] == lines
    assert "added a note: one more" in timeline_of(again)[-1]
    fresh_app, _ = viewer_app(firebreak)
    fresh = browser(firebreak, fresh_app, "U0ALICE", "alice")
    assert fresh.get("/incidents/INC-1").get_data(as_text=True) == again
