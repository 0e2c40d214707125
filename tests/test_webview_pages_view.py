"""`/pages` through the real WSGI app: open pages and where each stands in its escalation.

Pages are triggered, escalated, acknowledged and resolved by the real pager and its jobs
(Slack is the sandbox, so notifications are really sent, or fail as the sandbox is told
to); an alert from Alertmanager opens an incident and pages, as in production. The clock is
moved by hand, so "in 3m" is known exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event
from werkzeug.test import Client

from bot.app import Firebreak
from bot.sandbox import SlackSandbox
from bot.webview import pages
from tests.test_alerts import (  # noqa: F401  (fixtures: alert routes, the payments policy)
    Monitoring,
    am_alert,
    am_payload,
    file_config,
    firebreak,
    monitoring,
    settings,
)
from tests.test_paging import MONDAY, Clock
from tests.test_webview import BASE, IMG, SCRIPT, path_of


@pytest.fixture
def clock(firebreak: Firebreak) -> Clock:  # noqa: F811
    clock = Clock(MONDAY)
    firebreak.clock.use(clock)
    return clock


@pytest.fixture
def web(firebreak: Firebreak, clock: Clock) -> Client:  # noqa: F811
    """Signed in as alice, whose zone is Europe/Berlin (CET on MONDAY)."""
    firebreak.web_access.base_url = BASE
    client = Client(firebreak.web)
    assert client.get(path_of(firebreak.web_access.link("U0ALICE", "alice"))).status_code == 303
    return client


def card(html: str, reference: str) -> str:
    """The HTML of one open page's card."""
    match = re.search(rf'<article [^>]*id="{reference}">(.*?)</article>', html, re.DOTALL)
    assert match is not None, f"no card for {reference} in:\n{html}"
    return match.group(1)


def text_of(html: str) -> str:
    """Tags out, whitespace squeezed: what a person reads."""
    return re.sub(r" ([,.:;)])", r"\1", " ".join(re.sub(r"<[^>]+>", " ", html).split()))


def get(web: Client, path: str = "/pages") -> str:
    response = web.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def test_without_a_session_pages_and_reports_say_how_to_sign_in(
    firebreak: Firebreak,  # noqa: F811
) -> None:
    anonymous = Client(firebreak.web)
    for path in ("/pages", "/reports", "/reports?months=nonsense"):
        response = anonymous.get(path)
        assert response.status_code == 401, path
        assert "/incident web" in response.get_data(as_text=True)
        assert "style-src 'self'" in response.headers["Content-Security-Policy"]


def test_a_policy_page_shows_its_step_whom_it_reached_and_when_it_escalates(
    firebreak: Firebreak,  # noqa: F811
    clock: Clock,
    web: Client,
) -> None:
    firebreak.pager.page(target="policy:payments", message="Checkout 500s", created_by="U0BOB")
    clock.advance(minutes=2)
    html = get(web)
    assert 'href="/pages" aria-current="page">Pages<' in html
    assert 'href="/reports">Reports<' in html
    assert "1 open page: 1 escalating, 0 exhausted (nobody acknowledged), 0 acknowledged." in (
        text_of(html)
    )
    shown = text_of(card(html, "P-1"))
    assert "P-1 triggered Checkout 500s" in shown
    assert "to schedule:primary" not in shown  # the page went to the policy
    assert "to policy:payments · policy payments · paged 2026-03-02 11:00 CET (2m ago) by bob" in (
        shown
    )
    # The first step ran and reached alice (on call on `primary` this week).
    assert "Step 1 schedule:primary · waits 5m pass 1 of 2: notified alice" in shown
    assert "Step 2 user:carol · waits 5m" in shown
    assert re.search(r'<li class="current"><span class="step-no">Step 1<', card(html, "P-1"))
    assert "Next: step 2 notifies user:carol at 2026-03-02 11:05 CET, in 3m." in shown, shown
    assert "The steps run 2 times in all before the page is marked exhausted." in shown
    assert "1 alice slack delivered try 1 · 2026-03-02 11:00:00 CET · delivered" in shown
    assert "No page was resolved in the last 24 hours." in html

    # The second step runs when it falls due; the page then waits to start over.
    clock.advance(minutes=3)
    firebreak.jobs.run_escalation(1, 2)
    clock.advance(minutes=1)
    shown = text_of(card(get(web), "P-1"))
    assert "Step 2 user:carol · waits 5m pass 1 of 2: notified carol" in shown
    assert (
        "Next: step 1 again (pass 2 of 2) notifies schedule:primary at 2026-03-02 11:10 CET, "
        "in 4m." in shown
    ), shown
    assert "2 carol slack delivered try 1 · 2026-03-02 11:05:00 CET · delivered" in shown

    # A step that is late (the scheduler was down) says how late.
    clock.advance(minutes=6)
    assert "at 2026-03-02 11:10 CET, due now (2m late)." in text_of(get(web))


def test_acknowledged_exhausted_and_resolved_pages_each_say_where_they_stand(
    firebreak: Firebreak,  # noqa: F811
    clock: Clock,
    web: Client,
) -> None:
    pager, jobs = firebreak.pager, firebreak.jobs
    pager.page(target="user:bob", message="Disk full on db-2", created_by="U0ALICE")
    clock.advance(minutes=4)
    pager.acknowledge(1, by="U0BOB")
    ignored = pager.page(target="policy:payments", message="Nobody answers", created_by="U0BOB")
    for generation in range(2, 6):  # steps 2, 1 again, 2 again, then exhausted
        clock.advance(minutes=5)
        jobs.run_escalation(ignored.id, generation)
    pager.page(target="user:carol", message="Old news", created_by="U0ALICE")
    clock.advance(minutes=1)
    pager.resolve(3, by="U0CAROL")
    clock.advance(minutes=1)

    html = get(web)
    assert "2 open pages: 0 escalating, 1 exhausted (nobody acknowledged), 1 acknowledged." in (
        text_of(html)
    )
    # Exhausted first (it needs someone), acknowledged after.
    assert html.index('id="P-2"') < html.index('id="P-1"')
    acknowledged = text_of(card(html, "P-1"))
    assert "P-1 acknowledged Disk full on db-2" in acknowledged
    assert "Acknowledged by bob at 2026-03-02 11:04 CET (4m after paging); escalation stopped." in (
        acknowledged
    )
    assert "Next:" not in acknowledged
    # A page to a person follows `paging:`: one step, repeated twice more (3 passes).
    assert "Step 1 user:bob · waits 5m pass 1 of 3: notified bob" in acknowledged
    exhausted = text_of(card(html, "P-2"))
    assert "Exhausted at 2026-03-02 11:24 CET: every step ran 2 times and nobody acknowledged." in (
        exhausted
    )
    assert "Step 2 user:carol · waits 5m pass 2 of 2: notified carol" in exhausted
    rows = re.findall(r"<tr><td data-label=\"Step\">(.*?)</tr>", card(html, "P-2"), re.DOTALL)
    assert [text_of(row).split(" slack ")[0] for row in rows] == [
        "1 alice",
        "2 carol",
        "1 (pass 2) alice",
        "2 (pass 2) carol",
    ]
    # Each pass's notification has its own first try, at its own time.
    assert "1 (pass 2) alice slack delivered try 1 · 2026-03-02 11:14:00 CET" in exhausted
    assert 'id="P-3"' not in html
    resolved = html[html.index('id="recently-resolved"') :]
    assert "P-3" in resolved and "Old news" in resolved
    assert "by carol" in text_of(resolved) and "never" in text_of(resolved)
    # A day later it has left the list; the open ones are still there.
    clock.advance(hours=24)
    signed = web.get(path_of(firebreak.web_access.link("U0ALICE", "alice")))  # after 12 h
    assert signed.status_code == 303
    later = get(web)
    assert "No page was resolved in the last 24 hours." in later
    assert "Old news" not in later and 'id="P-1"' in later and 'id="P-2"' in later


def test_each_attempt_is_listed_with_its_outcome_and_error(
    firebreak: Firebreak,  # noqa: F811
    sandbox: SlackSandbox,
    clock: Clock,
    web: Client,
) -> None:
    sandbox.inject_fault("chat.postMessage", status=500, times=3)  # outlasts the client's retries
    firebreak.pager.page(target="user:alice", message="API down", created_by="U0BOB")
    waiting = text_of(card(get(web), "P-1"))
    assert "1 alice slack failed, will try again, next try in 5s" in waiting
    assert re.search(r"try 1 · 2026-03-02 11:00:00 CET · failed, will retry: .*500", waiting)
    clock.advance(seconds=5)
    assert firebreak.jobs.deliver() == 1
    shown = text_of(card(get(web), "P-1"))
    assert "1 alice slack delivered" in shown
    assert re.search(
        r"try 1 · 2026-03-02 11:00:00 CET · failed, will retry: [^·]*500.*"
        r"try 2 · 2026-03-02 11:00:05 CET · delivered",
        shown,
    ), shown

    sandbox.inject_fault("chat.postMessage", error="user_not_found")
    firebreak.pager.page(target="user:carol", message="Are you there?", created_by="U0BOB")
    gave_up = text_of(card(get(web), "P-2"))
    assert "1 carol slack not delivered (gave up)" in gave_up
    assert "try 1 · 2026-03-02 11:00:05 CET · failed for good: Slack DM to U0CAROL failed: " in (
        gave_up
    )


def test_a_page_from_an_alert_links_its_alert_group_and_incident(
    firebreak: Firebreak,  # noqa: F811
    monitoring: Monitoring,  # noqa: F811
    clock: Clock,
    web: Client,
) -> None:
    status, _ = monitoring.alertmanager(am_payload(am_alert("HighLatency")))
    assert status == 200
    html = get(web)
    page = card(html, "P-1")
    assert '<a href="/incidents/INC-1">INC-1</a>' in page
    shown = text_of(page)
    assert "to service:checkout · policy payments" in shown
    assert "Alert group:" in shown and "alertmanager · service checkout · open" in shown
    assert "Incident INC-1:" in shown and "sev2" in shown


def test_user_text_is_escaped(
    firebreak: Firebreak,  # noqa: F811
    clock: Clock,
    web: Client,
) -> None:
    firebreak.pager.page(target="user:bob", message=f"{SCRIPT} {IMG}", created_by="U0ALICE")
    clock.advance(minutes=1)
    html = get(web)
    assert SCRIPT not in html and IMG not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in (
        html
    )
    assert "<script" not in html  # no script at all on this page, inline or not
    assert 'style="' not in html


@contextmanager
def counted_queries(firebreak: Firebreak) -> Iterator[list[str]]:  # noqa: F811
    """Every SQL statement the app sends while the block runs."""
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    engine = firebreak.db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_the_board_reads_a_fixed_number_of_queries_however_many_pages(
    firebreak: Firebreak,  # noqa: F811
    monitoring: Monitoring,  # noqa: F811
    clock: Clock,
    web: Client,
) -> None:
    # One page from an alert, with its alert group and incident; more added below.
    monitoring.alertmanager(am_payload(am_alert("HighLatency")))

    def board_queries(pages: int, listed: int) -> list[str]:
        for number in range(pages):
            firebreak.pager.page(
                target="policy:payments", message=f"page {number}", created_by="U0BOB"
            )
        firebreak.pager.resolve(2, by="U0ALICE")  # a resolved one too (once)
        clock.advance(seconds=1)
        with counted_queries(firebreak) as statements:
            html = get(web)
        assert html.count('class="card page-card') == listed
        assert '<a href="/incidents/INC-1">INC-1</a>' in html
        return [s for s in statements if s.lstrip().upper().startswith("SELECT")]

    few = board_queries(2, listed=2)  # the alert's page and P-3 (P-2 is resolved)
    many = board_queries(12, listed=14)
    assert len(few) == len(many) == 8, many
    # the session; the open pages, a count by state, the resolved ones; then one IN query
    # each for notifications, timeline facts, alert groups and incidents
    assert "web_sessions" in many[0] and "GROUP BY" in many[2]
    assert [
        table
        for table in ("page_notifications", "timeline_events", "alert_groups", "incidents")
        if any(f"FROM {table}" in s for s in many[4:])
    ] == [
        "page_notifications",
        "timeline_events",
        "alert_groups",
        "incidents",
    ]


def test_a_storm_of_open_pages_is_counted_and_the_newest_are_listed(
    firebreak: Firebreak,  # noqa: F811
    clock: Clock,
    web: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pages, "MAX_OPEN", 2)  # 200 in production: three pages show the rule
    for number in range(3):
        firebreak.pager.page(target="user:bob", message=f"storm {number}", created_by="U0ALICE")
        clock.advance(seconds=1)
    html = get(web)
    assert "3 open pages: 3 escalating" in text_of(html)
    assert "1 more open page not listed: the newest 2 are shown." in text_of(html)
    assert 'id="P-3"' in html and 'id="P-2"' in html and 'id="P-1"' not in html
