"""Benchmark: the postmortem draft of an incident with 10,000 timeline events.

An incident is recorded in a fresh SQLite database (migrated by Alembic, as in production):
declared, then 10,000 facts in a realistic mix (notes with mentions and Markdown-special
characters, status and severity changes, role hand-overs, pinned messages, page steps and
deliveries, alerts firing and resolving), then resolved. Each timed run is what
`firebreak postmortem INC-1` does after start-up: a new session reads the incident, its
timeline, alerts and pages, computes the metrics, builds the context and renders the
default template. Time is the median and worst of N runs (`time.perf_counter`); memory is
the peak of Python allocations during one run (`tracemalloc`), and the process's peak RSS
growth over the run (`ru_maxrss`). Targets: under 500 ms and under 50 MB.

    .venv/bin/python -m benchmarks.bench_postmortem [--events 10000] [--runs 10]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.harness import (
    REPORT_PATH,
    Figure,
    MachineFacts,
    Section,
    code_state,
    fmt,
    markdown_table,
    write_section,
)
from bot import timeline
from bot.db import Database
from bot.incidents import service
from bot.incidents.config import IncidentsSection
from bot.migrations import upgrade
from bot.people import Person
from bot.postmortem.config import PostmortemSection
from bot.postmortem.draft import render
from bot.postmortem.templates import Templates

KEY = "postmortem"
TITLE = "Postmortem: the draft of an incident with 10,000 timeline events"
TARGET_MS = 500.0
TARGET_MB = 50.0
START = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)
PEOPLE = {
    "alice": Person(slack="U0ALICE", timezone="Europe/Berlin"),
    "bob": Person(slack="U0BOB", timezone="America/New_York"),
    "carol": Person(slack="U0CAROL", timezone="Asia/Tokyo"),
}
ACTORS = ("U0ALICE", "U0BOB", "U0CAROL", "U0DAVE")
STATUSES = ("investigating", "identified", "monitoring")


def record(database: Database, events: int) -> None:
    """The incident: declared, `events` facts (besides its own declaration), resolved."""
    policy = IncidentsSection()
    with database.session_scope() as session:
        incident = service.declare(
            session,
            title="Checkout | errors <everywhere> after deploy {{ 42 }}",
            declared_by="U0ALICE",
            declare_key="bench",
            policy=policy,
            now=START,
        ).incident
        incident.channel_id, incident.channel_name = "C0INC1", "inc-1-checkout"
        incident_id = incident.id
    written = 0
    batch = 1000
    while written < events:
        with database.session_scope() as session:
            for n in range(written, min(written + batch, events)):
                at = START + timedelta(seconds=2 * (n + 1))
                actor = ACTORS[n % len(ACTORS)]
                kind, data = _fact(n)
                timeline.record(
                    session,
                    kind,
                    now=at,
                    actor=actor
                    if not kind.startswith(("page_step", "page_deliv"))
                    else "firebreak",
                    incident_id=incident_id,
                    data=data,
                    flush=False,
                )
            written = min(written + batch, events)
    with database.session_scope() as session:
        incident = service.get(session, incident_id)
        service.resolve(
            session, incident, "rolled back", actor="U0BOB", now=START + timedelta(days=1)
        )


def _fact(n: int) -> tuple[str, dict[str, object]]:
    shape = n % 10
    if shape in (0, 1, 2, 3):
        text = (
            f"note {n}: <@U0BOB> checked *pods* | restarted `api-{n % 7}` "
            f"&lt;ok&gt; see <https://grafana.example.com/d/{n}|graph>\nsecond line"
        )
        return "note_added", {"text": text}
    if shape == 4:
        return "status_changed", {"from": STATUSES[n % 3], "to": STATUSES[(n + 1) % 3]}
    if shape == 5:
        return "severity_changed", {"from": "sev2", "to": "sev1"}
    if shape == 6:
        return "role_assigned", {"role": "ops", "user": ACTORS[(n + 1) % 4], "previous": None}
    if shape == 7:
        return "pinned_message", {
            "channel": "C0INC1",
            "ts": f"{1774742400 + n}.000100",
            "author": "U0CAROL",
            "text": f"pinned {n}: _rollback_ plan #3",
        }
    if shape == 8:
        return "page_step_notified", {"step": 1 + n % 2, "cycle": 0, "people": ["alice", "bob"]}
    return "alert_fired", {
        "alert": n,
        "source": "alertmanager",
        "summary": f"HighErrorRate {n} on checkout",
        "group": 1,
    }


@dataclass(frozen=True)
class Result:
    facts: MachineFacts
    command: str
    events: int
    runs: int
    seconds: tuple[float, ...]
    cpu_seconds: tuple[float, ...]
    load: float  # 1-minute load average when the runs started
    peak_python_mb: float
    rss_growth_mb: float
    draft_kb: float
    draft_lines: int
    floor_seconds: tuple[float, ...]  # the baseline: see floor()
    code: str

    @property
    def floor_median_ms(self) -> float:
        return statistics.median(self.floor_seconds) * 1000

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def max_ms(self) -> float:
        return max(self.seconds) * 1000

    @property
    def median_cpu_ms(self) -> float:
        return statistics.median(self.cpu_seconds) * 1000

    @property
    def passed(self) -> bool:
        return (
            self.median_ms < TARGET_MS and max(self.peak_python_mb, self.rss_growth_mb) < TARGET_MB
        )

    def table(self) -> str:
        return markdown_table(
            [
                "events",
                "runs",
                "median ms",
                "max ms",
                "median CPU ms",
                "peak Python MB",
                "peak RSS growth MB",
                "target",
                "result",
            ],
            [
                [
                    f"{self.events:,}",
                    self.runs,
                    fmt(self.median_ms),
                    fmt(self.max_ms),
                    fmt(self.median_cpu_ms),
                    fmt(self.peak_python_mb),
                    fmt(self.rss_growth_mb),
                    f"median < {TARGET_MS:.0f} ms, < {TARGET_MB:.0f} MB",
                    "PASS" if self.passed else "FAIL",
                ]
            ],
        )

    def figures(self) -> list[Figure]:
        floor = self.floor_median_ms
        return [
            Figure(
                f"postmortem draft of {self.events:,} events, median",
                f"{fmt(self.median_ms)} ms",
                f"{fmt(floor)} ms (plain read and one line per row)",
                f"{self.median_ms / floor:.1f}x the floor" if floor else "",
                f"< {TARGET_MS:.0f} ms",
                Figure.verdict(self.median_ms < TARGET_MS),
            ),
            Figure(
                "postmortem draft memory (peak Python · RSS growth)",
                f"{fmt(self.peak_python_mb)} MB · {fmt(self.rss_growth_mb)} MB",
                target=f"< {TARGET_MB:.0f} MB",
                result=Figure.verdict(max(self.peak_python_mb, self.rss_growth_mb) < TARGET_MB),
            ),
        ]

    def section(self) -> Section:
        body = f"""
Measured on: {self.facts.line()}

What ran: `{self.command}`

Code: {self.code}

- One incident in a fresh SQLite database migrated by Alembic: declared, {self.events:,}
  timeline facts (40% notes with mentions, links, newlines and Markdown-special characters,
  then status and severity changes, role hand-overs, pinned messages, page steps and
  alerts), resolved.
- Each run is what `firebreak postmortem INC-1` does after start-up: a new session reads
  the incident, its timeline, alerts and pages; metrics, context and the `default` template
  (timeline table in UTC and Europe/Berlin) rendered to Markdown. Runs after one warm-up.
- Peak Python MB: `tracemalloc` peak during one run. Peak RSS growth: the process's
  `ru_maxrss` after the runs minus before them (the allocator keeps freed memory, so this
  is an upper bound of what a run needs).

{self.table()}

Baseline, in the same run on the same database: the floor that any renderer of this
timeline pays, `sqlite3` reading the incident's {self.events:,} timeline rows, `json.loads`
of each row's data and one f-string Markdown line per row (no escaping, no time zones, no
metrics, no template): median {fmt(self.floor_median_ms)} ms over {self.runs} runs, so the
whole draft costs {self.median_ms / self.floor_median_ms:.1f}x that floor.

The draft: {self.draft_lines:,} lines, {fmt(self.draft_kb)} KB. The time target is judged
on the median wall time. This 2-CPU machine ran other work beside the benchmark (1-minute
load average {fmt(self.load, 2)} at the start); CPU time is the process's own work, which the
competition for the CPUs does not inflate.

Where the time goes (cProfile of one run): reading and JSON-decoding the 10,000 rows
(~30%), one Markdown sentence per fact with every piece of its data escaped (~35%),
formatting each instant in UTC and the team zone (~15%). The timeline table is built in
Python (`timeline_table`); the same loop in the sandboxed template cost ~0.45 s alone,
the sandbox checking every attribute read.
"""
        return Section(KEY, TITLE, body, self.figures())


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def floor(path: Path) -> str:
    """The baseline: read the rows and write one line each, with nothing else."""
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute(
            "SELECT occurred_at, kind, actor, data FROM timeline_events"
            " WHERE incident_id = 1 ORDER BY id"
        ).fetchall()
    finally:
        connection.close()
    lines = []
    for occurred_at, kind, actor, data in rows:
        fields = json.loads(data)
        lines.append(f"| {occurred_at} | {kind} | {actor} | {fields.get('text', '')} |")
    return "\n".join(lines)


def run(events: int, runs: int, command: str) -> Result:
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'bench.db'}"
        upgrade(url)
        database = Database(url)
        try:
            record(database, events)
            templates = Templates.load()
            section = PostmortemSection(timezone="Europe/Berlin")

            def draft() -> str:
                with database.session_scope() as session:
                    return render(
                        session,
                        1,
                        templates=templates,
                        template="default",
                        people=PEOPLE,
                        severities=IncidentsSection().severities,
                        section=section,
                        now=START + timedelta(days=2),
                    )

            text = draft()  # warm-up: templates compiled, statements cached
            gc.collect()
            rss_before = _rss_mb()
            timings, cpu = [], []
            load = os.getloadavg()[0]
            for _ in range(runs):
                started, started_cpu = time.perf_counter(), time.process_time()
                text = draft()
                timings.append(time.perf_counter() - started)
                cpu.append(time.process_time() - started_cpu)
            rss_growth = _rss_mb() - rss_before
            gc.collect()
            tracemalloc.start()
            draft()
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            path = Path(directory) / "bench.db"
            floor(path)  # warm-up
            floor_timings = []
            for _ in range(runs):
                started = time.perf_counter()
                floor(path)
                floor_timings.append(time.perf_counter() - started)
        finally:
            database.dispose()
    assert text.count("\n| 2026-") >= events, "the draft is missing timeline rows"
    return Result(
        MachineFacts.collect(),
        command,
        events,
        runs,
        tuple(timings),
        tuple(cpu),
        load,
        peak / 1024 / 1024,
        rss_growth,
        len(text.encode()) / 1024,
        text.count("\n"),
        tuple(floor_timings),
        code_state(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_postmortem", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--events", type=int, default=10_000, help="timeline facts")
    parser.add_argument("--runs", type=int, default=10, help="timed runs")
    parser.add_argument("--no-report", action="store_true", help="leave REPORT.md alone")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.events < 1:
        parser.error("--runs and --events must be positive")
    result = run(
        args.events, args.runs, " ".join([".venv/bin/python -m benchmarks.bench_postmortem", *argv])
    )
    print(f"{TITLE}  ({result.facts.cpus} CPUs)")
    print(result.table())
    if not args.no_report:
        write_section(result.section(), result.facts, REPORT_PATH)
        print(f"wrote {REPORT_PATH}")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
