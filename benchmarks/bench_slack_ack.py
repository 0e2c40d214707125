"""Benchmark: time to acknowledge `/incident note` under concurrent load.

Starts `firebreak serve --sandbox` on a throw-away SQLite database, declares one incident,
then sends signed `/incident note ...` slash commands (exactly as Slack signs them) into the
incident channel from C threads at once, and times each from send to the full HTTP
response. Slack gives up after 3 s; the target is p99 < 100 ms.

Afterwards it waits for the work behind the acknowledgements (the timeline write and the
`:memo: ... added a note: ...` post) to finish and checks that every note landed exactly
once, in Slack and in the database.

    .venv/bin/python -m benchmarks.bench_slack_ack [--requests 1000] [--concurrency 20]
"""

from __future__ import annotations

import argparse
import secrets
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.bare import BareServer
from benchmarks.harness import (
    REPORT_PATH,
    Figure,
    FirebreakServer,
    LoadRun,
    MachineFacts,
    SandboxControl,
    Section,
    code_state,
    fmt,
    make_transport,
    markdown_table,
    prometheus_value,
    run_load,
    wait_until,
    write_section,
)
from bot.sandbox.outbound import OutboundSlack, Reply

KEY = "slack_ack"
TITLE = "Slack acknowledgement: `/incident note` under load"
TARGET_P99_MS = 100.0
ALICE, PEOPLE = "U0ALICE", ("U0ALICE", "U0BOB", "U0CAROL")
INCIDENT_TITLE = "Benchmark incident"
INCIDENT_CHANNEL = "inc-1-benchmark-incident"
NOTE_PREFIX = f":memo: <@{ALICE}> added a note: "  # bot.slack.timeline.post of note_added


@dataclass(frozen=True)
class Options:
    requests: int = 1000
    concurrency: int = 20
    warmup: int = 20
    baseline: int = 100
    threads: int = 24
    keep_alive: bool = False
    report: Path | None = REPORT_PATH


@dataclass
class Result:
    options: Options
    facts: MachineFacts
    command: str
    load: LoadRun
    baseline: LoadRun | None
    bare: LoadRun | None
    code: str
    errors_by_kind: dict[str, int]
    drain_after_last_response: float
    drain_after_first_request: float
    declaration_seconds: float
    notes_in_channel: int
    distinct_measured_notes: int
    note_events_in_db: int
    server_mean_ms: float
    server_cpu_seconds: float
    client_cpu_seconds: float
    server_requests: int
    server_exit_code: int | None
    server_problems: list[str] = field(default_factory=list)

    @property
    def expected_notes(self) -> int:
        return self.options.warmup + self.options.baseline + self.options.requests

    @property
    def passed(self) -> bool:
        stats = self.load.stats
        return stats.errors == 0 and stats.p99_ms < TARGET_P99_MS

    @property
    def consistent(self) -> bool:
        return (
            self.notes_in_channel == self.expected_notes
            and self.distinct_measured_notes == self.options.requests
            and self.note_events_in_db == self.expected_notes
        )

    def table(self) -> str:
        def row(label: str, load: LoadRun, target: str, result: str) -> list[object]:
            s = load.stats
            return [
                label,
                s.requests,
                s.errors,
                fmt(s.p50_ms),
                fmt(s.p99_ms),
                fmt(s.max_ms),
                fmt(s.rps),
                target,
                result,
            ]

        rows = []
        if self.baseline is not None:
            rows.append(row("concurrency 1 (baseline)", self.baseline, "-", "-"))
        rows.append(
            row(
                f"concurrency {self.options.concurrency}",
                self.load,
                f"p99 < {TARGET_P99_MS:.0f} ms",
                "PASS" if self.passed else "FAIL",
            )
        )
        headers = ["run", "requests", "errors", "p50 ms", "p99 ms", "max ms", "requests/s"]
        return markdown_table([*headers, "target", "result"], rows)

    def figures(self) -> list[Figure]:
        s = self.load.stats
        bare = self.bare.stats if self.bare is not None else None
        return [
            Figure(
                f"`/incident note` ack p99, concurrency {self.options.concurrency}",
                f"{fmt(s.p99_ms)} ms",
                f"{fmt(bare.p99_ms)} ms (bare WSGI)" if bare else "",
                f"{s.p99_ms / bare.p99_ms:.1f}x bare" if bare and bare.p99_ms else "",
                f"p99 < {TARGET_P99_MS:.0f} ms",
                Figure.verdict(self.passed),
            ),
            Figure(
                f"`/incident note` acks per second, concurrency {self.options.concurrency}",
                f"{fmt(s.rps)}/s",
                f"{fmt(bare.rps)}/s (bare WSGI)" if bare else "",
                f"{s.rps / bare.rps:.0%} of bare" if bare and bare.rps else "",
            ),
            Figure(
                "every note recorded once (Slack and timeline)",
                "yes" if self.consistent else "no",
                target="all, once",
                result=Figure.verdict(self.consistent),
            ),
        ]

    def bare_table(self) -> str:
        if self.bare is None:
            return ""
        rows = []
        for label, load in (("Firebreak", self.load), ("bare WSGI endpoint", self.bare)):
            s = load.stats
            rows.append(
                [
                    label,
                    s.requests,
                    s.errors,
                    fmt(s.p50_ms),
                    fmt(s.p99_ms),
                    fmt(s.max_ms),
                    fmt(s.rps),
                ]
            )
        headers = ["server", "requests", "errors", "p50 ms", "p99 ms", "max ms", "requests/s"]
        return (
            "Against the baseline (the same signed requests, the same load threads and "
            "connection mode, to a bare WSGI app on waitress with Firebreak's server settings "
            "that only reads and parses the form and answers 200: `benchmarks/bare.py`; "
            "measured after Firebreak's background work went quiet):\n\n"
            + markdown_table(headers, rows)
            + "\n"
        )

    def section(self) -> Section:
        o = self.options
        connection = (
            "one keep-alive HTTP/1.1 connection per load thread"
            if o.keep_alive
            else "a fresh HTTP connection per request (urllib, `Connection: close`)"
        )
        errors = (
            ", ".join(f"{kind}: {n}" for kind, n in sorted(self.errors_by_kind.items())) or "none"
        )
        problems = (
            f"{len(self.server_problems)} warning/error lines, first: `{self.server_problems[0]}`"
            if self.server_problems
            else "no warnings or errors"
        )
        verdict = "yes" if self.consistent else "**NO**"
        wall = self.load.stats.wall_seconds
        capacity = wall * self.facts.cpus
        baseline_p50 = self.baseline.stats.p50_ms if self.baseline else float("nan")
        server_core = self.server_cpu_seconds / wall * 100
        load_note = (
            f"the server process ran at {server_core:.0f}% of one core; CPython executes"
            " Python code on one core at a time (the GIL), so as that nears 100% the requests"
            " in flight queue for the interpreter, behind each other, the background work and"
            " the in-process sandbox Slack, and the 10 ms ack sleep overlaps with that"
            " queueing instead of adding to it"
        )
        baseline = (
            f"\n- Baseline: then {o.baseline} notes from a single thread, to show the floor"
            " of one request with no queueing (the first table row)."
            if self.baseline is not None
            else ""
        )
        body = f"""\
Measured on: {self.facts.line()}

What ran: `{self.command}`

Code: {self.code}

- Server: `firebreak serve --sandbox --port 0 --threads {o.threads}` (waitress, {o.threads}
  HTTP threads) in its own process, with the in-process sandbox Slack; bolt acknowledges,
  the notes' database write and Slack post run on the 8-thread worker pool afterwards.
- Database: SQLite (WAL) in a temporary directory, migrated by `serve` at start.
- Load: {o.requests:,} signed `/incident note benchmark note N` slash commands from alice
  into `#{INCIDENT_CHANNEL}`, {o.concurrency} threads each sending sequentially, over
  {connection}. Time = from just before sending to the complete HTTP response.
- Warm-up: {o.warmup} notes first (same load), excluded from the statistics; the
  consistency checks below count them.{baseline}
- The load generator runs on the same {self.facts.cpus}-CPU machine as the server and
  competes with it for CPU, so these numbers are pessimistic for the server.

{self.table()}

{self.bare_table()}
Errors by kind: {errors}. Server-side time in the `/slack/events` handler (from
`firebreak_slack_response_seconds`, the measured requests only): mean
{fmt(self.server_mean_ms)} ms over {self.server_requests:,} requests.

CPU during the measured run ({fmt(wall, 2)} s): the server process used
{fmt(self.server_cpu_seconds, 2)} CPU-s ({fmt(server_core)}% of one core), the load
generator {fmt(self.client_cpu_seconds, 2)} CPU-s; {self.facts.cpus} CPUs give
{fmt(capacity, 2)} CPU-s.

Where the time goes: bolt (with `process_before_response=False`) runs the listener on a
thread pool and the request thread polls for the `ack()` with `time.sleep(0.01)`, so no
acknowledgement is answered in under ~10 ms: that is most of the baseline row
(p50 {fmt(baseline_p50)} ms). Under concurrent load {load_note}. The acknowledgement itself
does not touch the database, so SQLite lock waits are not on this path.

Work behind the acknowledgements:

| check | value |
|-------|-------|
| one `/incident declare`: from the request to the announcement (channel, invite, topic, summary, pin before it) | {self.declaration_seconds * 1000:.0f} ms |
| all notes posted in Slack, after the last HTTP response | {self.drain_after_last_response:.2f} s |
| all notes posted in Slack, after the first measured request | {self.drain_after_first_request:.2f} s |
| `:memo:` note messages in the incident channel (expected {self.expected_notes:,}) | {self.notes_in_channel:,} |
| distinct measured notes in the channel (expected {o.requests:,}) | {self.distinct_measured_notes:,} |
| `note_added` rows in `timeline_events` (expected {self.expected_notes:,}) | {self.note_events_in_db:,} |
| every note recorded exactly once | {verdict} |
| server log during the run | {problems} |
| server exit code after SIGTERM | {self.server_exit_code} |
"""
        return Section(KEY, TITLE, body, self.figures())


class BenchSlack(OutboundSlack):
    """Slash commands whose response_url points at the sandbox Slack, as Slack's would.

    The sandbox's control API can mint real URLs (`POST /_sandbox/response_urls`), but that
    is one more round trip inside the timed region, so each command gets a fresh unknown id
    on the real sandbox endpoint instead: a successful note never uses it; the declare's
    "Declared INC-1" reply gets a 404, which the bot ignores quietly.
    """

    def __init__(self, transport: Any, signing_secret: str, sandbox_base: str) -> None:
        super().__init__(transport, signing_secret)
        self.sandbox_base = sandbox_base

    def _response_url(self, channel: str | None, user: str) -> str:
        return f"{self.sandbox_base}/_sandbox/response/RBENCH{uuid.uuid4().hex[:12].upper()}"


def _note_texts(control: SandboxControl) -> list[str]:
    channel = control.channel(INCIDENT_CHANNEL)
    if channel is None:
        return []
    return [
        str(m.get("text", ""))
        for m in channel["messages"]
        if str(m.get("text", "")).startswith(NOTE_PREFIX)
    ]


def _count_note_events(db_path: Path) -> int:
    with sqlite3.connect(db_path) as connection:
        (count,) = connection.execute(
            "SELECT count(*) FROM timeline_events WHERE kind = 'note_added'"
        ).fetchone()
    return int(count)


def _server_histogram(server: FirebreakServer) -> tuple[float, float]:
    text = server.metrics()
    return (
        prometheus_value(text, "firebreak_slack_response_seconds_sum"),
        prometheus_value(text, "firebreak_slack_response_seconds_count"),
    )


def run(options: Options, command: str) -> Result:
    facts = MachineFacts.collect()
    secret = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="firebreak-bench-") as tmp:
        workdir = Path(tmp)
        db_path = workdir / "bench.db"
        env = {"DATABASE_URL": f"sqlite:///{db_path}", "SLACK_SIGNING_SECRET": secret}
        print(f"Starting firebreak serve --sandbox --threads {options.threads} ...", flush=True)
        server = FirebreakServer(env, workdir, threads=options.threads)
        with server:
            control = SandboxControl(server.sandbox_base)
            transport = make_transport(server.events_url, keep_alive=options.keep_alive)
            slack = BenchSlack(transport, secret, server.sandbox_base)
            general = control.create_channel("general", PEOPLE)
            declared_at = time.time()  # the sandbox stamps its calls with the same clock
            reply = slack.command(f"declare sev2 {INCIDENT_TITLE}", user=ALICE, channel=general)
            if reply.status != 200:
                raise RuntimeError(f"declare answered HTTP {reply.status}: {reply.body}")

            def set_up() -> bool:
                state = control.state()
                names = {c["name"]: c for c in state["channels"]}
                announced = bool(names.get("incidents", {}).get("messages"))
                return INCIDENT_CHANNEL in names and announced

            wait_until(set_up, timeout=60, what="the incident channel and its announcement")
            announcements = control.channel("incidents")
            assert announcements is not None
            announced_at = max(
                call["at"]
                for call in control.calls()
                if call["method"] == "chat.postMessage"
                and call["params"].get("channel") == announcements["id"]
            )
            incident = control.channel(INCIDENT_CHANNEL)
            assert incident is not None
            channel_id = str(incident["id"])

            def note(prefix: str) -> Any:
                def send(index: int) -> Reply:
                    return slack.command(
                        f"note {prefix} {index + 1}", user=ALICE, channel=channel_id
                    )

                return send

            if options.warmup:
                print(f"Warm-up: {options.warmup} notes ...", flush=True)
                run_load(
                    note("warm-up note"), options.warmup, min(options.concurrency, options.warmup)
                )
                wait_until(
                    lambda: len(_note_texts(control)) >= options.warmup,
                    timeout=120,
                    interval=0.2,
                    what="the warm-up notes",
                )
            baseline = None
            if options.baseline:
                print(f"Baseline: {options.baseline} notes at concurrency 1 ...", flush=True)
                baseline = run_load(note("baseline note"), options.baseline, 1)
                wait_until(
                    lambda: len(_note_texts(control)) >= options.warmup + options.baseline,
                    timeout=120,
                    interval=0.2,
                    what="the baseline notes",
                )
            before_sum, before_count = _server_histogram(server)
            server_cpu, client_cpu = server.cpu_seconds(), time.process_time()
            print(
                f"Measuring: {options.requests} notes at concurrency {options.concurrency} ...",
                flush=True,
            )
            load = run_load(note("benchmark note"), options.requests, options.concurrency)
            server_cpu, client_cpu = (
                server.cpu_seconds() - server_cpu,
                time.process_time() - client_cpu,
            )
            after_sum, after_count = _server_histogram(server)
            expected = options.warmup + options.baseline + options.requests
            print("Waiting for the work behind the acknowledgements ...", flush=True)
            try:
                wait_until(
                    lambda: len(_note_texts(control)) >= expected,
                    timeout=600,
                    interval=0.25,
                    what="all notes to be posted",
                )
            except TimeoutError as timeout:
                print(f"  {timeout}", flush=True)
            drained = time.perf_counter()
            texts = _note_texts(control)
            measured = {t for t in texts if "benchmark note " in t}
            note_events = _count_note_events(db_path)
            bare_load = measure_bare(options, secret, server.sandbox_base, channel_id, workdir)
        server_requests = int(after_count - before_count)
        return Result(
            options=options,
            facts=facts,
            command=command,
            load=load,
            baseline=baseline,
            bare=bare_load,
            code=code_state(),
            errors_by_kind=load.error_summary(),
            drain_after_last_response=max(0.0, drained - load.finished),
            drain_after_first_request=drained - load.started,
            declaration_seconds=announced_at - declared_at,
            notes_in_channel=len(texts),
            distinct_measured_notes=len(measured),
            note_events_in_db=note_events,
            server_mean_ms=(after_sum - before_sum) / server_requests * 1000
            if server_requests
            else float("nan"),
            server_requests=server_requests,
            server_cpu_seconds=server_cpu,
            client_cpu_seconds=client_cpu,
            server_exit_code=server.exit_code,
            server_problems=server.log_problems(),
        )


def measure_bare(
    options: Options, secret: str, sandbox_base: str, channel_id: str, workdir: Path
) -> LoadRun:
    """The same load, the same way, against `benchmarks.bare` (the baseline)."""
    print(f"Baseline: {options.requests} notes to a bare WSGI endpoint ...", flush=True)
    with BareServer(options.threads, workdir) as bare:
        transport = make_transport(f"{bare.url}/slack/events", keep_alive=options.keep_alive)
        slack = BenchSlack(transport, secret, sandbox_base)

        def send(index: int) -> Reply:
            return slack.command(f"note bare note {index + 1}", user=ALICE, channel=channel_id)

        if options.warmup:
            run_load(send, options.warmup, min(options.concurrency, options.warmup))
        return run_load(send, options.requests, options.concurrency)


def report(result: Result) -> None:
    print()
    print(f"{TITLE}  ({result.options.concurrency} concurrent, {result.facts.cpus} CPUs)")
    print(result.table())
    print(
        f"all notes posted {result.drain_after_last_response:.2f} s after the last response; "
        f"channel {result.notes_in_channel}, timeline {result.note_events_in_db} "
        f"(expected {result.expected_notes}); consistent: {result.consistent}"
    )
    if result.errors_by_kind:
        print(f"errors: {result.errors_by_kind}")
    for line in result.server_problems[:5]:
        print(f"server: {line}")
    if result.options.report is not None:
        write_section(result.section(), result.facts, result.options.report)
        print(f"wrote {result.options.report}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_slack_ack", description=__doc__.split("\n")[0]
    )
    d = Options()
    p.add_argument("--requests", type=int, default=d.requests, help="measured requests")
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="load threads")
    p.add_argument("--warmup", type=int, default=d.warmup, help="unmeasured requests first")
    p.add_argument(
        "--baseline", type=int, default=d.baseline, help="requests at concurrency 1 (0: none)"
    )
    p.add_argument("--threads", type=int, default=d.threads, help="server HTTP threads")
    p.add_argument(
        "--keep-alive",
        action="store_true",
        help="reuse one connection per load thread (default: a new connection per request)",
    )
    p.add_argument("--no-report", action="store_true", help="print only; leave REPORT.md alone")
    return p


def options_from(argv: Sequence[str] | None) -> Options:
    args = parser().parse_args(argv)
    if (
        args.requests < 1
        or args.concurrency < 1
        or args.warmup < 0
        or args.baseline < 0
        or args.threads < 1
    ):
        parser().error("--requests, --concurrency and --threads must be positive")
    return Options(
        requests=args.requests,
        concurrency=args.concurrency,
        warmup=args.warmup,
        baseline=args.baseline,
        threads=args.threads,
        keep_alive=args.keep_alive,
        report=None if args.no_report else REPORT_PATH,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = options_from(argv)
    command = " ".join([".venv/bin/python -m benchmarks.bench_slack_ack", *argv])
    result = run(options, command)
    report(result)
    return 0 if result.passed and result.consistent else 1


if __name__ == "__main__":
    sys.exit(main())
