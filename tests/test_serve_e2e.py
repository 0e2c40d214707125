"""End to end: `firebreak serve --sandbox` as a real process, spoken to over real HTTP."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.db import Database
from bot.incidents.models import Incident
from bot.migrations import head_revision
from bot.sandbox.outbound import OutboundSlack, http_transport
from bot.timeline import TimelineEvent
from tests.conftest import PROXY_VARIABLES

FIREBREAK = str(Path(sys.executable).parent / "firebreak")
SECRET = "e2e-signing-secret-4f2a"
LISTENING = re.compile(r"^Firebreak listening on (http://127\.0\.0\.1:\d+)$")
SANDBOX = re.compile(r"^Sandbox Slack: (http://127\.0\.0\.1:\d+)/api/$")
STARTUP_TIMEOUT = 30.0
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    sandbox_url: str
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    data = None
    all_headers = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    request = urllib.request.Request(url, data=data, headers=all_headers, method=method)
    try:
        with OPENER.open(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _pump(stream: Any, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[Served]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in PROXY_VARIABLES
        and key not in ("FIREBREAK_CONFIG", "SLACK_BOT_TOKEN", "SLACK_API_URL")
    }
    env.update(NO_PROXY="127.0.0.1,localhost", DATABASE_URL=database_url)
    env["SLACK_SIGNING_SECRET"] = SECRET
    workdir = tmp_path / "serve"
    workdir.mkdir()  # no firebreak.yaml here: the embedded defaults
    stderr_path = tmp_path / "serve.stderr"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [FIREBREAK, "serve", "--sandbox", "--port", "0"],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
        url = sandbox_url = ""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not (url and sandbox_url):
            remaining = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                pytest.fail(f"firebreak serve did not start in time:\n{stderr_path.read_text()}")
            if line is None:
                pytest.fail(f"firebreak serve exited early:\n{stderr_path.read_text()}")
            if match := LISTENING.match(line):
                url = match.group(1)
            elif match := SANDBOX.match(line):
                sandbox_url = match.group(1)
        yield Served(process, url, sandbox_url, stderr_path)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def sandbox_state(served: Served) -> dict[str, Any]:
    status, body = http("GET", served.sandbox_url + "/_sandbox/state")
    assert status == 200, body
    state: dict[str, Any] = json.loads(body)
    return state


def channel_named(state: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((c for c in state["channels"] if c["name"] == name), None)


def wait_until(condition: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def add_general(served: Served) -> str:
    status, body = http(
        "POST",
        served.sandbox_url + "/_sandbox/channels",
        {"name": "general", "members": ["U0ALICE"]},
    )
    assert status == 200, body
    channel = json.loads(body)["channel"]
    assert isinstance(channel, str) and channel
    return channel


def metric(served: Served, name: str, labels: str) -> float:
    status, body = http("GET", served.url + "/metrics")
    assert status == 200
    pattern = re.compile(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", re.M)
    found = pattern.search(body)
    return float(found.group(1)) if found else 0.0


def test_health_readiness_and_metrics(served: Served, database_url: str) -> None:
    status, body = http("GET", served.url + "/healthz")
    assert status == 200
    assert json.loads(body) == {"status": "ok"}

    head = head_revision(database_url)

    def leading() -> dict[str, Any] | None:
        # The only replica leads: at once on SQLite, after the takeover delay on PostgreSQL;
        # a standby is ready too.
        status, body = http("GET", served.url + "/readyz")
        assert status == 200, body
        ready = json.loads(body)
        assert ready["status"] == "ready" and ready["schema"] == head, ready
        assert ready["scheduler"] in ("leader", "standby"), ready
        return ready if ready["scheduler"] == "leader" else None

    assert wait_until(leading) == {
        "status": "ready",
        "database": "ok",
        "schema": head,
        "scheduler": "leader",
    }

    with OPENER.open(served.url + "/metrics", timeout=10) as response:
        # Exactly what Prometheus expects: one charset (it used to send two).
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        body = response.read().decode()
    assert re.search(r"^# TYPE firebreak_slack_requests(_total)? counter$", body, re.M), body
    assert "firebreak_slack_response_seconds_bucket" in body
    assert re.search(r"^process_resident_memory_bytes \d", body, re.M), body
    assert re.search(r"^firebreak_scheduler_leader 1\.0$", body, re.M), body
    healthz = 'firebreak_http_requests_total{method="GET",route="/healthz",status="200"} 1.0'
    assert healthz in body, body

    status, _ = http("GET", served.url + "/no-such-page")
    assert status == 404


def test_declare_over_http_opens_the_incident_channel(served: Served, database_url: str) -> None:
    general = add_general(served)
    slack = OutboundSlack(http_transport(served.url + "/slack/events"), SECRET)

    reply = slack.command(
        "declare sev1 Payments API returning 500s", user="U0ALICE", channel=general
    )
    assert reply.status == 200, reply.body

    name = "inc-1-payments-api-returning-500s"

    def ready() -> dict[str, Any] | None:
        channel = channel_named(sandbox_state(served), name)
        if channel and channel["pins"] and channel["topic"].startswith("SEV1 · investigating"):
            return channel
        return None

    channel = wait_until(ready)
    assert "U0ALICE" in channel["members"]
    assert "<@U0ALICE>" in channel["topic"]
    [pinned] = [m for m in channel["messages"] if m["ts"] == channel["pins"][0]]
    assert pinned["text"].startswith("INC-1")
    assert "Payments API returning 500s" in pinned["text"]

    db = Database(database_url)  # the process used the database it was given
    try:
        with db.session_scope() as session:
            incident = session.scalars(select(Incident)).one()
            assert (incident.title, incident.severity, incident.status) == (
                "Payments API returning 500s",
                "sev1",
                "investigating",
            )
            assert incident.channel_id == channel["id"]
            kinds = {e.kind for e in session.scalars(select(TimelineEvent))}
        assert {"declared", "channel_created", "summary_pinned"} <= kinds
    finally:
        db.dispose()
    assert metric(served, "firebreak_slack_requests_total", 'status="200"') >= 1


def test_unsigned_wrongly_signed_and_stale_requests_are_refused(served: Served) -> None:
    general = add_general(served)
    events_url = served.url + "/slack/events"
    slack = OutboundSlack(http_transport(events_url), SECRET)
    body = slack.command_body("declare sev2 Forged incident", user="U0ALICE", channel=general)
    form = "application/x-www-form-urlencoded"

    unsigned = http("POST", events_url, body, {"Content-Type": form})
    forged = OutboundSlack(http_transport(events_url), "not-the-secret").send(body, form)
    stale = slack.send(body, form, timestamp=int(time.time()) - 6 * 60)
    tampered_headers = slack.signed_headers(body, form)
    tampered = http("POST", events_url, body.replace(b"Forged", b"Faked!"), tampered_headers)

    assert unsigned[0] == 401
    assert forged.status == 401
    assert stale.status == 401
    assert tampered[0] == 401
    assert metric(served, "firebreak_slack_requests_total", 'status="401"') == 4

    # None of them did anything: no channel, nothing posted anywhere.
    time.sleep(0.3)
    state = sandbox_state(served)
    assert [c["name"] for c in state["channels"] if c["name"].startswith("inc-")] == []
    status, body_text = http("GET", served.sandbox_url + "/_sandbox/calls")
    assert status == 200
    methods = {call["method"] for call in json.loads(body_text)}
    assert not methods & {"conversations.create", "chat.postMessage"}


def test_sigterm_stops_the_server_cleanly(served: Served) -> None:
    assert http("GET", served.url + "/healthz")[0] == 200
    started = time.monotonic()
    served.process.send_signal(signal.SIGTERM)
    code = served.process.wait(timeout=10)
    assert code == 0, served.stderr()
    assert time.monotonic() - started < 5
    with pytest.raises(urllib.error.URLError):
        OPENER.open(served.url + "/healthz", timeout=2)
    assert "Traceback" not in served.stderr()


def test_a_body_over_one_mib_is_refused_before_it_is_read(served: Served) -> None:
    events_url = served.url + "/slack/events"
    slack = OutboundSlack(http_transport(events_url), SECRET)
    body = slack.command_body("note " + "x" * (1024 * 1024 + 16), user="U0ALICE", channel="C0X")
    form = "application/x-www-form-urlencoded"
    try:
        status, _ = http("POST", events_url, body, slack.signed_headers(body, form))
    except OSError as error:  # refused so early that the rest of the body met a closed socket
        refused = f"connection closed ({error})"
    else:
        refused = f"HTTP {status}"
        assert status == 413, f"sent {len(body)} bytes, answered {status}"
    print(f"sent {len(body):,} bytes: {refused}")
    # Nothing of it was acted on.
    state = sandbox_state(served)
    assert not [m for c in state["channels"] for m in c["messages"] if "xxxx" in m["text"]]
