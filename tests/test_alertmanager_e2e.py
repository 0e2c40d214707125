"""A real Prometheus Alertmanager pages through a real `firebreak serve`.

Alertmanager (the Debian package `prometheus-alertmanager`) runs on 127.0.0.1 with
`examples/alertmanager.yml` itself as its configuration (only the Firebreak URL, the token,
the routing key and the waits replaced), and `firebreak serve` with the README's alert
configuration talks to the sandbox Slack. Alerts are posted to Alertmanager's API the way
Prometheus posts them; Alertmanager's own webhook and PagerDuty notifiers carry them into
Firebreak, and we look at the sandbox Slack and the database.

Also here: the example files are valid (`amtool check-config`), and Grafana's contact point
from `examples/grafana-contact-point.yaml` is accepted as Grafana would send it.

A missing Alertmanager skips these tests locally; with CI set (or
FIREBREAK_REQUIRE_ALERTMANAGER=1) it fails them: `.ci/run` installs the package.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from bot.alerts.records import StoredAlert
from bot.db import Database
from bot.incidents.models import Incident
from bot.oncall.models import Page
from bot.sandbox import SlackSandbox
from bot.sandbox.outbound import OutboundSlack, http_transport
from tests.conftest import PEOPLE, SECRET
from tests.test_paging import dms
from tests.test_scheduler import FIREBREAK, chain_serve_env, firebreak_serve

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_ALERTMANAGER = ROOT / "examples" / "alertmanager.yml"
EXAMPLE_GRAFANA = ROOT / "examples" / "grafana-contact-point.yaml"
EXAMPLE_URL = "https://firebreak.example.com"
FIXTURES = Path(__file__).parent / "fixtures" / "alerts"
# As the README makes them: openssl rand -hex 32 and -hex 16.
ALERT_TOKEN = secrets.token_hex(32)
ROUTING_KEY = secrets.token_hex(16)
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
STARTUP_TIMEOUT = 20.0


# -- the binaries ----------------------------------------------------------------------


def _required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("FIREBREAK_REQUIRE_ALERTMANAGER") == "1"


def _binary(name: str) -> str:
    """The path of an executable from the `prometheus-alertmanager` package, or skip (fail
    in CI, which installs the package: a skipped integration test there proves nothing)."""
    path = shutil.which(name) or f"/usr/bin/{name}"
    if os.access(path, os.X_OK):
        return path
    message = f"{name} not found: install the Debian package prometheus-alertmanager"
    if _required():
        pytest.fail(f"{message} (required: CI or FIREBREAK_REQUIRE_ALERTMANAGER=1 is set)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def alertmanager_binary() -> str:
    return _binary("prometheus-alertmanager")


@pytest.fixture(scope="session")
def amtool() -> str:
    return _binary("amtool")


# -- HTTP ------------------------------------------------------------------------------


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with OPENER.open(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


# -- Firebreak -------------------------------------------------------------------------


def readme_alert_config() -> dict[str, Any]:
    """The firebreak.yaml snippet of the README's "Alerts" section, as data: what a reader
    copies is what these tests run."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Alerts\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    snippets = [yaml.safe_load(block) for block in blocks if "alert_routes:" in block]
    assert len(snippets) == 1, "the README's Alerts section has one alert_routes snippet"
    return dict(snippets[0])


@dataclass
class Served:
    url: str
    db: Database  # the served database, read by the test
    log: Path

    def rows(self, model: Any) -> list[Any]:
        with self.db.session_scope() as session:
            rows = list(session.scalars(select(model).order_by(model.id)))
            session.expunge_all()
            return rows

    def metrics(self) -> str:
        status, body = http("GET", self.url + "/metrics")
        assert status == 200
        return body


@contextmanager
def serving(
    sandbox: SlackSandbox, announce_channel: str, database_url: str, tmp_path: Path
) -> Iterator[Served]:
    """`firebreak serve` with the README's services and alert_routes, after `firebreak
    check` passed on them; the checkout policy pages alice (one step, no schedule, so the
    page does not depend on the date)."""
    env = chain_serve_env(sandbox, announce_channel, database_url, tmp_path, "5m")
    config: dict[str, Any] = {
        "slack": {"announce_channel": announce_channel},
        "people": {name: person.model_dump() for name, person in PEOPLE.items()},
        "escalation_policies": {
            "payments": {"steps": [{"targets": ["user:alice"], "wait": "5m"}], "repeat": 0}
        },
        **readme_alert_config(),
    }
    Path(env["FIREBREAK_CONFIG"]).write_text(yaml.safe_dump(config), encoding="utf-8")
    env.update(FIREBREAK_ALERT_TOKEN=ALERT_TOKEN, FIREBREAK_CHECKOUT_ROUTING_KEY=ROUTING_KEY)
    check = subprocess.run(
        [FIREBREAK, "check"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "warning" not in (check.stdout + check.stderr).lower(), check.stdout + check.stderr
    log = tmp_path / "serve.log"
    db = Database(database_url)
    try:
        with firebreak_serve(env, log) as (url, _process):
            yield Served(url, db, log)
    finally:
        db.dispose()


@pytest.fixture
def served(
    sandbox: SlackSandbox, announce_channel: str, database_url: str, tmp_path: Path
) -> Iterator[Served]:
    with serving(sandbox, announce_channel, database_url, tmp_path) as running:
        yield running


# -- Alertmanager ----------------------------------------------------------------------


def alertmanager_config(firebreak_url: str) -> dict[str, Any]:
    """examples/alertmanager.yml pointed at `firebreak_url`, with 1 s waits."""
    config: dict[str, Any] = yaml.safe_load(EXAMPLE_ALERTMANAGER.read_text(encoding="utf-8"))
    config["route"].update(group_wait="1s", group_interval="1s")
    replaced = []
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            assert webhook["url"] == EXAMPLE_URL + "/alerts/alertmanager"
            webhook["url"] = firebreak_url + "/alerts/alertmanager"
            webhook["http_config"]["authorization"]["credentials"] = ALERT_TOKEN
            replaced.append("webhook")
        for pagerduty in receiver.get("pagerduty_configs", []):
            assert pagerduty["url"] == EXAMPLE_URL + "/v2/enqueue"
            pagerduty["url"] = firebreak_url + "/v2/enqueue"
            pagerduty["routing_key"] = ROUTING_KEY
            replaced.append("pagerduty")
    assert sorted(replaced) == ["pagerduty", "webhook"], replaced
    return config


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Alertmanager:
    url: str
    log: Path

    def post(self, *alerts: dict[str, Any]) -> None:
        """POST /api/v2/alerts, as Prometheus does."""
        status, body = http("POST", self.url + "/api/v2/alerts", list(alerts))
        assert status == 200, (status, body, self.log.read_text())

    def amtool(self, amtool: str, *arguments: str) -> None:
        """`amtool alert add ...`, as the README has the reader do."""
        result = subprocess.run(
            [amtool, "alert", "add", *arguments, f"--alertmanager.url={self.url}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
        )
        assert result.returncode == 0, result.stdout + result.stderr


def _start_alertmanager(
    binary: str, config: Path, storage: Path, log: Path
) -> tuple[subprocess.Popen[bytes], str] | None:
    """Alertmanager on a free port, ready; None if another process took the port first."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    with log.open("ab") as output:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={storage}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--web.external-url={url}",
                "--cluster.listen-address=",  # no gossip: one instance, no other port
                "--log.level=debug",
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            if "address already in use" in log.read_text(errors="replace"):
                return None
            raise AssertionError("Alertmanager exited:\n" + log.read_text(errors="replace"))
        try:
            if http("GET", url + "/-/ready")[0] == 200:
                return process, url
        except OSError:
            pass
        time.sleep(0.05)
    _stop(process)
    raise AssertionError("Alertmanager did not get ready:\n" + log.read_text(errors="replace"))


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def running_alertmanager(
    binary: str, config: dict[str, Any], tmp_path: Path
) -> Iterator[Alertmanager]:
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    log = tmp_path / "alertmanager.log"
    for attempt in range(5):
        started = _start_alertmanager(binary, path, tmp_path / f"am-data-{attempt}", log)
        if started is not None:
            break
    else:
        raise AssertionError("no free port for Alertmanager after 5 tries")
    process, url = started
    try:
        yield Alertmanager(url, log)
    finally:
        _stop(process)


# -- the tests -------------------------------------------------------------------------


def test_the_example_alertmanager_config_passes_amtool(amtool: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [amtool, "check-config", str(EXAMPLE_ALERTMANAGER)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "2 receivers" in result.stdout
    # The copy the e2e tests run is valid too.
    copy = tmp_path / "alertmanager.yml"
    copy.write_text(yaml.safe_dump(alertmanager_config("http://127.0.0.1:3000")))
    result = subprocess.run(
        [amtool, "check-config", str(copy)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("extra", "source"),
    [
        ([], "alertmanager"),  # no route of the example matches: its webhook receiver
        (["team=payments"], "pagerduty"),  # its route to the pagerduty_configs receiver
    ],
)
def test_alertmanager_pages_opens_the_incident_and_resolves_the_page(
    alertmanager_binary: str,
    amtool: str,
    served: Served,
    sandbox: SlackSandbox,
    tmp_path: Path,
    extra: list[str],
    source: str,
) -> None:
    config = alertmanager_config(served.url)
    with running_alertmanager(alertmanager_binary, config, tmp_path) as am:
        # The README's command, and a second alert of the same group (alertname, service)
        # with links, as Prometheus sends them.
        labels = ["service=checkout", "severity=critical", *extra]
        am.amtool(amtool, "CheckoutErrors", *labels, "--annotation=summary=Checkout answers 5xx")
        am.amtool(
            amtool,
            "CheckoutErrors",
            *labels,
            "instance=web-2",
            "--annotation=runbook_url=https://runbooks.example.com/checkout",
            "--generator-url=http://prometheus.example.com/graph?g0.expr=up",
        )

        # After group_wait: one incident with its channel, alice paged once, by DM.
        wait_for(lambda: dms(sandbox, "U0ALICE"), "alice's page DM")
        incident = wait_for(
            lambda: [i for i in served.rows(Incident) if i.channel_id], "the incident channel"
        )[0]
        assert incident.severity == "sev2"  # the route's incident severity
        [summary] = wait_for(
            lambda: [
                m
                for m in sandbox.messages(incident.channel_id)
                if m.text.startswith(f"Alerts from {source}")
            ],
            "the alert summary in the incident channel",
        )
        assert "CheckoutErrors" in summary.text, summary.text
        shown = json.dumps(summary.blocks)
        assert "service=checkout" in shown, shown
        if source == "alertmanager":  # PagerDuty events carry Alertmanager's links only
            assert "runbooks.example.com" in shown and "prometheus.example.com" in shown, shown
        [page] = served.rows(Page)
        assert (page.state, page.incident_id) == ("triggered", incident.id)
        [dm] = dms(sandbox, "U0ALICE")
        assert "CheckoutErrors" in dm, dm
        buttons = json.dumps([c.params for c in sandbox.calls_to("chat.postMessage")])
        assert all(word in buttons for word in ("Acknowledge", "Escalate now", "Resolve"))

        # Prometheus re-posts firing alerts on every evaluation, with startsAt kept and
        # endsAt pushed forward: nothing new happens. A configuration reload neither.
        now = datetime.now(UTC)
        am.post(
            {
                "labels": {
                    "alertname": "CheckoutErrors",
                    **dict(label.split("=") for label in labels),
                },
                "annotations": {"summary": "Checkout answers 5xx"},
                "startsAt": (now - timedelta(seconds=30)).isoformat(),
                "endsAt": (now + timedelta(minutes=4)).isoformat(),
                "generatorURL": "http://prometheus.example.com/graph?g0.expr=up",
            }
        )
        assert http("POST", am.url + "/-/reload")[0] == 200

        # The README's resolution: the same alerts with an end time now.
        end = f"--end={datetime.now(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"
        am.amtool(amtool, "CheckoutErrors", *labels, end)
        am.amtool(amtool, "CheckoutErrors", *labels, "instance=web-2", end)
        wait_for(
            lambda: [p for p in served.rows(Page) if p.state == "resolved"], "the page resolved"
        )
        wait_for(
            lambda: [m for m in sandbox.messages(incident.channel_id) if "resolved P-1" in m.text],
            "the resolution in the incident channel",
        )
        am_metrics = http("GET", am.url + "/metrics")[1]

    [page] = served.rows(Page)
    assert page.resolved_by == source
    stored = served.rows(StoredAlert)
    assert [alert.status for alert in stored] == ["resolved"] * len(stored)
    assert all(alert.labels["service"] == "checkout" for alert in stored)
    # Alertmanager's webhook carries each alert; its PagerDuty event carries the group.
    assert len(stored) == (2 if source == "alertmanager" else 1)
    [incident] = served.rows(Incident)
    assert incident.resolved_at is None  # people resolve incidents
    assert len(dms(sandbox, "U0ALICE")) == 1, "paged once, however often the alerts were sent"
    assert dms(sandbox, "U0BOB") == [] and dms(sandbox, "U0CAROL") == []

    slack = OutboundSlack(http_transport(served.url + "/slack/events"), SECRET, sandbox)
    assert slack.command("alerts", user="U0ALICE", channel=incident.channel_id).status == 200
    listing = wait_for(lambda: sandbox.responses(), "the /incident alerts answer")[-1]
    assert f"0 firing, {len(stored)} resolved" in json.dumps(listing.payload), listing.payload

    metrics = served.metrics()
    new = f'firebreak_alerts_received_total{{outcome="new",source="{source}"}} {len(stored)}.0'
    assert new in metrics, metrics
    assert f'firebreak_alerts_received_total{{outcome="resolved",source="{source}"}}' in metrics
    endpoint = "alertmanager" if source == "alertmanager" else "pagerduty"
    status = "200" if source == "alertmanager" else "202"
    assert f'firebreak_alert_requests_total{{endpoint="{endpoint}",status="{status}"}}' in metrics
    integration = "webhook" if source == "alertmanager" else "pagerduty"
    assert f'alertmanager_notifications_failed_total{{integration="{integration}"}} 0' in am_metrics
    sent = re.search(
        rf'alertmanager_notifications_total{{integration="{integration}"}} (\d+)', am_metrics
    )
    assert sent and int(sent.group(1)) >= 2, am_metrics  # the firing and the resolution


def test_the_example_grafana_contact_point_is_accepted_as_grafana_sends_it(
    served: Served, sandbox: SlackSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Grafana's webhook notifier sends `Authorization: <scheme> <credentials>` with the
    body of its webhook format; provisioning files expand `$VAR`/`${VAR}` from Grafana's
    environment."""
    document = yaml.safe_load(EXAMPLE_GRAFANA.read_text(encoding="utf-8"))
    assert document["apiVersion"] == 1
    [contact_point] = document["contactPoints"]
    [receiver] = contact_point["receivers"]
    assert receiver["type"] == "webhook"
    assert receiver.get("disableResolveMessage") is False
    settings = receiver["settings"]
    assert settings["url"] == EXAMPLE_URL + "/alerts/grafana"
    monkeypatch.setenv("FIREBREAK_ALERT_TOKEN", ALERT_TOKEN)
    credentials = os.path.expandvars(settings["authorization_credentials"])
    assert credentials == ALERT_TOKEN, "the token comes from FIREBREAK_ALERT_TOKEN"
    headers = {"Authorization": f"{settings.get('authorization_scheme', 'Bearer')} {credentials}"}
    url = settings["url"].replace(EXAMPLE_URL, served.url)
    body = json.loads((FIXTURES / "grafana-docs.json").read_text(encoding="utf-8"))

    status, answer = http(settings.get("httpMethod", "POST"), url, body, headers)
    assert status == 200, answer
    wait_for(lambda: dms(sandbox, "U0ALICE"), "alice's page DM")  # the default route pages
    assert http("POST", url, body, {"Authorization": "Bearer wrong"})[0] == 401

    for alert_body in body["alerts"]:
        alert_body.update(status="resolved", endsAt="2021-10-12T10:01:03Z")
    body["status"] = "resolved"
    status, answer = http(settings.get("httpMethod", "POST"), url, body, headers)
    assert status == 200, answer
    [page] = served.rows(Page)
    assert (page.state, page.resolved_by) == ("resolved", "grafana")
