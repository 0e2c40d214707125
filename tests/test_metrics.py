"""`GET /metrics` and `GET /readyz`: real requests into the real app (signed Slack requests,
alert webhooks, DM buttons, the sandbox Slack over HTTP) move the families they should; the
exposition passes `promtool check metrics` and has the exact 0.0.4 content type; the
examples (scrape config, alert rules, Grafana dashboard) pass `promtool check config`,
`promtool check rules` and `promtool test rules`, and every dashboard query names a family
`/metrics` really has.

`promtool` comes from the Debian package `prometheus`. A missing promtool skips these tests
locally; with CI set (or FIREBREAK_REQUIRE_PROMTOOL=1) it fails them: `.ci/run` installs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from werkzeug.test import Client

from bot.app import Firebreak, build
from bot.config import FileConfig, Settings
from bot.migrations import head_revision
from bot.oncall import paging
from bot.oncall.targets import Target
from bot.sandbox import SlackSandbox
from bot.slack import blocks
from tests.conftest import Slack, make_settings, wait_for
from tests.test_alerts import TOKEN as ALERT_TOKEN
from tests.test_alerts import alert_config, am_alert, am_payload
from tests.test_notifiers import closed_port
from tests.test_paging import MONDAY, Clock, dms

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RULE_TESTS = Path(__file__).resolve().parent / "fixtures" / "promtool" / "firebreak-alerts.test.yml"
EXPOSITION = "text/plain; version=0.0.4; charset=utf-8"


def promtool() -> str:
    """The promtool binary, or skip (fail in CI, which installs it: a skipped check there
    proves nothing)."""
    found = shutil.which("promtool")
    if found is None:
        message = "promtool is not installed (apt-get install prometheus)"
        if os.environ.get("CI") or os.environ.get("FIREBREAK_REQUIRE_PROMTOOL") == "1":
            pytest.fail(f"{message} (required: CI or FIREBREAK_REQUIRE_PROMTOOL=1 is set)")
        pytest.skip(message)
    return found


@pytest.fixture
def file_config(announce_channel: str) -> FileConfig:
    return alert_config(announce_channel)


@pytest.fixture
def settings(database_url: str, sandbox: SlackSandbox, file_config: FileConfig) -> Settings:
    base = make_settings(database_url, sandbox, file_config)
    return replace(base, env=base.env.model_copy(update={"alert_token": SecretStr(ALERT_TOKEN)}))


@pytest.fixture
def firebreak(settings: Settings) -> Iterator[Firebreak]:
    app = build(settings)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def clock(firebreak: Firebreak) -> Clock:
    clock = Clock(MONDAY)  # alice's week on `primary`
    firebreak.clock.use(clock)
    return clock


class Scrape:
    """One `GET /metrics`, parsed by prometheus_client's own parser."""

    def __init__(self, app: Firebreak) -> None:
        response = Client(app.web).get("/metrics")
        assert response.status_code == 200
        self.content_type = response.headers["Content-Type"]
        self.text = response.get_data(as_text=True)
        self.families = {f.name: f for f in text_string_to_metric_families(self.text)}

    def value(self, sample: str, **labels: str) -> float:
        """The sample's value (0 when absent: a labelled counter appears at its first inc)."""
        for family in self.families.values():
            for found in family.samples:
                if found.name == sample and found.labels == labels:
                    return float(found.value)
        return 0.0


def test_the_exposition_is_promtool_clean_with_the_exact_content_type(
    firebreak: Firebreak, slack: Slack, general: str
) -> None:
    tool = promtool()
    slack.run("declare sev2 Search is slow", channel=general)  # fill some labelled families
    scrape = Scrape(firebreak)
    assert scrape.content_type == EXPOSITION
    for family in ("process_cpu_seconds", "process_resident_memory_bytes", "python_info"):
        assert family in scrape.families, sorted(scrape.families)
    names = sorted(scrape.families)
    assert [n for n in names if not n.startswith(("firebreak_", "process_", "python_"))] == []
    checked = subprocess.run(
        [tool, "check", "metrics"], input=scrape.text, capture_output=True, text=True, timeout=60
    )
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


def test_an_incident_a_page_its_escalation_and_acknowledgement_move_their_families(
    firebreak: Firebreak, slack: Slack, sandbox: SlackSandbox, general: str, clock: Clock
) -> None:
    before = Scrape(firebreak)
    assert before.value("firebreak_incidents_open", severity="sev1") == 0
    assert before.value("firebreak_pages_open", state="triggered") == 0

    reply = slack.run("declare sev1 Payments API returning 500s", channel=general)
    assert reply.status == 200
    after = Scrape(firebreak)
    assert after.value("firebreak_incidents_open", severity="sev1") == 1
    assert after.value("firebreak_incidents_open", severity="sev3") == 0  # every severity shown
    assert after.value("firebreak_slack_api_calls_total", method="conversations.create") == 1
    assert after.value("firebreak_slack_requests_total", status="200") == 1
    assert after.value("firebreak_slack_response_seconds_count") == 1
    post = {"method": "POST", "route": "/slack/events", "status": "200"}
    assert after.value("firebreak_http_requests_total", **post) == 1
    assert after.value("firebreak_http_request_duration_seconds_count", route="/slack/events") == 1

    slack.command(
        "policy:payments DB replication broken", user="U0BOB", channel="C0ANY", command="/page"
    )
    slack.settle()
    paged = Scrape(firebreak)
    assert paged.value("firebreak_pages_triggered_total") == 1
    assert paged.value("firebreak_page_steps_total", result="notified") == 1
    assert paged.value("firebreak_notification_attempts_total", channel="slack") == 1
    assert paged.value("firebreak_pages_open", state="triggered") == 1
    assert paged.value("firebreak_pages_escalated_total") == 0

    # The 5-minute step is due at MONDAY+5m; the reconcile job finds it 7 s late.
    late = timedelta(minutes=5, seconds=7)
    clock.advance(seconds=late.total_seconds())
    firebreak.jobs.reconcile()
    assert len(dms(sandbox, "U0CAROL")) == 1
    escalated = Scrape(firebreak)
    assert escalated.value("firebreak_pages_escalated_total") == 1
    lateness = "firebreak_page_escalation_lateness_seconds"
    assert escalated.value(f"{lateness}_sum") == 7.0
    assert escalated.value(f"{lateness}_bucket", le="5.0") == 0
    assert escalated.value(f"{lateness}_bucket", le="10.0") == 1

    [carol_dm] = [
        c for c in sandbox.snapshot()["channels"] if c.get("is_im") and "U0CAROL" in c["members"]
    ]
    slack.block_action(blocks.ACTION_PAGE_ACK, user="U0CAROL", channel=carol_dm["id"], value="1")
    slack.settle()
    slack.block_action(blocks.ACTION_PAGE_ACK, user="U0ALICE", channel=carol_dm["id"], value="1")
    slack.settle()  # a second acknowledgement changes nothing, and counts nothing
    acked = Scrape(firebreak)
    assert acked.value("firebreak_pages_acknowledged_total") == 1
    assert acked.value("firebreak_page_time_to_acknowledge_seconds_count") == 1
    assert acked.value("firebreak_page_time_to_acknowledge_seconds_sum") == late.total_seconds()
    assert acked.value("firebreak_pages_open", state="acknowledged") == 1
    assert acked.value("firebreak_pages_open", state="triggered") == 0
    assert acked.value("firebreak_pages_exhausted_total") == 0


def test_an_alert_webhook_counts_its_route_source_outcome_and_page(
    firebreak: Firebreak, clock: Clock
) -> None:
    client = Client(firebreak.web)
    body = json.dumps(am_payload(am_alert("HighErrorRate")))
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {ALERT_TOKEN}"}
    assert client.post("/alerts/alertmanager", data=body, headers=headers).status_code == 200
    refused = {"Content-Type": "application/json", "Authorization": "Bearer wrong"}
    assert client.post("/alerts/alertmanager", data=body, headers=refused).status_code == 401
    assert firebreak.workers.wait_idle(timeout=20)

    scrape = Scrape(firebreak)
    route = {"method": "POST", "route": "/alerts/alertmanager"}
    assert scrape.value("firebreak_http_requests_total", **route, status="200") == 1
    assert scrape.value("firebreak_http_requests_total", **route, status="401") == 1
    assert (
        scrape.value("firebreak_alerts_received_total", source="alertmanager", outcome="new") == 1
    )
    assert scrape.value("firebreak_pages_triggered_total") == 1
    assert scrape.value("firebreak_incidents_open", severity="sev2") == 1  # the route opens one


def test_unmatched_paths_are_one_route_label_not_one_per_path(firebreak: Firebreak) -> None:
    client = Client(firebreak.web)
    for path in ("/no-such-page", "/wp-admin", "/a/b/c"):
        assert client.get(path).status_code == 404
    assert client.get("/oncall/primary.ics").status_code in (403, 404)
    scrape = Scrape(firebreak)
    assert (
        scrape.value("firebreak_http_requests_total", method="GET", route="unmatched", status="404")
        == 3
    )
    routes = {s.labels["route"] for s in scrape.families["firebreak_http_requests"].samples}
    assert routes == {"unmatched", "/oncall/<schedule>.ics"}, routes


def test_slack_retries_errors_and_undelivered_notifications_are_counted(
    firebreak: Firebreak, sandbox: SlackSandbox, clock: Clock
) -> None:
    sandbox.inject_fault("chat.postMessage", retry_after=0)  # one 429, then it goes through
    firebreak.pager.page(target="user:alice", message="disk full", created_by="U0BOB")
    assert len(dms(sandbox, "U0ALICE")) == 1
    sandbox.inject_fault("chat.postMessage", error="user_not_found")
    firebreak.pager.page(target="user:alice", message="disk still full", created_by="U0BOB")

    scrape = Scrape(firebreak)
    post = {"method": "chat.postMessage"}
    assert scrape.value("firebreak_slack_api_retries_total", **post, reason="ratelimited") == 1
    assert scrape.value("firebreak_slack_api_errors_total", **post, error="user_not_found") == 1
    assert scrape.value("firebreak_slack_api_errors_total", **post, error="ratelimited") == 0
    assert scrape.value("firebreak_slack_api_calls_total", **post) == 2  # retries count once
    assert scrape.value("firebreak_notification_attempts_total", channel="slack") == 2
    failed = {"channel": "slack", "final": "true"}
    assert scrape.value("firebreak_notification_failures_total", **failed) == 1


def test_a_refused_runbook_run_is_counted_by_outcome(
    firebreak: Firebreak, slack: Slack, general: str
) -> None:
    slack.command("run rm-everything", user="U0ALICE", channel=general, command="/runbook")
    slack.settle()
    assert Scrape(firebreak).value("firebreak_runbook_runs_total", outcome="refused") == 1


def test_facts_rolled_back_are_not_counted(firebreak: Firebreak, clock: Clock) -> None:
    oncall = firebreak.settings.file.oncall
    alice = Target.parse("user:alice")

    def trigger(session: Any, message: str) -> None:
        paging.trigger(
            session, oncall, target=alice, message=message, created_by="U0BOB", now=clock()
        )

    with pytest.raises(RuntimeError), firebreak.db.session_scope() as session:
        trigger(session, "rolled back with its transaction")
        raise RuntimeError
    with firebreak.db.session_scope() as session:
        with pytest.raises(RuntimeError), session.begin_nested():
            trigger(session, "rolled back with its savepoint")
            raise RuntimeError
        trigger(session, "committed")
    scrape = Scrape(firebreak)
    assert scrape.value("firebreak_pages_triggered_total") == 1
    assert scrape.value("firebreak_page_steps_total", result="notified") == 1
    assert scrape.value("firebreak_pages_open", state="triggered") == 1


def test_the_scheduler_role_and_job_lag(firebreak: Firebreak) -> None:
    standby = Scrape(firebreak)
    assert standby.value("firebreak_scheduler_leader") == 0
    assert standby.value("firebreak_database_up") == 1
    firebreak.start_scheduler(poll_interval=0.2)

    def leading() -> Scrape | None:
        scrape = Scrape(firebreak)
        if scrape.value("firebreak_scheduler_job_lag_seconds_count", kind="reconcile") < 1:
            return None
        return scrape if scrape.value("firebreak_scheduler_leader") == 1 else None

    scrape = wait_for(leading, timeout=30)
    assert scrape.value("firebreak_scheduler_healthy") == 1
    ready = Client(firebreak.web).get("/readyz")
    assert (ready.status_code, ready.get_json()["scheduler"]) == (200, "leader")


def test_readyz_names_each_check_and_is_503_when_one_fails(
    firebreak: Firebreak, settings: Settings, database_url: str, empty_database_url: str
) -> None:
    head = head_revision(database_url)
    ready = Client(firebreak.web).get("/readyz")
    expected = {"status": "ready", "database": "ok", "schema": head, "scheduler": "off"}
    assert (ready.status_code, ready.get_json()) == (200, expected)
    assert Scrape(firebreak).value("firebreak_ready") == 1

    closed = f"postgresql+psycopg://firebreak@127.0.0.1:{closed_port()}/firebreak"
    for url, answer in (
        (empty_database_url, {"database": "ok", "schema": None, "expected": head}),
        (closed, {"database": "OperationalError"}),
    ):
        env = settings.env.model_copy(update={"database_url": url})
        app = build(replace(settings, env=env))
        try:
            response = Client(app.web).get("/readyz")
            body = {"status": "unavailable", **answer, "scheduler": "off"}
            assert (response.status_code, response.get_json()) == (503, body)
            scrape = Scrape(app)
            assert scrape.value("firebreak_ready") == 0
            assert scrape.value("firebreak_database_up") == (0 if url == closed else 1)
        finally:
            app.close()


# -- the examples -------------------------------------------------------------------------


def test_the_example_scrape_config_and_alert_rules_pass_promtool(tmp_path: Path) -> None:
    tool = promtool()
    for command, example in (
        ("rules", "firebreak-alerts.yml"),
        ("config", "prometheus.yml"),
    ):
        path = tmp_path / example
        shutil.copy(EXAMPLES / example, path)
        if example == "prometheus.yml":  # the config names the rules file next to it
            shutil.copy(EXAMPLES / "firebreak-alerts.yml", tmp_path / "firebreak-alerts.yml")
        done = subprocess.run(
            [tool, "check", command, str(path)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_alert_rules_fire_when_they_should(tmp_path: Path) -> None:
    """`promtool test rules` over series shaped like Firebreak's
    (tests/fixtures/promtool/firebreak-alerts.test.yml): each alert fires on the situation it
    is for, with the labels and words it promises, and a healthy replica pair raises none."""
    tool = promtool()
    shutil.copy(EXAMPLES / "firebreak-alerts.yml", tmp_path / "firebreak-alerts.yml")
    shutil.copy(RULE_TESTS, tmp_path / "rules.test.yml")
    done = subprocess.run(
        [tool, "test", "rules", "rules.test.yml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_dashboard_query_names_a_family_metrics_has(
    firebreak: Firebreak, slack: Slack, general: str
) -> None:
    slack.run("declare sev2 Search is slow", channel=general)
    scrape = Scrape(firebreak)
    dashboard = json.loads((EXAMPLES / "grafana-dashboard.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    suffix = re.compile(r"_(total|bucket|sum|count)$")
    named = {name for expr in exprs for name in re.findall(r"\b(?:firebreak|process)_\w+", expr)}
    # Every name a panel uses is a family /metrics has, and every family has a panel.
    assert sorted(n for n in named if suffix.sub("", n) not in scrape.families) == []
    firebreak_families = {n for n in scrape.families if n.startswith("firebreak_")}
    unused = {f for f in firebreak_families if not any(f in expr for expr in exprs)}
    assert sorted(unused) == []
