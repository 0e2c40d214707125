"""Logs: JSON lines with the work's ids bound, a request id per request, and no secrets.

The formatter, the binding and the redaction filter are checked on their own; then
`firebreak serve` runs as a real process, is driven over real HTTP (a declare, a page, an
alert webhook, a refused request) and every line it wrote on stderr is read back. The
secrets test gives every secret setting a distinctive value, provokes the failures that tend
to print them, and greps everything the process wrote for each one.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from werkzeug.test import Client

from bot import logs
from bot.app import Firebreak
from bot.db import Database
from bot.runbooks import records
from bot.runbooks.executor import Executor, Quiet, RunSummary
from bot.runbooks.plan import Host
from bot.runbooks.transport import Stream
from bot.sandbox import SlackSandbox
from bot.sandbox.outbound import OutboundSlack, Reply
from bot.workers import WorkerPool
from tests.conftest import PEOPLE, PROXY_VARIABLES
from tests.test_paging import dms
from tests.test_runbook_executor import (  # noqa: F401 - fixtures the runbook test uses
    _module_fleet,
    approved,
    db,
    executor,
    hosts,
    plan_for,
    transport,
)
from tests.test_runbook_executor import step as runbook_step

FIREBREAK = str(Path(sys.executable).parent / "firebreak")
LISTENING = re.compile(r"Firebreak listening on (http://127\.0\.0\.1:\d+)")
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
FIXTURES = Path(__file__).parent / "fixtures" / "alerts"
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# -- the pieces, in process ----------------------------------------------------------------


_LOGGERS = itertools.count()  # a new logger name for each capture


@contextmanager
def captured(fmt: str = "json") -> Iterator[tuple[logging.Logger, io.StringIO, logs.Redactor]]:
    """A logger whose records go through a handler built as `logs.configure` builds it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter() if fmt == "json" else logs.TextFormatter())
    redactor = logs.Redactor()
    handler.addFilter(logs.ContextFilter())
    handler.addFilter(redactor)
    # A name of its own (loggers live as long as the process; `id(stream)` is reused), and
    # exactly one handler, so `log.handlers[0]` is the one built here.
    logger = logging.getLogger(f"test.logs.{fmt}.{next(_LOGGERS)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.handlers = [handler]
    try:
        yield logger, stream, redactor
    finally:
        logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_has_time_level_logger_message_ids_and_the_traceback() -> None:
    with captured() as (log, stream, _):
        log.info("before")
        with logs.bind(request_id="req-1", incident=7):
            log.warning("declared %s", "INC-7")
            with logs.bind(page=3):
                logs.add(alert=12)
                try:
                    1 / 0  # noqa: B018
                except ZeroDivisionError:
                    log.exception("it broke")
            log.info("after the inner block", extra={"duration_ms": 4.5})
        log.info("outside")
    first, declared, broke, after, outside = lines(stream)
    assert set(first) == {"ts", "level", "logger", "message"}
    assert TS.match(first["ts"]), first
    assert declared["level"] == "warning" and declared["message"] == "declared INC-7"
    assert declared["logger"] == log.name
    assert (declared["request_id"], declared["incident"]) == ("req-1", 7)
    assert "page" not in declared
    assert (broke["request_id"], broke["incident"], broke["page"], broke["alert"]) == (
        "req-1",
        7,
        3,
        12,
    )
    assert broke["exc"].startswith("Traceback (most recent call last):")
    assert broke["exc"].rstrip().endswith("ZeroDivisionError: division by zero")
    # Leaving the inner block undid what was bound in it, `add` included.
    assert "page" not in after and "alert" not in after and after["incident"] == 7
    assert after["duration_ms"] == 4.5
    assert set(outside) == {"ts", "level", "logger", "message"}


def test_the_text_format_shows_the_bound_ids_on_the_first_line() -> None:
    with captured("text") as (log, stream, _), logs.bind(request_id="abc", page=9):
        try:
            raise ValueError("bad")
        except ValueError:
            log.exception("failed")
    first, *rest = stream.getvalue().splitlines()
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ERROR test\.logs\.text\.\d+: ", first)
    assert first.endswith("failed [request_id=abc page=9]"), first
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "ValueError: bad"


def test_ids_go_with_work_handed_to_the_worker_pool_and_stay_there() -> None:
    pool = WorkerPool(size=1, listeners=1, pages=1)
    try:
        with captured() as (log, stream, _):

            def work(label: str) -> None:
                logs.add(page=5)  # bound for the rest of this task only
                log.info(label)

            with logs.bind(request_id="r-42", incident=2):
                pool.submit(work, "slack work").result(timeout=10)
                pool.submit_page(work, "page work").result(timeout=10)
                pool.listener_executor().submit(log.info, "listener").result(timeout=10)
            pool.submit(log.info, "unbound work").result(timeout=10)  # same thread, later
            assert logs.bound() == {}
    finally:
        pool.shutdown()
    slack, page, listener, unbound = lines(stream)
    for line in (slack, page):
        assert (line["request_id"], line["incident"], line["page"]) == ("r-42", 2, 5), line
    assert (listener["request_id"], listener["incident"]) == ("r-42", 2)
    assert "page" not in listener
    assert set(unbound) == {"ts", "level", "logger", "message"}, unbound


BOT_TOKEN = "xoxb-1111-2222-redactme"


def test_the_redactor_removes_secret_values_and_token_shapes_everywhere() -> None:
    secret = "s3cr3t-signing-value"
    with captured() as (log, stream, redactor):
        redactor.add_secrets([secret, None, "", "abc"])  # None, empty and short: ignored
        log.info("signing with %s and %r", secret, {"token": BOT_TOKEN})
        log.info("Authorization: Bearer %s", "AbC.123-xyz_456")
        log.info("a wrong bearer token; see the Basic Information page; abc stays")
        log.info("xapp-1-A0-123-abcdef and xoxp-99-zz in prose", extra={"detail": secret})
        log.info("postgresql+psycopg://firebreak:pa55word@db:5432/firebreak")
        log.info("GET /oncall/primary.ics?token=deadbeef1234&x=1")
        try:
            raise RuntimeError(f"the API refused {BOT_TOKEN} with {secret}")
        except RuntimeError:
            log.exception("call failed")
    text = stream.getvalue()
    for leaked in (secret, BOT_TOKEN, "AbC.123", "xapp-1", "xoxp-99", "pa55word", "deadbeef"):
        assert leaked not in text, leaked
    said = [line["message"] for line in lines(stream)]
    assert said[0] == "signing with [redacted] and {'token': '[redacted]'}"
    assert said[1] == "Authorization: Bearer [redacted]"
    assert said[2] == "a wrong bearer token; see the Basic Information page; abc stays"
    assert said[3] == "[redacted] and [redacted] in prose"
    assert said[4] == "postgresql+psycopg://firebreak:[redacted]@db:5432/firebreak"
    assert said[5] == "GET /oncall/primary.ics?token=[redacted]&x=1"
    failed = lines(stream)[-1]
    assert lines(stream)[3]["detail"] == "[redacted]"
    assert "RuntimeError: the API refused [redacted] with [redacted]" in failed["exc"]


def test_every_request_gets_a_request_id_bound_and_echoed(firebreak: Firebreak) -> None:
    client = Client(firebreak.web)
    with captured() as (log, stream, _):
        access = logging.getLogger("firebreak.http")
        access.addHandler(log.handlers[0])
        level = access.level
        access.setLevel(logging.DEBUG)  # not `access.level = ...`: that keeps logging's
        # per-logger cache of enabled levels, filled by earlier tests in this process
        try:
            first = client.post("/slack/events", data=b"x=1")
            second = client.post("/slack/events", data=b"x=1")
            given = client.get("/healthz", headers={"X-Request-Id": "lb-abc-12345"})
            forged = client.get("/healthz", headers={"X-Request-Id": 'bad id {"x": 1}'})
        finally:
            access.removeHandler(log.handlers[0])
            access.setLevel(level)
    ids = [r.headers["X-Request-Id"] for r in (first, second, given, forged)]
    assert first.status_code == 401 and re.fullmatch(r"[0-9a-f]{32}", ids[0])
    assert ids[1] != ids[0] and re.fullmatch(r"[0-9a-f]{32}", ids[1])
    assert ids[2] == "lb-abc-12345"  # a load balancer's well-formed id is kept
    assert re.fullmatch(r"[0-9a-f]{32}", ids[3])  # a malformed one is replaced
    access_lines = [line for line in lines(stream) if line["logger"] == "firebreak.http"]
    assert [(a["request_id"], a["status"], a["path"]) for a in access_lines] == [
        (ids[0], 401, "/slack/events"),
        (ids[1], 401, "/slack/events"),
        (ids[2], 200, "/healthz"),
        (ids[3], 200, "/healthz"),
    ]
    assert [a["level"] for a in access_lines] == ["info", "info", "debug", "debug"]
    assert logs.bound() == {}


def test_an_unknown_log_format_is_refused_with_the_choices() -> None:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    for argv, extra in (
        (["serve", "--log-format", "xml"], {}),
        (["serve"], {"FIREBREAK_LOG_FORMAT": "yaml"}),
    ):
        done = subprocess.run(
            [FIREBREAK, *argv],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done
        assert "Invalid value for '--log-format'" in done.stderr, done.stderr
        assert "'json'" in done.stderr and "'text'" in done.stderr, done.stderr


@contextmanager
def listening_to(name: str, handler: logging.Handler) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_a_runbook_runs_lines_carry_its_run_and_the_request_that_started_it(
    request: pytest.FixtureRequest,
) -> None:
    # The executor's fixtures (real sshd servers, tests/test_runbook_executor.py).
    run_db: Database = request.getfixturevalue("db")
    run_executor: Executor = request.getfixturevalue("executor")
    run_hosts: list[Host] = request.getfixturevalue("hosts")

    class Broken(Quiet):
        def output(self, host: str, stream: Stream, text: str) -> None:  # on a host's thread
            raise RuntimeError("the screen fell off")

        def run_finished(self, summary: RunSummary) -> None:  # on the run's thread
            raise RuntimeError("and again")

    plan = plan_for(run_hosts[:2], runbook_step("hi", "echo", "hi"))
    with (
        captured() as (log, stream, _),
        listening_to("bot.runbooks.executor", log.handlers[0]),
        logs.bind(request_id="req-run"),
    ):
        summary = run_executor.execute(approved(run_db, plan), Broken())
    assert summary.status == records.SUCCEEDED
    failed = [line for line in lines(stream) if "the observer failed" in line["message"]]
    assert {line["message"].rsplit(" ", 1)[1] for line in failed} == {"output", "run_finished"}
    for line in failed:
        assert (line["request_id"], line["run"]) == ("req-run", summary.run_id), line
        assert line["exc"].endswith(
            ("RuntimeError: the screen fell off", "RuntimeError: and again")
        )


# -- firebreak serve, a real process --------------------------------------------------------


@dataclass
class Process:
    url: str
    process: subprocess.Popen[str]
    stderr_path: Path
    stdout: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)

    def output(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8") + "".join(self.stdout)


@contextmanager
def serving(argv: list[str], env: dict[str, str], tmp_path: Path) -> Iterator[Process]:
    stderr_path = tmp_path / "serve.stderr"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [FIREBREAK, *argv], env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    assert process.stdout is not None
    stdout, collected = process.stdout, queue.Queue[str]()

    def pump() -> None:
        for line in stdout:
            collected.put(line)

    threading.Thread(target=pump, daemon=True).start()
    running = Process("", process, stderr_path)
    try:
        deadline = time.monotonic() + 60
        while not running.url and time.monotonic() < deadline:
            try:
                line = collected.get(timeout=0.5)
            except queue.Empty:
                assert process.poll() is None, stderr_path.read_text()
                continue
            running.stdout.append(line)
            if match := LISTENING.search(line):
                running.url = match.group(1)
        assert running.url, "serve did not start: " + stderr_path.read_text()
        yield running
    finally:
        running.stop()
        while not collected.empty():
            running.stdout.append(collected.get())


def serve_env(
    database_url: str, api_url: str, config: dict[str, Any], tmp_path: Path
) -> dict[str, str]:
    path = tmp_path / "firebreak.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in PROXY_VARIABLES and not key.startswith(("FIREBREAK_", "SLACK_"))
    }
    env.update(
        DATABASE_URL=database_url,
        FIREBREAK_CONFIG=str(path),
        SLACK_API_URL=api_url,
        NO_PROXY="127.0.0.1,localhost",
    )
    return env


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, str]:
    """(status, JSON body or text, X-Request-Id) over real HTTP."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with OPENER.open(request, timeout=15) as response:
            status, text, request_id = response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as error:
        status, text, request_id = error.code, error.read().decode(), error.headers
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = text
    return status, parsed, str(request_id.get("X-Request-Id"))


def recording_transport(events_url: str, request_ids: list[str]) -> Callable[..., Reply]:
    """Slack's POSTs over real HTTP, keeping each answer's X-Request-Id."""

    def post(body: bytes, headers: dict[str, str]) -> Reply:
        request = urllib.request.Request(events_url, data=body, headers=headers, method="POST")
        try:
            with OPENER.open(request, timeout=15) as response:
                request_ids.append(str(response.headers.get("X-Request-Id")))
                return Reply(response.status, response.read().decode())
        except urllib.error.HTTPError as error:
            request_ids.append(str(error.headers.get("X-Request-Id")))
            return Reply(error.code, error.read().decode())

    return post


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def people_config() -> dict[str, Any]:
    return {name: person.model_dump() for name, person in PEOPLE.items()}


SIGNING = "logs-test-signing-secret-1234"
ALERT_TOKEN = "logs-test-alert-token-5678"


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` as JSON (a line that is not fails the test, with the line)."""
    parsed = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            value = json.loads(line)
        except ValueError:
            pytest.fail(f"stderr line {number} is not JSON: {line!r}")
        assert isinstance(value, dict), line
        assert {"ts", "level", "logger", "message"} <= set(value), line
        assert TS.match(value["ts"]), line
        parsed.append(value)
    return parsed


README_REQUEST_ID = "3fb1d622e73640a6a81578b9a9672dd4"


def readme_jq_filters_read(log: Path, request_id: str, incident: int) -> None:
    """The README's `jq` lines (on the log file instead of journalctl) find what they say."""
    if shutil.which("jq") is None:
        if os.environ.get("CI"):  # .ci/run installs jq: the README's lines must be checked
            pytest.fail("jq is missing (required in CI: .ci/run installs it)")
        pytest.skip("jq is not installed")
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### Logs\n", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^journalctl -u firebreak -o cat \| (jq .*?)(?:\s+#.*)?$", section, re.M)
    assert len(commands) == 4, commands
    mixed = log.with_name("journal.txt")  # as a unit's journal: systemd's lines between
    mixed.write_text("Started Firebreak.\n" + log.read_text(encoding="utf-8") + "Stopped.\n")
    found = []
    for command in commands:
        argv = shlex.split(command.replace(README_REQUEST_ID, request_id))
        argv = [arg.replace(".incident == 2", f".incident == {incident}") for arg in argv]
        done = subprocess.run([*argv, str(mixed)], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        found.append(done.stdout.splitlines())
    problems, about_incident, messages, tracebacks = found
    assert all(json.loads(line)["level"] in ("warning", "error") for line in problems)
    assert about_incident and all(
        json.loads(line)["incident"] == incident for line in about_incident
    )
    assert any(m.startswith("alertmanager: ") for m in messages), messages
    assert "POST /alerts/alertmanager 200" in messages, messages
    assert tracebacks == [], "nothing failed with a traceback"


def test_served_logs_are_json_lines_with_the_ids_of_their_work(
    database_url: str, tmp_path: Path
) -> None:
    with SlackSandbox(bot_token="xoxb-logs-test") as sandbox:
        for name, person in PEOPLE.items():
            sandbox.add_user(person.slack, name, email=person.email, tz=person.timezone)
        announce = sandbox.add_channel("incidents", members=["U0ALICE"])
        general = sandbox.add_channel("general", members=["U0ALICE", "U0BOB"])
        config = {
            "slack": {"announce_channel": announce},
            "people": people_config(),
            "escalation_policies": {"web": {"steps": [{"targets": ["user:bob"], "wait": "5m"}]}},
            "services": {"web": {"escalation_policy": "web"}},
            "alert_routes": [
                {"name": "web", "match": {}, "service": "web", "incident": {"open": True}}
            ],
        }
        env = serve_env(database_url, sandbox.api_url, config, tmp_path)
        env.update(
            SLACK_BOT_TOKEN="xoxb-logs-test",
            SLACK_SIGNING_SECRET=SIGNING,
            FIREBREAK_ALERT_TOKEN=ALERT_TOKEN,
        )
        # No --log-format: stderr is a file, not a terminal, so the lines are JSON.
        with serving(["serve", "--port", "0"], env, tmp_path) as served:
            ids: list[str] = []
            slack = OutboundSlack(
                recording_transport(served.url + "/slack/events", ids), SIGNING, sandbox
            )
            assert (
                slack.command(
                    "declare sev2 Checkout is slow", user="U0ALICE", channel=general
                ).status
                == 200
            )
            declare_id = ids[-1]
            wait_for(lambda: sandbox.channel_by_name("inc-1-checkout-is-slow"), "the channel")

            reply = slack.command(
                "user:bob disk full", user="U0ALICE", channel=general, command="/page"
            )
            assert reply.status == 200, reply.body
            page_id = ids[-1]
            wait_for(lambda: dms(sandbox, "U0BOB"), "bob's DM")

            alert = json.loads((FIXTURES / "alertmanager-firing.json").read_text())
            status, answer, alert_id = http(
                "POST",
                served.url + "/alerts/alertmanager",
                alert,
                {"Authorization": f"Bearer {ALERT_TOKEN}"},
            )
            assert status == 200, answer
            assert answer["page"] and answer["incident"], answer

            refused = OutboundSlack(
                recording_transport(served.url + "/slack/events", ids), "not-the-secret", sandbox
            ).command("declare sev1 forged", user="U0ALICE", channel=general)
            assert refused.status == 401
            refused_id = ids[-1]
            wait_for(lambda: len(dms(sandbox, "U0BOB")) == 2, "the alert's page DM")
        records = json_lines(served.stderr_path.read_text(encoding="utf-8"))

    def of(request_id: str) -> list[dict[str, Any]]:
        return [r for r in records if r.get("request_id") == request_id]

    assert len({declare_id, page_id, alert_id, refused_id}) == 4
    declared = of(declare_id)
    assert any(
        r["message"] == "INC-1 declared by U0ALICE" and r["incident"] == 1 for r in declared
    ), declared
    assert any(r["logger"] == "firebreak.http" and r["status"] == 200 for r in declared), declared

    paged = of(page_id)
    triggered = [r for r in paged if "triggered" in r["message"]]
    assert len(triggered) == 1 and isinstance(triggered[0]["page"], int), paged

    alerted = [r for r in of(alert_id) if r["logger"] == "bot.webhooks"]
    assert len(alerted) == 1, of(alert_id)
    assert alerted[0]["page"] == answer["page"] and alerted[0]["incident"] == answer["incident"]
    assert isinstance(alerted[0]["alert"], int)
    assert alerted[0]["page"] != triggered[0]["page"]

    readme_jq_filters_read(served.stderr_path, alert_id, answer["incident"])

    refusals = [r for r in of(refused_id) if r["message"].startswith("refused a Slack request")]
    assert len(refusals) == 1 and refusals[0]["level"] == "info", of(refused_id)
    assert [r["status"] for r in of(refused_id) if r["logger"] == "firebreak.http"] == [401]


# -- secrets ---------------------------------------------------------------------------------

SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-9090-8080-Lg7SecretBotToken",
    "SLACK_SIGNING_SECRET": "Lg7-signing-secret-0b5e",
    "FIREBREAK_ALERT_TOKEN": "Lg7-alert-token-77e1",
    "FIREBREAK_GRAFANA_TOKEN": "Lg7-grafana-token-12aa",
    "FIREBREAK_WEB_ROUTING_KEY": "Lg7RoutingKey0123456789abcdefABC",
    "FIREBREAK_SMTP_PASSWORD": "Lg7-smtp-password-4c4c",
    "FIREBREAK_WEBHOOK_SECRET": "Lg7-webhook-secret-9d9d",
    "SLACK_APP_TOKEN": "xapp-1-A0LG7-1234-Lg7AppToken",
}
DB_PASSWORD = "Lg7-database-password-3f3f"


def closed_port() -> int:
    """A local port nothing listens on (bound once to pick it, then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def assert_no_secret_in(output: str) -> None:
    for name, value in [*SECRETS.items(), ("database password", DB_PASSWORD)]:
        assert value not in output, f"{name}'s value appears in the output"
        # Nor a recognisable part of it (a token cut short, a key split by a message).
        assert value[-8:] not in output, f"the end of {name}'s value appears in the output"


def test_no_secret_appears_in_any_log_line_even_when_everything_fails(
    database_url: str, tmp_path: Path
) -> None:
    port = closed_port()
    people = people_config()
    people["alice"]["notify"] = ["slack", "email", "webhook"]
    with SlackSandbox(bot_token=SECRETS["SLACK_BOT_TOKEN"]) as sandbox:
        for name, person in PEOPLE.items():
            sandbox.add_user(person.slack, name, email=person.email, tz=person.timezone)
        announce = sandbox.add_channel("incidents", members=["U0ALICE"])
        general = sandbox.add_channel("general", members=["U0ALICE", "U0BOB"])
        config = {
            "slack": {"announce_channel": announce},
            "people": people,
            "escalation_policies": {"web": {"steps": [{"targets": ["user:alice"], "wait": "5m"}]}},
            "services": {
                "web": {"escalation_policy": "web", "routing_key_env": "FIREBREAK_WEB_ROUTING_KEY"}
            },
            "alert_routes": [{"name": "web", "match": {}, "service": "web"}],
            "alerts": {"sources": {"grafana": {"token_env": "FIREBREAK_GRAFANA_TOKEN"}}},
            "notifiers": {
                "email": {
                    "host": "127.0.0.1",
                    "port": port,
                    "starttls": True,
                    "username": "firebreak",
                    "password_env": "FIREBREAK_SMTP_PASSWORD",
                    "timeout": "2s",
                },
                "webhook": {
                    "url": f"http://127.0.0.1:{port}/page",
                    "secret_env": "FIREBREAK_WEBHOOK_SECRET",
                    "timeout": "2s",
                },
            },
        }
        env = serve_env(database_url, sandbox.api_url, config, tmp_path)
        env.update(SECRETS, FIREBREAK_LOG_FORMAT="text")
        # The bot's token is refused first (a revoked token), then Slack fails outright.
        sandbox.inject_fault("auth.test", error="invalid_auth")
        sandbox.inject_fault("conversations.create", status=500, times=20)
        sandbox.inject_fault("chat.postMessage", error="fatal_error", times=20)
        with serving(["-v", "serve", "--port", "0"], env, tmp_path) as served:
            slack = OutboundSlack(
                recording_transport(served.url + "/slack/events", []),
                SECRETS["SLACK_SIGNING_SECRET"],
                sandbox,
            )
            assert slack.command("list", user="U0ALICE", channel=general).status == 200
            wait_for(lambda: "invalid_auth" in served.output(), "the refused token in the log")
            for text in ("declare sev1 Database down", "user:alice the database is down"):
                command = "/page" if text.startswith("user:") else "/incident"
                reply = slack.command(text, user="U0ALICE", channel=general, command=command)
                assert reply.status == 200, reply.body
            forged = OutboundSlack(
                recording_transport(served.url + "/slack/events", []), "a-wrong-secret", sandbox
            )
            assert forged.command("list", user="U0ALICE", channel=general).status == 401
            alert = json.loads((FIXTURES / "alertmanager-firing.json").read_text())
            for token, expected in (
                (SECRETS["FIREBREAK_ALERT_TOKEN"], 200),
                ("Lg7-a-wrong-token-0000", 401),
            ):
                status, answer, _ = http(
                    "POST",
                    served.url + "/alerts/alertmanager",
                    alert,
                    {"Authorization": f"Bearer {token}"},
                )
                assert status == expected, answer
            grafana = json.loads((FIXTURES / "grafana-docs.json").read_text())
            status, answer, _ = http(
                "POST",
                served.url + "/alerts/grafana",
                grafana,
                {"Authorization": f"Bearer {SECRETS['FIREBREAK_GRAFANA_TOKEN']}"},
            )
            assert status == 200, answer
            event = json.loads((FIXTURES / "pagerduty-docs-trigger.json").read_text())
            for key, expected in ((SECRETS["FIREBREAK_WEB_ROUTING_KEY"], 202), ("0" * 32, 400)):
                status, answer, _ = http(
                    "POST", served.url + "/v2/enqueue", {**event, "routing_key": key}
                )
                assert status == expected, answer
            wait_for(
                lambda: re.search(r"incident 1: .* failed", served.output()),
                "the failed channel setup in the log",
            )
            wait_for(lambda: notifications_tried(database_url), "email and webhook attempts")
        output = served.output()

    assert_no_secret_in(output)
    # The failures were provoked and logged, with the ids of their work, as text lines.
    assert "refused a Slack request (401)" in output
    assert "refused a webhook at /alerts/alertmanager" in output
    assert "refused a PagerDuty event" in output
    assert re.search(r"incident 1: .*failed.*\[request_id=[0-9a-f]{32} incident=1\]", output), (
        output
    )
    assert "[request_id=" in output and not output.lstrip().startswith("{")
    assert " DEBUG slack_sdk" in output  # -v: debug lines too, the Web API's requests among them


def notifications_tried(database_url: str) -> bool:
    """The page's email and webhook notifications were each tried (and failed) at least once."""
    from sqlalchemy import select

    from bot.db import Database
    from bot.oncall.models import PageNotification

    database = Database(database_url)
    try:
        with database.session_scope() as session:
            rows = session.scalars(select(PageNotification)).all()
            tried = {row.channel for row in rows if row.attempts >= 1 and row.last_error}
    finally:
        database.dispose()
    return {"email", "webhook"} <= tried


def test_a_database_url_password_never_shows_when_the_database_is_unreachable(
    tmp_path: Path,
) -> None:
    env = serve_env(
        f"postgresql+psycopg://firebreak:{DB_PASSWORD}@127.0.0.1:{closed_port()}/firebreak",
        "http://127.0.0.1:9/api/",
        {},
        tmp_path,
    )
    env.update(SECRETS)
    for log_format, other_format in (("json", "text"), ("text", "json")):
        done = subprocess.run(
            [FIREBREAK, "-v", "serve", "--port", "0", "--log-format", log_format],
            env={**env, "FIREBREAK_LOG_FORMAT": other_format},  # the flag wins
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 2, output
        assert_no_secret_in(output)
        # Refusing to start is said in `error:` lines, as every command does; the password
        # is shown as SQLAlchemy hides it.
        said = "error: database: cannot reach postgresql+psycopg://firebreak:***@127.0.0.1:"
        refusals = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert len(refusals) == 1 and refusals[0].startswith(said), done.stderr
        assert "Connection refused" in refusals[0]
        other = [line for line in done.stderr.splitlines() if line not in refusals]
        assert other, "-v logs the migration's start before the database is reached"
        if log_format == "json":  # the log lines before it are JSON
            json_lines("\n".join(other))
        else:
            assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ", other[0]), other
