"""Benchmark: one runbook (`sleep 1`, then `uptime`) on 20 real OpenSSH sshd hosts.

Twenty `sshd` servers on 127.0.0.1 (tests/sshd.py `start_fleet`: own host keys, pinned in
a known_hosts file, one client key) serve three ways of doing the same work, timed in the
same run, round after round (the ways interleaved, so a busy spell of the shared machine
hits all of them):

- Firebreak: the real path. A runbook file loaded by the catalogue, planned for the 20
  inventory hosts (concurrency 20), then, on a fresh migrated database: `runs.request`,
  `runs.confirm` (a low-risk runbook needs no approval), `Executor.execute` over
  `SshTransport` (a new transport per run: key and known_hosts read, 20 paramiko
  connections, each step its own channel with its remote `timeout` wrapper, every step
  and host recorded with its timeline fact), until the run's final state is read back.
  Timed from just before the request to the final state. SQLite always; PostgreSQL too
  when `--postgres ADMIN_URL` (or FIREBREAK_TEST_DATABASE_URL) names a server.
- Sequential ssh: OpenSSH's `ssh` to one host after the other, `sleep 1; uptime` as one
  command per host (pinned known_hosts, StrictHostKeyChecking=yes, BatchMode=yes).
- Ansible ad-hoc: `ansible all -m shell -a 'sleep 1; uptime' -f 20` (the `command`
  module runs one program, so the shell module runs both in one remote shell: one module
  run per host where Firebreak runs two steps). ansible-core lives in the benchmark's own
  virtual environment, `benchmarks/.venv-ansible` (made on first use; never a Firebreak
  dependency); each round gets a fresh ControlPath directory, so no round reuses another's
  SSH master connections. If it cannot be installed, its row says why.
- Parallel ssh, a reference without a target: the same `ssh` to every host at once, about
  the least the loaded machine can take for the work, to tell Firebreak's overhead from it.

Targets: Firebreak's median at least 5x faster than sequential ssh, and faster than
Ansible's median.

    .venv/bin/python -m benchmarks.bench_runbooks [--hosts 20] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import paramiko
from sqlalchemy import create_engine, make_url, text

from benchmarks.harness import (
    BENCHMARKS_DIR,
    REPORT_PATH,
    Figure,
    MachineFacts,
    Section,
    code_state,
    fmt,
    markdown_table,
    write_section,
)
from bot.db import Database, normalise_url
from bot.migrations import upgrade
from bot.runbooks import records, runs
from bot.runbooks.catalogue import load_catalogue
from bot.runbooks.executor import Executor
from bot.runbooks.inventory import Inventory
from bot.runbooks.plan import Plan
from bot.runbooks.planning import make_plan
from integrations.ssh import SshTransport
from tests.sshd import Fleet, SshdFailed, SshdMissing, start_fleet

KEY = "runbooks"
TITLE = "Runbooks: `sleep 1`, then `uptime`, on {hosts} sshd hosts (Firebreak, ssh, Ansible)"
SEQUENTIAL_FACTOR = 5.0  # Firebreak at least this many times faster than sequential ssh
ANSIBLE_VENV = BENCHMARKS_DIR / ".venv-ansible"
REMOTE_WORK = "sleep 1; uptime"
UPTIME = re.compile(rb"load average")
RUNBOOK = """\
id: bench-uptime
title: Sleep a second, then uptime
risk: low
targets: {{group: bench, max_hosts: {hosts}}}
concurrency: {hosts}
max_failures: 1
steps:
  - id: sleep
    argv: [sleep, "1"]
    timeout: 30s
  - id: uptime
    argv: [uptime]
    timeout: 30s
output: {{max_bytes: 4096}}
"""


# -- the results --------------------------------------------------------------------------


@dataclass
class Way:
    """One way of doing the work: its wall times (seconds), or why it could not be measured."""

    name: str
    command: str
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # this process and its children
    unavailable: str = ""

    @property
    def measured(self) -> bool:
        return bool(self.seconds) and not self.unavailable

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.measured else float("nan")

    def cells(self) -> list[str]:
        if not self.measured:
            return [self.name, "-", "n/a", "n/a", "n/a", "n/a", f"unavailable: {self.unavailable}"]
        return [
            self.name,
            str(len(self.seconds)),
            fmt(self.median, 2),
            fmt(min(self.seconds), 2),
            fmt(max(self.seconds), 2),
            fmt(statistics.median(self.cpu_seconds), 2),
            self.command,
        ]


@dataclass
class Result:
    facts: MachineFacts
    command: str
    hosts: int
    rounds: int
    firebreak: list[Way]
    sequential: Way
    ansible: Way
    parallel: Way
    versions: dict[str, str]
    loads: list[float]  # 1-minute load average before each round (and after the last)

    @property
    def reference(self) -> Way:
        """Firebreak's row the targets are judged on: SQLite, the embedded default."""
        return self.firebreak[0]

    def speedup(self, other: Way) -> float:
        if not (self.reference.measured and other.measured):
            return float("nan")
        return other.median / self.reference.median

    def verdicts(self) -> list[tuple[str, float, str]]:
        """(target, speed-up, PASS/FAIL/n/a) per target."""
        sequential = self.speedup(self.sequential)
        ansible = self.speedup(self.ansible)
        return [
            (
                f"at least {SEQUENTIAL_FACTOR:g}x faster than sequential ssh",
                sequential,
                _verdict(sequential, SEQUENTIAL_FACTOR),
            ),
            ("faster than Ansible ad-hoc", ansible, _verdict(ansible, 1.0, strictly=True)),
        ]

    @property
    def passed(self) -> bool:
        return all(verdict == "PASS" for _, _, verdict in self.verdicts())

    def tables(self) -> str:
        times = markdown_table(
            ["way", "rounds", "median s", "min s", "max s", "client CPU s", "what ran"],
            [
                way.cells()
                for way in [*self.firebreak, self.sequential, self.ansible, self.parallel]
            ],
        )
        targets = markdown_table(
            ["target (Firebreak on SQLite, medians)", "speed-up", "result"],
            [[name, _ratio(ratio), verdict] for name, ratio, verdict in self.verdicts()],
        )
        return f"{times}\n\n{targets}"

    def load_line(self) -> str:
        shown = ", ".join(fmt(load, 2) for load in self.loads)
        return f"1-minute load average before each round and after the last: {shown}"

    def figures(self) -> list[Figure]:
        ref = self.reference
        figures = []
        for (target, ratio, verdict), other in zip(
            self.verdicts(), (self.sequential, self.ansible), strict=True
        ):
            figures.append(
                Figure(
                    f"runbook on {self.hosts} hosts, median (vs {other.name})",
                    f"{fmt(ref.median, 2)} s",
                    f"{fmt(other.median, 2)} s ({other.name})",
                    f"{_ratio(ratio)} faster",
                    target,
                    "PASS" if verdict == "PASS" else "**FAIL**" if verdict == "FAIL" else "n/a",
                )
            )
        return figures

    def section(self) -> Section:
        versions = ", ".join(f"{name} {version}" for name, version in self.versions.items())
        body = f"""
Measured on: {self.facts.line()}

What ran: `{self.command}`

Code: {code_state()}

Versions: {versions}.

{self.hosts} OpenSSH `sshd` servers on 127.0.0.1 (`tests/sshd.py`: own ed25519 host keys
pinned in one known_hosts file, one client key). The work on every host: `sleep 1`, then
`uptime`. {self.rounds} rounds after one untimed warm-up round; in each round every way runs
once, one after another (each way first in turn), so load on this shared machine falls on
all of them.

- **Firebreak**: a runbook file (steps `[sleep, "1"]` and `[uptime]`, concurrency
  {self.hosts}) loaded by the catalogue and planned for the {self.hosts} inventory hosts;
  then, on a fresh migrated database, `runs.request`, `runs.confirm` (low risk: no approval)
  and `Executor.execute` over `SshTransport` (key and known_hosts read per run, one paramiko
  connection per host, each step its own channel inside GNU `timeout`, every step and host
  stored with its timeline fact), until the final state is read back. Timed from the request
  to that read. Each host's stored output is checked for `uptime`'s load average.
- **Sequential ssh**: `ssh` to each host in turn running `{REMOTE_WORK}` as one command
  (one connection per host, as a shell loop would).
- **Ansible ad-hoc**: `ansible all -m shell -a '{REMOTE_WORK}' -f {self.hosts}`: the
  `command` module runs one program, so the `shell` module runs both in one remote shell (one
  module run per host where Firebreak runs two steps: this favours Ansible). Defaults
  otherwise (ControlMaster/ControlPersist on, no pipelining), except what pinning needs
  (`StrictHostKeyChecking=yes` with the known_hosts file) and `ansible_python_interpreter`
  set to `/usr/bin/python3` (saves Ansible the interpreter discovery: favours Ansible too).
  A fresh ControlPath directory per round: no round reuses another's master connections.
  ansible-core lives in `benchmarks/.venv-ansible` (made on first use), never in Firebreak's
  dependencies.
- **Parallel ssh** (a reference, no target): one `ssh ... '{REMOTE_WORK}'` per host, all
  started at once: about the least this machine can take for the work over OpenSSH (one
  session per host where Firebreak opens two), to tell Firebreak's overhead from the load.

{self.tables()}

{self.load_line()}: this {self.facts.cpus}-CPU machine is shared (other test suites ran beside the
benchmark); the ways were interleaved so that load falls on each of them alike. Client CPU: user + system
time of the benchmark process (Firebreak's threads) or of the `ssh`/`ansible` processes and
their forks during the round (Ansible's backgrounded ControlPersist masters not included;
the `ssh -O exit` that end them after its round are);
the sshd side is not counted for any way.

How to read it: Firebreak's own process needs little CPU (the column above); its wall time
is the hosts' work all at once on this machine's CPUs: the sshd side of {self.hosts} key
exchanges and {2 * self.hosts} sessions (a fork and a shell per step). A per-host breakdown
taken while writing this benchmark (20 hosts, load 10-12): connecting took ~0.2 s, a step's
remote session set-up 0.25 s or more (as long as a multiplexed OpenSSH `ssh HOST true`
there), the `sleep 1` step 1.6-5.2 s, the gaps between steps (recording the step) ~10 ms.
The parallel ssh row is the floor this load leaves for the work over OpenSSH itself (one
session per host where Firebreak opens two and records each step): Firebreak's time near it
means the time goes to the hosts' side, not to Firebreak. Sequential ssh spends
{self.hosts} s of its time asleep, which load does not stretch, so a loaded machine narrows
every parallel way's ratio against it (the 5x target needs the floor itself below a fifth of
the sequential time).
"""
        return Section(KEY, self.title, body, self.figures())

    @property
    def title(self) -> str:
        return TITLE.format(hosts=self.hosts)


def _verdict(ratio: float, at_least: float, *, strictly: bool = False) -> str:
    if ratio != ratio:  # NaN: something was not measured
        return "n/a"
    return "PASS" if (ratio > at_least if strictly else ratio >= at_least) else "FAIL"


def _ratio(ratio: float) -> str:
    return "n/a" if ratio != ratio else f"{ratio:.1f}x"


# -- Firebreak ------------------------------------------------------------------------------


def plan_for(fleet: Fleet, directory: Path) -> Plan:
    """The benchmark's runbook, loaded from a file by the catalogue and planned for the fleet."""
    catalogue_dir = directory / "runbooks"
    catalogue_dir.mkdir()
    (catalogue_dir / "bench-uptime.yaml").write_text(RUNBOOK.format(hosts=len(fleet)))
    runbook = load_catalogue(catalogue_dir, required=True).get("bench-uptime")
    assert runbook is not None
    inventory = Inventory.model_validate(
        {
            "user": fleet[0].user,
            "hosts": {
                server.name: {"address": server.address, "port": server.port, "groups": ["bench"]}
                for server in fleet
            },
        }
    )
    return make_plan(runbook, {}, None, inventory)


class Databases:
    """Fresh migrated databases: SQLite files copied from one migrated file, or PostgreSQL
    databases created from one migrated template database (all dropped at the end)."""

    def __init__(self, directory: Path, postgres_admin: str | None) -> None:
        self.directory = directory
        self.admin = normalise_url(postgres_admin) if postgres_admin else None
        self.template_file = directory / "template.db"
        upgrade(f"sqlite:///{self.template_file}")
        self.template_name: str | None = None
        self.created: list[str] = []

    def sqlite(self) -> str:
        path = self.directory / f"run-{uuid.uuid4().hex[:8]}.db"
        shutil.copyfile(self.template_file, path)
        return f"sqlite:///{path}"

    def postgres(self) -> str:
        assert self.admin is not None
        if self.template_name is None:
            self.template_name = self._create(None)
            upgrade(self._url(self.template_name))
        return self._url(self._create(self.template_name))

    def _create(self, template: str | None) -> str:
        assert self.admin is not None
        name = f"firebreak_bench_{uuid.uuid4().hex[:10]}"
        copy = f' TEMPLATE "{template}"' if template else ""
        engine = create_engine(self.admin, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"{copy}'))
        finally:
            engine.dispose()
        self.created.append(name)
        return name

    def _url(self, name: str) -> str:
        assert self.admin is not None
        return make_url(self.admin).set(database=name).render_as_string(hide_password=False)

    def drop(self) -> None:
        if self.admin is None or not self.created:
            return
        engine = create_engine(self.admin, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                for name in reversed(self.created):
                    connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            engine.dispose()


def firebreak_once(url: str, plan: Plan, environ: dict[str, str]) -> float:
    """One stored run from request to final state; the wall time in seconds."""
    database = Database(url)
    executor = Executor(
        database,
        lambda: SshTransport.from_environment(environ),
        max_workers=len(plan.hosts),
        connect_timeout=10,
    )
    try:
        started = time.perf_counter()
        now = datetime.now(UTC)
        with database.session_scope() as session:
            run_id = runs.request(
                session, plan, requester="cli:bench", source="cli", incident_id=None, now=now
            ).id
        with database.session_scope() as session:
            runs.confirm(session, run_id, "cli:bench", now)
        executor.execute(run_id)
        with database.session_scope() as session:
            status = runs.get(session, run_id).status
            stored_hosts = [(h.name, h.status, h.output) for h in runs.hosts(session, run_id)]
        elapsed = time.perf_counter() - started
    finally:
        executor.close()
        database.dispose()
    wrong = [
        f"{name}: {host_status}"
        for name, host_status, output in stored_hosts
        if host_status != records.HOST_SUCCEEDED or not UPTIME.search(output.encode())
    ]
    if status != records.SUCCEEDED or wrong or len(stored_hosts) != len(plan.hosts):
        raise RuntimeError(f"the Firebreak run ended {status}: {', '.join(wrong)}")
    return elapsed


# -- OpenSSH, one host after the other -----------------------------------------------------


def ssh_argv(fleet: Fleet, known_hosts: Path, index: int) -> list[str]:
    server = fleet[index]
    return [
        "ssh",
        "-F",
        "/dev/null",  # no user or system client config
        "-i",
        str(fleet.identity),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-p",
        str(server.port),
        f"{server.user}@{server.address}",
        REMOTE_WORK,
    ]


def sequential_once(fleet: Fleet, known_hosts: Path) -> float:
    started = time.perf_counter()
    outputs = [
        subprocess.run(
            ssh_argv(fleet, known_hosts, index), capture_output=True, timeout=60, check=False
        )
        for index in range(len(fleet))
    ]
    elapsed = time.perf_counter() - started
    _check_ssh(fleet, outputs, "sequential")
    return elapsed


def parallel_once(fleet: Fleet, known_hosts: Path) -> float:
    """The reference floor: one `ssh` per host, all started at once (no target on it)."""
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            ssh_argv(fleet, known_hosts, index), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for index in range(len(fleet))
    ]
    outputs = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=60)
        outputs.append(
            subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        )
    elapsed = time.perf_counter() - started
    _check_ssh(fleet, outputs, "parallel")
    return elapsed


def _check_ssh(fleet: Fleet, outputs: list[subprocess.CompletedProcess[bytes]], way: str) -> None:
    wrong = [
        f"{fleet[i].name}: exit {done.returncode} {done.stderr.decode(errors='replace')[-200:]}"
        for i, done in enumerate(outputs)
        if done.returncode != 0 or not UPTIME.search(done.stdout)
    ]
    if wrong:
        raise RuntimeError(f"{way} ssh failed: " + "; ".join(wrong))


# -- Ansible ad-hoc ------------------------------------------------------------------------


def ensure_ansible(venv: Path) -> tuple[Path | None, str]:
    """The `ansible` program of the benchmark's own environment, made on first use with
    `python -m venv` and pip; (None, why) if that cannot be done."""
    ansible = venv / "bin" / "ansible"
    if ansible.exists():
        return ansible, ""
    print(f"  installing ansible-core into {venv} (first use) ...", flush=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "ansible-core"],
    ]
    for argv in steps:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as error:
            return None, f"`{' '.join(argv[-3:])}` failed: {error}"
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return None, f"`{' '.join(argv[-3:])}` exited {done.returncode}: {last}"
    if not ansible.exists():
        return None, f"pip installed ansible-core but {ansible} is missing"
    return ansible, ""


def write_inventory(fleet: Fleet, known_hosts: Path, path: Path) -> Path:
    lines = ["[bench]"]
    lines += [
        f"{server.name} ansible_host={server.address} ansible_port={server.port}"
        for server in fleet
    ]
    ssh_args = f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes"
    lines += [
        "",
        "[bench:vars]",
        f"ansible_user={fleet[0].user}",
        f"ansible_ssh_private_key_file={fleet.identity}",
        f"ansible_ssh_common_args='{ssh_args} -o IdentitiesOnly=yes'",
        "ansible_python_interpreter=/usr/bin/python3",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def ansible_environment(home: Path, control_dir: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    return {
        **keep,
        "ANSIBLE_CONFIG": str(home / "no-ansible.cfg"),  # absent: the defaults
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(home / "remote-tmp"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
    }


def ansible_once(ansible: Path, inventory: Path, hosts: int, home: Path) -> float:
    control_dir = Path(tempfile.mkdtemp(prefix="cp-", dir=home))  # no reused masters
    argv = [str(ansible), "all", "-i", str(inventory), "-m", "shell"]
    argv += ["-a", REMOTE_WORK, "-f", str(hosts)]
    started = time.perf_counter()
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            timeout=300,
            check=False,
            cwd=home,
            env=ansible_environment(home, control_dir),
        )
        elapsed = time.perf_counter() - started
    finally:
        stop_masters(control_dir)
    answered = len(re.findall(rb"\| CHANGED \| rc=0 >>\n[^\n]*load average", done.stdout))
    if done.returncode != 0 or answered != hosts:
        tail = (done.stdout + done.stderr).decode(errors="replace")[-600:]
        raise RuntimeError(f"ansible exited {done.returncode}, {answered}/{hosts} ok:\n{tail}")
    return elapsed


def stop_masters(control_dir: Path) -> None:
    """End the round's ControlPersist master connections (`ssh -O exit` on each socket), so
    none outlives its round (untimed: after the round's wall time is taken)."""
    for socket_path in control_dir.iterdir():
        subprocess.run(
            ["ssh", "-F", "/dev/null", "-o", f"ControlPath={socket_path}", "-O", "exit", "bench"],
            capture_output=True,
            timeout=10,
            check=False,
        )


def ansible_version(ansible: Path) -> str:
    python = ansible.with_name("python")
    done = subprocess.run(
        [str(python), "-c", "import ansible.release as r; print(r.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


# -- the run -------------------------------------------------------------------------------


def openssh_version() -> str:
    done = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False)
    return (done.stderr or done.stdout).strip().split(",")[0].removeprefix("OpenSSH_")


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its children that have ended: the
    client side of each way (Firebreak's threads; ssh; ansible and its forks)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@contextmanager
def _quiet_ssh_logs() -> Iterator[None]:
    """paramiko logs every channel at INFO; the benchmark prints only its own lines."""
    import logging

    logger = logging.getLogger("paramiko")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def run(
    hosts: int, rounds: int, postgres_admin: str | None, ansible_venv: Path, command: str
) -> Result:
    firebreak = [
        Way("Firebreak (SQLite)", "runs.request/confirm + Executor + SshTransport"),
        Way("Firebreak (PostgreSQL)", "the same, on a fresh PostgreSQL database"),
    ]
    if not postgres_admin:
        firebreak[
            1
        ].unavailable = (
            "not asked for: give --postgres ADMIN_URL or set FIREBREAK_TEST_DATABASE_URL"
        )
    sequential = Way("sequential ssh", f"`ssh ... '{REMOTE_WORK}'` host after host")
    parallel = Way(
        "parallel ssh (reference, no target)",
        f"{hosts} `ssh ... '{REMOTE_WORK}'` started at once",
    )
    ansible_way = Way("Ansible ad-hoc", f"`ansible all -m shell -a '{REMOTE_WORK}' -f {hosts}`")
    ansible, why = ensure_ansible(ansible_venv)
    if ansible is None:
        ansible_way.unavailable = why
    versions = {
        "OpenSSH": openssh_version(),
        "paramiko": paramiko.__version__,
        "ansible-core": ansible_version(ansible) if ansible else f"unavailable ({why})",
    }
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="fb-bench-") as name, _quiet_ssh_logs():
        directory = Path(name)
        with start_fleet(directory / "fleet", hosts) as fleet:
            known_hosts = fleet.write_known_hosts()
            environ = fleet.environment(known_hosts)
            plan = plan_for(fleet, directory)
            inventory = write_inventory(fleet, known_hosts, directory / "inventory.ini")
            ansible_home = directory / "ansible"
            ansible_home.mkdir()
            databases = Databases(directory, postgres_admin)
            try:
                if postgres_admin:
                    try:
                        databases.postgres()  # the template, and a first connection
                    except Exception as error:
                        firebreak[1].unavailable = f"PostgreSQL: {type(error).__name__}: {error}"

                attempts: list[tuple[Way, Callable[[], float]]] = [
                    (firebreak[0], lambda: firebreak_once(databases.sqlite(), plan, environ)),
                ]
                if not firebreak[1].unavailable:
                    attempts.append(
                        (firebreak[1], lambda: firebreak_once(databases.postgres(), plan, environ))
                    )
                attempts.append((sequential, lambda: sequential_once(fleet, known_hosts)))
                attempts.append((parallel, lambda: parallel_once(fleet, known_hosts)))
                if ansible is not None:
                    attempts.append(
                        (ansible_way, lambda: ansible_once(ansible, inventory, hosts, ansible_home))
                    )
                for number in range(rounds + 1):  # round 0: the warm-up
                    loads.append(os.getloadavg()[0])
                    label = "warm-up" if number == 0 else f"round {number}/{rounds}"
                    turn = number % len(attempts)  # each way goes first in turn
                    for way, once in attempts[turn:] + attempts[:turn]:
                        if way.unavailable:
                            continue
                        cpu = _cpu_seconds()
                        try:
                            seconds = once()
                        except Exception as error:
                            way.unavailable = f"{type(error).__name__}: {error}"
                            print(f"  {label} {way.name}: FAILED {way.unavailable}", flush=True)
                            continue
                        cpu = _cpu_seconds() - cpu
                        print(f"  {label} {way.name}: {seconds:.2f} s, CPU {cpu:.2f} s", flush=True)
                        if number:
                            way.seconds.append(seconds)
                            way.cpu_seconds.append(cpu)
                loads.append(os.getloadavg()[0])
            finally:
                databases.drop()
    return Result(
        MachineFacts.collect(),
        command,
        hosts,
        rounds,
        firebreak,
        sequential,
        ansible_way,
        parallel,
        versions,
        loads[1:],  # the warm-up's load is not of a measured round
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_runbooks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--hosts", type=int, default=20, help="sshd servers (default 20)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument(
        "--postgres",
        metavar="ADMIN_URL",
        default=os.environ.get("FIREBREAK_TEST_DATABASE_URL"),
        help="also run Firebreak on PostgreSQL, creating databases through this URL "
        "(default: FIREBREAK_TEST_DATABASE_URL, when set)",
    )
    parser.add_argument(
        "--ansible-venv",
        type=Path,
        default=ANSIBLE_VENV,
        help=f"ansible-core's own environment (default {ANSIBLE_VENV}; made on first use)",
    )
    parser.add_argument("--no-report", action="store_true", help="leave REPORT.md alone")
    args = parser.parse_args(argv)
    if args.hosts < 1 or args.rounds < 1:
        parser.error("--hosts and --rounds must be positive")
    command = " ".join([".venv/bin/python -m benchmarks.bench_runbooks", *_shown(argv)])
    try:
        result = run(args.hosts, args.rounds, args.postgres, args.ansible_venv, command)
    except (SshdMissing, SshdFailed) as error:
        print(f"bench_runbooks: cannot start the sshd servers: {error}", file=sys.stderr)
        return 1
    print(f"{result.title}  ({result.facts.cpus} CPUs)")
    print(result.tables())
    print(result.load_line())
    if not args.no_report:
        write_section(result.section(), result.facts, REPORT_PATH)
        print(f"wrote {REPORT_PATH}")
    return 0 if result.passed else 1


def _shown(argv: Sequence[str]) -> list[str]:
    """The command line as shown in REPORT.md: a database URL's password hidden."""
    return [
        make_url(word).render_as_string(hide_password=True) if "://" in word else word
        for word in argv
    ]


if __name__ == "__main__":
    sys.exit(main())
