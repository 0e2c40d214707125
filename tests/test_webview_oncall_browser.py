"""The `/oncall` page in a real browser (chromium), across daylight-saving changes.

Uses the browser, the waitress-served app and the screenshots of
`tests/test_webview_browser.py`, and the schedules of `tests/test_webview_oncall.py`
(`primary` in Berlin: carol's week from Monday 2026-03-23, bob on weekends 10:00-14:00;
`secondary` in New York: daily at 08:00, carol on 2026-10-31, bob on 2026-11-01).
Screenshots: oncall-spring-{desktop,phone}.png, oncall-fall-{desktop,phone}.png, and the
23-hour day close up: oncall-spring-day-desktop.png, and a phone's screen at the top of the
page and at that day: oncall-spring-phone-top.png, oncall-spring-phone-day.png.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.app import Firebreak
from tests.conftest import Slack
from tests.test_webview_browser import (  # noqa: F401 (fixtures)
    ARTIFACTS,
    PHONE,
    browser,
    driver,
    screenshots,
    served,
    wait_for_text,
)
from tests.test_webview_oncall import file_config, pin  # noqa: F401 (fixture)

BOB_FILL = "rgb(76, 175, 99)"  # `.who-1` in style.css: bob is second in people:


def day_row(window: Any, day: str) -> Any:
    from selenium.webdriver.common.by import By

    return window.find_element(By.CSS_SELECTOR, f'#schedule-primary tr[data-date="{day}"]')


def assert_fits_the_window(window: Any) -> None:
    """Nothing sticks out sideways: the page scrolls only down."""
    width = window.execute_script("return document.documentElement.scrollWidth")
    inner = window.execute_script("return window.innerWidth")
    assert width <= inner, f"the page is {width}px wide in a {inner}px window"


def test_the_grid_across_the_spring_change_in_berlin(
    firebreak: Firebreak,
    slack: Slack,
    served: str,  # noqa: F811
    browser: Any,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By

    pin(firebreak, "2026-03-28 20:00")  # Saturday 21:00 CET
    reply = slack.command(
        "override primary <@U0BOB|bob> until 2026-03-29 04:00",
        user="U0ALICE",
        channel="C0GENERAL",
        command="/oncall",
    )
    slack.settle()
    assert reply.status == 200

    browser.get(firebreak.web_access.link("U0ALICE", "alice", next_path="/oncall?from=2026-03-23"))
    wait_for_text(browser, "#schedule-primary tr.clock-change th.date", "23 h · CET → CEST")
    assert [row.get_attribute("data-date") for row in browser.find_elements(
        By.CSS_SELECTOR, "#schedule-primary tr.clock-change"
    )] == ["2026-03-29"]  # fmt: skip
    sunday = day_row(browser, "2026-03-29")
    final = sunday.find_element(By.CSS_SELECTOR, "td.kind-final")
    assert [item.text for item in final.find_elements(By.CSS_SELECTOR, "li.segment")] == [
        "00:00 CET-04:00 CEST bob override #1",
        "04:00 CEST-10:00 CEST carol weekly",
        "10:00 CEST-14:00 CEST bob weekend",
        "14:00 CEST-24:00 carol weekly",
    ]
    # The day's bar is its 23 real hours: 3, 6, 4 and 10 of them, bob's parts in his colour
    # (the stylesheet applies under the CSP; no inline style anywhere).
    rects = final.find_elements(By.CSS_SELECTOR, "svg.day-bar rect")
    widths = [float(rect.get_attribute("width")) for rect in rects]
    assert widths == pytest.approx([100 * h / 23 for h in (3, 6, 4, 10)], abs=0.001)
    drawn = [rect.rect for rect in rects]  # as painted: tall enough to see, side by side
    assert all(box["height"] >= 6 for box in drawn), drawn
    assert [round(box["width"] / sum(b["width"] for b in drawn) * 23) for box in drawn] == [
        3,
        6,
        4,
        10,
    ]
    fills = [browser.execute_script("return getComputedStyle(arguments[0]).fill", r) for r in rects]
    assert fills[0] == fills[2] == BOB_FILL != fills[1]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert sunday.screenshot(str(ARTIFACTS / "oncall-spring-day-desktop.png"))  # close up
    monday = day_row(browser, "2026-03-30").find_element(By.CSS_SELECTOR, "td.kind-layer")
    assert monday.text.split("\n") == ["00:00-09:00 carol", "09:00-24:00 alice"]
    now = browser.find_element(By.CSS_SELECTOR, "#now td.now-on-call").text
    assert now == "bob until Sun 2026-03-29 04:00 CEST"
    link = browser.find_element(By.CSS_SELECTOR, "#schedule-primary a.calendar")
    assert link.get_attribute("href").startswith(f"{served}/oncall/primary.ics?token=")

    browser.set_window_size(*PHONE)
    wait_for_text(browser, "#schedule-primary tr.clock-change", "00:00 CET-04:00 CEST bob")
    assert_fits_the_window(browser)
    # What a phone shows: the top of the page, and the 23-hour day scrolled into view.
    assert browser.save_screenshot(str(ARTIFACTS / "oncall-spring-phone-top.png"))
    browser.execute_script("arguments[0].scrollIntoView()", day_row(browser, "2026-03-28"))
    assert browser.save_screenshot(str(ARTIFACTS / "oncall-spring-phone-day.png"))
    screenshots(browser, "oncall-spring")


def test_the_grid_across_the_fall_change_in_new_york(
    firebreak: Firebreak,
    served: str,  # noqa: F811
    browser: Any,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By

    pin(firebreak, "2026-10-28 12:00")
    browser.get(
        firebreak.web_access.link(
            "U0BOB", "bob", next_path="/oncall?schedule=secondary&from=2026-10-26"
        )
    )
    wait_for_text(browser, "#schedule-secondary tr.clock-change th.date", "25 h · EDT → EST")
    sunday = browser.find_element(By.CSS_SELECTOR, '#schedule-secondary tr[data-date="2026-11-01"]')
    final = sunday.find_element(By.CSS_SELECTOR, "td.kind-final")
    assert [item.text for item in final.find_elements(By.CSS_SELECTOR, "li.segment")] == [
        "00:00 EDT-08:00 EST carol daily",
        "08:00 EST-24:00 bob daily",
    ]
    widths = [float(r.get_attribute("width")) for r in final.find_elements(By.TAG_NAME, "rect")]
    assert widths == pytest.approx([100 * 9 / 25, 100 * 16 / 25], abs=0.001)
    assert "Sat 2026-10-31 08:00 EDT → Sun 2026-11-01 08:00 EST carol 25 h · daily" in (
        browser.find_element(By.CSS_SELECTOR, "#schedule-secondary .handoffs").text
    )
    assert browser.find_elements(By.CSS_SELECTOR, "#schedule-primary") == []

    browser.set_window_size(*PHONE)
    assert_fits_the_window(browser)
    screenshots(browser, "oncall-fall")
