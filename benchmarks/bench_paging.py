"""Benchmark: escalation timing with many pages escalating at once.

Runs the sandbox Slack in this process and `firebreak serve --port 0` (not `--sandbox`)
against it, with a temporary `firebreak.yaml`: people alice, bob and carol (notified by
Slack DM) and an escalation policy `bench` of three steps (alice, then bob, then carol),
each waiting `--wait` seconds, no repeats. Fires `--pages` signed `/page policy:bench ...`
slash commands from C threads at once; the first step runs in the request's worker, in the
transaction that records the page; the later steps and the exhaustion are one-shot jobs of
the scheduler leader (APScheduler with an in-memory job store, rebuilt from the database by
the reconcile pass). When every page is exhausted (or a timeout), it measures from the
database and the DMs the sandbox received:

- lateness of each escalation beyond its due time: step k+1 ran at its notification's
  `created_at`, due at step k's `created_at` + wait; the exhaustion at `exhausted_at`, due
  at step 3's `created_at` + wait. Target: p99 < 1 s.
- duplicates: notification rows per (page, cycle, step, person, channel) beyond one, and
  DMs per (page, step, person) beyond one. Target: 0.
- lost steps: a page's step without a sent notification or without its DM, and pages not
  exhausted. Target: 0.

    .venv/bin/python -m benchmarks.bench_paging [--pages 200] [--wait 2]
        [--database-url sqlite] [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

`--database-url` may be repeated: `sqlite` (the default) is a fresh SQLite file in a
temporary directory; a PostgreSQL URL names a server and a database to connect to, in
which the benchmark creates a fresh database for the run and drops it afterwards.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from benchmarks.harness import (
    REPORT_PATH,
    FirebreakServer,
    LoadRun,
    MachineFacts,
    Section,
    fmt,
    http_text,
    markdown_table,
    percentile,
    run_load,
    wait_until,
    write_section,
)
from bot.db import Database, normalise_url
from bot.oncall.models import Page, PageNotification
from bot.sandbox import SlackSandbox
from bot.sandbox.outbound import OutboundSlack, Reply, http_transport

KEY = "paging"
TITLE = "Paging: escalation timing with many pages at once"
TARGET_P99_MS = 1000.0
TOKEN = "xoxb-bench-token"
USERS = {"alice": "U0ALICE", "bob": "U0BOB", "carol": "U0CAROL"}
STEP_PEOPLE = ("alice", "bob", "carol")  # step 1, 2, 3 of the policy
POLICY = "bench"
MESSAGE = "bench page"
EXHAUSTED_PREFIX = ":rotating_light: Nobody acknowledged page"
# The DM's fallback text (bot.oncall.notify.Notification.body).
DM_PAGE = re.compile(r"^Page: P-(\d+) · target \S+ · step (\d+)", re.MULTILINE)
DM_MESSAGE = re.compile(rf"^You are paged: {MESSAGE} (\d+)$", re.MULTILINE)
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")


@dataclass(frozen=True)
class Options:
    pages: int = 200
    wait: float = 2.0
    concurrency: int = 20
    threads: int = 24
    databases: tuple[str, ...] = ("sqlite",)
    timeout: float = 180.0
    report: Path | None = REPORT_PATH


@dataclass
class Lateness:
    """Seconds beyond the due time, by kind (`step 2`, `step 3`, `exhausted`)."""

    by_kind: dict[str, list[float]] = field(default_factory=dict)

    def add(self, kind: str, seconds: float) -> None:
        self.by_kind.setdefault(kind, []).append(seconds)

    def all(self) -> list[float]:
        return sorted(v for values in self.by_kind.values() for v in values)

    def kind(self, kind: str) -> list[float]:
        return sorted(self.by_kind.get(kind, []))


def stats_ms(values: Sequence[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    if not ordered:
        return math.nan, math.nan, math.nan
    return (percentile(ordered, 50) * 1000, percentile(ordered, 99) * 1000, ordered[-1] * 1000)


@dataclass
class Run:
    """One run against one database."""

    backend: str
    pages: int
    trigger: LoadRun
    trigger_errors: dict[str, int]
    first_dm: list[float]  # seconds from sending `/page` to alice's DM
    lateness: Lateness  # when the step ran (notification created_at / exhausted_at)
    delivery: Lateness  # when the DM went out (notification sent_at)
    pages_in_db: int
    exhausted: int
    notifications: int
    duplicate_rows: int
    dms: int
    duplicate_dms: int
    unexpected_dms: int
    missing_rows: int
    unsent_rows: int
    missing_dms: int
    not_exhausted: int
    announcements: int
    still_due: int  # pages still waiting for an escalation step (each would hold a job)
    due_window: float  # seconds between the first and the last step 2 falling due
    drained_after_trigger: float  # last page exhausted, seconds after the last `/page` reply
    timed_out: bool
    server_cpu_seconds: float
    server_exit_code: int | None
    server_problems: list[str]

    @property
    def duplicates(self) -> int:
        return self.duplicate_rows + self.duplicate_dms + self.unexpected_dms

    @property
    def lost(self) -> int:
        return self.missing_rows + self.unsent_rows + self.missing_dms + self.not_exhausted

    @property
    def p99_ms(self) -> float:
        return stats_ms(self.lateness.all())[1]

    @property
    def passed(self) -> bool:
        return (
            self.p99_ms < TARGET_P99_MS
            and self.duplicates == 0
            and self.lost == 0
            and not self.trigger_errors
        )


@dataclass
class Result:
    options: Options
    facts: MachineFacts
    command: str
    runs: list[Run]

    @property
    def passed(self) -> bool:
        return all(run.passed for run in self.runs)

    def table(self) -> str:
        headers = [
            "database",
            "pages",
            "escalations",
            "p50 late ms",
            "p99 late ms",
            "max late ms",
            "duplicates",
            "lost",
            "target",
            "result",
        ]
        rows = []
        for run in self.runs:
            p50, p99, top = stats_ms(run.lateness.all())
            rows.append(
                [
                    run.backend,
                    run.pages,
                    len(run.lateness.all()),
                    fmt(p50),
                    fmt(p99),
                    fmt(top),
                    run.duplicates,
                    run.lost,
                    "p99 < 1 s, 0 dup, 0 lost",
                    "PASS" if run.passed else "**FAIL**",
                ]
            )
        return markdown_table(headers, rows)

    def detail_table(self) -> str:
        headers = ["database", "measured", "count", "p50 ms", "p99 ms", "max ms"]
        rows: list[list[object]] = []
        for run in self.runs:
            trigger = run.trigger.stats
            lines: list[tuple[str, list[float]]] = [
                ("`/page` HTTP acknowledgement", list(trigger.latencies)),
                ("`/page` sent → step 1 DM (alice)", run.first_dm),
                *(
                    (f"{kind} ran, beyond due", run.lateness.kind(kind))
                    for kind in ("step 2", "step 3", "exhausted")
                ),
                *(
                    (f"{kind} DM sent, beyond due", run.delivery.kind(kind))
                    for kind in ("step 2", "step 3")
                ),
            ]
            for label, values in lines:
                p50, p99, top = stats_ms(values)
                rows.append([run.backend, label, len(values), fmt(p50), fmt(p99), fmt(top)])
        return markdown_table(headers, rows)

    def checks_table(self) -> str:
        headers = ["check", *(run.backend for run in self.runs)]
        checks: list[tuple[str, Any]] = [
            (
                "`/page` requests: wall time to send all",
                lambda r: f"{r.trigger.stats.wall_seconds:.2f} s",
            ),
            (
                "step 2 due times spread over (first to last)",
                lambda r: f"{r.due_window:.2f} s",
            ),
            ("`/page` requests answered non-200", lambda r: sum(r.trigger_errors.values())),
            ("pages in the database", lambda r: r.pages_in_db),
            ("pages exhausted", lambda r: r.exhausted),
            ("notification rows (expected 3 per page)", lambda r: r.notifications),
            ("duplicate notification rows", lambda r: r.duplicate_rows),
            ("DMs received by the sandbox (expected 3 per page)", lambda r: r.dms),
            ("duplicate DMs (same page, step, person)", lambda r: r.duplicate_dms),
            ("DMs to the wrong person for their step", lambda r: r.unexpected_dms),
            ("steps without a notification row", lambda r: r.missing_rows),
            ("notification rows not `sent`", lambda r: r.unsent_rows),
            ("steps without their DM", lambda r: r.missing_dms),
            ("pages not exhausted", lambda r: r.not_exhausted),
            (
                "'Nobody acknowledged' announcements (expected 1 per page)",
                lambda r: r.announcements,
            ),
            ("pages still due an escalation step (a `page-<id>` job)", lambda r: r.still_due),
            (
                "last page exhausted, after the last `/page` reply",
                lambda r: (
                    f"{r.drained_after_trigger:.2f} s" + (" (**timed out**)" if r.timed_out else "")
                ),
            ),
            ("server CPU during the run", lambda r: f"{r.server_cpu_seconds:.2f} CPU-s"),
            ("server exit code after SIGTERM", lambda r: r.server_exit_code),
            (
                "server log warnings/errors",
                lambda r: len(r.server_problems) or "none",
            ),
        ]
        rows = [[label, *(get(run) for run in self.runs)] for label, get in checks]
        return markdown_table(headers, rows)

    def section(self) -> Section:
        o = self.options
        problems = [
            f"- {run.backend}: " + line[:200].replace("`", "'")
            for run in self.runs
            for line in run.server_problems[:3]
        ]
        problem_text = "\n\n" + "\n".join(problems) if problems else "none"
        wait = f"{o.wait:g}"
        body = f"""\
Measured on: {self.facts.line()}

What ran: `{self.command}`

- Server: `firebreak serve --port 0 --threads {o.threads}` (not `--sandbox`) in its own
  process, leading the scheduler (APScheduler, 8 executor threads, in-memory job store
  rebuilt from the database) and with its 8-thread worker pool; Slack is the sandbox Slack
  in the benchmark's process, reached over HTTP through `SLACK_API_URL`. The load starts
  once `/readyz` says the server leads the scheduler (on PostgreSQL, after the election's
  takeover delay).
- Config: people alice, bob, carol (`notify: [slack]`); policy `{POLICY}`: user:alice,
  user:bob, user:carol, each `wait: {wait}s`, `repeat: 0`.
- Load: {o.pages} signed `/page policy:{POLICY} {MESSAGE} N` slash commands from
  {o.concurrency} threads at once (each sending sequentially, a fresh connection each).
  Step 1 runs in the request's worker, in the page's own transaction; steps 2 and 3 and
  the exhaustion are one-shot jobs `page-<id>-g<generation>`, each due {wait} s after the
  step before it.
- Lateness = how long after its due time an escalation ran: for steps 2 and 3 the
  notification row's `created_at` minus (the previous step's `created_at` + {wait} s); for
  the exhaustion `exhausted_at` minus (step 3's `created_at` + {wait} s). The table pools
  the three ({o.pages} each). "DM sent" uses `sent_at` instead: when the person was paged.
- Duplicates: notification rows per (page, cycle, step, person, channel) beyond one (the
  database forbids them), DMs the sandbox received per (page, step, person) beyond one,
  and DMs to someone other than the step's person. Lost: steps without a notification row,
  rows not `sent`, steps without their DM, pages not exhausted.
- The load generator and the sandbox Slack run on the same {self.facts.cpus}-CPU machine
  as the server and compete with it for CPU.

{self.table()}

Details (all times in ms):

{self.detail_table()}

Checks:

{self.checks_table()}

Server log problems: {problem_text}
"""
        return Section(KEY, TITLE, body + "\n" + self.notes())

    def notes(self) -> str:
        o = self.options
        spread = "; ".join(
            f"{run.backend}: sent in {run.trigger.stats.wall_seconds:.2f} s, step 2 due over"
            f" {run.due_window:.2f} s, first DM p99 {fmt(stats_ms(run.first_dm)[1])} ms"
            for run in self.runs
        )
        return f"""\
Notes:

- How simultaneous: the {o.pages} `/page` commands are acknowledged at once, but step 1
  runs on the server's 8-thread worker pool (a transaction, the Slack DM, another
  transaction per page), so the pages reach step 1, and so fall due for step 2, spread
  over a second or two rather than in one instant ({spread}). The scheduler sees the same
  spread at steps 2 and 3; the time from `/page` to alice's DM is that worker-pool queue.
- "ran" is the instant the job read the clock, before its transaction took the database
  lock (SQLite `BEGIN IMMEDIATE`, PostgreSQL `FOR UPDATE`); "DM sent" (`sent_at`) comes
  after the lock waits, the claim transaction and the Slack call, so it is what the person
  sees. Both are far inside the target here.
- Heavier loads: run with `--pages 1000` to see where this machine stops meeting the
  target; the server is then bound by one CPython core (per escalation it runs several
  transactions and an HTTP call to Slack), so profile before changing anything.
- The one server log warning is bolt's "As you gave `client` as well, `token` will be
  unused." at start-up, harmless.
"""


# --------------------------------------------------------------------------------------
# The database


@contextmanager
def fresh_database(spec: str, workdir: Path) -> Iterator[tuple[str, str]]:
    """(url, label) of an empty database for one run; a PostgreSQL one is dropped after."""
    if spec == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}", "SQLite"
        return
    url = make_url(normalise_url(spec))
    if url.get_backend_name() != "postgresql":
        yield spec, url.get_backend_name()
        return
    name = f"firebreak_bench_{secrets.token_hex(6)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            version = str(connection.execute(text("SHOW server_version")).scalar())
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield (
                url.set(database=name).render_as_string(hide_password=False),
                (f"PostgreSQL {version.split()[0]}"),
            )
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def config_yaml(announce_channel: str, wait: float) -> str:
    wait_text = f"{wait:g}s"
    return yaml.safe_dump(
        {
            "slack": {"announce_channel": announce_channel},
            "people": {
                name: {"slack": user, "email": f"{name}@example.com", "notify": ["slack"]}
                for name, user in USERS.items()
            },
            "escalation_policies": {
                POLICY: {
                    "steps": [
                        {"targets": [f"user:{name}"], "wait": wait_text} for name in STEP_PEOPLE
                    ],
                    "repeat": 0,
                }
            },
        }
    )


# --------------------------------------------------------------------------------------
# Measuring


@dataclass(frozen=True)
class Dm:
    user: str
    ts: float
    page_id: int
    step: int
    number: int | None  # N of "bench page N"


def received_dms(sandbox: SlackSandbox) -> list[Dm]:
    found = []
    for channel in sandbox.snapshot()["channels"]:
        if not channel.get("is_im"):
            continue
        users = [m for m in channel["members"] if m in USERS.values()]
        for message in channel["messages"]:
            body = str(message.get("text", ""))
            page = DM_PAGE.search(body)
            if page is None:
                continue
            number = DM_MESSAGE.search(body)
            found.append(
                Dm(
                    users[0] if users else "?",
                    float(message["ts"]),
                    int(page.group(1)),
                    int(page.group(2)),
                    int(number.group(1)) if number else None,
                )
            )
    return found


def measure(
    *,
    backend: str,
    database_url: str,
    options: Options,
    trigger: LoadRun,
    wall_offset: float,
    sandbox: SlackSandbox,
    announce_channel: str,
    drained_after_trigger: float,
    timed_out: bool,
    server: FirebreakServer,
    server_cpu_seconds: float,
) -> Run:
    wait = timedelta(seconds=options.wait)
    db = Database(database_url)
    try:
        with db.session_scope() as session:
            pages = list(session.scalars(select(Page).order_by(Page.id)))
            rows = list(session.scalars(select(PageNotification)))
            still_due = session.scalar(
                select(func.count())
                .select_from(Page)
                .where(Page.state == "triggered", Page.next_escalation_at.is_not(None))
            )
            duplicate_rows = sum(
                int(n) - 1
                for (n,) in session.execute(
                    select(func.count())
                    .select_from(PageNotification)
                    .group_by(
                        PageNotification.page_id,
                        PageNotification.cycle,
                        PageNotification.step,
                        PageNotification.person,
                        PageNotification.channel,
                    )
                    .having(func.count() > 1)
                )
            )
    finally:
        db.dispose()

    by_page: dict[int, dict[int, PageNotification]] = {}
    for notification in rows:
        by_page.setdefault(notification.page_id, {})[notification.step] = notification
    numbers = {
        int(page.message.rsplit(" ", 1)[1]): page
        for page in pages
        if page.message.startswith(MESSAGE + " ")
    }

    lateness, delivery = Lateness(), Lateness()
    step2_due: list[datetime] = []
    missing_rows = unsent_rows = not_exhausted = 0
    for number in range(1, options.pages + 1):
        page = numbers.get(number)
        if page is None:
            missing_rows += len(STEP_PEOPLE)
            not_exhausted += 1
            continue
        steps = by_page.get(page.id, {})
        for index, person in enumerate(STEP_PEOPLE):
            row = steps.get(index)
            if row is None or row.person != person:
                missing_rows += 1
            elif row.status != "sent" or row.sent_at is None:
                unsent_rows += 1
        for index in (1, 2):
            before, row = steps.get(index - 1), steps.get(index)
            if before is None or row is None:
                continue
            due: datetime = before.created_at + wait
            if index == 1:
                step2_due.append(due)
            lateness.add(f"step {index + 1}", (row.created_at - due).total_seconds())
            if row.sent_at is not None:
                delivery.add(f"step {index + 1}", (row.sent_at - due).total_seconds())
        last = steps.get(len(STEP_PEOPLE) - 1)
        if page.state != "exhausted" or page.exhausted_at is None:
            not_exhausted += 1
        elif last is not None:
            due = last.created_at + wait
            lateness.add("exhausted", (page.exhausted_at - due).total_seconds())

    dms = received_dms(sandbox)
    dm_counts = Counter((dm.page_id, dm.step, dm.user) for dm in dms)
    expected_dm = {
        (page.id, index + 1, USERS[person])
        for page in numbers.values()
        for index, person in enumerate(STEP_PEOPLE)
    }
    duplicate_dms = sum(n - 1 for key, n in dm_counts.items() if key in expected_dm and n > 1)
    unexpected_dms = sum(n for key, n in dm_counts.items() if key not in expected_dm)
    missing_dms = sum(1 for key in expected_dm if key not in dm_counts)
    missing_dms += len(STEP_PEOPLE) * (options.pages - len(numbers))

    sent_at = {o.index + 1: o.started + wall_offset for o in trigger.outcomes}
    first_dm: dict[int, float] = {}
    for dm in dms:
        if dm.step == 1 and dm.number is not None and dm.number in sent_at:
            first_dm[dm.number] = min(first_dm.get(dm.number, math.inf), dm.ts)
    announcements = sum(
        1 for m in sandbox.messages(announce_channel) if m.text.startswith(EXHAUSTED_PREFIX)
    )
    return Run(
        backend=backend,
        pages=options.pages,
        trigger=trigger,
        trigger_errors=trigger.error_summary(),
        first_dm=[ts - sent_at[n] for n, ts in first_dm.items()],
        lateness=lateness,
        delivery=delivery,
        pages_in_db=len(pages),
        exhausted=sum(1 for page in pages if page.state == "exhausted"),
        notifications=len(rows),
        duplicate_rows=duplicate_rows,
        dms=len(dms),
        duplicate_dms=duplicate_dms,
        unexpected_dms=unexpected_dms,
        missing_rows=missing_rows,
        unsent_rows=unsent_rows,
        missing_dms=missing_dms,
        not_exhausted=not_exhausted,
        announcements=announcements,
        still_due=int(still_due or 0),
        due_window=(max(step2_due) - min(step2_due)).total_seconds() if step2_due else math.nan,
        drained_after_trigger=drained_after_trigger,
        timed_out=timed_out,
        server_cpu_seconds=server_cpu_seconds,
        server_exit_code=server.exit_code,
        server_problems=server.log_problems(),
    )


# --------------------------------------------------------------------------------------
# One run


def leads(server: FirebreakServer) -> bool:
    """The server runs the scheduler (`/readyz`): at once on SQLite; on PostgreSQL after the
    leader election's takeover delay, during which a page's later steps would wait."""
    try:
        ready = json.loads(http_text(f"{server.url}/readyz", timeout=5))
    except (OSError, ValueError):
        return False
    return bool(ready.get("scheduler") == "leader")


def run_one(options: Options, spec: str) -> Run:
    secret = secrets.token_hex(16)
    with (
        tempfile.TemporaryDirectory(prefix="firebreak-bench-paging-") as tmp,
        SlackSandbox(bot_token=TOKEN) as sandbox,
    ):
        workdir = Path(tmp)
        for name, user in USERS.items():
            sandbox.add_user(user, name, email=f"{name}@example.com")
        members = list(USERS.values())
        announce = sandbox.add_channel("incidents", members=members)
        general = sandbox.add_channel("general", members=members)
        config = workdir / "firebreak.yaml"
        config.write_text(config_yaml(announce, options.wait))
        with fresh_database(spec, workdir) as (database_url, backend):
            env = {
                "DATABASE_URL": database_url,
                "FIREBREAK_CONFIG": str(config),
                "SLACK_API_URL": sandbox.api_url,
                "SLACK_BOT_TOKEN": TOKEN,
                "SLACK_SIGNING_SECRET": secret,
                "NO_PROXY": "127.0.0.1,localhost",
                **{name: "" for name in PROXY_VARIABLES},
            }
            print(f"[{backend}] starting firebreak serve ...", flush=True)
            server = FirebreakServer(env, workdir, threads=options.threads, sandbox=False)
            with server:
                wait_until(lambda: leads(server), timeout=60, what="the scheduler leader")
                slack = OutboundSlack(http_transport(server.events_url), secret, sandbox)
                users = list(USERS.values())

                def send(index: int) -> Reply:
                    return slack.command(
                        f"policy:{POLICY} {MESSAGE} {index + 1}",
                        user=users[index % len(users)],
                        channel=general,
                        command="/page",
                    )

                cpu_before = server.cpu_seconds()
                wall_offset = time.time() - time.perf_counter()
                print(
                    f"[{backend}] {options.pages} x /page from {options.concurrency} threads ...",
                    flush=True,
                )
                trigger = run_load(send, options.pages, options.concurrency)
                print(
                    f"[{backend}] sent in {trigger.stats.wall_seconds:.2f} s; waiting for every"
                    " page to be exhausted ...",
                    flush=True,
                )

                def all_exhausted() -> bool:
                    count = sum(
                        1 for m in sandbox.messages(announce) if m.text.startswith(EXHAUSTED_PREFIX)
                    )
                    return count >= options.pages

                timed_out = False
                try:
                    wait_until(
                        all_exhausted, timeout=options.timeout, interval=0.2, what="exhaustion"
                    )
                except TimeoutError as error:
                    print(f"  {error}", flush=True)
                    timed_out = True
                drained = max(0.0, time.perf_counter() - trigger.finished)
                time.sleep(min(1.0, options.wait))  # anything late or duplicated shows up too
                cpu = server.cpu_seconds() - cpu_before
            print(f"[{backend}] measuring ...", flush=True)
            return measure(
                backend=backend,
                database_url=database_url,
                options=options,
                trigger=trigger,
                wall_offset=wall_offset,
                sandbox=sandbox,
                announce_channel=announce,
                drained_after_trigger=drained,
                timed_out=timed_out,
                server=server,
                server_cpu_seconds=cpu,
            )


def run(options: Options, command: str) -> Result:
    facts = MachineFacts.collect()
    return Result(options, facts, command, [run_one(options, spec) for spec in options.databases])


def report(result: Result) -> None:
    print()
    print(f"{TITLE}  ({result.options.pages} pages, wait {result.options.wait:g} s)")
    print(result.table())
    print()
    print(result.detail_table())
    print()
    print(result.checks_table())
    for run_ in result.runs:
        for line in run_.server_problems[:5]:
            print(f"server ({run_.backend}): {line}")
    if result.options.report is not None:
        write_section(result.section(), result.facts, result.options.report)
        print(f"wrote {result.options.report}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_paging", description=__doc__.split("\n")[0]
    )
    d = Options()
    p.add_argument("--pages", type=int, default=d.pages, help="pages triggered at once")
    p.add_argument("--wait", type=float, default=d.wait, help="seconds each step waits")
    p.add_argument("--concurrency", type=int, default=d.concurrency, help="/page sender threads")
    p.add_argument("--threads", type=int, default=d.threads, help="server HTTP threads")
    p.add_argument(
        "--database-url",
        action="append",
        dest="databases",
        metavar="URL",
        help="`sqlite` (default) or a PostgreSQL URL to create a fresh database in; repeatable",
    )
    p.add_argument(
        "--timeout", type=float, default=d.timeout, help="seconds to wait for exhaustion"
    )
    p.add_argument("--no-report", action="store_true", help="print only; leave REPORT.md alone")
    return p


def options_from(argv: Sequence[str] | None) -> Options:
    args = parser().parse_args(argv)
    if args.pages < 1 or args.concurrency < 1 or args.threads < 1 or args.wait <= 0:
        parser().error("--pages, --concurrency, --threads and --wait must be positive")
    return Options(
        pages=args.pages,
        wait=args.wait,
        concurrency=min(args.concurrency, args.pages),
        threads=args.threads,
        databases=tuple(args.databases or Options().databases),
        timeout=args.timeout,
        report=None if args.no_report else REPORT_PATH,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = options_from(argv)
    command = " ".join([".venv/bin/python -m benchmarks.bench_paging", *argv])
    result = run(options, command)
    report(result)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
