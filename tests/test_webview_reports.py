"""`/reports` and its SVG charts.

The chart module is tested alone (pure functions: the SVG is parsed with xml.etree and
every bar's height is checked against its value); the page is tested through the real WSGI
app over incidents recorded through the domain (as `tests/test_report.py` does for the
CLI), and its figures are compared with `firebreak report`'s own computation.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.test import Client

from bot.alerts.records import AlertGroup
from bot.app import Firebreak
from bot.config import FileConfig
from bot.incidents import service
from bot.incidents.config import IncidentsSection
from bot.webview import charts
from bot.webview.reports import MAX_MONTHS, Period, unit_for
from tests.conftest import PEOPLE
from tests.test_paging import Clock
from tests.test_webview import BASE, IMG, SCRIPT, path_of

SVG = "{http://www.w3.org/2000/svg}"
POLICY = IncidentsSection()
NOW = datetime(2026, 4, 20, 12, 0, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def parsed(svg: object) -> ET.Element:
    return ET.fromstring(str(svg))


def bars(root: ET.Element) -> list[ET.Element]:
    return [rect for rect in root.iter(f"{SVG}rect") if "bar" in rect.get("class", "").split()]


# -- the chart module ---------------------------------------------------------------------


def test_grouped_bar_heights_are_proportional_to_their_values() -> None:
    values = {("2026-01", "sev1"): 3.0, ("2026-01", "sev2"): 12.0, ("2026-02", "sev2"): 7.5}
    root = parsed(
        charts.grouped_bars(
            chart_id="t",
            title="Median time to acknowledge (minutes)",
            desc="numbers",
            groups=["2026-01", "2026-02", "2026-03"],
            series=["sev1", "sev2"],
            values=values,
            unit="minutes",
        )
    )
    drawn = {(b.get("data-group"), b.get("data-series")): b for b in bars(root)}
    assert set(drawn) == set(values)  # no bar for a missing pair, none for an empty month
    top = charts.nice_ceiling(12.0)
    assert top == 20.0
    baseline = {float(b.get("y", "0")) + float(b.get("height", "0")) for b in drawn.values()}
    assert len(baseline) == 1  # every bar stands on the same line
    for key, value in values.items():
        bar = drawn[key]
        assert float(bar.get("data-value", "nan")) == value
        assert float(bar.get("height", "nan")) == pytest.approx(
            value / top * charts.PLOT_HEIGHT, abs=0.01
        )
    # Series keep their colour class; the SVG labels itself and has no style attribute.
    assert drawn[("2026-01", "sev1")].get("class") == "bar s0"
    assert drawn[("2026-02", "sev2")].get("class") == "bar s1"
    assert root.get("role") == "img" and root.get("aria-labelledby") == "t-title t-desc"
    assert root.findtext(f"{SVG}title") == "Median time to acknowledge (minutes)"
    assert all("style" not in element.attrib for element in root.iter())
    tooltip = drawn[("2026-02", "sev2")].findtext(f"{SVG}title")
    assert tooltip == "2026-02 sev2: 7.5 minutes"


@given(
    st.lists(
        st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=12,
    )
)
def test_any_values_give_bars_proportional_to_them(numbers: list[float]) -> None:
    groups = [f"g{index}" for index in range(len(numbers))]
    values = {(group, "only"): value for group, value in zip(groups, numbers, strict=True)}
    layout = charts.layout_grouped(groups, ["only"], values)
    assert layout.top >= max(numbers)
    for bar in layout.bars:
        assert bar.height == pytest.approx(bar.value / layout.top * charts.PLOT_HEIGHT)
        assert 0 <= bar.height <= charts.PLOT_HEIGHT
    root = parsed(
        charts.grouped_bars(
            chart_id="p", title="t", desc="d", groups=groups, series=["only"], values=values
        )
    )
    assert len(bars(root)) == len(numbers)


def test_horizontal_bar_widths_are_proportional_and_labels_are_escaped() -> None:
    items = [(SCRIPT, 4.0), (IMG, 3.0), ("checkout", 1.0)]
    svg = charts.horizontal_bars(
        chart_id="s", title="Incidents by service", desc=f"{SCRIPT}: 4", items=items
    )
    text = str(svg)
    assert SCRIPT not in text and IMG not in text
    assert "&lt;script&gt;" in text
    root = parsed(svg)
    drawn = bars(root)
    assert [b.get("data-group") for b in drawn] == [SCRIPT, IMG, "checkout"]  # as text
    widths = [float(b.get("width", "nan")) for b in drawn]
    top = charts.nice_ceiling(4.0)
    assert widths == pytest.approx(
        [value / top * charts.HORIZONTAL_PLOT for _, value in items], abs=0.01
    )
    assert root.findtext(f"{SVG}desc") == f"{SCRIPT}: 4"
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "label"]
    assert labels[0] == SCRIPT  # short enough to show whole
    assert all("style" not in element.attrib for element in root.iter())


def test_a_chart_of_many_months_keeps_its_size_to_scroll_sideways() -> None:
    months = [f"2024-{month:02d}" for month in range(1, 13)] + ["2025-01", "2025-02"]
    values = {(month, severity): 1.0 for month in months for severity in ("sev1", "sev2", "sev3")}
    wide = parsed(
        charts.grouped_bars(
            chart_id="w",
            title="t",
            desc="d",
            groups=months,
            series=["sev1", "sev2", "sev3"],
            values=values,
        )
    )
    assert wide.get("class") == "chart wide" and float(wide.get("width", "0")) > charts.WIDE
    narrow = parsed(
        charts.grouped_bars(
            chart_id="n",
            title="t",
            desc="d",
            groups=months[:3],
            series=["sev1"],
            values={(months[0], "sev1"): 1.0},
        )
    )
    assert narrow.get("class") == "chart"


def test_nice_ceilings_and_units() -> None:
    assert [charts.nice_ceiling(v) for v in (0, 0.3, 1, 3, 7, 12, 26, 180, 999)] == [
        1,
        0.5,
        1,
        5,
        10,
        20,
        50,
        200,
        1000,
    ]
    assert charts.ticks(20) == [0, 5, 10, 15, 20]
    assert charts.ticks(5) == [0, 1, 2, 3, 4, 5]
    assert charts.ticks(2) == [0, 0.5, 1, 1.5, 2]
    assert charts.ticks(2.5) == [0, 0.5, 1, 1.5, 2, 2.5]
    assert [charts.number(v) for v in (0, 7.5, 0.25, 20.0, 1 / 3)] == [
        "0",
        "7.5",
        "0.25",
        "20",
        "0.33",
    ]
    assert unit_for(20 * 60) == ("minutes", 60.0)
    assert unit_for(3 * 3600) == ("hours", 3600.0)
    assert unit_for(4 * 86400) == ("days", 86400.0)


# -- the period ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "first", "last", "problem"),
    [
        ({}, "2025-11", "2026-04", None),
        ({"months": "1"}, "2026-04", "2026-04", None),
        ({"months": "12"}, "2025-05", "2026-04", None),
        ({"from": "2026-01", "to": "2026-02"}, "2026-01", "2026-02", None),
        ({"from": "2026-02"}, "2026-02", "2026-04", None),
        ({"to": "2026-02"}, "2025-09", "2026-02", None),
        ({"from": "2026-03", "to": "2027-01"}, "2026-03", "2026-04", None),  # not past now
        (
            {"months": "0"},
            "2025-11",
            "2026-04",
            "months '0' is not a number of months from 1 to 36; give one like months=6",
        ),
        ({"months": "six"}, "2025-11", "2026-04", "months 'six' is not a number of months"),
        ({"months": "37"}, "2025-11", "2026-04", "from 1 to 36"),
        ({"months": "²"}, "2025-11", "2026-04", "is not a number of months"),  # int() fails
        ({"months": "\uff13"}, "2025-11", "2026-04", "is not a number of months"),  # fullwidth
        ({"months": "\x00"}, "2025-11", "2026-04", "is not a number of months"),
        ({"months": "9" * 400}, "2025-11", "2026-04", "from 1 to 36"),
        ({"from": "2026-0\x00"}, "2025-11", "2026-04", "is not a month"),
        ({"from": "2026-13"}, "2025-11", "2026-04", "from '2026-13' is not a month; give it like"),
        ({"from": "march"}, "2025-11", "2026-04", "from 'march' is not a month"),
        ({"from": "2026-03", "to": "2026-01"}, "2025-11", "2026-04", "is after to '2026-01'"),
        ({"from": "2020-01", "to": "2026-01"}, "2025-11", "2026-04", "is 73 months; give at most"),
        ({"months": "3", "from": "2026-01"}, "2025-11", "2026-04", "not both"),
    ],
)
def test_the_period_comes_from_the_query_string_or_says_what_is_wrong(
    args: dict[str, str], first: str, last: str, problem: str | None
) -> None:
    period, problems = Period.parse(args, NOW, BERLIN)
    assert (period.first_text, period.last_text) == (first, last)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems
    assert MAX_MONTHS == 36


def test_a_period_is_whole_months_in_the_team_zone() -> None:
    period, _ = Period.parse({"months": "2"}, NOW, BERLIN)
    assert period.start(BERLIN) == datetime(2026, 3, 1, tzinfo=BERLIN)
    assert period.start(BERLIN).astimezone(UTC) == datetime(2026, 2, 28, 23, 0, tzinfo=UTC)
    assert period.end(BERLIN, NOW) == NOW  # the current month ends now
    past, _ = Period.parse({"from": "2026-01", "to": "2026-02"}, NOW, BERLIN)
    assert past.end(BERLIN, NOW) == datetime(2026, 3, 1, tzinfo=BERLIN)
    assert past.month_names() == ["2026-01", "2026-02"]


# -- the page -----------------------------------------------------------------------------


@pytest.fixture
def file_config(announce_channel: str) -> FileConfig:
    return FileConfig.model_validate(
        {
            "slack": {"announce_channel": announce_channel},
            "people": {name: person.model_dump() for name, person in PEOPLE.items()},
            "postmortem": {"timezone": "Europe/Berlin"},
        }
    )


@pytest.fixture
def web(firebreak: Firebreak) -> Client:
    firebreak.clock.use(Clock(NOW))
    firebreak.web_access.base_url = BASE
    client = Client(firebreak.web)
    assert client.get(path_of(firebreak.web_access.link("U0ALICE", "alice"))).status_code == 303
    return client


# declared (UTC), severity, minutes to a responder's first note, minutes to resolve, service
PLANS: list[tuple[datetime, str, int | None, int | None, str | None, str]] = [
    (datetime(2026, 3, 2, 9, 0, tzinfo=UTC), "sev1", 5, 60, "checkout", "Checkout down"),
    (datetime(2026, 3, 10, 9, 0, tzinfo=UTC), "sev2", 15, 120, "checkout", "Slow payments"),
    (datetime(2026, 3, 12, 9, 0, tzinfo=UTC), "sev2", 25, 240, "search", "Stale search"),
    # 23:30 UTC on 31 March is 1 April in Berlin, the team's zone
    (datetime(2026, 3, 31, 23, 30, tzinfo=UTC), "sev2", None, None, None, "Still open"),
    (datetime(2026, 4, 5, 8, 0, tzinfo=UTC), "sev1", 3, 30, SCRIPT, f"{IMG} title"),
]


def record(firebreak: Firebreak) -> None:
    """The incidents of PLANS through the domain, each service as an alert group of it."""
    for number, (declared, severity, ack, resolve, name, title) in enumerate(PLANS, 1):
        with firebreak.db.session_scope() as session:
            incident = service.declare(
                session,
                title=title,
                severity=severity,
                declared_by="U0ALICE",
                declare_key=f"report-{number}",
                policy=POLICY,
                now=declared,
            ).incident
            if ack is not None:
                service.add_note(
                    session, incident, "on it", actor="U0BOB", now=declared + timedelta(minutes=ack)
                )
            if resolve is not None:
                service.resolve(
                    session, incident, "", actor="U0BOB", now=declared + timedelta(minutes=resolve)
                )
            if name is not None:
                session.add(
                    AlertGroup(
                        source="alertmanager",
                        group_key=f"group-{number}",
                        title=f"alerts of {name}",
                        route=name,
                        service=name,
                        state="resolved",
                        suppressed=False,
                        page_id=None,
                        incident_id=incident.id,
                        opened_at=declared,
                        last_seen_at=declared,
                        resolved_at=declared,
                    )
                )


def table_rows(html: str, table_id: str) -> list[list[str]]:
    match = re.search(rf'<table class="figures" id="{table_id}">(.*?)</table>', html, re.DOTALL)
    assert match is not None, f"no table {table_id}"
    body = match.group(1).split("<tbody>")[1]
    return [
        [cell for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
        for row in re.findall(r"<tr>(.*?)</tr>", body)
    ]


def chart(html: str, chart_id: str) -> ET.Element:
    match = re.search(rf'<svg [^>]*id="{chart_id}".*?</svg>', html, re.DOTALL)
    assert match is not None, f"no chart {chart_id}"
    return parsed(match.group(0))


def test_the_report_charts_and_tables_hold_firebreak_reports_figures(
    firebreak: Firebreak, web: Client
) -> None:
    record(firebreak)
    response = web.get("/reports?months=3")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'href="/reports" aria-current="page">Reports<' in html
    assert (
        "5 incidents declared 2026-02 to 2026-04 (months in Europe/Berlin, the team's zone" in html
    )
    assert table_rows(html, "incidents-table") == [
        ["2026-03", "sev1", "1"],
        ["2026-03", "sev2", "2"],
        ["2026-04", "sev1", "1"],
        ["2026-04", "sev2", "1"],
    ]
    counts = chart(html, "chart-incidents")
    assert {
        (b.get("data-group"), b.get("data-series"), b.get("data-value")) for b in bars(counts)
    } == {
        ("2026-03", "sev1", "1.0"),
        ("2026-03", "sev2", "2.0"),
        ("2026-04", "sev1", "1.0"),
        ("2026-04", "sev2", "1.0"),
    }
    # February had none: its label is on the axis, with no bar.
    labels = [t.text for t in counts.iter(f"{SVG}text") if t.get("class") == "label"]
    assert labels[-3:] == ["2026-02", "2026-03", "2026-04"]

    assert table_rows(html, "acknowledge-table") == [
        ["2026-03", "sev1", "1", "5 min 00 s", "5 min 00 s"],
        ["2026-03", "sev2", "2", "20 min 00 s", "25 min 00 s"],  # median of 15, 25; p90 25
        ["2026-04", "sev1", "1", "3 min 00 s", "3 min 00 s"],
    ]
    acknowledge = chart(html, "chart-acknowledge")
    assert acknowledge.findtext(f"{SVG}title") == "Median time to acknowledge (minutes)"
    heights = {
        (b.get("data-group"), b.get("data-series")): float(b.get("height", "nan"))
        for b in bars(acknowledge)
    }
    # minutes 5, 20 and 3 on an axis up to 20
    assert heights == pytest.approx(
        {
            ("2026-03", "sev1"): 5 / 20 * charts.PLOT_HEIGHT,
            ("2026-03", "sev2"): charts.PLOT_HEIGHT,
            ("2026-04", "sev1"): 3 / 20 * charts.PLOT_HEIGHT,
        },
        abs=0.01,
    )
    assert table_rows(html, "resolve-table") == [
        ["2026-03", "sev1", "1", "1 h 00 min", "1 h 00 min"],
        ["2026-03", "sev2", "2", "3 h 00 min", "4 h 00 min"],
        ["2026-04", "sev1", "1", "30 min 00 s", "30 min 00 s"],
    ]
    resolve = chart(html, "chart-resolve")
    assert resolve.findtext(f"{SVG}title") == "Median time to resolve (hours)"
    assert sorted(float(b.get("data-value", "nan")) for b in bars(resolve)) == [0.5, 1.0, 3.0]

    assert table_rows(html, "services-table") == [
        ["checkout", "2"],
        ["(none)", "1"],
        ["&lt;script&gt;alert(1)&lt;/script&gt;", "1"],
        ["search", "1"],
    ]
    services = chart(html, "chart-services")
    assert [b.get("data-group") for b in bars(services)] == ["checkout", "(none)", SCRIPT, "search"]
    assert SCRIPT not in html and IMG not in html
    assert 'style="' not in html and "<script" not in html


def test_the_page_agrees_with_the_report_domain(firebreak: Firebreak, web: Client) -> None:
    """The page's numbers are `bot.postmortem.report.build`'s, not a second computation."""
    from bot.postmortem import report as numbers

    record(firebreak)
    html = web.get("/reports?from=2026-03&to=2026-04").get_data(as_text=True)
    with firebreak.db.session_scope() as session:
        built = numbers.build(
            session,
            since=datetime(2026, 3, 1, tzinfo=BERLIN),
            now=NOW,
            zone=BERLIN,
            mitigated_statuses=["identified", "monitoring"],
        )
    expected = [
        [month.month, severity, str(spread["resolve"].count)]
        for month in built.months
        for severity, spread in month.by_severity.items()
        if spread["resolve"].count
    ]
    assert [row[:3] for row in table_rows(html, "resolve-table")] == expected
    march = built.months[0]
    assert march.durations["resolve"].median == 2 * 3600  # all of March: 60, 120, 240 min
    assert march.by_severity["sev2"]["resolve"].median == 3 * 3600


def test_no_incidents_is_a_sentence_not_an_empty_chart(firebreak: Firebreak, web: Client) -> None:
    html = web.get("/reports").get_data(as_text=True)
    assert "0 incidents declared 2025-11 to 2026-04" in html
    assert "No incidents were declared in this period, so there is nothing to chart." in html
    assert "<svg" not in html


def test_incidents_nobody_acknowledged_or_resolved_say_so_instead_of_a_chart(
    firebreak: Firebreak, web: Client
) -> None:
    with firebreak.db.session_scope() as session:
        service.declare(
            session,
            title="Quiet one",
            severity="sev3",
            declared_by="U0ALICE",
            declare_key="quiet",
            policy=POLICY,
            now=NOW - timedelta(days=1),
        )
    html = web.get("/reports?months=1").get_data(as_text=True)
    assert table_rows(html, "incidents-table") == [["2026-04", "sev3", "1"]]
    assert "No incident of this period has a time to acknowledge yet" in html
    assert "No incident of this period has a time to resolve yet: none is resolved." in html
    assert 'id="chart-acknowledge"' not in html and 'id="chart-resolve"' not in html
    assert table_rows(html, "services-table") == [["(none)", "1"]]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("months=0", "months &#39;0&#39; is not a number of months from 1 to 36"),
        ("months=%3Cscript%3E", "months &#39;&lt;script&gt;&#39; is not a number of months"),
        ("from=2026-3", "from &#39;2026-3&#39; is not a month; give it like 2026-01"),
        ("from=2026-04&to=2026-01", "is after to &#39;2026-01&#39;; give the earlier month"),
        ("months=3&to=2026-01", "give either months (the last N months) or from and to"),
    ],
)
def test_a_wrong_period_is_a_400_that_says_what_to_give(
    firebreak: Firebreak, web: Client, query: str, message: str
) -> None:
    response = web.get(f"/reports?{query}")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert re.search(r'<p class="problem">[^<]*' + re.escape(message), html), html
    assert "incidents declared 2025-11 to 2026-04" in html  # the default period instead
