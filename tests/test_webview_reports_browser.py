"""`/reports` and `/pages` in a real browser (Debian's chromium through chromium-driver).

The app is served by waitress as in `tests/test_webview_browser.py` (whose fixtures these
tests share: a missing browser fails under CI, never skips). The charts must draw under the
page's CSP (`style-src 'self'`: their colours come from the stylesheet's classes) and keep
their proportions once the browser has laid them out, at desktop and phone widths; user
text (an incident title, a page's message, a service's name) stays text. Screenshots go to
tests/artifacts/webview/ (reports-*.png, pages-*.png).
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.app import Firebreak
from bot.config import FileConfig
from bot.incidents import service
from bot.sandbox import SlackSandbox
from tests.test_paging import Clock, oncall_data
from tests.test_webview import IMG, SCRIPT
from tests.test_webview_browser import (  # noqa: F401  (fixtures)
    PHONE,
    assert_no_dialog_and_no_injected_image,
    browser,
    driver,
    screenshots,
    served,
    wait_for_text,
)
from tests.test_webview_reports import NOW, POLICY, record


@pytest.fixture
def file_config(announce_channel: str) -> FileConfig:
    """The payments policy and `primary` schedule of the paging tests; team zone Berlin."""
    data = oncall_data(announce_channel)
    data["postmortem"] = {"timezone": "Europe/Berlin"}
    return FileConfig.model_validate(data)


@pytest.fixture
def clock(firebreak: Firebreak) -> Clock:
    clock = Clock(NOW)
    firebreak.clock.use(clock)
    return clock


def rendered_bars(window: Any, chart_id: str) -> dict[tuple[str, str], tuple[float, str]]:
    """Each bar of a chart as the browser drew it: its height on screen and its fill."""
    from selenium.webdriver.common.by import By

    found = {}
    for bar in window.find_elements(By.CSS_SELECTOR, f"#{chart_id} rect.bar"):
        height = window.execute_script("return arguments[0].getBoundingClientRect().height", bar)
        fill = window.execute_script("return getComputedStyle(arguments[0]).fill", bar)
        found[(bar.get_attribute("data-group"), bar.get_attribute("data-series"))] = (
            float(height),
            str(fill),
        )
    return found


def test_the_reports_charts_draw_in_proportion_with_their_colours_on_desktop_and_phone(
    firebreak: Firebreak,
    clock: Clock,
    served: str,  # noqa: F811
    browser: Any,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By

    record(firebreak)
    browser.get(firebreak.web_access.link("U0ALICE", "alice", next_path="/reports?months=3"))
    wait_for_text(browser, "#summary", "5 incidents declared 2026-02 to 2026-04")
    for width in ("desktop", "phone"):
        if width == "phone":
            browser.set_window_size(*PHONE)
        drawn = rendered_bars(browser, "chart-acknowledge")
        assert set(drawn) == {("2026-03", "sev1"), ("2026-03", "sev2"), ("2026-04", "sev1")}
        tallest = drawn[("2026-03", "sev2")][0]  # 20 minutes, the top of the axis
        assert tallest > 0
        assert drawn[("2026-03", "sev1")][0] / tallest == pytest.approx(5 / 20, abs=0.02)
        assert drawn[("2026-04", "sev1")][0] / tallest == pytest.approx(3 / 20, abs=0.02)
        # Colours from style.css's classes (an inline style would be refused by the CSP).
        assert drawn[("2026-03", "sev1")][1] == "rgb(179, 38, 30)"
        assert drawn[("2026-03", "sev2")][1] == "rgb(232, 113, 10)"
        # The chart fits the screen: no sideways scrolling of the page itself.
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px at {width} width"
    browser.set_window_size(1280, 900)
    label = browser.find_element(By.CSS_SELECTOR, "#chart-services text.label")
    assert label.text == "checkout"
    services = [
        text.text for text in browser.find_elements(By.CSS_SELECTOR, "#chart-services text.label")
    ]
    assert SCRIPT in services  # a service named like a script is drawn as its name
    cells = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#services-table td")]
    assert SCRIPT in cells
    assert_no_dialog_and_no_injected_image(browser)
    screenshots(browser, "reports")

    browser.get(f"{served}/reports?months=abc")
    wait_for_text(browser, ".problem", "months 'abc' is not a number of months from 1 to 36")
    screenshots(browser, "reports-bad-period")


def test_the_pages_list_shows_each_pages_escalation_and_keeps_user_text_as_text(
    firebreak: Firebreak,
    sandbox: SlackSandbox,
    clock: Clock,
    served: str,  # noqa: F811
    browser: Any,  # noqa: F811
) -> None:
    from selenium.webdriver.common.by import By

    with firebreak.db.session_scope() as session:
        incident = service.declare(
            session,
            title=f"{SCRIPT} checkout",
            severity="sev1",
            declared_by="U0ALICE",
            declare_key="browser-pages",
            policy=POLICY,
            now=clock(),
        ).incident
        incident_id = incident.id
    sandbox.inject_fault("chat.postMessage", status=500, times=3)  # the first try fails
    firebreak.pager.page(
        target="policy:payments",
        message=f"{IMG} checkout 500s",
        created_by="U0BOB",
        incident_id=incident_id,
    )
    clock.advance(seconds=5)
    firebreak.jobs.deliver()
    firebreak.pager.page(target="user:carol", message="Disk full on db-2", created_by="U0ALICE")
    clock.advance(minutes=1)
    firebreak.pager.acknowledge(2, by="U0CAROL")
    clock.advance(minutes=1)

    browser.get(firebreak.web_access.link("U0ALICE", "alice", next_path="/pages"))
    wait_for_text(browser, "#count", "2 open pages: 1 escalating, 0 exhausted")
    wait_for_text(browser, "#P-1 h2", f"{IMG} checkout 500s")
    wait_for_text(
        browser, "#P-1-next", "step 2 notifies user:carol at 2026-04-20 14:05 CEST, in 2m"
    )
    wait_for_text(browser, "#P-1 .esc-steps li.current", "notified")
    tries = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#P-1 ol.tries li")]
    assert len(tries) == 2 and "failed, will retry" in tries[0] and "delivered" in tries[1]
    link = browser.find_element(By.CSS_SELECTOR, "#P-1 ul.links a")
    assert link.text == f"INC-{incident_id}"
    assert f"{SCRIPT} checkout" in browser.find_element(By.CSS_SELECTOR, "#P-1 ul.links").text
    wait_for_text(browser, "#P-2-next", "Acknowledged by carol")
    assert_no_dialog_and_no_injected_image(browser)
    browser.set_window_size(*PHONE)
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"/pages scrolls sideways by {overflow}px on a phone"
    screenshots(browser, "pages")

    link = browser.find_element(By.CSS_SELECTOR, "#P-1 ul.links a")
    link.click()
    wait_for_text(browser, "#incident-title", f"{SCRIPT} checkout")
    assert_no_dialog_and_no_injected_image(browser)
