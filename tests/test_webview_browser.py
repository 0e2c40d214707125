"""The web view in a real browser: Debian's chromium, driven by chromium-driver and selenium.

Firebreak's real WSGI app is served by waitress on 127.0.0.1; incidents and notes arrive
as signed Slack requests into the same app (`tests.conftest.Slack`), as Slack would send
them. Screenshots of every page, at desktop and phone widths, are saved under
tests/artifacts/webview/ (FIREBREAK_TEST_ARTIFACTS to put them elsewhere) to look at.

A missing chromium or chromedriver skips these tests on a developer machine, but fails
them when CI or FIREBREAK_REQUIRE_BROWSER=1 is set (.ci/run installs both).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from waitress.server import create_server

from bot.app import Firebreak
from tests.conftest import Slack
from tests.test_webview import IMG, SCRIPT, incident_channel, slack_escaped

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL_HINT = (
    "install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
)
DESKTOP = (1280, 900)
PHONE = (390, 844)
WAIT = 20.0  # seconds a page may take to show what a test waits for
ARTIFACTS = Path(
    os.environ.get("FIREBREAK_TEST_ARTIFACTS")
    or Path(__file__).resolve().parent / "artifacts" / "webview"
)


def _browser_required() -> bool:
    return any(
        os.environ.get(name, "").lower() in {"1", "true", "yes"}
        for name in ("CI", "FIREBREAK_REQUIRE_BROWSER")
    )


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        message = f"{', '.join(missing)} missing: {INSTALL_HINT}"
        if _browser_required():
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # selenium never looks for drivers online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-proxy-server",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
    ):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(WAIT)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def browser(driver: Any) -> Any:
    driver.delete_all_cookies()
    driver.set_window_size(*DESKTOP)
    return driver


@pytest.fixture
def served(firebreak: Firebreak) -> Iterator[str]:
    """The app on waitress at 127.0.0.1 (a free port); sign-in links point there."""
    server = create_server(firebreak.web, host="127.0.0.1", port=0, threads=4)
    url = f"http://127.0.0.1:{server.effective_port}"
    firebreak.web_access.base_url = url
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield url
    finally:
        server.task_dispatcher.shutdown()
        server.close()
        thread.join(timeout=5)


def screenshots(browser: Any, name: str) -> list[Path]:
    """The whole page at desktop and phone widths, saved as NAME-desktop.png and
    NAME-phone.png; the window is left at desktop width."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    saved = []
    for label, (width, height) in (("phone", PHONE), ("desktop", DESKTOP)):
        browser.set_window_size(width, height)
        full = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(width, max(height, min(int(full) + 120, 6000)))
        path = ARTIFACTS / f"{name}-{label}.png"
        assert browser.save_screenshot(str(path)), path
        saved.append(path)
    browser.set_window_size(*DESKTOP)
    print(f"screenshots: {', '.join(str(path) for path in saved)}")
    return saved


def wait_for_text(browser: Any, selector: str, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def shown(driver: Any) -> bool:
        return any(
            text in element.text for element in driver.find_elements(By.CSS_SELECTOR, selector)
        )

    WebDriverWait(browser, WAIT).until(shown, f"{text!r} never appeared in {selector}")


def assert_no_dialog_and_no_injected_image(browser: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert  # noqa: B018
    images = browser.find_elements(By.TAG_NAME, "img")
    assert [image for image in images if image.get_attribute("onerror")] == []
    scripts = browser.find_elements(By.TAG_NAME, "script")
    assert all(script.get_attribute("src") for script in scripts), "an inline script ran"


# -- the tests ----------------------------------------------------------------------------


def test_sign_in_see_the_list_open_an_incident_and_watch_a_note_arrive(
    firebreak: Firebreak, slack: Slack, general: str, served: str, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    slack.run("declare sev1 Checkout is failing for EU customers", channel=general)
    slack.run("declare sev3 Search results are stale", channel=general)
    slack.run("resolve reindexed", channel=incident_channel(firebreak, 2))
    channel = incident_channel(firebreak, 1)
    slack.run("note rolled back the payment service to v41", channel=channel)

    browser.get(served + "/")
    wait_for_text(browser, "h1", "Sign in to Firebreak")
    screenshots(browser, "signin")

    browser.get(firebreak.web_access.link("U0ALICE", "alice"))
    wait_for_text(browser, "#count", "2 incidents")
    rows = browser.find_elements(By.CSS_SELECTOR, "table.incidents tbody tr")
    assert [row.find_element(By.CSS_SELECTOR, "td.ref").text for row in rows] == ["INC-1", "INC-2"]
    assert "alice · Europe/Berlin" in browser.find_element(By.CSS_SELECTOR, ".who").text
    screenshots(browser, "list")

    browser.find_element(By.LINK_TEXT, "INC-1").click()
    wait_for_text(browser, "#incident-title", "Checkout is failing for EU customers")
    wait_for_text(browser, "#timeline", "rolled back the payment service to v41")
    wait_for_text(browser, "#live", "Live: refreshing")
    screenshots(browser, "incident")
    # A mark on this page's window: a reload would wipe it, so seeing it later proves the
    # note arrived without one.
    browser.execute_script("window.firebreakTestMark = 'same page';")

    slack.run("note the error rate is back under 0.1%", channel=channel)
    wait_for_text(browser, "#timeline li.fresh", "alice added a note: the error rate is back")
    assert browser.execute_script("return window.firebreakTestMark") == "same page"
    screenshots(browser, "incident-live")


def test_a_used_or_expired_link_is_refused_with_a_clear_page(
    firebreak: Firebreak, served: str, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    link = firebreak.web_access.link("U0BOB", "bob")
    browser.get(link)
    wait_for_text(browser, "#count", "0 incidents")
    browser.delete_all_cookies()
    browser.get(link)
    wait_for_text(browser, "#problem", "This sign-in link was already used")
    screenshots(browser, "signin-used")

    start = firebreak.clock()
    stale = firebreak.web_access.link("U0BOB", "bob")
    firebreak.clock.use(lambda: start + timedelta(minutes=11))
    browser.get(stale)
    wait_for_text(browser, "#problem", "This sign-in link has expired")
    assert "/incident web" in browser.find_element(By.TAG_NAME, "main").text
    assert browser.get_cookies() == []


def test_script_and_markup_in_titles_and_notes_render_as_text(
    firebreak: Firebreak, slack: Slack, general: str, served: str, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    slack.run(f"declare sev2 {slack_escaped(SCRIPT)} checkout", channel=general)
    channel = incident_channel(firebreak, 1)
    slack.run(f"note {slack_escaped(IMG)}", channel=channel)
    slack.run(f"note {slack_escaped(SCRIPT)}", channel=channel)

    browser.get(firebreak.web_access.link("U0ALICE", "alice", next_path="/"))
    wait_for_text(browser, "td.title", f"{SCRIPT} checkout")
    assert_no_dialog_and_no_injected_image(browser)
    screenshots(browser, "xss-list")

    browser.find_element(By.LINK_TEXT, "INC-1").click()
    wait_for_text(browser, "#incident-title", f"{SCRIPT} checkout")
    wait_for_text(browser, "#timeline", f"alice added a note: {IMG}")
    wait_for_text(browser, "#timeline", f"alice added a note: {SCRIPT}")
    assert SCRIPT in browser.title
    assert_no_dialog_and_no_injected_image(browser)

    # The same text arriving live, through the refresh script, stays text too.
    slack.run(f"note {slack_escaped(IMG)} again", channel=channel)
    wait_for_text(browser, "#timeline li.fresh", f"alice added a note: {IMG} again")
    assert_no_dialog_and_no_injected_image(browser)
    screenshots(browser, "xss-incident")

    browser.find_element(By.LINK_TEXT, "read the draft").click()
    wait_for_text(browser, "#draft", f"INC-1: {SCRIPT} checkout")
    wait_for_text(browser, "#draft", f"alice added a note: {IMG}")
    assert_no_dialog_and_no_injected_image(browser)
    screenshots(browser, "postmortem")


def test_the_sandbox_shows_its_banner_on_every_page(
    firebreak: Firebreak, slack: Slack, general: str, served: str, browser: Any
) -> None:
    slack.run("declare sev2 Sandbox incident", channel=general)
    firebreak.web_access.open_on_loopback = True
    for path in ("/", "/incidents/INC-1", "/incidents/INC-99"):
        browser.get(served + path)
        wait_for_text(browser, "#sandbox-banner", "without signing in")
    screenshots(browser, "sandbox-missing")
