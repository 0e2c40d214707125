"""Faults under a runbook run, against real OpenSSH sshd hosts: the process running a step is
SIGKILLed. The remote command must not outlive the connection (the transport's watchdog
holds the channel's stdin and stops the step's process group at its EOF), and a restarted
`firebreak serve` marks the run interrupted (`runbooks.interrupted_after`).

The "remote" host is this machine (sshd logs in as whoever runs the tests), so a test finds
a step's processes in /proc: by a marker in their command line and by the step's process
group."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from sqlalchemy import select

from bot.db import Database
from bot.runbooks import records, runs
from bot.runbooks.command import KILL_AFTER
from bot.runbooks.config import RunbooksSection
from bot.runbooks.records import RunbookRun, RunbookRunFact, RunbookRunHost
from bot.sandbox import SlackSandbox
from bot.sandbox.outbound import OutboundSlack, http_transport
from bot.slack import runbook_blocks
from integrations.ssh import SshTransport
from tests.conftest import SECRET, wait_for
from tests.runbook_setup import inventory, write_setup
from tests.sshd import Fleet
from tests.test_scheduler import chain_serve_env, firebreak_serve
from tests.test_ssh_transport import processes_with

PYTHON = sys.executable
# Past the watchdog's TERM, GNU timeout KILLs the group KILL_AFTER seconds later; the rest is
# room for a loaded machine. Without the watchdog the step would live until its own timeout.
GONE_WITHIN = KILL_AFTER + 10.0


@pytest.fixture(scope="module")
def fleet(sshd_hosts_module: Callable[..., Fleet]) -> Fleet:
    return sshd_hosts_module(1)


# -- the step's processes on the "remote" host ------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of a live process, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[2])


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def pids_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def group_members(group: int) -> list[int]:
    """Live (not zombie) processes in process group `group`."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == group and stat[0] != "Z":
                members.append(int(entry.name))
    return members


def command_of(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def step_group(marker: str, leaf: bytes) -> int:
    """The process group of the running step named by `marker` (GNU timeout leads it), once a
    process whose command line starts with `leaf` (the step's innermost command) runs in it.
    Our own group (pytest and the clients it starts, which carry the marker too) is left out."""
    ours = os.getpgrp()

    def found() -> int | None:
        stats = (_stat(pid) for pid in pids_with(marker))
        groups = {stat[1] for stat in stats if stat is not None and stat[1] != ours}
        assert len(groups) <= 1, f"the step's processes are in groups {groups}"
        for group in groups:
            if any(command_of(pid).startswith(leaf) for pid in group_members(group)):
                return group
        return None

    group: int = wait_for(found, timeout=30)
    return group


def described(group: int) -> list[str]:
    return [
        command_of(pid).split(b"\0")[0].decode(errors="replace") for pid in group_members(group)
    ]


# -- the transport: a client process dies mid-step ---------------------------------------------

CLIENT = """
import json, sys, threading
from integrations.ssh import SshTransport
from bot.runbooks.plan import Host
environ, host, argv = json.loads(sys.argv[1])
connection = SshTransport.from_environment(environ).connect(Host(**host), timeout=10)
connection.run(tuple(argv), timeout=600, on_output=lambda s, b: None,
               cancelled=threading.Event(), max_bytes=1000)
"""


def _sleeper(marker: str, started: Path, *, ignore_term: bool) -> list[str]:
    """A 600 s sleeper that touches `started` once it is set up (TERM ignored, if asked)."""
    code = "import pathlib, signal, sys, time\n"
    if ignore_term:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += "pathlib.Path(sys.argv[1]).touch()\ntime.sleep(600)\n"
    return [PYTHON, "-c", code, str(started), marker]


@pytest.mark.parametrize("ignore_term", [False, True], ids=["plain", "ignores-term"])
def test_a_client_killed_mid_step_leaves_nothing_running_on_the_host(
    fleet: Fleet, ignore_term: bool, tmp_path: Path
) -> None:
    """The process that holds the SSH connection is SIGKILLed while a 600 s step runs: the
    step's whole process group is gone long before its remote `timeout` (a step that ignores
    TERM is KILLed `KILL_AFTER` seconds later)."""
    marker = f"firebreak-fault-{uuid.uuid4().hex}"
    host = fleet[0].host()
    spec = {
        "address": host.address,
        "port": host.port,
        "user": host.user,
        "name": host.name,
        "groups": list(host.groups),
    }
    started = tmp_path / "started"
    sleeper = _sleeper(marker, started, ignore_term=ignore_term)
    argument = json.dumps([fleet.environment(), spec, sleeper])
    client = subprocess.Popen([PYTHON, "-c", CLIENT, argument], cwd=Path(__file__).parent.parent)
    try:
        group = step_group(marker, PYTHON.encode())
        wait_for(started.exists, timeout=30)
        members = described(group)
        client.send_signal(signal.SIGKILL)
        assert client.wait(timeout=10) == -signal.SIGKILL
        killed = time.monotonic()
        try:
            wait_for(lambda: not group_members(group), timeout=GONE_WITHIN)
        except AssertionError:
            raise AssertionError(
                f"still running on the host: {processes_with(marker)}\n{fleet.logs()}"
            ) from None
        print(
            f"sent: one 600 s step (ignores TERM: {ignore_term}), its client SIGKILLed; "
            f"counted: {len(members)} processes in its group before ({', '.join(members)}), 0 after "
            f"{time.monotonic() - killed:.1f} s"
        )
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()


def test_the_watchdog_ends_with_the_step_and_the_step_reads_no_input(fleet: Fleet) -> None:
    """A step's stdin is /dev/null (the channel is the watchdog's): `cat` ends at once instead
    of waiting on the channel until its timeout. Once a step ends, nothing of it (watchdog
    included) is left on the host."""
    transport = SshTransport.from_environment(fleet.environment())
    connection = transport.connect(fleet[0].host(), timeout=10)
    try:
        markers = [f"firebreak-fault-{uuid.uuid4().hex}" for _ in range(5)]
        results = []
        output: list[bytes] = []
        for marker in markers:
            results.append(
                connection.run(
                    ("sh", "-c", "cat", marker),
                    timeout=60,
                    on_output=lambda stream, data: output.append(data),
                    cancelled=threading.Event(),
                    max_bytes=1000,
                )
            )
        assert output == []
        assert [r.exit_code for r in results] == [0] * 5
        assert all(not r.timed_out and r.duration < 60 for r in results)
        wait_for(lambda: not any(processes_with(m) for m in markers), timeout=10)
    finally:
        connection.close()


def test_what_a_step_leaves_in_its_group_is_stopped_when_it_ends(
    fleet: Fleet, tmp_path: Path
) -> None:
    """A background process left in the step's process group gets TERM once the step ends
    (the watchdog sees sshd close stdin); one that detached with `setsid` is left alone."""
    transport = SshTransport.from_environment(fleet.environment())
    connection = transport.connect(fleet[0].host(), timeout=10)
    # The detached one writes its pid once it is in its own session; the step waits for it.
    script = (
        "sleep 300 </dev/null >/dev/null 2>&1 & echo $!; "
        'setsid sh -c \'echo $$ > "$0"; exec sleep 301\' "$0" </dev/null >/dev/null 2>&1 & '
        'until [ -s "$0" ]; do sleep 0.05; done; cat "$0"'
    )
    output: list[bytes] = []
    try:
        result = connection.run(
            ("sh", "-c", script, str(tmp_path / "detached.pid")),
            timeout=60,
            on_output=lambda stream, data: output.append(data),
            cancelled=threading.Event(),
            max_bytes=1000,
        )
    finally:
        connection.close()
    assert result.exit_code == 0
    left, detached = (int(line) for line in b"".join(output).split())
    try:
        wait_for(lambda: not alive(left), timeout=10)
        wait_for(lambda: command_of(detached).startswith(b"sleep"), timeout=10)
        assert alive(detached)
        print(f"sent: a step leaving two sleeps; counted: {left} stopped, {detached} detached")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(detached, signal.SIGKILL)


# -- a served Firebreak is SIGKILLed mid-run ---------------------------------------------------


def _runbook(marker: str) -> dict[str, object]:
    return {
        "id": "fault-sleep",
        "title": "Sleep through a fault",
        "risk": "low",
        "targets": {"group": "sshd"},
        "steps": [
            {"id": "begin", "argv": ["echo", "sleeping"]},
            {
                "id": "sleep",
                "argv": ["sh", "-c", "sleep 300; echo never", marker],
                "timeout": "10m",
            },
        ],
    }


def _run_row(database_url: str) -> tuple[str, list[str], list[str]] | None:
    """The run's status, its hosts' statuses and its facts' kinds."""
    db = Database(database_url)
    try:
        with db.session_scope() as session:
            run = session.scalars(select(RunbookRun)).first()
            if run is None:
                return None
            hosts = list(session.scalars(select(RunbookRunHost.status)))
            facts = list(
                session.scalars(
                    select(RunbookRunFact.kind)
                    .where(RunbookRunFact.run_id == run.id)
                    .order_by(RunbookRunFact.id)
                )
            )
            return run.status, hosts, facts
    finally:
        db.dispose()


def served_run(
    sandbox: SlackSandbox,
    announce_channel: str,
    general: str,
    database_url: str,
    tmp_path: Path,
    fleet: Fleet,
) -> tuple[dict[str, str], str]:
    """A `firebreak serve` environment with the `fault-sleep` runbook on `fleet` and
    `runbooks.interrupted_after: 6s`; returns it and the step's marker."""
    marker = f"firebreak-fault-{uuid.uuid4().hex}"
    env = chain_serve_env(sandbox, announce_channel, database_url, tmp_path, "1m")
    config = yaml.safe_load(Path(env["FIREBREAK_CONFIG"]).read_text())
    config["inventory"] = inventory(fleet)
    config["runbooks"] = {"interrupted_after": "6s"}
    setup = write_setup(tmp_path, fleet, extra=config)
    (setup.runbooks / "fault-sleep.yaml").write_text(yaml.safe_dump(_runbook(marker)))
    env.update(fleet.environment(), FIREBREAK_RUNBOOKS=str(setup.runbooks))
    env["FIREBREAK_CONFIG"] = str(setup.config)
    return env, marker


def start_run(url: str, sandbox: SlackSandbox, general: str) -> None:
    """`/runbook run fault-sleep` and Run pressed, both signed, through the served app."""
    slack = OutboundSlack(http_transport(url + "/slack/events"), SECRET, sandbox)
    asked = slack.command("run fault-sleep", user="U0ALICE", channel=general, command="/runbook")
    assert asked.status == 200
    plan = wait_for(
        lambda: [m for m in sandbox.messages(general) if m.text.startswith("R-1:")], timeout=20
    )
    pressed = slack.block_action(
        runbook_blocks.ACTION_RUN, user="U0ALICE", channel=general, message_ts=plan[0].ts, value="1"
    )
    assert pressed.status == 200


def test_serve_killed_mid_step_leaves_no_remote_process_and_the_restart_marks_it_interrupted(
    sandbox: SlackSandbox,
    announce_channel: str,
    general: str,
    database_url: str,
    tmp_path: Path,
    fleet: Fleet,
) -> None:
    env, marker = served_run(sandbox, announce_channel, general, database_url, tmp_path, fleet)
    logs = [tmp_path / "serve-1.log", tmp_path / "serve-2.log"]

    def serve_logs() -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()}" for log in logs if log.exists())

    with firebreak_serve(env, logs[0]) as (url, process):
        start_run(url, sandbox, general)
        try:
            group = step_group(marker, b"sleep\x00300")
        except AssertionError:
            raise AssertionError("the step never started\n" + serve_logs()) from None
        members = described(group)
        assert _run_row(database_url) is not None
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=10) == -signal.SIGKILL
        killed = time.monotonic()
        try:
            wait_for(lambda: not group_members(group), timeout=GONE_WITHIN)
        except AssertionError:
            raise AssertionError(
                f"still running on the host: {processes_with(marker)}\n{serve_logs()}"
            ) from None
        gone_after = time.monotonic() - killed
        row = _run_row(database_url)
        assert row is not None and row[0] == records.RUNNING, row  # nobody has swept it yet

    with firebreak_serve(env, logs[1]):
        try:
            wait_for(
                lambda: (_run_row(database_url) or ("",))[0] == records.INTERRUPTED, timeout=30
            )
        except AssertionError:
            raise AssertionError(f"run {_run_row(database_url)}\n{serve_logs()}") from None
        interrupted_after = time.monotonic() - killed
    status, hosts, facts = _run_row(database_url) or ("", [], [])
    assert hosts == [records.HOST_INTERRUPTED]
    assert facts.count("runbook_interrupted") == 1
    assert "runbook_finished" not in facts
    assert processes_with(marker) == []
    print(
        f"sent: /runbook run fault-sleep, Run pressed, serve SIGKILLed mid-step, serve restarted; "
        f"counted: {len(members)} step processes before the kill ({', '.join(members)}), "
        f"0 after {gone_after:.1f} s; "
        f"run {status} {interrupted_after:.1f} s after the kill; facts {facts}"
    )


def test_serve_stopped_mid_step_cancels_the_run_and_its_remote_process(
    sandbox: SlackSandbox,
    announce_channel: str,
    general: str,
    database_url: str,
    tmp_path: Path,
    fleet: Fleet,
) -> None:
    """SIGTERM (a restart, a roll to a new version): the replica cancels its runs as it
    stops; they end cancelled, not interrupted, and nothing is left on the host."""
    env, marker = served_run(sandbox, announce_channel, general, database_url, tmp_path, fleet)
    log = tmp_path / "serve.log"
    with firebreak_serve(env, log) as (url, process):
        start_run(url, sandbox, general)
        group = step_group(marker, b"sleep\x00300")
        members = described(group)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=40) == 0, log.read_text()
    assert group_members(group) == [], processes_with(marker)
    status, hosts, facts = _run_row(database_url) or ("", [], [])
    print(
        f"sent: /runbook run fault-sleep, Run pressed, serve SIGTERMed mid-step; counted: "
        f"{len(members)} step processes before, 0 after; run {status}, hosts {hosts}"
    )
    assert (status, hosts) == (records.CANCELLED, [records.HOST_CANCELLED])
    assert facts.count("runbook_finished") == 1 and "runbook_interrupted" not in facts


# -- the setting the restart test shortens ----------------------------------------------------


def test_interrupted_after_is_bounded_and_sets_the_beat_and_the_sweep() -> None:
    assert RunbooksSection().interrupted_after == timedelta(seconds=60)
    assert (runs.heartbeat_every(timedelta(seconds=60)), runs.sweep_every()) == (
        5.0,
        timedelta(seconds=15),
    )
    short = RunbooksSection.model_validate({"interrupted_after": "6s"}).interrupted_after
    assert (runs.heartbeat_every(short), runs.sweep_every(short)) == (1.0, timedelta(seconds=1.5))
    for value, words in (("5s", "at least 6s"), ("2h", "at most 1h")):
        with pytest.raises(ValidationError) as error:
            RunbooksSection.model_validate({"interrupted_after": value})
        assert words in str(error.value)
