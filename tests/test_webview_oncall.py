"""The `/oncall` page through the real WSGI app, with the clock pinned around DST changes.

Schedules (firebreak.yaml as a test writes it):

- `primary`, Europe/Berlin: layer `weekly` (alice, bob, carol; Monday 09:00 from Monday
  2026-01-05, so turn k is users[k % 3]: carol has the week from Monday 2026-03-23, alice the
  one from 2026-03-30), layer `weekend` (bob, only Saturday and Sunday 10:00-14:00 local),
  and a planned override: alice on 2026-04-02 from 12:00 to 18:00 local.
- `secondary`, America/New_York: layer `daily` (bob, carol; 08:00 from 2026-01-05: the turn
  on 2026-10-31, 299 days in, is carol's; 2026-11-01's is bob's).

Europe's clocks spring forward on Sunday 2026-03-29 (02:00 CET -> 03:00 CEST: a 23-hour day)
and America's fall back on Sunday 2026-11-01 (02:00 EDT -> 01:00 EST: a 25-hour day).
Every expected instant below is written out by hand in UTC; the grid is also compared with
`bot.oncall.schedules.shifts` cut at the viewer's midnights.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from html.parser import HTMLParser
from zoneinfo import ZoneInfo

import pytest
from werkzeug.test import Client

from bot.app import Firebreak, build
from bot.config import FileConfig, SlackSection
from bot.oncall import schedules
from bot.oncall.configuration import Schedule
from bot.oncall.ics import ics_token
from bot.sandbox import SlackSandbox
from tests.conftest import PEOPLE, SECRET, Slack, make_settings
from tests.test_socket_mode import socket_settings
from tests.test_webview import BASE, SCRIPT, assert_secure_headers, path_of

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def make_schedules() -> dict[str, Schedule]:
    weekly = {"name": "weekly", "users": ["alice", "bob", "carol"], "rotation": "weekly"}
    weekly |= {"handoff": "mon 09:00", "start": "2026-01-05"}
    weekend = {"name": "weekend", "users": ["bob"], "rotation": "weekly"}
    weekend |= {"handoff": "sat 10:00", "start": "2026-01-05", "restrict": ["sat,sun 10:00-14:00"]}
    planned = {"user": "alice", "start": "2026-04-02T12:00", "end": "2026-04-02T18:00"}
    daily = {"name": "daily", "users": ["bob", "carol"], "rotation": "daily"}
    daily |= {"handoff": "08:00", "start": "2026-01-05"}
    return {
        "primary": Schedule.model_validate(
            {"timezone": "Europe/Berlin", "layers": [weekly, weekend], "overrides": [planned]}
        ),
        "secondary": Schedule.model_validate({"timezone": "America/New_York", "layers": [daily]}),
    }


@pytest.fixture
def file_config(announce_channel: str) -> FileConfig:
    return FileConfig(
        slack=SlackSection(announce_channel=announce_channel),
        people=PEOPLE,
        schedules=make_schedules(),
    )


def pin(firebreak: Firebreak, at: str) -> None:
    moment = utc(at)
    firebreak.clock.use(lambda: moment)


def reader(firebreak: Firebreak, user: str = "U0ALICE", name: str = "alice") -> Client:
    """A browser-like client signed in as `user` (with the clock as it is now pinned)."""
    firebreak.web_access.base_url = BASE
    client = Client(firebreak.web)
    opened = client.get(path_of(firebreak.web_access.link(user, name)))
    assert opened.status_code == 303, opened.get_data(as_text=True)
    return client


class GridPage(HTMLParser):
    """What the page shows: per schedule, per day, per grid row, the segments as
    (start, end, person, text); each day's hours and change; the now/next rows."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.cells: dict[str, dict[str, dict[str, list[tuple[datetime, datetime, str, str]]]]]
        self.cells = defaultdict(lambda: defaultdict(dict))
        self.hours: dict[str, dict[str, int]] = defaultdict(dict)
        self.changes: dict[str, dict[str, str]] = defaultdict(dict)
        self.handoffs: dict[str, list[tuple[datetime, datetime, str]]] = defaultdict(list)
        self.now: dict[str, str] = {}
        self.next: dict[str, str] = {}
        self._schedule = self._day = self._row = ""
        self._segment: dict[str, str] | None = None
        self._text: list[str] | None = None
        self._into = self._link = ""
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {key: value or "" for key, value in attrs}
        classes = a.get("class", "").split()
        if tag == "section" and a.get("id", "").startswith("schedule-"):
            self._schedule = a["id"].removeprefix("schedule-")
        elif tag == "tr" and "data-date" in a:
            self._day = a["data-date"]
            self.hours[self._schedule][self._day] = int(a["data-hours"])
        elif tag == "td" and "cell" in classes:
            self._row = a["data-label"]
            self.cells[self._schedule][self._day][self._row] = []
        elif tag == "li" and "segment" in classes:
            self._segment, self._text = a, []
        elif tag == "span" and "change" in classes:
            self._into, self._text = "change", []
        elif tag == "li" and "data-start" in a and self._schedule:
            self.handoffs[self._schedule].append(
                (datetime.fromisoformat(a["data-start"]), datetime.fromisoformat(a["data-end"]), "")
            )
        elif tag == "td" and classes in (["now-on-call"], ["next-on-call"]):
            self._into, self._text = classes[0], []
        elif tag == "a" and self._into == "" and a.get("href", "").startswith("#schedule-"):
            self._link = a["href"].removeprefix("#schedule-")

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "li" and self._segment is not None and self._text is not None:
            s = self._segment
            self.cells[self._schedule][self._day][self._row].append(
                (
                    datetime.fromisoformat(s["data-start"]),
                    datetime.fromisoformat(s["data-end"]),
                    s["data-person"],
                    " ".join("".join(self._text).split()),
                )
            )
            self._segment = self._text = None
        elif tag == "span" and self._into == "change" and self._text is not None:
            self.changes[self._schedule][self._day] = "".join(self._text)
            self._into, self._text = "", None
        elif tag == "td" and self._into in ("now-on-call", "next-on-call") and self._text:
            shown = " ".join("".join(self._text).split())
            (self.now if self._into == "now-on-call" else self.next)[self._link] = shown
            self._into, self._text = "", None

    def texts(self, schedule: str, day: str, row: str) -> list[str]:
        return [text for *_, text in self.cells[schedule][day][row]]


def grid(client: Client, query: str, status: int = 200) -> tuple[GridPage, str]:
    response = client.get(f"/oncall?{query}")
    html = response.get_data(as_text=True)
    assert response.status_code == status, html
    return GridPage(html), html


def expected_cells(
    firebreak: Firebreak, schedule: str, first: date, zone: ZoneInfo
) -> dict[str, list[tuple[datetime, datetime, str]]]:
    """The domain's final shifts over 14 local days, cut at each local midnight: computed
    with `bot.oncall.schedules` and zoneinfo directly, not with the page's module."""
    midnights = [
        datetime.combine(first + timedelta(days=n), time(0), tzinfo=zone).astimezone(UTC)
        for n in range(15)
    ]
    with firebreak.db.session_scope() as session:
        final = schedules.shifts(
            session, firebreak.settings.file.oncall, schedule, midnights[0], midnights[-1]
        )
    cells: dict[str, list[tuple[datetime, datetime, str]]] = {}
    for n in range(14):
        start, end = midnights[n], midnights[n + 1]
        cell, at = [], start
        for shift in final:
            if shift.end <= start or shift.start >= end:
                continue
            begins, ends = max(shift.start, start), min(shift.end, end)
            if begins > at:
                cell.append((at, begins, ""))
            cell.append((begins, ends, shift.person))
            at = ends
        if at < end:
            cell.append((at, end, ""))
        cells[(first + timedelta(days=n)).isoformat()] = cell
    return cells


def final_row(page: GridPage, schedule: str) -> dict[str, list[tuple[datetime, datetime, str]]]:
    return {
        day: [(start, end, person) for start, end, person, _ in rows["On call"]]
        for day, rows in page.cells[schedule].items()
    }


# -- the tests ----------------------------------------------------------------------------


def test_the_grid_across_europes_spring_change_with_an_override_set_in_slack(
    firebreak: Firebreak, slack: Slack
) -> None:
    pin(firebreak, "2026-03-28 20:00")  # Saturday 21:00 CET
    reply = slack.command(
        "override primary <@U0BOB|bob> until 2026-03-29 04:00",
        user="U0ALICE",
        channel="C0GENERAL",
        command="/oncall",
    )
    slack.settle()
    assert reply.status == 200
    client = reader(firebreak)  # alice, Europe/Berlin
    page, html = grid(client, "from=2026-03-23")

    assert list(page.cells) == ["primary", "secondary"]
    days = list(page.cells["primary"])
    assert days[0] == "2026-03-23" and days[-1] == "2026-04-05" and len(days) == 14
    assert page.hours["primary"]["2026-03-29"] == 23
    assert {day for day, h in page.hours["primary"].items() if h != 24} == {"2026-03-29"}
    assert page.changes["primary"] == {"2026-03-29": "23 h · CET → CEST"}

    # Sunday 29 March, 23 hours: the override (Saturday 20:00Z to Sunday 02:00Z, entered as
    # "until 04:00" in alice's Berlin time), the weekend layer at 10:00-14:00 *summer* time.
    sunday = page.cells["primary"]["2026-03-29"]["On call"]
    assert [(s, e, p) for s, e, p, _ in sunday] == [
        (utc("2026-03-28 23:00"), utc("2026-03-29 02:00"), "bob"),
        (utc("2026-03-29 02:00"), utc("2026-03-29 08:00"), "carol"),
        (utc("2026-03-29 08:00"), utc("2026-03-29 12:00"), "bob"),
        (utc("2026-03-29 12:00"), utc("2026-03-29 22:00"), "carol"),
    ]
    assert page.texts("primary", "2026-03-29", "On call") == [
        "00:00 CET-04:00 CEST bob override #1",
        "04:00 CEST-10:00 CEST carol weekly",
        "10:00 CEST-14:00 CEST bob weekend",
        "14:00 CEST-24:00 carol weekly",
    ]
    assert page.texts("primary", "2026-03-29", "Overrides") == [
        "00:00 CET-04:00 CEST bob override #1"
    ]
    assert page.texts("primary", "2026-03-29", "weekend") == ["10:00 CEST-14:00 CEST bob"]
    assert page.texts("primary", "2026-03-29", "weekly") == ["00:00 CET-24:00 carol"]
    assert page.texts("primary", "2026-03-28", "On call") == [
        "00:00-10:00 carol weekly",
        "10:00-14:00 bob weekend",
        "14:00-21:00 carol weekly",
        "21:00-24:00 bob override #1",
    ]
    # The weekly hand-offs stay at 09:00 local on both sides of the change.
    assert page.texts("primary", "2026-03-23", "weekly") == ["00:00-09:00 bob", "09:00-24:00 carol"]
    monday = page.cells["primary"]["2026-03-30"]["weekly"]
    assert [(s, e, p) for s, e, p, _ in monday] == [
        (utc("2026-03-29 22:00"), utc("2026-03-30 07:00"), "carol"),
        (utc("2026-03-30 07:00"), utc("2026-03-30 22:00"), "alice"),
    ]
    assert page.texts("primary", "2026-04-02", "Overrides") == ["12:00-18:00 alice override"]
    assert page.texts("primary", "2026-03-24", "Overrides") == []  # shows "none"

    assert final_row(page, "primary") == expected_cells(
        firebreak, "primary", date(2026, 3, 23), BERLIN
    )
    assert final_row(page, "secondary") == expected_cells(
        firebreak, "secondary", date(2026, 3, 23), BERLIN
    )
    # carol's week, cut by the weekend layer and the override, is one stretch in `firebreak
    # oncall`; the hand-off list has each final shift, whole ones with their length.
    handoffs = [(s, e) for s, e, _ in page.handoffs["primary"]]
    assert (utc("2026-03-29 12:00"), utc("2026-03-30 07:00")) in handoffs
    assert "Sun 2026-03-29 14:00 CEST → Mon 2026-03-30 09:00 CEST" in html
    assert "19 h · weekly" in html
    assert page.now["primary"] == "bob until Sun 2026-03-29 04:00 CEST"
    assert page.next["primary"] == (
        "carol from Sun 2026-03-29 04:00 CEST until Sun 2026-03-29 10:00 CEST"
    )
    assert (
        "#1 bob from Sat 2026-03-28 21:00 CET until Sun 2026-03-29 04:00 CEST, set by alice" in html
    )


def test_a_viewer_in_new_york_sees_the_berlin_hand_off_move_an_hour(firebreak: Firebreak) -> None:
    """New York changed on 8 March, Berlin on 29 March: between the two Mondays the
    09:00-Berlin hand-off moves from 04:00 to 03:00 in New York, and carol's week is 167 h."""
    pin(firebreak, "2026-03-25 11:00")
    client = reader(firebreak, "U0BOB", "bob")
    page, html = grid(client, "schedule=primary&from=2026-03-23")
    assert list(page.cells) == ["primary"]
    assert set(page.hours["primary"].values()) == {24}  # no change in New York these weeks
    assert page.texts("primary", "2026-03-23", "weekly") == ["00:00-04:00 bob", "04:00-24:00 carol"]
    assert page.texts("primary", "2026-03-30", "weekly") == [
        "00:00-03:00 carol",
        "03:00-24:00 alice",
    ]
    # Berlin's Sunday 10:00-14:00 CEST is 04:00-08:00 in New York on the 29th, 05:00-09:00
    # (CET) on the 28th.
    assert page.texts("primary", "2026-03-28", "weekend") == ["05:00-09:00 bob"]
    assert page.texts("primary", "2026-03-29", "weekend") == ["04:00-08:00 bob"]
    assert "Mon 2026-03-23 04:00 EDT → Sat 2026-03-28 05:00 EDT" in html
    assert final_row(page, "primary") == expected_cells(
        firebreak, "primary", date(2026, 3, 23), NEW_YORK
    )
    assert "bob · America/New_York" in html
    assert page.now["primary"] == "carol until Sat 2026-03-28 05:00 EDT"


def test_the_grid_across_americas_fall_change_with_a_tz_override(firebreak: Firebreak) -> None:
    """alice (Berlin) asks for New York time: 1 November has 25 hours, and the daily 08:00
    hand-off stays at 08:00 local, so carol's turn from 31 October is 25 hours long."""
    pin(firebreak, "2026-10-28 12:00")
    client = reader(firebreak)
    page, html = grid(client, "schedule=secondary&from=2026-10-26&tz=America/New_York")
    assert page.hours["secondary"]["2026-11-01"] == 25
    assert page.changes["secondary"] == {"2026-11-01": "25 h · EDT → EST"}
    sunday = page.cells["secondary"]["2026-11-01"]["On call"]
    assert [(s, e, p) for s, e, p, _ in sunday] == [
        (utc("2026-11-01 04:00"), utc("2026-11-01 13:00"), "carol"),
        (utc("2026-11-01 13:00"), utc("2026-11-02 05:00"), "bob"),
    ]
    assert page.texts("secondary", "2026-11-01", "daily") == [
        "00:00 EDT-08:00 EST carol",
        "08:00 EST-24:00 bob",
    ]
    assert page.texts("secondary", "2026-10-31", "daily") == [
        "00:00-08:00 bob",
        "08:00-24:00 carol",
    ]
    assert page.texts("secondary", "2026-11-02", "daily") == [
        "00:00-08:00 bob",
        "08:00-24:00 carol",
    ]
    assert "Mon 2026-10-26 00:00 EDT (began earlier) → Mon 2026-10-26 08:00 EDT" in html
    assert "Sun 2026-11-08 08:00 EST → Mon 2026-11-09 00:00 EST (continues)" in html
    assert "Sat 2026-10-31 08:00 EDT → Sun 2026-11-01 08:00 EST" in html and "25 h · daily" in html
    assert final_row(page, "secondary") == expected_cells(
        firebreak, "secondary", date(2026, 10, 26), NEW_YORK
    )
    assert "alice · America/New_York" in html  # the whole page is in the zone asked for
    # The earlier/later links keep the schedule and the zone.
    assert 'href="/oncall?schedule=secondary&amp;from=2026-11-09&amp;tz=America%2FNew_York"' in html
    assert 'href="/oncall?schedule=secondary&amp;from=2026-10-12&amp;tz=America%2FNew_York"' in html

    # The same weeks in alice's own Berlin time: Berlin fell back on 25 October, so there
    # the 08:00 New York hand-off is 13:00 until the 24th... 13:00 again from the 25th
    # (New York still on summer time), and 14:00 from 1 November.
    page, _ = grid(client, "schedule=secondary&from=2026-10-19")
    assert page.changes["secondary"] == {"2026-10-25": "25 h · CEST → CET"}
    assert page.texts("secondary", "2026-10-24", "daily")[0] == "00:00-14:00 carol"
    assert page.texts("secondary", "2026-10-26", "daily")[0] == "00:00-13:00 carol"
    assert page.texts("secondary", "2026-11-01", "daily") == [
        "00:00-14:00 carol",
        "14:00-24:00 bob",
    ]
    assert final_row(page, "secondary") == expected_cells(
        firebreak, "secondary", date(2026, 10, 19), BERLIN
    )


def test_by_default_two_weeks_from_today_in_the_viewers_zone(firebreak: Firebreak) -> None:
    pin(firebreak, "2026-03-28 23:30")  # Sunday 00:30 in Berlin, still Saturday in New York
    alice, _ = grid(reader(firebreak), "")
    assert next(iter(alice.cells["primary"])) == "2026-03-29"
    bob, _ = grid(reader(firebreak, "U0BOB", "bob"), "")
    assert next(iter(bob.cells["primary"])) == "2026-03-28"


def test_each_schedule_links_its_calendar_feed_which_still_answers(firebreak: Firebreak) -> None:
    pin(firebreak, "2026-03-25 11:00")
    client = reader(firebreak)
    _, html = grid(client, "")
    for name in ("primary", "secondary"):
        url = f"{BASE}/oncall/{name}.ics?token={ics_token(SECRET, name)}"
        assert f'href="{url}"' in html
        feed = client.get(path_of(url))  # `/oncall/<name>.ics` still reaches the feed
        assert feed.status_code == 200
        assert feed.headers["Content-Type"].startswith("text/calendar")
        assert f"On call: {name}" in feed.get_data(as_text=True)
    assert client.get("/oncall/primary.ics").status_code == 403
    assert client.get("/oncall/").status_code == 404


def test_without_a_public_address_the_link_uses_the_address_the_page_was_read_at(
    firebreak: Firebreak,
) -> None:
    client = reader(firebreak)
    firebreak.web_access.base_url = None
    _, html = grid(client, "schedule=primary")
    token = ics_token(SECRET, "primary")
    assert f'href="http://localhost/oncall/primary.ics?token={token}"' in html


def test_the_page_needs_a_session_and_is_in_the_navigation(firebreak: Firebreak) -> None:
    anonymous = Client(firebreak.web)
    response = anonymous.get("/oncall?schedule=primary")
    assert response.status_code == 401
    assert "/incident web" in response.get_data(as_text=True)
    signed = reader(firebreak)
    response = signed.get("/oncall")
    assert_secure_headers(response)
    html = response.get_data(as_text=True)
    assert '<a href="/oncall" aria-current="page">On call</a>' in html
    assert 'href="/oncall"' in signed.get("/").get_data(as_text=True)
    assert " style=" not in html and "<script" not in html  # CSP: no inline style or script


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "schedule=nope",
            "There is no schedule &#39;nope&#39;; showing every schedule. Schedules: primary, secondary.",
        ),
        (
            "from=yesterday",
            "from &#39;yesterday&#39; is not a date; write it as YYYY-MM-DD, like 2026-03-25",
        ),
        ("from=2026-02-30", "from &#39;2026-02-30&#39; is not a date"),
        ("from=20260323", "from &#39;20260323&#39; is not a date"),
        (
            "from=1999-12-31",
            "from &#39;1999-12-31&#39; is out of range; give a day from 2000-01-01 to 2099-12-17",
        ),
        ("from=2099-12-30", "from &#39;2099-12-30&#39; is out of range"),
        (
            "tz=Mars/Olympus",
            "tz &#39;Mars/Olympus&#39; is not a time zone; give an IANA name like Europe/Berlin",
        ),
        ("tz=../../etc/passwd", "tz &#39;../../etc/passwd&#39; is not a time zone"),
        ("tz=" + "x" * 5000, "tz &#39;" + "x" * 40 + "&#39; is not a time zone"),
        ("from=%00", "from &#39;\\x00&#39; is not a date"),
    ],
)
def test_bad_query_values_are_named_with_what_to_give(
    firebreak: Firebreak, query: str, message: str
) -> None:
    pin(firebreak, "2026-03-25 11:00")
    page, html = grid(reader(firebreak), query, status=400)
    assert f'<p class="problem">{message}' in html
    assert list(page.cells) == ["primary", "secondary"]  # the rest of the page still shows
    assert next(iter(page.cells["primary"])) == "2026-03-25"


def test_a_reflected_schedule_name_is_escaped(firebreak: Firebreak) -> None:
    _, html = grid(reader(firebreak), f"schedule={SCRIPT}", status=400)
    assert SCRIPT not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_last_two_weeks_allowed_and_the_first(firebreak: Firebreak) -> None:
    client = reader(firebreak)
    page, _ = grid(client, "schedule=secondary&from=2099-12-17")
    assert list(page.cells["secondary"])[-1] == "2099-12-30"
    page, _ = grid(client, "schedule=secondary&from=2000-01-01")  # before the layer starts
    assert all(
        [text for *_, text in rows["On call"]] == ["00:00-24:00 nobody"]
        for rows in page.cells["secondary"].values()
    )


def test_without_schedules_the_page_says_how_to_add_one(
    database_url: str, sandbox: SlackSandbox, announce_channel: str
) -> None:
    config = FileConfig(slack=SlackSection(announce_channel=announce_channel), people=PEOPLE)
    app = build(make_settings(database_url, sandbox, config))
    try:
        response = reader(app).get("/oncall")
        assert response.status_code == 200
        assert "No schedules are configured" in response.get_data(as_text=True)
    finally:
        app.close()


def test_without_a_signing_secret_the_page_says_what_signs_the_calendar_link(
    database_url: str, sandbox: SlackSandbox, file_config: FileConfig
) -> None:
    """Socket Mode runs without SLACK_SIGNING_SECRET, and so without calendar feeds."""
    app = build(socket_settings(database_url, sandbox, file_config))  # built, not connected
    try:
        _, html = grid(reader(app), "schedule=primary")
        assert "No calendar link: set SLACK_SIGNING_SECRET, which signs it." in html
        assert ".ics?token=" not in html
    finally:
        app.close()
