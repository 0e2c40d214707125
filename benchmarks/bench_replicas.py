"""Benchmark: alert throughput on one and on two replicas, and a replica's memory (RSS).

Starts `firebreak serve` on a fresh PostgreSQL database (the sandbox Slack in this process,
reached over HTTP), measures the bare baseline endpoint (`benchmarks/bare.py`), then:

1. one replica: idle RSS once it leads the scheduler and has paged a warm-up group, then
   the saturated alert storm of `bench_alerts` (10,000 alerts in 100 Alertmanager webhooks
   of 100 across 50 groups, 8 senders), sampling its RSS every 50 ms for the peak;
2. a second replica on the same database, and the same storm over new groups with the
   senders spread over both replicas as a round-robin load balancer would: alerts/s of
   the pair, each replica's peak RSS.

Then it checks what must hold on replicas: every alert stored once, each group one page,
each page's DM sent once. Target (issue #11): a replica's peak RSS under the storm stays
under 150 MB. The two-replica rate has no target; it is reported against one replica and
the bare endpoint in the same run.

    .venv/bin/python -m benchmarks.bench_replicas [--database-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import secrets
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.bench_alerts import (
    PROXY_VARIABLES,
    SETTLE_QUIET,
    SLACK_TOKEN,
    USERS,
    Sender,
    config_yaml,
    count_rows,
    measure_bare,
    page_dm_times,
    settle,
    storm_bodies,
    warmup_bodies,
)
from benchmarks.bench_alerts import (
    Options as StormOptions,
)
from benchmarks.bench_paging import fresh_database, leads
from benchmarks.harness import (
    REPORT_PATH,
    Figure,
    FirebreakServer,
    LoadRun,
    MachineFacts,
    RssSampler,
    Section,
    code_state,
    fmt,
    http_text,
    markdown_table,
    process_rss_mb,
    run_load,
    wait_until,
    write_section,
)
from bot.sandbox import SlackSandbox
from bot.sandbox.outbound import Reply

KEY = "replicas"
TITLE = "Replicas: alert throughput on one and two replicas, and a replica's memory"
TARGET_RSS_MB = 150.0
DEFAULT_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Options:
    database_url: str = DEFAULT_DATABASE
    storm: StormOptions = field(default_factory=StormOptions)
    report: Path | None = REPORT_PATH


@dataclass
class Phase:
    replicas: int
    load: LoadRun
    rss_peak_mb: list[float]
    load_average: float
    alerts: int

    @property
    def rate(self) -> float:
        return self.alerts / self.load.stats.wall_seconds if self.load.stats.wall_seconds else 0.0


@dataclass
class Result:
    options: Options
    facts: MachineFacts
    command: str
    code: str
    backend: str
    bare: LoadRun
    idle_rss_mb: float
    phases: list[Phase]
    counts: dict[str, int]
    groups_opened: int
    page_dms: dict[int, list[float]]
    timed_out: bool
    server_problems: list[str]

    @property
    def bare_rate(self) -> float:
        wall = self.bare.stats.wall_seconds
        return self.options.storm.alerts / wall if wall else 0.0

    @property
    def peak_rss_mb(self) -> float:
        return max(value for phase in self.phases for value in phase.rss_peak_mb)

    @property
    def expected_alerts(self) -> int:
        storm = self.options.storm
        return storm.alerts * len(self.phases) + storm.warmup * storm.batch

    @property
    def consistent(self) -> bool:
        return (
            not self.timed_out
            and self.counts["alerts"] == self.expected_alerts
            and self.counts["duplicate_alerts"] == 0
            and self.counts["pages"] == self.groups_opened
            and len(self.page_dms) == self.groups_opened
            and all(len(times) == 1 for times in self.page_dms.values())
        )

    @property
    def passed(self) -> bool:
        return self.peak_rss_mb < TARGET_RSS_MB and self.consistent

    def figures(self) -> list[Figure]:
        one, two = self.phases[0], self.phases[-1]
        figures = [
            Figure(
                f"alerts/s, one replica ({self.backend})",
                f"{fmt(one.rate, 0)}/s",
                f"{fmt(self.bare_rate, 0)}/s (bare WSGI)",
                f"{one.rate / self.bare_rate:.1%} of bare" if self.bare_rate else "",
            ),
        ]
        if len(self.phases) > 1:
            figures.append(
                Figure(
                    f"alerts/s, two replicas ({self.backend})",
                    f"{fmt(two.rate, 0)}/s",
                    f"{fmt(one.rate, 0)}/s (one replica)",
                    f"{two.rate / one.rate:.2f}x one replica" if one.rate else "",
                )
            )
        figures += [
            Figure(
                "replica RSS: idle · peak under the storm",
                f"{fmt(self.idle_rss_mb)} MB · {fmt(self.peak_rss_mb)} MB",
                target=f"peak < {TARGET_RSS_MB:.0f} MB",
                result=Figure.verdict(self.peak_rss_mb < TARGET_RSS_MB),
            ),
            Figure(
                "alerts stored once, one page and one DM per group, on two replicas",
                "yes" if self.consistent else "no",
                target="all, once",
                result=Figure.verdict(self.consistent),
            ),
        ]
        return figures

    def phase_table(self) -> str:
        rows = [
            [
                "bare WSGI endpoint",
                "-",
                fmt(self.bare_rate, 0),
                fmt(self.bare.stats.p50_ms),
                fmt(self.bare.stats.p99_ms),
                "-",
            ]
        ]
        for phase in self.phases:
            s = phase.load.stats
            rows.append(
                [
                    f"Firebreak, {phase.replicas} replica{'s' if phase.replicas > 1 else ''}",
                    f"{phase.load_average:.1f}",
                    fmt(phase.rate, 0),
                    fmt(s.p50_ms),
                    fmt(s.p99_ms),
                    " · ".join(f"{fmt(v)} MB" for v in phase.rss_peak_mb),
                ]
            )
        headers = ["server", "load avg", "alerts/s", "response p50 ms", "response p99 ms"]
        return markdown_table([*headers, "peak RSS per replica"], rows)

    def checks_table(self) -> str:
        c = self.counts
        duplicate_dms = sum(len(t) - 1 for t in self.page_dms.values())
        rows: list[list[object]] = [
            ["alert rows (expected)", f"{c['alerts']:,} ({self.expected_alerts:,})"],
            ["alert rows stored twice", c["duplicate_alerts"]],
            ["groups opened (each pages once)", self.groups_opened],
            ["pages", c["pages"]],
            ["incidents", c["incidents"]],
            ["pages with a DM", len(self.page_dms)],
            ["duplicate page DMs", duplicate_dms],
            ["Slack work finished before the timeout", "no" if self.timed_out else "yes"],
            [
                "server logs",
                f"{len(self.server_problems)} warning/error lines"
                + (f", first: `{self.server_problems[0][:160]}`" if self.server_problems else ""),
            ],
        ]
        return markdown_table(["check", "value"], rows)

    def section(self) -> Section:
        s = self.options.storm
        body = f"""\
Measured on: {self.facts.line()}

What ran: `{self.command}`

Code: {self.code}

- Servers: `firebreak serve --port 0 --threads {s.threads}` (waitress; not `--sandbox`), each
  in its own process, on one {self.backend} database created for the run; the sandbox Slack
  runs in the benchmark's process, reached over HTTP (`SLACK_API_URL`). The config and the
  storm are `bench_alerts`' (route `bench-storm` opens an incident per group and pages
  alice; the storm limit is raised so that every group pages).
- Storm, per phase: {s.alerts:,} firing alerts in {s.webhooks} Alertmanager webhooks of
  {s.batch}, {s.groups} new groups, from {s.concurrency} sender threads in a closed loop (each
  sends again when answered), over keep-alive connections. With two replicas the senders
  send webhook i to replica i mod 2, as a round-robin load balancer does.
- Baseline: the bare WSGI endpoint (`benchmarks/bare.py`: waitress with Firebreak's server
  settings, parses the JSON, answers 202), the same bodies from the same threads.
- RSS: `VmRSS` of each server process; idle = after startup, leadership and a warm-up
  group's page; peak = the highest sample (every 50 ms) during the phase's storm.
- The load generator, the sandbox Slack, PostgreSQL and the servers share the machine's
  {self.facts.cpus} CPUs: two replicas on 2 CPUs compete with everything else, so the
  two-replica figure shows how the service scales out on this box, not on two machines.

{self.phase_table()}

{self.checks_table()}
"""
        return Section(KEY, TITLE, body, self.figures())


def run(options: Options, command: str) -> Result:
    storm = options.storm
    facts = MachineFacts.collect()
    code = code_state()
    alert_token = secrets.token_hex(16)
    starts = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    warm = warmup_bodies(storm, starts)
    with (
        tempfile.TemporaryDirectory(prefix="firebreak-bench-replicas-") as tmp,
        SlackSandbox(bot_token=SLACK_TOKEN) as sandbox,
    ):
        workdir = Path(tmp)
        print("bare WSGI endpoint ...", flush=True)
        bare = measure_bare(storm, workdir, storm_bodies(storm, starts, "bare-"), warm)
        for name, user in USERS.items():
            sandbox.add_user(user, name, email=f"{name}@example.com")
        announce = sandbox.add_channel("incidents", members=list(USERS.values()))
        config = workdir / "firebreak.yaml"
        config.write_text(
            config_yaml(announce, incident=True, today=dt.datetime.now(dt.UTC).date())
        )
        with fresh_database(options.database_url, workdir) as (database_url, backend):
            env = {
                "DATABASE_URL": database_url,
                "FIREBREAK_CONFIG": str(config),
                "FIREBREAK_ALERT_TOKEN": alert_token,
                "SLACK_API_URL": sandbox.api_url,
                "SLACK_BOT_TOKEN": SLACK_TOKEN,
                "SLACK_SIGNING_SECRET": secrets.token_hex(16),
                "NO_PROXY": "127.0.0.1,localhost",
                **{name: "" for name in PROXY_VARIABLES},
            }
            first_dir, second_dir = workdir / "a", workdir / "b"
            first_dir.mkdir()
            second_dir.mkdir()
            print(f"[{backend}] starting replica 1 ...", flush=True)
            first = FirebreakServer(env, first_dir, threads=storm.threads, sandbox=False)
            second = FirebreakServer(env, second_dir, threads=storm.threads, sandbox=False)
            phases: list[Phase] = []
            timed_out = False
            with first:
                wait_until(lambda: leads(first), timeout=60, what="the scheduler leader")
                url = f"{first.url}/alerts/alertmanager"
                run_load(Sender(url, warm, alert_token), len(warm), 1)
                wait_until(lambda: bool(page_dm_times(sandbox)), timeout=60, what="warm-up page")
                settle(sandbox, quiet=1.0, timeout=storm.timeout)
                idle = process_rss_mb(first.pid)
                phases.append(storm_phase(storm, starts, alert_token, [first], "one-"))
                timed_out |= not settle(sandbox, quiet=SETTLE_QUIET, timeout=storm.timeout)
                print(f"[{backend}] starting replica 2 ...", flush=True)
                with second:
                    wait_until(
                        lambda: "scheduler" in http_ready(second), timeout=60, what="replica 2"
                    )
                    phases.append(storm_phase(storm, starts, alert_token, [first, second], "two-"))
                    timed_out |= not settle(sandbox, quiet=SETTLE_QUIET, timeout=storm.timeout)
                problems = first.log_problems() + second.log_problems()
            counts = count_rows(database_url)
        dms = page_dm_times(sandbox)
    return Result(
        options=options,
        facts=facts,
        command=command,
        code=code,
        backend=backend,
        bare=bare,
        idle_rss_mb=idle,
        phases=phases,
        counts=counts,
        # the warm-up group and each phase's groups (a short storm opens fewer)
        groups_opened=1 + min(storm.groups, storm.webhooks) * len(phases),
        page_dms=dms,
        timed_out=timed_out,
        server_problems=problems,
    )


def http_ready(server: FirebreakServer) -> str:
    try:
        return http_text(f"{server.url}/readyz", timeout=5)
    except OSError:
        return ""


def storm_phase(
    storm: StormOptions,
    starts: str,
    token: str,
    servers: Sequence[FirebreakServer],
    prefix: str,
) -> Phase:
    bodies = storm_bodies(storm, starts, prefix)
    senders = [Sender(f"{server.url}/alerts/alertmanager", bodies, token) for server in servers]

    def send(index: int) -> Reply:
        return senders[index % len(senders)](index)

    print(f"storm over {len(servers)} replica(s): {len(bodies)} webhooks ...", flush=True)
    load_average = os.getloadavg()[0]
    samplers = [RssSampler(server.pid) for server in servers]
    with contextlib.ExitStack() as stack:
        for sampler in samplers:
            stack.enter_context(sampler)
        load = run_load(send, len(bodies), storm.concurrency)
    bad = [o for o in load.outcomes if o.status != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} webhooks not answered 200, first: {bad[0]}")
    return Phase(
        replicas=len(servers),
        load=load,
        rss_peak_mb=[sampler.peak for sampler in samplers],
        load_average=load_average,
        alerts=storm.alerts,
    )


def report(result: Result) -> None:
    print()
    print(TITLE)
    print(result.phase_table())
    print()
    print(result.checks_table())
    if result.options.report is not None:
        write_section(result.section(), result.facts, result.options.report)
        print(f"wrote {result.options.report}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_replicas", description=__doc__
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE, help="PostgreSQL URL")
    parser.add_argument("--alerts", type=int, default=StormOptions().alerts)
    parser.add_argument("--no-report", action="store_true", help="print only")
    args = parser.parse_args(argv)
    storm = StormOptions(alerts=args.alerts)
    options = Options(
        database_url=args.database_url,
        storm=storm,
        report=None if args.no_report else REPORT_PATH,
    )
    command = " ".join([".venv/bin/python -m benchmarks.bench_replicas", *argv])
    result = run(options, command)
    report(result)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
