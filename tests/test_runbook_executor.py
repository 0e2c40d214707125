"""The run executor against real OpenSSH sshd servers (tests/sshd.py) over the real paramiko
transport: concurrency bound measured remotely, max_failures, on_failure modes and rollback,
cancellation (local and from the database), host key rejection beside healthy hosts,
unreachable and refused logins, redacted and capped output, the timeline of a run, and a
run whose process is killed mid-run being swept to interrupted."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot import timeline
from bot.db import Database
from bot.incidents import service
from bot.incidents.config import IncidentsSection
from bot.runbooks import records, runs
from bot.runbooks.executor import Executor, HostResult, Quiet, RunSummary
from bot.runbooks.plan import Host, Plan, PlannedStep
from bot.runbooks.transport import Stream
from integrations.ssh import SshTransport
from tests.conftest import wait_for
from tests.sshd import Fleet

PROJECT = Path(__file__).resolve().parent.parent


def step(
    step_id: str,
    *argv: str,
    timeout: float = 30,
    ok: tuple[int, ...] = (0,),
    on_failure: str = "abort",
) -> PlannedStep:
    return PlannedStep(step_id, tuple(argv), timeout, frozenset(ok), on_failure)  # type: ignore[arg-type]


def plan_for(hosts: list[Host], *steps: PlannedStep, **changes: object) -> Plan:
    plan = Plan(
        runbook_id="diagnose",
        title="Diagnose",
        risk="low",
        needs_approval=False,
        allowed_roles=(),
        params={},
        hosts=tuple(hosts),
        steps=steps,
        concurrency=5,
        max_failures=10,
    )
    return replace(plan, **changes)  # type: ignore[arg-type]


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def _module_fleet(sshd_hosts_module: Callable[..., Fleet]) -> Fleet:
    return sshd_hosts_module(4)


@pytest.fixture
def transport(_module_fleet: Fleet) -> Callable[[], SshTransport]:
    environ = _module_fleet.environment(_module_fleet.write_known_hosts())
    return lambda: SshTransport.from_environment(environ)


@pytest.fixture
def hosts(_module_fleet: Fleet) -> list[Host]:
    return _module_fleet.hosts()


@pytest.fixture
def executor(db: Database, transport: Callable[[], SshTransport]) -> Iterator[Executor]:
    made = Executor(db, transport, max_workers=8, heartbeat=0.2, connect_timeout=5)
    yield made
    made.close()


def approved(db: Database, plan: Plan, incident_id: int | None = None) -> int:
    now = datetime.now(UTC)
    with db.session_scope() as session:
        run = runs.request(
            session, plan, requester="cli:ops", source="cli", incident_id=incident_id, now=now
        )
        run_id = run.id
    with db.session_scope() as session:
        assert runs.confirm(session, run_id, "cli:ops", now).run.status == records.APPROVED
    return run_id


def stored(db: Database, run_id: int) -> tuple[records.RunbookRun, list[records.RunbookRunHost]]:
    with db.session_scope() as session:
        return runs.get(session, run_id), runs.hosts(session, run_id)


class Recorder(Quiet):
    """Everything the observer is told, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.lines: list[tuple[str, str, str]] = []
        self.summary: RunSummary | None = None
        self.seen = threading.Event()
        self.marker = ""

    def host_started(self, host: str) -> None:
        self.calls.append(("host_started", host))

    def output(self, host: str, stream: Stream, text: str) -> None:
        self.lines.append((host, stream, text))
        if self.marker and self.marker in text:
            self.seen.set()

    def host_finished(self, result: HostResult) -> None:
        self.calls.append(("host_finished", result.host))

    def run_finished(self, summary: RunSummary) -> None:
        self.summary = summary


# -- concurrency ------------------------------------------------------------------------

OVERLAP = """\
dir=$1
f=$(mktemp "$dir/host.XXXXXX")
echo "start $(date +%s%N)" > "$f.t"
i=0
while [ "$(ls "$dir" | grep -c 't$')" -lt 2 ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done
sleep 0.2
echo "end $(date +%s%N)" >> "$f.t"
"""


def max_simultaneous(directory: Path) -> int:
    events: list[tuple[int, int]] = []
    for path in directory.glob("*.t"):
        lines = dict(line.split() for line in path.read_text().splitlines())
        events += [(int(lines["start"]), 1), (int(lines["end"]), -1)]
    peak = current = 0
    for _, change in sorted(events):
        current += change
        peak = max(peak, current)
    return peak


def test_hosts_run_in_parallel_but_never_more_than_the_concurrency(
    db: Database, executor: Executor, hosts: list[Host], tmp_path: Path
) -> None:
    script = tmp_path / "overlap.sh"
    script.write_text(OVERLAP)
    marks = tmp_path / "marks"
    marks.mkdir()
    plan = plan_for(hosts, step("overlap", "sh", str(script), str(marks)), concurrency=2)
    summary = executor.execute(approved(db, plan))
    assert summary.status == records.SUCCEEDED
    assert len(list(marks.glob("*.t"))) == 4
    # Each host waits until two have started, so two ran at once; never three.
    assert max_simultaneous(marks) == 2
    run, stored_hosts = stored(db, summary.run_id)
    assert run.status == records.SUCCEEDED and run.finished_at is not None
    assert {host.status for host in stored_hosts} == {records.HOST_SUCCEEDED}


# -- failures ---------------------------------------------------------------------------


def test_max_failures_stops_starting_new_hosts(
    db: Database, executor: Executor, hosts: list[Host]
) -> None:
    plan = plan_for(hosts, step("fail", "false"), concurrency=1, max_failures=2)
    summary = executor.execute(approved(db, plan))
    assert summary.status == records.FAILED
    assert [h.status for h in summary.hosts] == ["failed", "failed", "skipped", "skipped"]
    _, stored_hosts = stored(db, summary.run_id)
    assert [h.status for h in stored_hosts] == ["failed", "failed", "skipped", "skipped"]
    assert stored_hosts[0].steps[0]["exit_code"] == 1
    assert stored_hosts[2].started_at is None


def test_on_failure_abort_continue_and_rollback(
    db: Database, executor: Executor, hosts: list[Host], tmp_path: Path
) -> None:
    undone = tmp_path / "rolled-back"
    plan = plan_for(
        hosts[:1],
        step("accepted", "sh", "-c", "exit 3", ok=(0, 3)),
        step("keeps-going", "false", on_failure="continue"),
        step("breaks", "sh", "-c", "echo breaking; exit 7", on_failure="rollback"),
        step("never", "touch", str(tmp_path / "never")),
        rollback=(step("undo", "touch", str(undone)),),
    )
    summary = executor.execute(approved(db, plan))
    assert summary.status == records.FAILED
    _, [host] = stored(db, summary.run_id)
    assert host.status == records.HOST_FAILED
    assert [(s["step"], s["exit_code"], s["outcome"], s["rollback"]) for s in host.steps] == [
        ("accepted", 3, "ok", False),
        ("keeps-going", 1, "failed", False),
        ("breaks", 7, "failed", False),
        ("undo", 0, "ok", True),
    ]
    assert undone.exists() and not (tmp_path / "never").exists()
    assert "breaking\n" in host.output

    aborted = plan_for(hosts[:1], step("breaks", "false"), step("never", "true"))
    summary = executor.execute(approved(db, aborted))
    _, [host] = stored(db, summary.run_id)
    assert [s["step"] for s in host.steps] == ["breaks"]


def test_a_step_past_its_timeout_is_killed_and_the_host_timed_out(
    db: Database, executor: Executor, hosts: list[Host]
) -> None:
    plan = plan_for(hosts[:1], step("slow", "sleep", "30", timeout=1))
    summary = executor.execute(approved(db, plan))
    assert summary.status == records.FAILED
    _, [host] = stored(db, summary.run_id)
    assert host.status == records.TIMED_OUT
    assert host.steps[0]["timed_out"] is True and host.steps[0]["outcome"] == "timed_out"


def test_a_rejected_host_key_fails_that_host_only_and_is_a_security_event(
    db: Database,
    database_url: str,
    sshd_hosts: Callable[..., Fleet],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fleet = sshd_hosts(3)
    pinned = fleet.write_known_hosts(servers=fleet[:2])  # the third is unknown
    environ = fleet.environment(pinned)
    executor = Executor(db, lambda: SshTransport.from_environment(environ), heartbeat=0.2)
    incident_id = declared(db)
    plan = plan_for(fleet.hosts(), step("hello", "echo", "hello"), max_failures=1)
    caplog.set_level(logging.WARNING, logger="firebreak.security")
    try:
        summary = executor.execute(approved(db, plan, incident_id))
    finally:
        executor.close()
    statuses = {h.host: h.status for h in summary.hosts}
    assert statuses == {"sshd-1": "succeeded", "sshd-2": "succeeded", "sshd-3": "host_key"}
    _, stored_hosts = stored(db, summary.run_id)
    third = stored_hosts[2]
    assert third.host_key_fingerprint == fleet[2].fingerprint and third.steps == []
    assert "host key" in (third.error or "")
    assert stored_hosts[0].host_key_fingerprint == fleet[0].fingerprint
    warned = [r for r in caplog.records if r.name == "firebreak.security"]
    assert warned and "sshd-3" in warned[0].getMessage()
    assert fleet[2].fingerprint in warned[0].getMessage()
    assert "BEGIN" not in caplog.text and "PRIVATE" not in caplog.text
    with db.session_scope() as session:
        events = timeline.for_incident(session, incident_id)
        rejected = [e for e in events if e.kind == "runbook_host_key_rejected"]
        assert [(e.data["host"], e.data["fingerprint"]) for e in rejected] == [
            ("sshd-3", fleet[2].fingerprint)
        ]


def test_unreachable_and_refused_logins_say_which_and_the_rest_go_on(
    db: Database, executor: Executor, hosts: list[Host]
) -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    nowhere = Host("nowhere", "127.0.0.1", closed, "root")
    stranger = replace(hosts[0], name="stranger", user="nobody-" + uuid.uuid4().hex[:6])
    plan = plan_for([nowhere, stranger, hosts[1]], step("hello", "echo", "hi"), max_failures=5)
    summary = executor.execute(approved(db, plan))
    assert [h.status for h in summary.hosts] == ["unreachable", "auth", "succeeded"]
    _, stored_hosts = stored(db, summary.run_id)
    assert "refused" in (stored_hosts[0].error or "")
    assert stored_hosts[1].error and stored_hosts[2].output == "hi\n"


# -- output -----------------------------------------------------------------------------


def test_output_is_redacted_before_storage_and_observers_and_capped(
    db: Database, executor: Executor, hosts: list[Host]
) -> None:
    secrets = "echo 'login password=hunter2 ok'; echo 'token=abc123' >&2"
    plan = plan_for(
        hosts[:1],
        step("secrets", "sh", "-c", secrets),
        step("flood", "seq", "1", "5000"),
        max_output_bytes=300,
        redact=("(?i)(password|token)=\\S+",),
    )
    recorder = Recorder()
    summary = executor.execute(approved(db, plan), recorder)
    assert summary.status == records.SUCCEEDED
    _, [host] = stored(db, summary.run_id)
    assert "hunter2" not in host.output and "abc123" not in host.output
    assert "login [REDACTED] ok\n" in host.output and "[REDACTED]\n" in host.output
    assert len(host.output.encode()) <= 300 and host.output_truncated
    shown = "".join(text for _, _, text in recorder.lines)
    assert "hunter2" not in shown and "abc123" not in shown and "login [REDACTED] ok" in shown
    assert ("sshd-1", "stderr", "[REDACTED]\n") in recorder.lines


def test_an_observer_that_raises_never_breaks_the_run(
    db: Database, executor: Executor, hosts: list[Host]
) -> None:
    class Broken(Quiet):
        def output(self, host: str, stream: Stream, text: str) -> None:
            raise RuntimeError("the screen fell off")

        def run_finished(self, summary: RunSummary) -> None:
            raise RuntimeError("and again")

    summary = executor.execute(
        approved(db, plan_for(hosts[:2], step("hi", "echo", "hi"))), Broken()
    )
    assert summary.status == records.SUCCEEDED


# -- cancel -----------------------------------------------------------------------------


def remote_sleepers(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False)
    return found.stdout.split()


@pytest.mark.parametrize("how", ["database", "executor"])
def test_cancel_mid_run_kills_running_steps_and_starts_no_more(
    db: Database, executor: Executor, hosts: list[Host], how: str
) -> None:
    seconds = f"{3000 + uuid.uuid4().int % 1000}.5"  # a unique remote command line
    plan = plan_for(
        hosts[:3],
        step("wait", "sh", "-c", f"echo waiting; exec sleep {seconds}", timeout=120),
        step("after", "true"),
        concurrency=2,
    )
    run_id = approved(db, plan)
    recorder = Recorder()
    recorder.marker = "waiting"
    future = executor.start(run_id, recorder)
    assert recorder.seen.wait(30)
    wait_for(lambda: remote_sleepers(f"sleep {seconds}"))
    if how == "database":  # as another replica would: the heartbeat notices
        with db.session_scope() as session:
            assert runs.cancel(session, run_id, "cli:ops", datetime.now(UTC)).changed
    else:
        assert executor.cancel(run_id)
    summary = future.result(timeout=60)
    assert summary.status == records.CANCELLED
    assert [h.status for h in summary.hosts] == ["cancelled", "cancelled", "cancelled"]
    run, stored_hosts = stored(db, run_id)
    assert run.status == records.CANCELLED
    assert all(len(h.steps) <= 1 for h in stored_hosts)  # "after" never ran
    wait_for(lambda: not remote_sleepers(f"sleep {seconds}"), timeout=20)


def test_a_run_is_claimed_once(db: Database, executor: Executor, hosts: list[Host]) -> None:
    run_id = approved(db, plan_for(hosts[:1], step("hi", "true")))
    executor.execute(run_id)
    with pytest.raises(runs.RunError, match="finished: succeeded"):
        executor.start(run_id)


# -- the timeline -----------------------------------------------------------------------


def declared(db: Database) -> int:
    with db.session_scope() as session:
        return service.declare(
            session,
            title="Checkout down",
            declared_by="U0ALICE",
            declare_key=uuid.uuid4().hex,
            policy=IncidentsSection(),
            now=datetime.now(UTC),
            severity="sev2",
        ).incident.id


def test_a_run_in_an_incident_records_every_step_host_and_the_end(
    db: Database, executor: Executor, hosts: list[Host], _module_fleet: Fleet
) -> None:
    incident_id = declared(db)
    plan = plan_for(hosts[:2], step("one", "true"), step("two", "sh", "-c", "exit 4", ok=(0, 4)))
    summary = executor.execute(approved(db, plan, incident_id))
    with db.session_scope() as session:
        events = [
            e for e in timeline.for_incident(session, incident_id) if e.kind.startswith("runbook")
        ]
    kinds = [e.kind for e in events]
    assert kinds[:3] == ["runbook_requested", "runbook_confirmed", "runbook_started"]
    assert kinds[-1] == "runbook_finished" and kinds.count("runbook_step_finished") == 4
    assert kinds.count("runbook_host_finished") == 2
    finished = events[-1].data
    assert finished["run"] == summary.run_id and finished["outcome"] == "succeeded"
    assert finished["counts"] == {"succeeded": 2}
    steps = [
        (e.data["host"], e.data["step"], e.data["exit_code"])
        for e in events
        if e.kind == "runbook_step_finished"
    ]
    assert sorted(steps) == [
        ("sshd-1", "one", 0),
        ("sshd-1", "two", 4),
        ("sshd-2", "one", 0),
        ("sshd-2", "two", 4),
    ]
    host_done = [e.data for e in events if e.kind == "runbook_host_finished"]
    fingerprints = {server.name: server.fingerprint for server in _module_fleet}
    for data in host_done:
        assert data["fingerprint"] == fingerprints[data["host"]]
        assert data["duration"] >= 0 and data["outcome"] == "succeeded"
    assert all(e.data["duration"] >= 0 for e in events if e.kind == "runbook_step_finished")


def test_a_run_outside_an_incident_is_audited_in_the_runs_tables_only(
    db: Database, executor: Executor, hosts: list[Host]
) -> None:
    summary = executor.execute(approved(db, plan_for(hosts[:1], step("hi", "true"))))
    with db.session_scope() as session:
        kinds = [fact.kind for fact in runs.facts(session, summary.run_id)]
    assert kinds == [
        "runbook_requested",
        "runbook_confirmed",
        "runbook_started",
        "runbook_step_finished",
        "runbook_host_finished",
        "runbook_finished",
    ]


# -- restart mid-run --------------------------------------------------------------------

KILLED_RUN = """\
import sys
import bot.models
from bot.db import Database
from bot.runbooks.executor import Executor
from integrations.ssh import SshTransport
db = Database(sys.argv[1])
environ = {"FIREBREAK_SSH_KEY": sys.argv[2], "FIREBREAK_KNOWN_HOSTS": sys.argv[3]}
Executor(db, lambda: SshTransport.from_environment(environ), heartbeat=0.2).execute(int(sys.argv[4]))
"""


def test_a_process_killed_mid_run_leaves_a_run_the_sweep_marks_interrupted(
    db: Database, database_url: str, hosts: list[Host], _module_fleet: Fleet
) -> None:
    known = _module_fleet.write_known_hosts()
    incident_id = declared(db)
    seconds = f"{4000 + uuid.uuid4().int % 1000}.5"
    plan = plan_for(
        hosts[:2],
        step("wait", "sh", "-c", f"exec sleep {seconds}", timeout=15),
        concurrency=1,
    )
    run_id = approved(db, plan, incident_id)
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILLED_RUN,
            database_url,
            str(_module_fleet.identity),
            str(known),
            str(run_id),
        ],
        cwd=PROJECT,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
    )
    try:
        wait_for(lambda: remote_sleepers(f"sleep {seconds}"), timeout=30)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    run, stored_hosts = stored(db, run_id)
    assert run.status == records.RUNNING
    assert [h.status for h in stored_hosts] == ["running", "pending"]
    assert run.heartbeat_at is not None
    later = run.heartbeat_at + timedelta(seconds=61)
    with db.session_scope() as session:
        assert runs.sweep(session, run.heartbeat_at + timedelta(seconds=30))["interrupted"] == []
    with db.session_scope() as session:
        assert runs.sweep(session, later)["interrupted"] == [run_id]
    run, stored_hosts = stored(db, run_id)
    assert run.status == records.INTERRUPTED and run.finished_at == later
    assert [h.status for h in stored_hosts] == ["interrupted", "interrupted"]
    with db.session_scope() as session:
        last = timeline.for_incident(session, incident_id)[-1]
    assert last.kind == "runbook_interrupted" and last.data["hosts"] == ["sshd-1", "sshd-2"]
    # The remote `timeout` ends the orphaned step at its deadline.
    wait_for(lambda: not remote_sleepers(f"sleep {seconds}"), timeout=30)
