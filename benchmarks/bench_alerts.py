"""Benchmark: an Alertmanager alert storm against `firebreak serve`.

Runs the sandbox Slack in this process and `firebreak serve --port 0` (not `--sandbox`)
against it, with a temporary `firebreak.yaml`: alice is always on call on schedule
`bench-primary`, which is step 1 of the escalation policy `bench` of the service
`checkout` (her page is a Slack DM); the alert route `bench-storm` sends
`service=checkout, severity=critical` alerts to that service, declares a sev2 incident per
group (as the issue's example route does; `--page-only` leaves that out) and allows
`storm: {max_pages: 1000, per: 5m}`, so every group of the storm pages (the default limit,
20 pages per 5 minutes, would hold back all groups past the 20th).

The storm: `--alerts` distinct firing alerts in Alertmanager webhook (version 4) payloads
of `--batch` alerts each, spread over `--groups` groups (webhook i belongs to group
i mod groups, so the first `groups` webhooks open the groups and the later ones add new
alerts to open groups), sent with `Authorization: Bearer $FIREBREAK_ALERT_TOKEN` to
`POST /alerts/alertmanager` from C threads at once over keep-alive connections, as
Alertmanager's HTTP client does. Bodies are encoded before the clock starts. It measures:

- alerts per second ingested: alerts / (first send to last response); a 2xx is only
  answered after the batch committed. Target on SQLite: >= 2,000 alerts/s.
- webhook response time, from just before sending to the complete response: p50, p99.
  Target: p99 < 100 ms.
- alert to page: for each group, the first time its page DM reached the sandbox Slack
  (the sandbox stamps each Web API call it answers) minus the send time of the webhook that
  opened the group (the one whose answer names the new page): p50, p99. Target: p99 < 500 ms.

Then, on the same server (the paced phase), the same storm shape on new groups, sent open
loop on a fixed schedule at each `--paced-rate` (default 2,000 and 3,000 alerts/s, i.e. 20
and 30 webhooks/s): webhook i is planned at start + i * batch / rate before anything is
sent, each group's webhooks go from one thread (at most one in flight per group, as
Alertmanager), and response time and alert to page are measured from the PLANNED send
time, so a stall counts for every webhook it holds back (no coordinated omission). The
closed-loop storm above saturates the server, so its latencies are queueing
(mean = C / webhooks per second); the latency targets are judged on the paced storm at
2,000 alerts/s, the throughput target on the saturated one.

In the same run, a bare WSGI app on the same server (waitress, same thread count, in its
own process) that reads the body, parses the JSON and answers 202 gets the same bodies from
the same threads: Firebreak's rate is reported as a fraction of it.

    .venv/bin/python -m benchmarks.bench_alerts [--alerts 10000] [--batch 100] [--groups 50]
        [--concurrency 8] [--runs 2] [--page-only] [--paced-rate 3000 ...] [--no-paced]
        [--database-url sqlite] [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

`--database-url` may be repeated: `sqlite` (the default) is a fresh SQLite file in a
temporary directory; a PostgreSQL URL names a server and a database to connect to, in
which the benchmark creates a fresh database for the run and drops it afterwards.
`--runs N` repeats the whole measurement (bare endpoint, then each database, each on a
fresh server and database) N times, to show the spread.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import func, select

from benchmarks.bare import BareServer
from benchmarks.bench_paging import fresh_database, leads
from benchmarks.harness import (
    PROJECT_ROOT,
    REPORT_PATH,
    Figure,
    FirebreakServer,
    LatencyStats,
    LoadRun,
    MachineFacts,
    Section,
    add_database_urls,
    code_state,
    fmt,
    keep_alive_transport,
    markdown_table,
    no_collector_pauses,
    percentile,
    run_load,
    wait_until,
    write_section,
)
from bot.alerts.model import fingerprint_of
from bot.alerts.records import AlertGroup, StoredAlert
from bot.db import Database
from bot.incidents.models import Incident
from bot.jobs import RECONCILE_EVERY
from bot.oncall.models import Page, PageNotification
from bot.sandbox import SlackSandbox
from bot.sandbox.outbound import Reply
from bot.sandbox.state import Call

KEY = "alerts"
TITLE = "Alerts: an Alertmanager alert storm"
TARGET_RATE = 2000.0  # alerts/s, on SQLite
TARGET_P99_MS = 100.0  # webhook response time
TARGET_PAGE_P99_MS = 500.0  # webhook sent -> page DM at Slack
SLACK_TOKEN = "xoxb-bench-token"
USERS = {"alice": "U0ALICE", "bob": "U0BOB"}
SERVICE = "checkout"
POLICY = "bench"
SCHEDULE = "bench-primary"
ROUTE = "bench-storm"
STORM = {"max_pages": 1000, "per": "5m"}
ALERTNAME = "BenchStorm"
WARMUP_GROUP = "warmup"
STARTS_EXAMPLE = "2026-01-01T00:00:00Z"
# The page DM's fallback text (bot.oncall.notify.Notification.body), second line.
DM_PAGE = re.compile(r"^Page: P-(\d+) · target \S+ · step (\d+)", re.MULTILINE)
STORM_NOTICE = "Alert storm"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")
# After the storm, Slack counts as quiet after a whole reconcile interval without a call:
# whatever the worker pool could not do, the leader's reconcile pass does then.
SETTLE_QUIET = RECONCILE_EVERY.total_seconds() + 1
SUMMARY_PREFIX = "Alerts from alertmanager: "  # bot.slack.alerts, the group's summary


@dataclass(frozen=True)
class Options:
    alerts: int = 10_000
    batch: int = 100
    groups: int = 50
    concurrency: int = 8
    threads: int = 24
    warmup: int = 2  # webhooks of a separate group before the measured load
    runs: int = 2
    incident: bool = True
    databases: tuple[str, ...] = ("sqlite",)
    timeout: float = 120.0
    report: Path | None = REPORT_PATH
    profile: bool = False
    paced_rates: tuple[float, ...] = (TARGET_RATE, 3000.0)  # alerts/s; () for none

    @property
    def webhooks(self) -> int:
        return self.alerts // self.batch


# --------------------------------------------------------------------------------------
# The storm


def _alert(group: str, number: int, starts: str) -> dict[str, Any]:
    labels = {
        "alertname": ALERTNAME,
        "service": SERVICE,
        "severity": "critical",
        "shard": group,
        "instance": f"host-{number:05d}.example.com:9100",
    }
    return {
        "status": "firing",
        "labels": labels,
        "annotations": {
            "summary": f"{ALERTNAME} on shard {group}",
            "description": f"Error rate above 5% on host-{number:05d} for 5 minutes.",
            "runbook_url": "https://runbooks.example.com/checkout/errors",
        },
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": f"http://prometheus.example.com/graph?g0.expr=errors%7Bshard%3D%22{group}%22%7D",
        "fingerprint": fingerprint_of(labels),
    }


def webhook_body(group: str, numbers: Iterable[int], starts: str) -> bytes:
    """One Alertmanager notification (webhook version 4) of the group's new alerts."""
    group_labels = {"alertname": ALERTNAME, "shard": group}
    payload = {
        "version": "4",
        "groupKey": f'{{}}/{{severity="critical"}}:{{alertname="{ALERTNAME}", shard="{group}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "firebreak",
        "groupLabels": group_labels,
        "commonLabels": {**group_labels, "service": SERVICE, "severity": "critical"},
        "commonAnnotations": {"summary": f"{ALERTNAME} on shard {group}"},
        "externalURL": "http://alertmanager.example.com:9093",
        "alerts": [_alert(group, number, starts) for number in numbers],
    }
    return json.dumps(payload).encode()


def group_name(index: int, prefix: str = "g") -> str:
    return f"{prefix}{index:03d}"


def storm_bodies(options: Options, starts: str, prefix: str = "g") -> list[bytes]:
    """Webhook i: group i mod groups, alerts i*batch .. i*batch+batch-1 (all distinct).

    `prefix` names the groups (the `shard` label): each phase of a run storms groups of
    its own, so its first `groups` webhooks open new groups and page."""
    return [
        webhook_body(
            group_name(index % options.groups, prefix),
            range(index * options.batch, (index + 1) * options.batch),
            starts,
        )
        for index in range(options.webhooks)
    ]


def paced_prefix(rate: float) -> str:
    return f"r{rate:.0f}-g"


def warmup_bodies(options: Options, starts: str) -> list[bytes]:
    first = options.alerts  # numbers the storm does not use
    return [
        webhook_body(
            WARMUP_GROUP,
            range(first + index * options.batch, first + (index + 1) * options.batch),
            starts,
        )
        for index in range(options.warmup)
    ]


# --------------------------------------------------------------------------------------
# Results


def ms_stats(values: Sequence[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    if not ordered:
        return math.nan, math.nan, math.nan
    return percentile(ordered, 50) * 1000, percentile(ordered, 99) * 1000, ordered[-1] * 1000


def load_stats(load: LoadRun, expected: int) -> LatencyStats:
    return LatencyStats(
        tuple(o.seconds for o in load.outcomes),
        sum(1 for o in load.outcomes if o.status != expected),
        load.finished - load.started,
    )


def status_summary(load: LoadRun) -> dict[str, int]:
    counts = Counter(f"HTTP {o.status}" if o.status else o.error for o in load.outcomes)
    return dict(sorted(counts.items()))


@dataclass
class Paced:
    """The storm sent on a fixed schedule (open loop) at `rate` alerts/s, on new groups."""

    rate: float  # planned alerts/s
    alerts: int
    groups: int
    outcomes: tuple[PacedOutcome, ...]
    to_page: list[float]  # seconds from the opening webhook's planned send, per group
    openers: int
    page_dms: int
    duplicate_dms: int
    groups_without_dm: int
    slack_calls: dict[str, int]
    failed_calls: int
    repeated_setups: int
    drained_after_load: float
    timed_out: bool
    server_cpu_seconds: float
    load_average: tuple[float, float, float]

    @property
    def errors(self) -> int:
        return sum(1 for o in self.outcomes if o.status != 200)

    @property
    def statuses(self) -> dict[str, int]:
        counts = Counter(f"HTTP {o.status}" if o.status else o.error for o in self.outcomes)
        return dict(sorted(counts.items()))

    @property
    def wall_seconds(self) -> float:
        """From the first planned send to the last answer."""
        return max(o.finished for o in self.outcomes) - min(o.planned for o in self.outcomes)

    @property
    def achieved(self) -> float:
        return self.alerts / self.wall_seconds if self.wall_seconds > 0 else math.nan

    @property
    def response(self) -> tuple[float, float, float]:
        """p50, p99, max ms from the planned send time."""
        return ms_stats([o.latency for o in self.outcomes])

    @property
    def service(self) -> tuple[float, float, float]:
        """p50, p99, max ms from the actual send time."""
        return ms_stats([o.service for o in self.outcomes])

    @property
    def late(self) -> int:
        """Webhooks sent 10 ms or more after their planned time (their group was busy, or
        this process was slow to wake)."""
        return sum(1 for o in self.outcomes if o.lag >= 0.010)

    @property
    def max_lag_ms(self) -> float:
        return max((o.lag for o in self.outcomes), default=math.nan) * 1000

    @property
    def page(self) -> tuple[float, float, float]:
        return ms_stats(self.to_page)

    @property
    def response_met(self) -> bool:
        return self.response[1] < TARGET_P99_MS

    @property
    def page_met(self) -> bool:
        return self.page[1] < TARGET_PAGE_P99_MS

    @property
    def inconsistent(self) -> bool:
        return bool(
            self.duplicate_dms
            or self.groups_without_dm
            or self.openers != self.groups
            or self.timed_out
        )

    def missed(self) -> list[str]:
        missed = []
        if not self.response_met:
            missed.append(f"response p99 >= {TARGET_P99_MS:.0f} ms")
        if not self.page_met:
            missed.append(f"alert-to-page p99 >= {TARGET_PAGE_P99_MS:.0f} ms")
        if self.errors:
            missed.append("non-200 answers")
        if self.inconsistent:
            missed.append("inconsistent")
        return missed


@dataclass
class Run:
    """One measured storm against one database, and the bare endpoint just before it."""

    backend: str
    number: int  # 1-based repetition
    alerts: int
    bare: LoadRun
    load: LoadRun
    statuses: dict[str, int]
    bare_statuses: dict[str, int]
    to_page: list[float]  # seconds, one per group whose page DM arrived
    openers: int  # webhooks whose answer named a new page
    stored_alerts: int
    groups: int
    suppressed_groups: int
    pages: int
    incidents: int
    notifications: int
    page_dms: int
    duplicate_dms: int
    groups_without_dm: int
    storm_notices: int
    duplicate_alert_rows: int
    slack_calls: dict[str, int]
    failed_calls: int  # Slack Web API calls answered ok: false (or an HTTP error)
    repeated_setups: int  # conversations.setTopic calls beyond one per channel
    summaries: int  # incident channels holding their group's alert summary message
    drained_after_load: float  # last Slack call after the last webhook answer, seconds
    timed_out: bool
    server_cpu_seconds: float
    client_cpu_seconds: float
    server_exit_code: int | None
    server_problems: list[str]
    profile: str = ""  # top frames of the server during the storm (`--profile`)
    paced: list[Paced] = field(default_factory=list)  # the paced phases after the storm
    load_average: tuple[float, float, float] = (math.nan, math.nan, math.nan)

    @property
    def stats(self) -> LatencyStats:
        return load_stats(self.load, 200)

    @property
    def bare_stats(self) -> LatencyStats:
        return load_stats(self.bare, 202)

    @property
    def rate(self) -> float:
        wall = self.stats.wall_seconds
        return self.alerts / wall if wall > 0 else math.nan

    @property
    def bare_rate(self) -> float:
        wall = self.bare_stats.wall_seconds
        return self.alerts / wall if wall > 0 else math.nan

    @property
    def page_p99_ms(self) -> float:
        return ms_stats(self.to_page)[1]

    @property
    def sqlite(self) -> bool:
        return self.backend == "SQLite"

    @property
    def at_target(self) -> Paced | None:
        """The paced phase at the target rate, where the latency targets are judged."""
        return next((p for p in self.paced if p.rate == TARGET_RATE), None)

    def saturated_missed(self) -> list[str]:
        """What the saturated storm missed: the throughput target (on SQLite), errors,
        anything inconsistent. Its latencies are queueing at saturation (see `notes`) and
        are reported, not judged."""
        missed = []
        if self.sqlite and not self.rate >= TARGET_RATE:
            missed.append(f"rate < {TARGET_RATE:,.0f}/s")
        if self.stats.errors:
            missed.append("non-200 answers")
        if self.inconsistent:
            missed.append("inconsistent")
        return missed

    def missed(self) -> list[str]:
        """The targets this run missed, and anything inconsistent: throughput from the
        saturated storm, latencies from the paced storm at the target rate."""
        missed = self.saturated_missed()
        paced = self.at_target
        if paced is None:
            missed.append(f"latencies at {TARGET_RATE:,.0f} alerts/s not measured")
        else:
            missed += [f"at {TARGET_RATE:,.0f}/s: {m}" for m in paced.missed()]
        return missed

    def highest_passing(self) -> Paced | None:
        """The highest paced rate whose response p99 met the target (without errors)."""
        passing = [p for p in self.paced if p.response_met and not p.errors]
        return max(passing, key=lambda p: p.rate, default=None)

    @property
    def inconsistent(self) -> bool:
        return bool(
            self.duplicate_dms
            or self.groups_without_dm
            or self.storm_notices
            or self.suppressed_groups
            or self.duplicate_alert_rows
            or self.timed_out
        )


@dataclass
class Result:
    options: Options
    facts: MachineFacts
    command: str
    runs: list[Run]
    profiled: list[Run] = field(default_factory=list)  # extra runs with py-spy attached
    code: str = ""  # the commit measured, and whether the application code had changes

    @property
    def profile(self) -> str:
        parts = [
            f"### Profile: {run.backend}\n\nAn extra run of the same storm with `py-spy record"
            f" --rate {Profiler.RATE} --function --nonblocking` attached to the server from the first"
            f" webhook until Slack went quiet (not in the tables above; it ran at"
            f" {fmt(run.rate, 0)} alerts/s, response p99 {fmt(run.stats.p99_ms)} ms, alert→page"
            f" p99 {fmt(run.page_p99_ms)} ms). {run.profile}"
            for run in self.profiled
            if run.profile
        ]
        return "\n\n".join(parts)

    @property
    def passed(self) -> bool:
        return all(not run.missed() for run in self.runs)

    def table(self) -> str:
        """The saturated storm: throughput (judged) and its latencies (at saturation)."""
        headers = [
            "database",
            "run",
            "load avg",
            "alerts/s",
            "bare alerts/s",
            "vs bare",
            "response p50 ms (saturated)",
            "response p99 ms (saturated)",
            "alert→page p50 ms (saturated)",
            "alert→page p99 ms (saturated)",
            "throughput result",
        ]
        rows = []
        for run in self.runs:
            stats = run.stats
            page_p50, page_p99, _ = ms_stats(run.to_page)
            missed = run.saturated_missed()
            rows.append(
                [
                    run.backend,
                    run.number,
                    f"{run.load_average[0]:.1f}",
                    fmt(run.rate, 0),
                    fmt(run.bare_rate, 0),
                    f"{run.rate / run.bare_rate:.1%}" if run.bare_rate > 0 else "n/a",
                    fmt(stats.p50_ms),
                    fmt(stats.p99_ms),
                    fmt(page_p50),
                    fmt(page_p99),
                    ("PASS" if run.sqlite else "no target")
                    if not missed
                    else "**FAIL**: " + ", ".join(missed),
                ]
            )
        return markdown_table(headers, rows)

    def paced_table(self) -> str:
        """The paced storms: latencies at a fixed offered rate, judged at the target rate."""
        headers = [
            "database",
            "run",
            "load avg",
            "offered alerts/s",
            "achieved alerts/s",
            "server CPU",
            "response p50 ms",
            "response p99 ms",
            "response max ms",
            "alert→page p50 ms",
            "alert→page p99 ms",
            "sent late (≥ 10 ms)",
            "result",
        ]
        rows = []
        for run in self.runs:
            for paced in run.paced:
                p50, p99, top = paced.response
                page_p50, page_p99, _ = paced.page
                missed = paced.missed()
                verdict = "PASS" if not missed else "**FAIL**: " + ", ".join(missed)
                if paced.rate != TARGET_RATE:
                    verdict = "meets targets" if not missed else "misses: " + ", ".join(missed)
                rows.append(
                    [
                        run.backend,
                        run.number,
                        f"{paced.load_average[0]:.1f}",
                        f"{paced.rate:,.0f} ({paced.rate / self.options.batch:g} webhooks/s)",
                        fmt(paced.achieved, 0),
                        f"{paced.server_cpu_seconds / paced.wall_seconds:.0%} of a core",
                        fmt(p50),
                        fmt(p99),
                        fmt(top),
                        fmt(page_p50),
                        fmt(page_p99),
                        f"{paced.late} of {len(paced.outcomes)}",
                        verdict,
                    ]
                )
        return markdown_table(headers, rows)

    def detail_table(self) -> str:
        headers = ["database", "run", "measured", "count", "p50 ms", "p99 ms", "max ms"]
        rows: list[list[object]] = []
        for run in self.runs:
            lines: list[tuple[str, Sequence[float]]] = [
                ("saturated: bare endpoint: response", run.bare_stats.latencies),
                ("saturated: Firebreak: webhook response", run.stats.latencies),
                ("saturated: Firebreak: webhook sent → page DM at Slack", run.to_page),
            ]
            for paced in run.paced:
                at = f"paced {paced.rate:,.0f}/s"
                lines += [
                    (f"{at}: response from planned send", [o.latency for o in paced.outcomes]),
                    (f"{at}: response from actual send", [o.service for o in paced.outcomes]),
                    (f"{at}: sent after planned (lag)", [o.lag for o in paced.outcomes]),
                    (f"{at}: planned send → page DM at Slack", paced.to_page),
                ]
            for label, values in lines:
                p50, p99, top = ms_stats(values)
                rows.append(
                    [run.backend, run.number, label, len(values), fmt(p50), fmt(p99), fmt(top)]
                )
        return markdown_table(headers, rows)

    def checks_table(self) -> str:
        o = self.options
        phases = 1 + len(o.paced_rates)
        groups = o.groups * phases + (1 if o.warmup else 0)
        alerts = o.alerts * phases + o.warmup * o.batch
        headers = ["check", *(f"{run.backend} #{run.number}" for run in self.runs)]
        checks: list[tuple[str, Callable[[Run], object]]] = [
            (
                "saturated: webhooks: wall time to send all",
                lambda r: f"{r.stats.wall_seconds:.2f} s",
            ),
            (
                "saturated: webhooks answered (Firebreak · bare)",
                lambda r: (
                    ", ".join(f"{k}: {v}" for k, v in r.statuses.items())
                    + " · "
                    + ", ".join(f"{k}: {v}" for k, v in r.bare_statuses.items())
                ),
            ),
            (f"saturated: webhooks that opened a group (expected {o.groups})", lambda r: r.openers),
            (
                "saturated: Slack Web API calls after the warm-up",
                lambda r: ", ".join(f"{m} {n}" for m, n in r.slack_calls.items()) or "none",
            ),
            ("saturated: Slack calls answered `ok: false`", lambda r: r.failed_calls),
            (
                "saturated: incident channels set up more than once (extra `setTopic` calls)",
                lambda r: r.repeated_setups,
            ),
            ("saturated: groups whose page DM never came", lambda r: r.groups_without_dm),
            (
                "saturated: last Slack call, after the last webhook answer",
                lambda r: (
                    f"{r.drained_after_load:.2f} s" + (" (**timed out**)" if r.timed_out else "")
                ),
            ),
            (
                "saturated: server CPU during the storm",
                lambda r: (
                    f"{r.server_cpu_seconds:.2f} CPU-s"
                    f" ({r.server_cpu_seconds / r.stats.wall_seconds:.0%} of one core)"
                ),
            ),
            (
                "saturated: this process (senders, sandbox Slack) CPU",
                lambda r: f"{r.client_cpu_seconds:.2f} CPU-s",
            ),
        ]
        for rate in o.paced_rates:
            checks += self._paced_checks(rate)
        checks += [
            (f"all phases: alert rows (expected {alerts:,})", lambda r: f"{r.stored_alerts:,}"),
            (
                "all phases: duplicate alert rows (group, fingerprint)",
                lambda r: r.duplicate_alert_rows,
            ),
            (f"all phases: alert groups (expected {groups})", lambda r: r.groups),
            ("all phases: groups held back by the storm limit", lambda r: r.suppressed_groups),
            (f"all phases: pages (expected {groups})", lambda r: r.pages),
            (
                f"all phases: incidents (expected {groups if o.incident else 0})",
                lambda r: r.incidents,
            ),
            (f"all phases: page notification rows (expected {groups})", lambda r: r.notifications),
            (f"all phases: page DMs at Slack (expected {groups})", lambda r: r.page_dms),
            ("all phases: duplicate page DMs", lambda r: r.duplicate_dms),
            ("all phases: storm notices", lambda r: r.storm_notices),
            (
                f"all phases: incident channels with their alert summary (expected"
                f" {groups if o.incident else 0})",
                lambda r: r.summaries,
            ),
            ("server exit code after SIGTERM", lambda r: r.server_exit_code),
            ("server log warnings/errors", lambda r: len(r.server_problems) or "none"),
        ]
        rows = [[label, *(get(run) for run in self.runs)] for label, get in checks]
        return markdown_table(headers, rows)

    def _paced_checks(self, rate: float) -> list[tuple[str, Callable[[Run], object]]]:
        o = self.options
        at = f"paced {rate:,.0f}/s"

        def of(get: Callable[[Paced], object]) -> Callable[[Run], object]:
            def value(run: Run) -> object:
                paced = next((p for p in run.paced if p.rate == rate), None)
                return "n/a" if paced is None else get(paced)

            return value

        return [
            (
                f"{at}: from first planned send to last answer",
                of(
                    lambda p: (
                        f"{p.wall_seconds:.2f} s (planned {o.webhooks / (rate / o.batch):.2f} s)"
                    )
                ),
            ),
            (
                f"{at}: webhooks answered",
                of(lambda p: ", ".join(f"{k}: {v}" for k, v in p.statuses.items())),
            ),
            (
                f"{at}: sent after their planned time (max lag)",
                of(lambda p: f"{p.late} ({fmt(p.max_lag_ms)} ms)"),
            ),
            (f"{at}: webhooks that opened a group (expected {o.groups})", of(lambda p: p.openers)),
            (f"{at}: page DMs at Slack (expected {o.groups})", of(lambda p: p.page_dms)),
            (f"{at}: duplicate page DMs", of(lambda p: p.duplicate_dms)),
            (f"{at}: groups whose page DM never came", of(lambda p: p.groups_without_dm)),
            (
                f"{at}: Slack Web API calls",
                of(lambda p: ", ".join(f"{m} {n}" for m, n in p.slack_calls.items()) or "none"),
            ),
            (f"{at}: Slack calls answered `ok: false`", of(lambda p: p.failed_calls)),
            (
                f"{at}: incident channels set up more than once (extra `setTopic` calls)",
                of(lambda p: p.repeated_setups),
            ),
            (
                f"{at}: last Slack call, after the last webhook answer",
                of(
                    lambda p: (
                        f"{p.drained_after_load:.2f} s"
                        + (" (**timed out**)" if p.timed_out else "")
                    )
                ),
            ),
            (
                f"{at}: server CPU while sending",
                of(
                    lambda p: (
                        f"{p.server_cpu_seconds:.2f} CPU-s"
                        f" ({p.server_cpu_seconds / p.wall_seconds:.0%} of one core)"
                    )
                ),
            ),
        ]

    def verdict(self) -> str:
        """PASS/FAIL per target: throughput from the saturated storm, latencies from the
        paced storm at the target rate; the latencies at saturation for reference."""

        def judged(ok: bool) -> str:
            return "PASS" if ok else "**FAIL**"

        at = f"{TARGET_RATE:,.0f} alerts/s"
        lines = []
        for backend in dict.fromkeys(run.backend for run in self.runs):
            runs = [run for run in self.runs if run.backend == backend]
            rates = ", ".join(fmt(run.rate, 0) for run in runs)
            if backend == "SQLite":
                rate_verdict = judged(all(r.rate >= TARGET_RATE for r in runs))
                throughput = f"target ≥ {TARGET_RATE:,.0f} on SQLite: {rate_verdict}"
            else:
                throughput = "no rate target off SQLite"
            paced = [r.at_target for r in runs]
            measured = [p for p in paced if p is not None]
            complete = len(measured) == len(runs)
            p99s = ", ".join(fmt(p.response[1]) if p else "not measured" for p in paced)
            pages = ", ".join(fmt(p.page[1]) if p else "not measured" for p in paced)
            response_ok = complete and all(p.response_met and not p.errors for p in measured)
            page_ok = complete and all(p.page_met for p in measured)
            highest = ", ".join(
                f"#{r.number}: "
                + (f"{h.rate:,.0f} alerts/s" if (h := r.highest_passing()) else "none")
                for r in runs
            )
            tried = ", ".join(f"{rate:,.0f}" for rate in self.options.paced_rates)
            lines += [
                f"- {backend}:",
                f"  - Throughput (saturated storm): {rates} alerts/s; {throughput}.",
                f"  - Webhook response p99 at {at} (paced, from the planned send): {p99s} ms;"
                f" target < {TARGET_P99_MS:.0f} ms: {judged(response_ok)}.",
                f"  - Alert→page p99 at {at} (paced, from the planned send): {pages} ms;"
                f" target < {TARGET_PAGE_P99_MS:.0f} ms: {judged(page_ok)}.",
                f"  - Highest paced rate tried ({tried} alerts/s) with response p99"
                f" < {TARGET_P99_MS:.0f} ms: {highest}.",
                f"  - At saturation (8 closed-loop senders; queueing, not a target condition):"
                f" response p99 {', '.join(fmt(r.stats.p99_ms) for r in runs)} ms, alert→page"
                f" p99 {', '.join(fmt(r.page_p99_ms) for r in runs)} ms.",
            ]
        return "\n".join(lines)

    def load_note(self) -> str:
        """The machine's load while the runs ran (other sessions share its CPUs)."""
        loads = [run.load_average[0] for run in self.runs] + [
            paced.load_average[0] for run in self.runs for paced in run.paced
        ]
        loads = [load for load in loads if not math.isnan(load)]
        if not loads:
            return "Machine load: not recorded."
        cpus = self.facts.cpus
        busy = max(loads) > cpus
        return (
            f"Machine load: 1-minute load average {min(loads):.1f}-{max(loads):.1f} at the start"
            f" of the phases (the `load avg` columns) on {cpus} CPUs"
            + (
                "; **the machine was shared** (other sessions' test suites and benchmarks ran"
                " at the same time), so the server got only part of a core and every number"
                " here is pessimistic and noisy."
                if busy
                else "."
            )
            + " The load generator and the sandbox Slack run on the same machine as the server."
        )

    def section(self) -> Section:
        o = self.options
        problems = [
            f"- {run.backend} #{run.number}: " + line[:200].replace("`", "'")
            for run in self.runs
            for line in run.server_problems[:3]
        ]
        problem_text = "\n\n" + "\n".join(problems) if problems else "none"
        incident = (
            f"`incident: {{open: true, severity: sev2}}` (one incident per group, as the issue's"
            f" example route), `storm: {{max_pages: {STORM['max_pages']}, per: {STORM['per']}}}`"
            if o.incident
            else f"no incident (page only), `storm: {{max_pages: {STORM['max_pages']},"
            f" per: {STORM['per']}}}`"
        )
        body = f"""\
Measured on: {self.facts.line()}

What ran: `{self.command}`

Code: {self.code}

- Server: `firebreak serve --port 0 --threads {o.threads}` (waitress, {o.threads} HTTP
  threads; not `--sandbox`) in its own process, with its scheduler and its 8-thread worker
  pool; Slack is the sandbox Slack in the benchmark's process, reached over HTTP through
  `SLACK_API_URL`. A fresh database per run (SQLite file in a temporary directory; on
  PostgreSQL a scratch database created for the run and dropped after), migrated by
  `serve`. The load starts once `/readyz` says the server leads the scheduler.
- Config: alice is always on call (schedule `{SCHEDULE}`: one weekly layer of her alone),
  step 1 of policy `{POLICY}` (`wait: 30m`, so nothing escalates during the run; bob is
  step 2) of service `{SERVICE}`; `notify: [slack]`, so each page is one Slack DM. Route
  `{ROUTE}`: `match: {{service: {SERVICE}}}`, `match_re: {{severity: critical|page}}`,
  {incident}. **The storm limit is raised** from the default 20 pages per 5 minutes so that
  all {o.groups} groups page; with the default, groups 21 to {o.groups} would be stored and
  grouped but page nobody (one storm notice instead).
- Storm: {o.alerts:,} distinct firing alerts in {o.webhooks} Alertmanager webhook (v4)
  payloads of {o.batch} alerts ({len(webhook_body("g000", range(o.batch), STARTS_EXAMPLE)) / 1024:.0f} KiB
  each), {o.groups} groups (`groupKey` per `shard` label): webhook i is group i mod
  {o.groups}, so the first {o.groups} open the groups (new page, new incident) and the other
  {o.webhooks - o.groups} add {o.batch} new alerts each to an open group (timeline entries,
  the summary message edited). Sent to `POST /alerts/alertmanager` with the bearer token from
  {o.concurrency} threads at once, each sending sequentially over its own keep-alive
  connection; bodies encoded beforehand. Warm-up: {o.warmup} webhooks of a separate group
  first (a page and an incident too), excluded from the statistics.
- Bare endpoint: a WSGI app on waitress (same version, {o.threads} threads, same
  `max_request_body_size` and `channel_timeout` as `bot.server.serve`) in its own process,
  which reads the body, `json.loads` it and answers 202; sent the same {o.webhooks} bodies
  from the same {o.concurrency} threads (after {o.warmup} warm-up webhooks), just before
  Firebreak's run. "vs bare" = Firebreak's alerts/s as a fraction of the bare endpoint's.
- Alerts/s = {o.alerts:,} alerts / (first send to last answer); each 2xx means the batch is
  committed. Response time = from just before sending to the complete response.
  Alert→page = per group, the sandbox Slack's timestamp of the first successful
  `chat.postMessage` carrying its page (`Page: P-<id>`, the id the opening webhook's answer
  named) minus that webhook's send time (both `time.time()` on this machine).
- Two phases per run, on the same server and database, each storming groups of its own
  (new `shard` labels: every phase opens {o.groups} new groups, pages and incidents):
  1. **Saturated** (closed loop, the throughput measurement): the storm above from
     {o.concurrency} senders that send again as soon as they are answered, so the server is
     always busy. It gives alerts/s and the ratio to the bare endpoint; its latencies are
     queueing at saturation (mean response = {o.concurrency} / webhooks answered per
     second, Little's law) and are reported, not judged.
  2. **Paced** (open loop, the latency measurement), after the saturated storm's Slack work
     went quiet: the same storm shape ({o.alerts:,} alerts, {o.webhooks} webhooks of
     {o.batch}, {o.groups} groups) sent on a fixed schedule at
     {", ".join(f"{rate:,.0f}" for rate in o.paced_rates)} alerts/s (webhook i planned at
     start + i * {o.batch} / rate, all send times planned before the first send), one thread
     per group so that a group has at most one webhook in flight, as Alertmanager sends a
     group's notifications; a webhook whose group is still busy goes late. **Response time
     and alert→page are measured from the planned send time**, so a stall counts for every
     webhook it delays (no coordinated omission). The latency targets are judged at
     {TARGET_RATE:,.0f} alerts/s ({TARGET_RATE / o.batch:g} webhooks/s); the higher rate
     shows the headroom.
- {o.runs} runs, each on a fresh server and database, to show the spread.

{self.load_note()}

Saturated storm (throughput; latencies at saturation):

{self.table()}

Paced storm (latency at a fixed offered rate; from the planned send time):

{self.paced_table()}

Targets: {TARGET_RATE:,.0f} alerts/s on SQLite (saturated storm), webhook response p99
< {TARGET_P99_MS:.0f} ms and alert→page p99 < {TARGET_PAGE_P99_MS:.0f} ms (paced storm at
{TARGET_RATE:,.0f} alerts/s).

{self.verdict()}

Details (all times in ms):

{self.detail_table()}

Checks:

{self.checks_table()}

Server log problems: {problem_text}

{self.notes()}
"""
        if self.profile:
            body += "\n" + self.profile.strip() + "\n"
        return Section(KEY, TITLE, body, self.figures())

    def figures(self) -> list[Figure]:
        """Per database: the worst run's throughput against the bare endpoint, and the
        worst run's latencies at the target rate (the headline is never the best run)."""
        figures = []
        for backend in dict.fromkeys(run.backend for run in self.runs):
            runs = [run for run in self.runs if run.backend == backend]
            slowest = min(runs, key=lambda run: run.rate)
            sqlite = slowest.sqlite
            figures.append(
                Figure(
                    f"alerts/s, saturated storm ({backend}, worst of {len(runs)})",
                    f"{fmt(slowest.rate, 0)}/s",
                    f"{fmt(slowest.bare_rate, 0)}/s (bare WSGI)",
                    f"{slowest.rate / slowest.bare_rate:.1%} of bare",
                    f">= {TARGET_RATE:,.0f}/s" if sqlite else "",
                    Figure.verdict(slowest.rate >= TARGET_RATE) if sqlite else "",
                )
            )
            paced = [run.at_target for run in runs if run.at_target is not None]
            if not paced:
                continue
            worst_response = max(paced, key=lambda p: p.response[1])
            worst_page = max(paced, key=lambda p: p.page[1])
            bare_p99 = max(run.bare_stats.p99_ms for run in runs)
            figures += [
                Figure(
                    f"webhook response p99 at {TARGET_RATE:,.0f} alerts/s ({backend})",
                    f"{fmt(worst_response.response[1])} ms",
                    f"{fmt(bare_p99)} ms (bare WSGI, saturated)",
                    f"{worst_response.response[1] / bare_p99:.0f}x bare" if bare_p99 else "",
                    f"< {TARGET_P99_MS:.0f} ms",
                    Figure.verdict(worst_response.response_met),
                ),
                Figure(
                    f"alert to page DM p99 at {TARGET_RATE:,.0f} alerts/s ({backend})",
                    f"{fmt(worst_page.page[1])} ms",
                    target=f"< {TARGET_PAGE_P99_MS:.0f} ms",
                    result=Figure.verdict(worst_page.page_met),
                ),
            ]
        return figures

    def notes(self) -> str:
        """What dominates, from the numbers above (and the profile, when there is one)."""
        per_alert = "; ".join(
            f"{run.backend} #{run.number}: {run.server_cpu_seconds / run.alerts * 1000:.2f} ms"
            for run in self.runs
        )
        rates = ", ".join(
            f"{run.backend} #{run.number}: {run.stats.requests / run.stats.wall_seconds:.0f}/s"
            for run in self.runs
        )
        floor = ", ".join(
            f"{run.backend} #{run.number}:"
            f" {self.options.concurrency * run.stats.wall_seconds / run.stats.requests * 1000:.0f} ms"
            for run in self.runs
        )
        paced = "; ".join(
            f"{run.backend} #{run.number}: offered {TARGET_RATE / run.rate:.0%} of its"
            f" saturated rate, server CPU {p.server_cpu_seconds / p.wall_seconds:.0%} of a core,"
            f" response p50/p99 {fmt(p.response[0])}/{fmt(p.response[1])} ms from the planned"
            f" send ({fmt(p.service[0])}/{fmt(p.service[1])} ms from the actual send)"
            for run in self.runs
            if (p := run.at_target) is not None
        )
        near = ", ".join(
            f"{run.backend} #{run.number}" for run in self.runs if TARGET_RATE / run.rate >= 0.8
        )
        tail = f"""
- Why the latencies of the saturated storm are long, and why they are not the targets'
  measure: its {self.options.concurrency} senders send their next webhook as soon as the
  last is answered (a closed loop), so the server is always saturated and, by Little's law,
  the mean response time is {self.options.concurrency} / (webhooks answered per second).
  Webhooks per second: {rates}; so the mean cannot be below {floor}, however fast each
  webhook is handled. (A p99 under 100 ms at that concurrency would need more than
  {self.options.concurrency / 0.1:.0f} webhooks of {self.options.batch} per second, about
  {self.options.concurrency / 0.1 * self.options.batch:,.0f} alerts/s.) That is the tail a
  sender sees only when it offers more than the server can take. At the load the issue names
  ({TARGET_RATE:,.0f} alerts/s, {TARGET_RATE / self.options.batch:g} webhooks/s) the paced
  storm measures it: {paced or "not run (`--no-paced`)"}. Queueing grows steeply as the
  offered rate nears the saturated rate (the server's capacity on this machine at that
  moment): where {TARGET_RATE:,.0f} alerts/s is 80% of it or more ({near or "none here"})
  the paced tail is mostly queueing too, and at higher offered rates a group can still be
  busy when its next webhook is due (the "sent late" column) and the Slack work trails the
  last answer by seconds (the checks).
- On PostgreSQL a batch's INSERTs were ~45 KB multi-row statements that psycopg parsed in
  Python on every execution (`_split_query`, `_query2pg_nocache`: the top GIL frames
  under `--profile`); they are now one constant `json_to_recordset` statement each
  (`bot/alerts/bulk.py`), which cut ingest's Python CPU per 100-alert batch from ~14-18 ms
  to ~5-7 ms in process. Interleaved runs before/after at the same load showed no change
  in the saturated rate (~2,400 alerts/s either way): the server's one interpreter is
  still busy at ~90% of a core with the rest of a webhook (parsing, the ORM, the Slack
  setup and posts that trail the answers)."""
        setups = sum(run.repeated_setups for run in self.runs) + sum(
            paced.repeated_setups for run in self.runs for paced in run.paced
        )
        duplicates = sum(run.duplicate_dms for run in self.runs)
        side = ""
        if duplicates:
            side += f"""
- Duplicate page DMs ({duplicates} in these runs; the checks say which run): a page DM goes
  out twice when its sender waits longer than the notification lease
  (`bot.oncall.paging.LEASE`, 10 s) for SQLite's write lock to record it sent (renewing the
  lease needs the same lock), so the leader's reconcile pass claims the still-`sending` row
  and sends it again, some 12 s after the first (a diagnostic run on 2026-11-21 saw two
  pages DMed at 1.3 s and 1.8 s, and again at 14.7 s and 14.5 s)."""
        if setups:
            side += f"""
- Repeated incident channel set-ups ({setups} in these runs, see the checks): a second
  `conversations.setTopic` on a channel. The race between the declaring worker's setup and
  the reconcile pass is closed (`set_up_at` is checked under the incident's lock), so
  these have another cause, still to find."""
        return f"""\
What changed in this revision (at 8068cac, PostgreSQL at 2,000 alerts/s: response p99
93.6-188.1 ms in six runs, four of them under 100 ms):

- The load generator measured itself too. It shares its process with the sandbox Slack,
  whose stored calls made full garbage collections of 100-160 ms every few seconds (seen
  with `gc.callbacks`); a send or a response read such a pause held up counted as the
  server's latency (the 188.1 ms run had webhooks sent up to 110 ms late). The collector is
  now paused during measured phases (`benchmarks/harness.py:no_collector_pauses`). The
  old code (8068cac), measured that way: response p99 70.8-93.2 ms, p50 43.8-48.5 ms, in
  four runs.
- Fewer round trips again, each a wait for the server's interpreter lock under load: an
  insert that may meet a twin is one `INSERT ... ON CONFLICT DO NOTHING RETURNING`
  (`bot.db.insert_unless_taken`), not three statements around a savepoint (declarations,
  pages, alert groups, deduplicated timeline facts); a new group's page skips its dedup
  look-up; its three timeline facts wait for one flush. An opening webhook sends 14
  statements on PostgreSQL, was 23 (`tests/test_alerts.py` keeps the budget). A channel
  setup reads the incident twice, not seven times, and sets each column by one
  conditional UPDATE: 32 statements with the first summary, was 49. A page DM's two
  transactions read notifications and pages in one query each: 5 statements, was 7.
- Labels and annotations that are plain as they are (nearly all) pass the parsers' checks
  in one test of the whole map, not one per entry (`integrations/_fields.py:_plain_map`):
  an opening webhook of 100 alerts on PostgreSQL, in process, went from 19.0 to 15.9 ms
  of CPU (the round-trip cuts above had taken it from 21.2 to 19.0 ms).
- Where that leaves PostgreSQL at 2,000 alerts/s: at the target in these two runs (90.9
  and 90.8 ms), not in every run before the parser change. The whole benchmark (both
  databases back to back, load average 1.3-2.0) gave 114.6 and 97.5 ms at 267e2f1 (16
  statements) and 101.6 and 96.6 ms at 5fd1590 (14 statements); isolated paced runs at
  16 statements 72.4-98.8 ms. The slowest webhooks are not those under the server's own
  garbage collections (15-30 ms, every 2-3 s, logged with `gc.callbacks`); they are
  openers whose round trips wait for the interpreter lock while the page DMs, other
  webhooks and the background Slack work run: at 2,000 alerts/s the server's one
  interpreter is busy 83-85% of the time, so the margin is thin.

Before that (at 6740f9c, on a quiet machine: 2,341-2,437 alerts/s saturated; at 2,000
alerts/s response p99 893-967 ms, alert→page p99 1.5 s):

- Why it was slow: not the database. PostgreSQL's statement log (`log_min_duration_statement
  = 0`) of the paced storm showed an opening webhook's transaction spending 17 ms (median)
  in the server and 420 ms between its own statements, 20-35 ms before each of its ~30
  round trips: each gives up the interpreter lock (GIL) and had to win it back from the
  threads doing the storm's channel setups (~45 ms of CPU per new incident, more than the
  webhook's own ~32 ms) and summary edits. Under that contention latency fed on itself:
  slower webhooks, more in flight, more contention.
- Priorities (`bot/priority.py`): requests being served and urgent or normal transactions
  are the foreground; background work (the Slack work after a webhook, the reconcile pass's
  sends and setups) waits while anything is in the foreground, at its transactions' BEGIN
  and at each Slack call, for at most 1 s per checkpoint. Alone, at 2,000 alerts/s it took
  the response p50 from ~250-490 ms to ~55-120 ms, the p99 still 0.1-0.6 s run to run.
- Fewer round trips for an opening webhook (no look-up of alerts in the group it just
  inserted, no locked re-read of the page it just inserted, no look-ups for a summary item
  or a channel that cannot exist yet, one UPDATE of the group instead of two, one query for
  a declaration's twin check): in process, an opening webhook's request fell from 33 to 25
  ms of CPU on PostgreSQL.

Before that, the paced (open-loop) phase was added, so that the latency targets are
measured at the target rate and not only at saturation; and an incident's channel setup
decides under the incident's lock whether anything is left to do (`bot/slack/channels.py`),
so the leader's reconcile pass no longer repeats a setup the declaring worker finished
while it waited (`tests/test_setup_race.py`).

Earlier still (this section's earlier runs: SQLite 2,302-2,495 alerts/s, response p99
2.6-3.0 s, alert→page p99 2.6-3.0 s; PostgreSQL 1,531-1,703 alerts/s, p99 0.87-0.97 s,
1.2-1.3 s), from profiles of the request path (cProfile, in process) and of the served storm
(`--profile`):

- The new alerts of a webhook are one multi-row INSERT returning their ids, and their
  `alert_fired` timeline facts one more (`bot/alerts/ingest.py:_insert_alerts`,
  `_record_facts`, Core statements on the mapped tables), instead of an ORM object per alert
  and per fact: function calls per webhook fell from ~93,000 to ~36,000.
- The parsers check plain ASCII values in one step and build a field's path (for its error
  message) only when it is wrong; links are cached (`integrations/_fields.py`); the JSON
  depth check walks containers only (`bot/webhooks.py:_depth`). In process, a joining
  webhook's request (parse, ingest, commit) went from ~19 ms to ~11 ms.
- SQLite writers of the process queue in order (`bot/db.py:WriteQueue`) instead of in
  SQLite's busy handler, which sleeps and retries so that newer transactions overtook older
  ones (the 2-3 s tail); page notifications go first (`urgent_writes`), the Slack work after
  a webhook lets waiting webhooks go first for up to 1 s (`background_writes`).
- A group's summary item still queued is reused instead of queuing another
  (`bot/slack/alerts.py:_summary_waiting`), and the summary reads 20 alerts and two counts
  instead of every alert of the group.

What dominates now:

- Server CPU per alert: {per_alert}.{tail}
- Alert→page = the opening webhook's own response time, then the page's own pool
  (`WorkerPool.submit_page`): claim the notification (first in SQLite's queue), the DM,
  record it sent, sharing the interpreter with the ingest and the channel setups.{side}
"""


# --------------------------------------------------------------------------------------
# Configuration


def config_yaml(announce_channel: str, *, incident: bool, today: dt.date) -> str:
    start = today - dt.timedelta(days=today.weekday() + 7)  # a Monday, a week or two ago
    route: dict[str, Any] = {
        "name": ROUTE,
        "match": {"service": SERVICE},
        "match_re": {"severity": "critical|page"},
        "service": SERVICE,
        "storm": dict(STORM),
    }
    if incident:
        route["incident"] = {"open": True, "severity": "sev2"}
    return yaml.safe_dump(
        {
            "slack": {"announce_channel": announce_channel},
            "people": {
                name: {"slack": user, "email": f"{name}@example.com", "notify": ["slack"]}
                for name, user in USERS.items()
            },
            "schedules": {
                SCHEDULE: {
                    "timezone": "UTC",
                    "layers": [
                        {
                            "name": "always-alice",
                            "users": ["alice"],
                            "rotation": "weekly",
                            "handoff": "mon 00:00",
                            "start": start.isoformat(),
                        }
                    ],
                }
            },
            "escalation_policies": {
                POLICY: {
                    "steps": [
                        {"targets": [f"schedule:{SCHEDULE}"], "wait": "30m"},
                        {"targets": ["user:bob"], "wait": "30m"},
                    ],
                    "repeat": 0,
                }
            },
            "services": {SERVICE: {"escalation_policy": POLICY}},
            "alert_routes": [route, {"name": "default", "match": {}, "service": SERVICE}],
        },
        sort_keys=False,
    )


# --------------------------------------------------------------------------------------
# Measuring


def page_dm_times(sandbox: SlackSandbox) -> dict[int, list[float]]:
    """Page id -> the sandbox's timestamps of each successful DM carrying that page."""
    found: dict[int, list[float]] = {}
    for call in sandbox.calls_to("chat.postMessage"):
        if not call.response.get("ok"):
            continue
        match = DM_PAGE.search(str(call.params.get("text", "")))
        if match is not None and match.group(2) == "1":
            found.setdefault(int(match.group(1)), []).append(call.at)
    return found


def count_rows(database_url: str) -> dict[str, int]:
    db = Database(database_url)
    try:
        with db.session_scope() as session:

            def count(model: Any, *where: Any) -> int:
                query = select(func.count()).select_from(model).where(*where)
                return int(session.scalar(query) or 0)

            duplicates = session.execute(
                select(func.count())
                .select_from(StoredAlert)
                .group_by(StoredAlert.group_id, StoredAlert.fingerprint)
                .having(func.count() > 1)
            ).all()
            return {
                "alerts": count(StoredAlert),
                "groups": count(AlertGroup),
                "suppressed": count(AlertGroup, AlertGroup.suppressed.is_(True)),
                "pages": count(Page),
                "incidents": count(Incident),
                "notifications": count(PageNotification),
                "duplicate_alerts": sum(int(n) - 1 for (n,) in duplicates),
            }
    finally:
        db.dispose()


class Sender:
    """POSTs the bodies to one URL, keeping each answer's body by index."""

    def __init__(self, url: str, bodies: Sequence[bytes], token: str | None) -> None:
        self.post = keep_alive_transport(url, timeout=60.0)
        self.bodies = bodies
        self.headers = {"Content-Type": "application/json"}
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"
        self.answers: list[str] = [""] * len(bodies)

    def __call__(self, index: int) -> Reply:
        reply = self.post(self.bodies[index], self.headers)
        self.answers[index] = reply.body
        return reply


def measure_bare(
    options: Options, workdir: Path, bodies: Sequence[bytes], warm: Sequence[bytes]
) -> LoadRun:
    with BareServer(options.threads, workdir) as bare:
        if warm:
            run_load(Sender(bare.url, warm, None), len(warm), min(options.concurrency, len(warm)))
        sender = Sender(bare.url, bodies, None)
        return run_load(sender, len(bodies), options.concurrency)


def settle(sandbox: SlackSandbox, *, quiet: float, timeout: float) -> bool:
    """Wait until the sandbox has had no Web API call for `quiet` seconds; False on timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        calls = sandbox.calls
        last = calls[-1].at if calls else 0.0
        if time.time() - last >= quiet:
            return True
        time.sleep(0.1)
    return False


@dataclass(frozen=True)
class PacedOutcome:
    """One webhook of a paced storm; times are `time.perf_counter()`."""

    index: int
    planned: float  # when the schedule said to send it
    started: float  # when it was sent (later than planned if its group was still busy)
    finished: float  # the complete answer
    status: int  # 0: no HTTP response (see `error`)
    error: str = ""

    @property
    def latency(self) -> float:
        """From the planned send time: what a sender on this schedule waits."""
        return self.finished - self.planned

    @property
    def service(self) -> float:
        return self.finished - self.started

    @property
    def lag(self) -> float:
        return self.started - self.planned


LEAD = 0.5  # seconds between planning the schedule and its first send (threads get ready)


def run_paced(sender: Sender, *, groups: int, interval: float) -> tuple[list[PacedOutcome], float]:
    """Send webhook i at `start + i * interval` (planned before the first send), open loop:
    no webhook waits for another's answer, except that a group has at most one webhook in
    flight (one thread per group, as Alertmanager sends a group's notifications one after
    the other), so one whose group is still busy goes when the group's previous webhook is
    answered, late, and its lateness counts in its latency (measured from the planned time:
    a stall cannot hide by holding back the sends behind it). Returns the outcomes by index
    and the perf_counter/time.time offset."""
    count = len(sender.bodies)
    start = time.perf_counter() + LEAD
    wall_offset = time.time() - time.perf_counter()
    planned = [start + index * interval for index in range(count)]
    outcomes: list[PacedOutcome | None] = [None] * count

    def group(first: int) -> None:
        for index in range(first, count, groups):
            wait = planned[index] - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            started = time.perf_counter()
            try:
                status, error = sender(index).status, ""
            except Exception as exc:  # a refused or dropped connection is a result too
                status, error = 0, type(exc).__name__
            outcomes[index] = PacedOutcome(
                index, planned[index], started, time.perf_counter(), status, error
            )

    with (
        no_collector_pauses(),
        ThreadPoolExecutor(max_workers=groups, thread_name_prefix="paced") as pool,
    ):
        for future in [pool.submit(group, first) for first in range(min(groups, count))]:
            future.result()
    done = [outcome for outcome in outcomes if outcome is not None]
    assert len(done) == count
    return done, wall_offset


def measure_paced(
    options: Options,
    sandbox: SlackSandbox,
    server: FirebreakServer,
    url: str,
    token: str,
    starts: str,
    rate: float,
) -> Paced:
    """The storm again, on new groups, sent on a fixed schedule at `rate` alerts/s."""
    bodies = storm_bodies(options, starts, paced_prefix(rate))
    sender = Sender(url, bodies, token)
    calls_before = len(sandbox.calls)
    load_average = os.getloadavg()
    cpu_before = server.cpu_seconds()
    outcomes, wall_offset = run_paced(sender, groups=options.groups, interval=options.batch / rate)
    server_cpu = server.cpu_seconds() - cpu_before
    openers: dict[int, float] = {}  # page id -> wall time its webhook was planned
    for outcome in outcomes:
        with contextlib.suppress(ValueError):
            page = json.loads(sender.answers[outcome.index] or "{}").get("page")
            if isinstance(page, int):
                openers[page] = outcome.planned + wall_offset
    timed_out = False
    try:
        wait_until(
            lambda: set(openers) <= set(page_dm_times(sandbox)),
            timeout=options.timeout,
            interval=0.1,
            what="page DMs",
        )
    except TimeoutError as error:
        print(f"  {error}", flush=True)
        timed_out = True
    if not settle(sandbox, quiet=SETTLE_QUIET, timeout=options.timeout):
        timed_out = True
    calls = sandbox.calls[calls_before:]
    dms = page_dm_times(sandbox)
    last_answer = max(o.finished for o in outcomes) + wall_offset
    return Paced(
        rate=rate,
        alerts=options.alerts,
        groups=options.groups,
        outcomes=tuple(outcomes),
        to_page=[min(dms[page]) - planned for page, planned in openers.items() if page in dms],
        openers=len(openers),
        page_dms=sum(len(dms.get(page, ())) for page in openers),
        duplicate_dms=sum(max(0, len(dms.get(page, ())) - 1) for page in openers),
        groups_without_dm=sum(1 for page in openers if page not in dms)
        + max(0, options.groups - len(openers)),
        slack_calls=dict(sorted(Counter(call.method for call in calls).items())),
        failed_calls=sum(1 for call in calls if not call.response.get("ok")),
        repeated_setups=repeated_setups(calls),
        drained_after_load=max((call.at for call in calls), default=math.nan) - last_answer,
        timed_out=timed_out,
        server_cpu_seconds=server_cpu,
        load_average=load_average,
    )


def repeated_setups(calls: Iterable[Call]) -> int:
    """`conversations.setTopic` calls beyond one per channel."""
    topics = Counter(
        call.params.get("channel") for call in calls if call.method == "conversations.setTopic"
    )
    return sum(n - 1 for n in topics.values())


def run_one(options: Options, spec: str, number: int, *, profiled: bool = False) -> Run:
    alert_token = secrets.token_hex(16)
    starts = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    bodies = storm_bodies(options, starts)
    warm = warmup_bodies(options, starts)
    with (
        tempfile.TemporaryDirectory(prefix="firebreak-bench-alerts-") as tmp,
        SlackSandbox(bot_token=SLACK_TOKEN) as sandbox,
    ):
        workdir = Path(tmp)
        print(f"[run {number}] bare WSGI endpoint: {len(bodies)} webhooks ...", flush=True)
        bare = measure_bare(options, workdir, bodies, warm)
        for name, user in USERS.items():
            sandbox.add_user(user, name, email=f"{name}@example.com")
        announce = sandbox.add_channel("incidents", members=list(USERS.values()))
        config = workdir / "firebreak.yaml"
        config.write_text(
            config_yaml(announce, incident=options.incident, today=dt.datetime.now(dt.UTC).date())
        )
        with fresh_database(spec, workdir) as (database_url, backend):
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
            print(f"[run {number}] [{backend}] starting firebreak serve ...", flush=True)
            server = FirebreakServer(env, workdir, threads=options.threads, sandbox=False)
            with server:
                wait_until(lambda: leads(server), timeout=60, what="the scheduler leader")
                url = f"{server.url}/alerts/alertmanager"
                if warm:
                    warm_sender = Sender(url, warm, alert_token)
                    warm_load = run_load(
                        warm_sender, len(warm), min(options.concurrency, len(warm))
                    )
                    if any(o.status != 200 for o in warm_load.outcomes):
                        raise RuntimeError(
                            f"warm-up webhooks answered {status_summary(warm_load)}:"
                            f" {warm_sender.answers[0][:300]}\n{server.log_tail()}"
                        )
                    wait_until(
                        lambda: bool(page_dm_times(sandbox)),
                        timeout=options.timeout,
                        what="the warm-up page DM",
                    )
                    settle(sandbox, quiet=1.0, timeout=options.timeout)
                warm_calls = len(sandbox.calls)
                print(
                    f"[run {number}] [{backend}] {len(bodies)} webhooks x {options.batch} alerts"
                    f" from {options.concurrency} threads ...",
                    flush=True,
                )
                sender = Sender(url, bodies, alert_token)
                profilers = (
                    [
                        Profiler(server.pid, workdir / f"profile-{mode}.txt", gil=mode == "gil")
                        for mode in ("gil", "busy")
                    ]
                    if profiled
                    else []
                )
                load_average = os.getloadavg()
                cpu_before, client_before = server.cpu_seconds(), time.process_time()
                wall_offset = time.time() - time.perf_counter()
                load = run_load(sender, len(bodies), options.concurrency)
                server_cpu = server.cpu_seconds() - cpu_before
                client_cpu = time.process_time() - client_before

                openers: dict[int, float] = {}  # page id -> wall time its webhook was sent
                for outcome in load.outcomes:
                    with contextlib.suppress(ValueError):
                        page = json.loads(sender.answers[outcome.index] or "{}").get("page")
                        if isinstance(page, int):
                            openers[page] = outcome.started + wall_offset

                def all_paged() -> bool:
                    return set(openers) <= set(page_dm_times(sandbox))

                timed_out = False
                try:
                    wait_until(all_paged, timeout=options.timeout, interval=0.1, what="page DMs")
                except TimeoutError as error:
                    print(f"  {error}", flush=True)
                    timed_out = True
                if not settle(sandbox, quiet=SETTLE_QUIET, timeout=options.timeout):
                    timed_out = True
                calls = sandbox.calls[warm_calls:]
                last_call = max((call.at for call in calls), default=math.nan)
                profile = "\n\n".join(
                    profile_tables(profiler.stop(), gil=profiler is profilers[0])
                    for profiler in profilers
                )
                paced = []
                for rate in () if profiled else options.paced_rates:
                    print(
                        f"[run {number}] [{backend}] paced: {len(bodies)} webhooks x"
                        f" {options.batch} alerts at {rate:,.0f} alerts/s"
                        f" ({rate / options.batch:g} webhooks/s) ...",
                        flush=True,
                    )
                    paced.append(
                        measure_paced(options, sandbox, server, url, alert_token, starts, rate)
                    )
            counts = count_rows(database_url)
        dms = page_dm_times(sandbox)
        summaries = sum(
            1
            for channel in sandbox.snapshot()["channels"]
            if not channel.get("is_im")
            and any(str(m.get("text", "")).startswith(SUMMARY_PREFIX) for m in channel["messages"])
        )
        storm_notices = sum(1 for m in sandbox.messages(announce) if STORM_NOTICE in m.text)
    return Run(
        backend=backend,
        number=number,
        alerts=options.alerts,
        bare=bare,
        load=load,
        statuses=status_summary(load),
        bare_statuses=status_summary(bare),
        to_page=[min(dms[page]) - sent for page, sent in openers.items() if page in dms],
        openers=len(openers),
        stored_alerts=counts["alerts"],
        groups=counts["groups"],
        suppressed_groups=counts["suppressed"],
        pages=counts["pages"],
        incidents=counts["incidents"],
        notifications=counts["notifications"],
        page_dms=sum(len(times) for times in dms.values()),
        duplicate_dms=sum(len(times) - 1 for times in dms.values()),
        groups_without_dm=sum(1 for page in openers if page not in dms)
        + max(0, options.groups - len(openers)),
        storm_notices=storm_notices,
        duplicate_alert_rows=counts["duplicate_alerts"],
        slack_calls=dict(sorted(Counter(call.method for call in calls).items())),
        failed_calls=sum(1 for call in calls if not call.response.get("ok")),
        repeated_setups=repeated_setups(calls),
        drained_after_load=last_call - (load.finished + wall_offset),
        timed_out=timed_out,
        server_cpu_seconds=server_cpu,
        client_cpu_seconds=client_cpu,
        server_exit_code=server.exit_code,
        server_problems=server.log_problems(),
        summaries=summaries,
        profile=profile,
        paced=paced,
        load_average=load_average,
    )


# --------------------------------------------------------------------------------------
# Profiling the server (optional: `--profile`, needs py-spy)


def py_spy_path() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """`py-spy record` attached to the server process, as collapsed stacks (`--format raw`,
    aggregated by function): with `gil`, only the thread holding the GIL (where the
    interpreter's one core goes); without, every thread that is not idle (which includes
    threads waiting inside C calls, such as SQLite's busy wait for the write lock)."""

    RATE = 100  # samples per second; two samplers at once on a small machine

    def __init__(self, pid: int, output: Path, *, gil: bool) -> None:
        tool = py_spy_path()
        if tool is None:
            raise RuntimeError("--profile needs py-spy (pip install py-spy)")
        self.output = output
        argv = [tool, "record", "--pid", str(pid), "--rate", str(self.RATE), "--format", "raw"]
        argv += ["--function", "--nonblocking", "--output", str(output)]
        argv += ["--gil"] if gil else []
        self.log = output.with_suffix(".log").open("w")
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        time.sleep(1.0)  # py-spy attaches before the first sample

    def stop(self) -> list[tuple[list[str], int]]:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        stacks = []
        with contextlib.suppress(OSError):
            for line in self.output.read_text().splitlines():
                stack, _, count = line.rpartition(" ")
                if stack and count.isdigit():
                    stacks.append((stack.split(";"), int(count)))
        return stacks


_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """`function (path:line)` as `function (short path)`: the project's files relative to
    its root, libraries from their package directory."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = match.group("file")
    for marker in ("site-packages/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "lib/python3.":
                path = "stdlib/" + path.split("/", 1)[-1]
            break
    else:
        with contextlib.suppress(ValueError):
            path = str(Path(path).relative_to(PROJECT_ROOT))
    return f"{match.group('function')} ({path})"


def profile_tables(stacks: list[tuple[list[str], int]], *, gil: bool, top: int = 12) -> str:
    """Top frames by own samples and Firebreak's frames by samples with them on the stack."""
    total = sum(count for _, count in stacks)
    what = (
        "the thread holding the GIL (`--gil`: where the CPU goes)"
        if gil
        else "every busy thread (including waits inside C calls, e.g. for SQLite's lock)"
    )
    if not total:
        return f"Sampling {what}: py-spy recorded no samples."
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for stack, count in stacks:
        frames = [frame_name(f) for f in stack if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count

    def table(counter: Counter[str], keep: Callable[[str], bool]) -> str:
        rows = [
            [f"`{name}`", count, f"{count / total:.1%}"]
            for name, count in counter.most_common()
            if keep(name)
        ][:top]
        return markdown_table(["frame", "samples", "share"], rows)

    project = re.compile(r"\((bot|integrations)/")
    return (
        f"Sampling {what}: {total:,} samples.\n\n"
        f"Own time (the frame itself was running), top {top}:\n\n"
        f"{table(own, lambda _name: True)}\n\n"
        f"Firebreak's frames by time on the stack (the frame or what it called was"
        f" running), top {top}:\n\n"
        f"{table(inclusive, lambda name: bool(project.search(name)))}"
    )


# --------------------------------------------------------------------------------------
# Running and reporting


def run(options: Options, command: str) -> Result:
    facts = MachineFacts.collect()
    code = code_state()
    measured: list[tuple[int, int, Run]] = []
    for number in range(1, options.runs + 1):
        for index, spec in enumerate(options.databases):
            measured.append((index, number, run_one(options, spec, number)))
    measured.sort(key=lambda item: (item[0], item[1]))
    profiled = []
    if options.profile:
        for spec in options.databases:
            profiled.append(run_one(options, spec, 0, profiled=True))
    return Result(options, facts, command, [item[2] for item in measured], profiled, code)


def report(result: Result) -> None:
    o = result.options
    print()
    print(f"{TITLE}  ({o.alerts:,} alerts, {o.webhooks} webhooks of {o.batch}, {o.groups} groups)")
    print(result.table())
    print()
    print(result.paced_table())
    print()
    print(result.load_note())
    print()
    print(result.verdict())
    print()
    print(result.detail_table())
    print()
    print(result.checks_table())
    for run_ in result.runs:
        for line in run_.server_problems[:5]:
            print(f"server ({run_.backend} #{run_.number}): {line}")
    if result.profile:
        print()
        print(result.profile)
    if o.report is not None:
        write_section(result.section(), result.facts, o.report)
        print(f"wrote {o.report}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_alerts", description=__doc__.split("\n")[0]
    )
    d = Options()
    p.add_argument("--alerts", type=int, default=d.alerts, help="alerts in the storm")
    p.add_argument("--batch", type=int, default=d.batch, help="alerts per webhook")
    p.add_argument("--groups", type=int, default=d.groups, help="Alertmanager groups")
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="sender threads")
    p.add_argument("--threads", type=int, default=d.threads, help="server HTTP threads")
    p.add_argument("--warmup", type=int, default=d.warmup, help="unmeasured webhooks first")
    p.add_argument("--runs", type=int, default=d.runs, help="repetitions of the whole run")
    p.add_argument(
        "--page-only", action="store_true", help="the route pages only (no incident per group)"
    )
    add_database_urls(p)
    p.add_argument(
        "--timeout", type=float, default=d.timeout, help="seconds to wait for the page DMs"
    )
    p.add_argument(
        "--paced-rate",
        type=float,
        action="append",
        dest="paced_rates",
        metavar="ALERTS_PER_S",
        help=f"offered rate of a paced phase (repeatable; default {', '.join(f'{r:g}' for r in d.paced_rates)});"
        f" {TARGET_RATE:g}, where the latency targets are judged, is always included",
    )
    p.add_argument("--no-paced", action="store_true", help="only the saturated storm")
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample the server with py-spy during each storm; top frames go in the report",
    )
    p.add_argument("--no-report", action="store_true", help="print only; leave REPORT.md alone")
    return p


def options_from(argv: Sequence[str] | None) -> Options:
    args = parser().parse_args(argv)
    positive = (args.alerts, args.batch, args.groups, args.concurrency, args.threads, args.runs)
    if min(positive) < 1 or args.warmup < 0:
        parser().error("--alerts, --batch, --groups, --concurrency, --threads, --runs must be > 0")
    if args.alerts % args.batch:
        parser().error("--alerts must be a multiple of --batch")
    if args.alerts // args.batch < args.groups:
        parser().error("there must be at least one webhook per group")
    if any(rate <= 0 for rate in args.paced_rates or ()):
        parser().error("--paced-rate must be > 0 alerts/s")
    paced_rates: tuple[float, ...] = ()
    if not args.no_paced:
        paced_rates = tuple(sorted({TARGET_RATE, *(args.paced_rates or Options().paced_rates)}))
    options = Options(
        alerts=args.alerts,
        batch=args.batch,
        groups=args.groups,
        concurrency=args.concurrency,
        threads=args.threads,
        warmup=args.warmup,
        runs=args.runs,
        incident=not args.page_only,
        databases=tuple(args.databases or Options().databases),
        timeout=args.timeout,
        report=None if args.no_report else REPORT_PATH,
        profile=args.profile,
        paced_rates=paced_rates,
    )
    return options


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = options_from(argv)
    command = " ".join([".venv/bin/python -m benchmarks.bench_alerts", *argv])
    result = run(options, command)
    report(result)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
