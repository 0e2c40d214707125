"""The web view's pages with everything an incident can hold: an alert from Alertmanager
that opened it and paged the on-call person (with the notification attempts), an action
item, the service filter; and the list's pagination over many incidents."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from werkzeug.test import Client

from bot.app import Firebreak
from bot.incidents import service
from tests.conftest import Slack
from tests.test_alerts import (  # noqa: F401  (fixtures: an alert-routing configuration)
    Monitoring,
    am_alert,
    am_payload,
    file_config,
    firebreak,
    monitoring,
    settings,
)
from tests.test_webview import BASE, incident_channel, path_of


@pytest.fixture
def web(firebreak: Firebreak) -> Client:  # noqa: F811
    firebreak.web_access.base_url = BASE
    client = Client(firebreak.web)
    assert client.get(path_of(firebreak.web_access.link("U0ALICE", "alice"))).status_code == 303
    return client


def test_the_incident_page_shows_alerts_pages_with_attempts_and_action_items(
    firebreak: Firebreak,  # noqa: F811
    monitoring: Monitoring,  # noqa: F811
    slack: Slack,
    web: Client,
) -> None:
    status, _ = monitoring.alertmanager(am_payload(am_alert("HighLatency")))
    assert status == 200
    channel = incident_channel(firebreak, 1)
    slack.run("action Alert on queue depth @bob due 2026-12-01", channel=channel)
    page = web.get("/incidents/INC-1").get_data(as_text=True)
    alerts = page[page.index('id="alerts"') : page.index('id="pages"')]
    assert "HighLatency on checkout" in alerts and "service checkout" in alerts
    assert "firing" in alerts
    pages = page[page.index('id="pages"') : page.index('id="runbooks"')]
    assert "P-1 to service:checkout" in pages
    attempts = re.findall(r"<tr><td data-label=\"Step\">(.*?)</tr>", pages, re.DOTALL)
    assert attempts, pages
    assert (
        'data-label="Person">alice<' in attempts[0] and 'data-label="Channel">slack<' in attempts[0]
    )
    assert 'data-label="Status">sent<' in attempts[0] and 'data-label="Tries">1<' in attempts[0]
    actions = page[page.index('id="actions"') : page.index('id="postmortem"')]
    assert "A-1</span> Alert on queue depth · bob · due 2026-12-01" in actions
    assert "Services</dt><dd>checkout</dd>" in page


def test_the_service_filter_finds_incidents_by_their_alerts(
    firebreak: Firebreak,  # noqa: F811
    monitoring: Monitoring,  # noqa: F811
    slack: Slack,
    general: str,
    web: Client,
) -> None:
    monitoring.alertmanager(am_payload(am_alert("HighLatency")))
    slack.run("declare sev3 Slow search", channel=general)
    listed = web.get("/?service=checkout").get_data(as_text=True)
    assert "1 incident<" in listed and ">INC-1<" in listed and "Slow search" not in listed
    assert "No incidents match." in web.get("/?service=default").get_data(as_text=True)
    wrong = web.get("/?service=billing")
    assert wrong.status_code == 400
    assert "service &#39;billing&#39; is not a configured service (checkout, default)" in (
        wrong.get_data(as_text=True)
    )


def test_the_list_is_paginated_50_at_a_time(firebreak: Firebreak, web: Client) -> None:  # noqa: F811
    start = firebreak.clock()
    with firebreak.db.session_scope() as session:
        for number in range(1, 121):
            service.declare(
                session,
                title=f"Incident number {number}",
                severity="sev3",
                description="",
                declared_by="U0ALICE",
                declare_key=f"test:{number}",
                policy=firebreak.settings.file.incidents,
                now=start + timedelta(minutes=number),
            )
    first = web.get("/").get_data(as_text=True)
    assert "120 incidents, page 1 of 3" in first
    assert first.count('<td class="ref">') == 50
    assert ">INC-120<" in first and ">INC-71<" in first and ">INC-70<" not in first
    assert 'href="/?page=2"' in first and "newer" not in first
    last = web.get("/?page=3").get_data(as_text=True)
    assert last.count('<td class="ref">') == 20 and ">INC-1<" in last
    assert 'href="/?page=2"' in last and "older" not in last
    filtered = web.get("/?q=number+1&page=2").get_data(as_text=True)
    assert 'href="/?q=number+1"' in filtered  # the filters ride along
