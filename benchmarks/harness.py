"""What every benchmark needs: a server to load, a load generator, statistics, REPORT.md.

- `FirebreakServer` starts `firebreak serve` as a subprocess (its own interpreter, as in
  production), waits for the URLs it prints, and stops it with SIGTERM.
- `SandboxControl` talks to the sandbox Slack's `/_sandbox/` control endpoints over HTTP.
- `run_load` sends N requests from C worker threads, each sending sequentially, and times
  every request from just before sending to the complete HTTP response.
- `LatencyStats` turns the timings into p50, p99, max and requests per second.
- `write_section` rewrites one benchmark's section of REPORT.md and keeps the others.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import http.client
import itertools
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from bot.sandbox.outbound import Reply, Transport, http_transport

BENCHMARKS_DIR = Path(__file__).resolve().parent
REPORT_PATH = BENCHMARKS_DIR / "REPORT.md"
PROJECT_ROOT = BENCHMARKS_DIR.parent

# --------------------------------------------------------------------------------------
# The machine


@dataclass(frozen=True)
class MachineFacts:
    cpus: int
    python: str
    platform: str
    date: str

    @classmethod
    def collect(cls) -> MachineFacts:
        return cls(
            cpus=os.cpu_count() or 0,
            python=f"{platform.python_implementation()} {platform.python_version()}",
            platform=f"{platform.system()} {platform.release()} ({platform.machine()})",
            date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        )

    def line(self) -> str:
        return f"{self.date} · {self.cpus} CPUs · {self.python} · {self.platform}"


# --------------------------------------------------------------------------------------
# Statistics


def add_database_urls(parser: argparse.ArgumentParser) -> None:
    """`--database-url URL` (repeatable, into `databases`): the databases a benchmark runs
    on, each a fresh one."""
    parser.add_argument(
        "--database-url",
        action="append",
        dest="databases",
        metavar="URL",
        help="`sqlite` (default) or a PostgreSQL URL to create a fresh database in; repeatable",
    )


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p% of values at or below."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class LatencyStats:
    """Timings of one measured run; latencies in seconds, wall time of the whole run."""

    latencies: tuple[float, ...]
    errors: int
    wall_seconds: float

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def _sorted(self) -> list[float]:
        return sorted(self.latencies)

    @property
    def p50_ms(self) -> float:
        return percentile(self._sorted, 50) * 1000

    @property
    def p99_ms(self) -> float:
        return percentile(self._sorted, 99) * 1000

    @property
    def max_ms(self) -> float:
        return max(self.latencies, default=math.nan) * 1000

    @property
    def mean_ms(self) -> float:
        return sum(self.latencies) / len(self.latencies) * 1000 if self.latencies else math.nan

    @property
    def rps(self) -> float:
        return self.requests / self.wall_seconds if self.wall_seconds > 0 else math.nan


@dataclass(frozen=True)
class Outcome:
    """One request: when it started (perf_counter), how long it took, what came back."""

    index: int
    started: float
    seconds: float
    status: int  # 0: no HTTP response at all (see `error`)
    error: str = ""


@dataclass(frozen=True)
class LoadRun:
    outcomes: tuple[Outcome, ...]
    started: float  # perf_counter at the first send
    finished: float  # perf_counter at the last response

    @property
    def stats(self) -> LatencyStats:
        return LatencyStats(
            tuple(o.seconds for o in self.outcomes),
            sum(1 for o in self.outcomes if o.status != 200),
            self.finished - self.started,
        )

    def error_summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.outcomes:
            if o.status != 200:
                key = f"HTTP {o.status}" if o.status else o.error
                counts[key] = counts.get(key, 0) + 1
        return counts


@contextlib.contextmanager
def no_collector_pauses() -> Iterator[None]:
    """Keep this process's cyclic garbage collector out of a measured phase: collect and
    freeze what exists, and collect nothing more until the phase ends (reference counting
    still frees almost everything at once).

    The load generator shares its interpreter with the sandbox Slack, whose stored calls
    made full collections of 100-160 ms every few seconds (alerts benchmark, 2,000
    alerts/s); a send or a response read such a pause held up counted as the server's
    latency. The server's own collections are left as they are: they are part of what is
    measured."""
    enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()


def run_load(send: Callable[[int], Reply], requests: int, concurrency: int) -> LoadRun:
    """Call `send(i)` for i in 0..requests-1 from `concurrency` threads, each sequential,
    with this process's garbage collector paused (`no_collector_pauses`)."""
    counter = itertools.count()
    lock = threading.Lock()
    outcomes: list[Outcome] = []
    start_gate = threading.Barrier(concurrency)

    def worker() -> list[Outcome]:
        mine: list[Outcome] = []
        start_gate.wait()
        while True:
            with lock:
                index = next(counter)
            if index >= requests:
                return mine
            started = time.perf_counter()
            try:
                reply = send(index)
                status, error = reply.status, ""
            except Exception as exc:  # a refused or dropped connection is a result too
                status, error = 0, type(exc).__name__
            mine.append(Outcome(index, started, time.perf_counter() - started, status, error))

    with (
        no_collector_pauses(),
        ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="load") as pool,
    ):
        futures = [pool.submit(worker) for _ in range(concurrency)]
        for future in futures:
            outcomes.extend(future.result())
    outcomes.sort(key=lambda o: o.index)
    first = min(o.started for o in outcomes)
    last = max(o.started + o.seconds for o in outcomes)
    return LoadRun(tuple(outcomes), first, last)


# --------------------------------------------------------------------------------------
# HTTP


def keep_alive_transport(url: str, timeout: float = 10.0) -> Transport:
    """POST over one persistent HTTP/1.1 connection per thread (reconnects when dropped)."""
    parts = urlsplit(url)
    host, port, path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/"
    local = threading.local()

    def post(body: bytes, headers: dict[str, str]) -> Reply:
        for attempt in (1, 2):
            connection: http.client.HTTPConnection | None = getattr(local, "connection", None)
            if connection is None:
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
                local.connection = connection
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read().decode()
                if response.will_close:
                    connection.close()
                    local.connection = None
                return Reply(response.status, data)
            except (ConnectionError, http.client.HTTPException):
                connection.close()
                local.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    return post


def make_transport(url: str, *, keep_alive: bool) -> Transport:
    """A fresh connection per request (urllib, like most webhooks senders) or keep-alive."""
    return keep_alive_transport(url) if keep_alive else http_transport(url)


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_json(
    method: str, url: str, payload: Mapping[str, Any] | None = None, timeout: float = 30.0
) -> Any:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with _OPENER.open(request, timeout=timeout) as response:
        return json.loads(response.read().decode())


def http_text(url: str, timeout: float = 30.0) -> str:
    with _OPENER.open(url, timeout=timeout) as response:
        return str(response.read().decode())


def wait_until(
    check: Callable[[], bool], *, timeout: float, interval: float = 0.1, what: str = "condition"
) -> float:
    """Poll `check` until true; return the seconds it took. TimeoutError after `timeout`."""
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return time.perf_counter() - started


class SandboxControl:
    """The sandbox Slack's control API (`/_sandbox/...`) over HTTP."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = http_json("GET", f"{self.base_url}/_sandbox/state")
        return state

    def calls(self) -> list[dict[str, Any]]:
        """Every Web API call the sandbox answered: method, params, status, response, at."""
        calls: list[dict[str, Any]] = http_json("GET", f"{self.base_url}/_sandbox/calls")
        return calls

    def create_channel(self, name: str, members: Sequence[str]) -> str:
        answer = http_json(
            "POST", f"{self.base_url}/_sandbox/channels", {"name": name, "members": list(members)}
        )
        return str(answer["channel"])

    def channel(self, name: str) -> dict[str, Any] | None:
        for channel in self.state()["channels"]:
            if channel.get("name") == name:
                found: dict[str, Any] = channel
                return found
        return None


# --------------------------------------------------------------------------------------
# The server


def prometheus_value(text: str, name: str) -> float:
    """One unlabelled sample from Prometheus text exposition (NaN if absent)."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else math.nan


# Firebreak's own settings are never inherited from the caller's environment: a benchmark
# states all of them (a missing FIREBREAK_CONFIG means the embedded defaults).
_SETTINGS_PREFIXES = ("SLACK_", "FIREBREAK_", "DATABASE_URL")


@dataclass
class FirebreakServer:
    """`firebreak serve --sandbox --port 0` in a subprocess, for the length of a `with`."""

    env: Mapping[str, str]
    workdir: Path
    threads: int = 24
    sandbox: bool = True
    startup_timeout: float = 60.0
    url: str = ""
    sandbox_url: str = ""
    log_path: Path = field(init=False)
    _process: subprocess.Popen[str] | None = field(default=None, init=False)
    exit_code: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / "server.log"

    @staticmethod
    def command() -> list[str]:
        script = Path(sys.executable).with_name("firebreak")
        if script.exists():
            return [str(script)]
        found = shutil.which("firebreak")
        if found:
            return [found]
        return [sys.executable, "-c", "from bot.cli import main; main()"]

    @property
    def argv(self) -> list[str]:
        extra = ["--sandbox"] if self.sandbox else []
        return [*self.command(), "serve", *extra, "--port", "0", "--threads", str(self.threads)]

    @property
    def events_url(self) -> str:
        return f"{self.url}/slack/events"

    @property
    def sandbox_base(self) -> str:
        return self.sandbox_url.removesuffix("/").removesuffix("/api")

    def __enter__(self) -> FirebreakServer:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(_SETTINGS_PREFIXES)}
        env = {**inherited, **self.env, "PYTHONUNBUFFERED": "1"}
        log = self.log_path.open("w")
        self._process = subprocess.Popen(
            self.argv,
            cwd=self.workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        log.close()
        found = threading.Event()

        def read_stdout() -> None:
            assert self._process is not None and self._process.stdout is not None
            for line in self._process.stdout:  # keep draining so the pipe never fills
                if line.startswith("Sandbox Slack: "):
                    self.sandbox_url = line.removeprefix("Sandbox Slack: ").strip()
                elif line.startswith("Firebreak listening on "):
                    self.url = line.removeprefix("Firebreak listening on ").strip()
                    found.set()
            found.set()

        threading.Thread(target=read_stdout, name="server-stdout", daemon=True).start()
        if not found.wait(self.startup_timeout) or not self.url:
            self._stop()
            raise RuntimeError(f"firebreak serve did not start:\n{self.log_tail()}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            self.exit_code = process.returncode if process else None
            return
        process.send_signal(signal.SIGTERM)
        try:
            self.exit_code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            self.exit_code = process.wait()

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        return ""

    def log_problems(self) -> list[str]:
        """Lines the server logged at WARNING or above, and tracebacks."""
        with contextlib.suppress(OSError):
            return [
                line
                for line in self.log_path.read_text().splitlines()
                if " WARNING " in line or " ERROR " in line or line.startswith("Traceback")
            ]
        return []

    def metrics(self) -> str:
        return http_text(f"{self.url}/metrics")

    @property
    def pid(self) -> int:
        """The server's process id (for a profiler to attach to)."""
        if self._process is None:
            raise RuntimeError("the server is not running")
        return self._process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (Linux; else NaN)."""
        if self._process is None:
            return math.nan
        try:
            fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return math.nan
        utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
        return (utime + stime) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------
# Tables and REPORT.md


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


@dataclass(frozen=True)
class Figure:
    """One headline number of a benchmark, next to the baseline measured in the same run.

    `value` and `baseline` are formatted for the reader (with units); `ratio` is the
    comparison that holds on a noisy shared machine when absolute numbers do not (e.g.
    "2.7% of bare", "6.2x faster than ssh"). `target` and `result` are empty when the
    figure has no target. Every section lists its figures, and the top of REPORT.md
    gathers them into one table (`summary_table`).
    """

    what: str
    value: str
    baseline: str = ""
    ratio: str = ""
    target: str = ""
    result: str = ""

    @staticmethod
    def verdict(met: bool) -> str:
        return "PASS" if met else "**FAIL**"


@dataclass(frozen=True)
class Section:
    """One benchmark's part of REPORT.md; `key` identifies it across runs."""

    key: str
    title: str
    body: str
    figures: Sequence[Figure] = ()

    def markdown(self) -> str:
        figures = ""
        if self.figures:
            table = figures_table(self.figures)
            # The figures again, machine-readable, so that a later partial run can rebuild
            # the summary at the top from every section (JSON never contains "-->" here:
            # it is escaped below).
            data = json.dumps([f.__dict__ for f in self.figures], ensure_ascii=False)
            data = data.replace("--", "\\u002d\\u002d")
            figures = f"### Headline figures\n\n{table}\n\n<!-- figures: {data} -->\n\n"
        return (
            f"<!-- benchmark:{self.key}:start -->\n## {self.title}\n\n"
            f"{figures}{self.body.strip()}\n<!-- benchmark:{self.key}:end -->"
        )


FIGURE_HEADERS = ["figure", "Firebreak", "baseline (same run)", "ratio", "target", "result"]


def figures_table(figures: Sequence[Figure], names: Sequence[str] = ()) -> str:
    """The figures as a Markdown table; with `names` (one per figure), a first column
    naming each one's benchmark (the summary at the top of the report)."""
    rows: list[list[str]] = [
        [f.what, f.value, f.baseline or "-", f.ratio or "-", f.target or "-", f.result or "-"]
        for f in figures
    ]
    if names:
        return markdown_table(
            ["benchmark", *FIGURE_HEADERS],
            [[name, *row] for name, row in zip(names, rows, strict=True)],
        )
    return markdown_table(FIGURE_HEADERS, rows)


REPORT_INTRO = """\
# Firebreak benchmarks

Load against a real `firebreak serve` (waitress, the sandbox Slack, SQLite and PostgreSQL),
generated on the same machine. `./run bench` runs them all and rewrites this whole file;
`./run bench NAME` rewrites one section and keeps the others, so check each section's own
"measured on" and "code" lines.

Absolute numbers on a 2-CPU shared machine move between runs by tens of percent, and by
several times when other work shares the CPUs (the paging burst's p99 at the same commit:
1.3-1.4 s at load average 9-13, 0.03-0.7 s at load 1-2). So every headline figure stands
next to a baseline measured in the same run on the same machine (a bare WSGI endpoint on
the same server settings, plain ssh, Ansible, a plain template render, ...), each section
gives the load average it ran under, and the ratio is the number to compare across runs.
A section is only as recent as its own "measured on" and "code" lines: compare those
before blaming the machine for a change.

Run all: `./run bench` · one: `./run bench <name>` (names: `./run bench --list`)
"""

_SECTION = re.compile(
    r"<!-- benchmark:(?P<key>[\w.-]+):start -->.*?<!-- benchmark:(?P=key):end -->", re.S
)
_FIGURES = re.compile(r"<!-- figures: (?P<data>.*?) -->")
_TITLE = re.compile(r"^## (?P<title>.+)$", re.M)


def summary_table(sections: Mapping[str, str]) -> str:
    """Every section's headline figures in one table, in the sections' order."""
    names: list[str] = []
    figures: list[Figure] = []
    for text in sections.values():
        found, title = _FIGURES.search(text), _TITLE.search(text)
        if found is None or title is None:
            continue
        for item in json.loads(found.group("data")):
            names.append(title.group("title").split(":")[0])
            figures.append(Figure(**item))
    return figures_table(figures, names)


def write_section(section: Section, facts: MachineFacts, path: Path = REPORT_PATH) -> None:
    """Replace (or append) `section` in REPORT.md, keep the other sections, refresh the
    header and the summary of every section's figures against its target."""
    existing = path.read_text() if path.exists() else ""
    sections = {m.group("key"): m.group(0) for m in _SECTION.finditer(existing)}
    sections[section.key] = section.markdown()
    header = (
        f"{REPORT_INTRO}\nLast run: {facts.line()} · code: {code_state()}\n\n"
        "## Summary: every headline figure against its target\n\n"
        f"{summary_table(sections)}\n"
    )
    path.write_text(header + "\n" + "\n\n".join(sections.values()) + "\n")


def code_state() -> str:
    """The commit under test, and how many application files differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "bot", "integrations"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git work tree)"
    if not changed:
        return f"commit {head}"
    return (
        f"commit {head} plus uncommitted changes to {len(changed)} files in bot/ and integrations/"
    )


def process_rss_mb(pid: int) -> float:
    """Resident set size of process `pid` in MB (Linux /proc; NaN elsewhere or if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return math.nan


class RssSampler:
    """The peak RSS of a process, sampled every `interval` seconds in a thread while the
    `with` block runs (a short spike between samples can be missed; 50 ms is below the
    time one webhook takes under load)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = math.nan
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        while True:
            value = process_rss_mb(self.pid)
            if not math.isnan(value) and not (value <= self.peak):
                self.peak = value
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    print(f"  {label}: {time.perf_counter() - started:.2f} s", flush=True)
