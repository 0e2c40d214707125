"""The timeline's lines built in Python for speed say exactly what the template said.

`render.timeline_item` replaced a template loop (issue #12's benchmark: 10,000 events);
these check that its escaping is autoescape's and its times are `strftime`'s.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st
from markupsafe import escape

from bot.webview.render import TimelineRow, escape_text, local_time, timeline_item

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
