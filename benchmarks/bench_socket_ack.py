"""Benchmark: Slack acknowledgements over Socket Mode and over HTTP, side by side, one run.

One sandbox Slack in this process; `firebreak serve` (no --sandbox: it talks to this
process's sandbox through SLACK_API_URL) started twice on its own throw-away SQLite
database, once over HTTP and once with `--socket-mode`. Each declares one incident, then
takes `/incident note ...` slash commands from C threads at once:

- HTTP: signed requests to `POST /slack/events`, timed from send to the full response;
- Socket Mode: the same commands as `slash_commands` envelopes the sandbox sends on the
  app's WebSocket, timed from the sandbox sending the envelope to it receiving the
  acknowledgement (the sandbox's own timestamps; Slack redelivers after 3 s).

Baselines in the same run, the same load: the bare WSGI endpoint (`benchmarks/bare.py`)
for HTTP, and for Socket Mode a bare WebSocket client in its own interpreter that answers
each envelope with its acknowledgement and does nothing else (`--echo-client`).
Afterwards every note must be in the incident channel and the timeline once.

    .venv/bin/python -m benchmarks.bench_socket_ack [--requests 1000] [--concurrency 20]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.bare import BareServer
from benchmarks.harness import (
    PROJECT_ROOT,
    REPORT_PATH,
    Figure,
    FirebreakServer,
    LatencyStats,
    LoadRun,
    MachineFacts,
    Section,
    code_state,
    fmt,
    make_transport,
    markdown_table,
    run_load,
    wait_until,
    write_section,
)
from bot.sandbox import SlackSandbox
from bot.sandbox.outbound import OutboundSlack, Reply, Transport, socket_transport
from bot.sandbox.socket_mode import Envelope

KEY = "socket_ack"
TITLE = "Socket Mode acknowledgement: `/incident note` over the socket and over HTTP"
BOT_TOKEN = "xoxb-bench-socket"
APP_TOKEN = "xapp-1-A0FIREBREAK-bench"
ALICE = "U0ALICE"
NOTE_PREFIX = f":memo: <@{ALICE}> added a note: "  # bot.slack.timeline.post of note_added
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")


@dataclass(frozen=True)
class Options:
    requests: int = 1000
    concurrency: int = 20
    warmup: int = 20
    threads: int = 24
    report: Path | None = REPORT_PATH


@dataclass
class ModeRun:
    """One `firebreak serve` measured in one mode."""

    mode: str  # "HTTP" or "Socket Mode"
    load: LoadRun
    sandbox_stats: LatencyStats | None  # Socket Mode: send -> ack, the sandbox's clock
    redelivered: int
    expected_notes: int
    notes_in_channel: int
    note_events_in_db: int
    server_cpu_seconds: float
    problems: list[str] = field(default_factory=list)

    @property
    def consistent(self) -> bool:
        return self.notes_in_channel == self.note_events_in_db == self.expected_notes

    @property
    def stats(self) -> LatencyStats:
        return self.sandbox_stats or self.load.stats


@dataclass
class Result:
    options: Options
    facts: MachineFacts
    command: str
    code: str
    load_average: str
    http: ModeRun
    socket: ModeRun
    bare_http: LoadRun
    bare_socket: LatencyStats

    @property
    def consistent(self) -> bool:
        return self.http.consistent and self.socket.consistent and not self.socket.redelivered

    def table(self) -> str:
        rows = []
        for label, stats in (
            ("Firebreak over Socket Mode", self.socket.stats),
            ("bare WebSocket client (ack only)", self.bare_socket),
            ("Firebreak over HTTP", self.http.stats),
            ("bare WSGI endpoint", self.bare_http.stats),
        ):
            rows.append(
                [
                    label,
                    stats.requests,
                    stats.errors,
                    fmt(stats.p50_ms),
                    fmt(stats.p99_ms),
                    fmt(stats.max_ms),
                    fmt(stats.rps),
                ]
            )
        headers = ["run", "requests", "errors", "p50 ms", "p99 ms", "max ms", "acks/s"]
        return markdown_table(headers, rows)

    def figures(self) -> list[Figure]:
        c = self.options.concurrency
        sock, http = self.socket.stats, self.http.stats
        echo, bare = self.bare_socket, self.bare_http.stats
        return [
            Figure(
                f"Socket Mode ack p50 / p99, concurrency {c}",
                f"{fmt(sock.p50_ms)} / {fmt(sock.p99_ms)} ms",
                f"{fmt(echo.p50_ms)} / {fmt(echo.p99_ms)} ms (bare WebSocket ack)",
                _ratio(sock.p99_ms, echo.p99_ms, "bare (p99)"),
            ),
            Figure(
                f"HTTP ack p50 / p99, concurrency {c}",
                f"{fmt(http.p50_ms)} / {fmt(http.p99_ms)} ms",
                f"{fmt(bare.p50_ms)} / {fmt(bare.p99_ms)} ms (bare WSGI)",
                _ratio(http.p99_ms, bare.p99_ms, "bare (p99)"),
            ),
            Figure(
                f"Socket Mode vs HTTP ack p99, concurrency {c}",
                f"{fmt(sock.p99_ms)} ms",
                f"{fmt(http.p99_ms)} ms (HTTP)",
                _ratio(sock.p99_ms, http.p99_ms, "HTTP"),
            ),
            Figure(
                "every note recorded once, no envelope redelivered",
                "yes" if self.consistent else "no",
                target="all, once",
                result=Figure.verdict(self.consistent),
            ),
        ]

    def section(self) -> Section:
        o = self.options
        checks = "\n".join(
            f"| {run.mode} | {run.expected_notes:,} | {run.notes_in_channel:,} | "
            f"{run.note_events_in_db:,} | {run.redelivered} | {fmt(run.server_cpu_seconds, 2)} | "
            f"{len(run.problems)} |"
            for run in (self.socket, self.http)
        )
        client = self.socket.load.stats
        body = f"""\
Measured on: {self.facts.line()} · load average before the run: {self.load_average}
(the machine is shared: compare the ratios, not the milliseconds)

What ran: `{self.command}`

Code: {self.code}

- One sandbox Slack in the benchmark process; `firebreak serve --port 0 --threads
  {o.threads}` in its own process, pointed at it with `SLACK_API_URL`, once over HTTP and
  once with `--socket-mode` (slack_sdk's built-in Socket Mode client through bolt's
  handler), each on its own fresh SQLite database, one after the other.
- Load: {o.warmup} warm-up notes (not measured), then {o.requests:,} `/incident note
  benchmark note N` slash commands from alice into the incident channel, {o.concurrency}
  threads each sending sequentially.
- Socket Mode: each command is a `slash_commands` envelope; the time is from the sandbox
  sending it to the sandbox receiving its acknowledgement (both stamped by the sandbox).
  The same envelopes timed around the sending call in the load thread: p50
  {fmt(client.p50_ms)} ms, p99 {fmt(client.p99_ms)} ms.
- HTTP: signed requests, a fresh connection each (urllib), from just before sending to
  the complete response.
- Baselines, after Firebreak stopped: the same signed requests to the bare WSGI endpoint
  (`benchmarks/bare.py`: waitress with Firebreak's server settings, reads and parses the
  form, answers 200), and the same envelopes to a bare WebSocket client in its own
  interpreter (`python -m benchmarks.bench_socket_ack --echo-client`: the `websockets`
  library, parses each envelope and sends its acknowledgement, nothing else).

{self.table()}

Behind the acknowledgements (the note's timeline write and its Slack post run on the worker
pool after the ack):

| mode | notes sent | `:memo:` posts in the channel | `note_added` rows | envelopes redelivered | server CPU-s (measured run) | server warnings |
|------|-----------:|-----------------------------:|------------------:|----------------------:|----------------------------:|----------------:|
{checks}

Where the time goes: in both modes bolt runs the listener on its thread pool and waits for
its `ack()` polling every 10 ms, so neither answers in under ~10 ms. Over the socket,
slack_sdk's client adds its own hops: the receiving thread queues each message, a message
thread (polling that queue) hands it to a pool of 16 workers (`SlackSocket(concurrency=16)`),
and the acknowledgement goes back on the one shared connection under a send lock; over
HTTP, waitress's {o.threads} threads each take a connection. The sandbox and the load
threads share this machine with the server.
"""
        return Section(KEY, TITLE, body, self.figures())


def _ratio(value: float, base: float, what: str) -> str:
    return f"{value / base:.1f}x {what}" if base else ""


# -- the bare WebSocket client ------------------------------------------------------------


def echo_client(api_url: str, app_token: str) -> int:
    """Connect as a Socket Mode app would and acknowledge every envelope; exit when the
    connection closes. Run in its own interpreter, as Firebreak is."""
    from slack_sdk import WebClient
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    url = WebClient(base_url=api_url).apps_connections_open(app_token=app_token)["url"]
    with connect(url, max_size=None, compression=None) as connection:
        print("connected", flush=True)
        try:
            for message in connection:
                data = json.loads(message)
                envelope_id = data.get("envelope_id")
                if envelope_id is not None:
                    connection.send(json.dumps({"envelope_id": envelope_id}))
        except ConnectionClosed:
            pass
    return 0


def measure_echo(
    options: Options, sandbox: SlackSandbox, send: Callable[[int], Reply]
) -> LatencyStats:
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_socket_ack", "--echo-client", sandbox.api_url],
        cwd=PROJECT_ROOT,
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        sandbox.socket_mode.wait_for_links(1, timeout=30)
        run_load(send, options.warmup, min(options.concurrency, options.warmup))
        measured_from = len(sandbox.socket_mode.envelopes())
        load = run_load(send, options.requests, options.concurrency)
        stats = _sandbox_stats(sandbox.socket_mode.envelopes()[measured_from:], load)
    finally:
        sandbox.socket_mode.disconnect("link_disabled")
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return stats


# -- Firebreak in one mode ------------------------------------------------------------------


class ModeServer(FirebreakServer):
    """`firebreak serve` on the benchmark's sandbox, `--socket-mode` when asked."""

    socket_mode: bool = False

    @property
    def argv(self) -> list[str]:
        extra = ["--socket-mode"] if self.socket_mode else []
        return [*super().argv, *extra]


def _sandbox_stats(envelopes: Sequence[Envelope], load: LoadRun) -> LatencyStats:
    """Send -> acknowledgement of each envelope's first attempt, by the sandbox's clock."""
    seconds = tuple(
        e.acked_at - e.attempts[0].sent_at
        for e in envelopes
        if e.acked_at is not None and e.attempts
    )
    unacked = sum(1 for e in envelopes if e.acked_at is None)
    return LatencyStats(seconds, unacked + load.stats.errors, load.stats.wall_seconds)


def _count_note_events(db_path: Path) -> int:
    with sqlite3.connect(db_path) as connection:
        (count,) = connection.execute(
            "SELECT count(*) FROM timeline_events WHERE kind = 'note_added'"
        ).fetchone()
    return int(count)


def measure_mode(
    options: Options, sandbox: SlackSandbox, general: str, workdir: Path, socket_mode: bool
) -> ModeRun:
    mode = "Socket Mode" if socket_mode else "HTTP"
    title = "socket benchmark" if socket_mode else "http benchmark"
    secret = secrets.token_hex(16)
    db_path = workdir / "bench.db"
    env = {
        "DATABASE_URL": f"sqlite:///{db_path}",
        "SLACK_API_URL": sandbox.api_url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "NO_PROXY": "127.0.0.1,localhost",
        **{name: "" for name in PROXY_VARIABLES},
        **({"SLACK_APP_TOKEN": APP_TOKEN} if socket_mode else {"SLACK_SIGNING_SECRET": secret}),
    }
    print(f"[{mode}] starting firebreak serve ...", flush=True)
    server = ModeServer(env, workdir, threads=options.threads, sandbox=False)
    server.socket_mode = socket_mode
    with server:
        transport: Transport
        if socket_mode:
            sandbox.socket_mode.wait_for_links(1, timeout=60)
            transport = socket_transport(sandbox)
        else:
            transport = make_transport(server.events_url, keep_alive=False)
        slack = OutboundSlack(transport, secret, sandbox)
        reply = slack.command(f"declare sev2 {title}", user=ALICE, channel=general)
        if reply.status != 200:
            raise RuntimeError(f"[{mode}] declare answered {reply.status}: {reply.body}")
        name = f"inc-1-{title.replace(' ', '-')}"
        wait_until(lambda: sandbox.channel_by_name(name) is not None, timeout=60, what=name)
        found = sandbox.channel_by_name(name)
        assert found is not None
        channel = found.id

        def notes() -> int:
            return sum(1 for m in sandbox.messages(channel) if m.text.startswith(NOTE_PREFIX))

        def note(prefix: str) -> Callable[[int], Reply]:
            def send(index: int) -> Reply:
                return slack.command(f"note {prefix} {index + 1}", user=ALICE, channel=channel)

            return send

        print(f"[{mode}] warm-up: {options.warmup} notes ...", flush=True)
        run_load(note("warm-up note"), options.warmup, min(options.concurrency, options.warmup))
        wait_until(lambda: notes() >= options.warmup, timeout=120, what="warm-up notes")
        measured_from = len(sandbox.socket_mode.envelopes())
        cpu = server.cpu_seconds()
        print(f"[{mode}] measuring: {options.requests} notes at {options.concurrency} ...")
        load = run_load(note("benchmark note"), options.requests, options.concurrency)
        cpu = server.cpu_seconds() - cpu
        expected = options.warmup + options.requests
        try:
            wait_until(lambda: notes() >= expected, timeout=600, interval=0.25, what="notes")
        except TimeoutError as timeout:
            print(f"  {timeout}", flush=True)
        envelopes = sandbox.socket_mode.envelopes()[measured_from:] if socket_mode else []
        sandbox_stats = _sandbox_stats(envelopes, load) if socket_mode else None
        redelivered = sum(1 for e in envelopes if len(e.attempts) > 1)
        in_channel = notes()
    run = ModeRun(
        mode=mode,
        load=load,
        sandbox_stats=sandbox_stats,
        redelivered=redelivered,
        expected_notes=expected,
        notes_in_channel=in_channel,
        note_events_in_db=_count_note_events(db_path),
        server_cpu_seconds=cpu,
        problems=server.log_problems(),
    )
    if socket_mode:  # its connection closed with the server: the next link is the echo's
        wait_until(lambda: not sandbox.socket_mode.open_links(), timeout=30, what="socket close")
    return run


def measure_bare_http(options: Options, workdir: Path, general: str) -> LoadRun:
    print(f"[bare] {options.requests} notes to the bare WSGI endpoint ...", flush=True)
    with BareServer(options.threads, workdir) as bare:
        transport = make_transport(f"{bare.url}/slack/events", keep_alive=False)
        slack = OutboundSlack(transport, secrets.token_hex(16))

        def send(index: int) -> Reply:
            return slack.command(f"note bare note {index + 1}", user=ALICE, channel=general)

        run_load(send, options.warmup, min(options.concurrency, options.warmup))
        return run_load(send, options.requests, options.concurrency)


def run(options: Options, command: str) -> Result:
    facts = MachineFacts.collect()
    load_average = " ".join(f"{x:.1f}" for x in os.getloadavg())
    with (
        tempfile.TemporaryDirectory(prefix="firebreak-bench-socket-") as tmp,
        SlackSandbox(bot_token=BOT_TOKEN, app_token=APP_TOKEN) as sandbox,
    ):
        workdir = Path(tmp)
        sandbox.add_user(ALICE, "alice", email="alice@example.com")
        general = sandbox.add_channel("general", members=[ALICE])
        runs = {}
        for socket_mode in (True, False):
            directory = workdir / ("socket" if socket_mode else "http")
            directory.mkdir()
            runs[socket_mode] = measure_mode(options, sandbox, general, directory, socket_mode)
        bare_http = measure_bare_http(options, workdir, general)
        print(f"[bare] {options.requests} envelopes to a bare WebSocket client ...", flush=True)
        echo = OutboundSlack(socket_transport(sandbox), "unused", sandbox)

        def send(index: int) -> Reply:
            return echo.command(f"note echo note {index + 1}", user=ALICE, channel=general)

        bare_socket = measure_echo(options, sandbox, send)
    return Result(
        options=options,
        facts=facts,
        command=command,
        code=code_state(),
        load_average=load_average,
        http=runs[False],
        socket=runs[True],
        bare_http=bare_http,
        bare_socket=bare_socket,
    )


def report(result: Result) -> None:
    print()
    print(f"{TITLE}  ({result.options.concurrency} concurrent, {result.facts.cpus} CPUs)")
    print(result.table())
    for run in (result.socket, result.http):
        print(
            f"{run.mode}: channel {run.notes_in_channel}, timeline {run.note_events_in_db} "
            f"(expected {run.expected_notes}), redelivered {run.redelivered}"
        )
        for line in run.problems[:5]:
            print(f"  server: {line}")
    print(f"consistent: {result.consistent}; load average before: {result.load_average}")
    if result.options.report is not None:
        write_section(result.section(), result.facts, result.options.report)
        print(f"wrote {result.options.report}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_socket_ack", description=__doc__.split("\n")[0]
    )
    d = Options()
    p.add_argument("--requests", type=int, default=d.requests, help="measured requests")
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="load threads")
    p.add_argument("--warmup", type=int, default=d.warmup, help="unmeasured requests first")
    p.add_argument("--threads", type=int, default=d.threads, help="server HTTP threads")
    p.add_argument("--no-report", action="store_true", help="print only; leave REPORT.md alone")
    p.add_argument("--echo-client", metavar="API_URL", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if args.echo_client:
        return echo_client(args.echo_client, APP_TOKEN)
    if args.requests < 1 or args.concurrency < 1 or args.warmup < 1 or args.threads < 1:
        parser().error("--requests, --concurrency, --warmup and --threads must be positive")
    options = Options(
        requests=args.requests,
        concurrency=args.concurrency,
        warmup=args.warmup,
        threads=args.threads,
        report=None if args.no_report else REPORT_PATH,
    )
    command = " ".join([".venv/bin/python -m benchmarks.bench_socket_ack", *argv])
    result = run(options, command)
    report(result)
    return 0 if result.consistent else 1


if __name__ == "__main__":
    sys.exit(main())
