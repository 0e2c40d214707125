"""Benchmark: time to compute a year of a 3-layer on-call schedule.

Pure rotation maths (`bot.oncall.rotation.final_shifts`), no database: a weekly layer, a
daily layer restricted to business hours, and an hourly:12 layer restricted to nights, in
Europe/Berlin (so the year crosses both daylight-saving changes), plus a few overrides.
Each run computes the same 365 days from scratch; the table shows the median and the
worst run. The target is well under a second; `/oncall`, the calendar feed and paging ask
for days or weeks, not years.

    .venv/bin/python -m benchmarks.bench_schedule [--runs 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

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
from bot.oncall.configuration import Schedule
from bot.oncall.rotation import OverrideSpan, Shift, final_shifts

KEY = "schedule"
TITLE = "On-call schedule: a year of a 3-layer schedule"
TARGET_MAX_MS = 1000.0
START = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 365

SCHEDULE = Schedule.model_validate(
    {
        "timezone": "Europe/Berlin",
        "layers": [
            {
                "name": "weekly",
                "users": ["alice", "bob", "carol", "dave"],
                "rotation": "weekly",
                "handoff": "mon 09:00",
                "start": "2025-12-29",
            },
            {
                "name": "office",
                "users": ["erin", "frank", "grace"],
                "rotation": "daily",
                "handoff": "09:00",
                "start": "2026-01-01",
                "restrict": ["mon-fri 09:00-17:00"],
            },
            {
                "name": "nights",
                "users": ["heidi", "ivan"],
                "rotation": "hourly:12",
                "handoff": "20:00",
                "start": "2026-01-01",
                "restrict": ["daily 22:00-06:00"],
            },
        ],
    }
)
OVERRIDES = [
    OverrideSpan(
        START + timedelta(days=day, hours=8), START + timedelta(days=day, hours=30), who, n
    )
    for n, (day, who) in enumerate(
        [(10, "bob"), (45, "carol"), (88, "alice"), (150, "dave"), (200, "erin"), (300, "bob")],
        start=1,
    )
]


@dataclass(frozen=True)
class Result:
    facts: MachineFacts
    command: str
    runs: int
    seconds: tuple[float, ...]
    shifts: int
    walk_seconds: tuple[float, ...]  # the baseline: see hour_walk()
    code: str

    @property
    def walk_median_ms(self) -> float:
        return statistics.median(self.walk_seconds) * 1000

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def max_ms(self) -> float:
        return max(self.seconds) * 1000

    @property
    def passed(self) -> bool:
        return self.max_ms < TARGET_MAX_MS

    def table(self) -> str:
        return markdown_table(
            ["window", "runs", "shifts", "median ms", "max ms", "target", "result"],
            [
                [
                    f"{DAYS} days",
                    self.runs,
                    f"{self.shifts:,}",
                    fmt(self.median_ms),
                    fmt(self.max_ms),
                    f"max < {TARGET_MAX_MS:.0f} ms",
                    "PASS" if self.passed else "FAIL",
                ]
            ],
        )

    def figures(self) -> list[Figure]:
        walk = self.walk_median_ms
        return [
            Figure(
                f"a year of a 3-layer schedule, worst of {self.runs} (median)",
                f"{fmt(self.max_ms)} ms ({fmt(self.median_ms)} ms)",
                f"{fmt(walk)} ms (hour-by-hour walk, median)",
                f"{self.median_ms / walk:.2f}x the walk (medians)" if walk else "",
                f"max < {TARGET_MAX_MS:.0f} ms",
                Figure.verdict(self.passed),
            )
        ]

    def section(self) -> Section:
        body = f"""
Measured on: {self.facts.line()}

What ran: `{self.command}`

Code: {self.code}

- `final_shifts` for {DAYS} days from {START:%Y-%m-%d} of one Europe/Berlin schedule
  (both daylight-saving changes inside): a weekly layer (4 people, Monday 09:00), a daily
  layer restricted to `mon-fri 09:00-17:00` (3 people), an `hourly:12` layer restricted to
  `daily 22:00-06:00` (2 people), and {len(OVERRIDES)} overrides of 22 hours each.
- Pure computation in this process, no database; each run starts from scratch, timed
  with `time.perf_counter`.

{self.table()}

Baseline, in the same run: the naive way to answer "who is on call" for a year, walking it
hour by hour ({DAYS * 24:,} instants), converting each to Europe/Berlin with `zoneinfo` and
picking the weekly layer's person by integer arithmetic (one layer, no restrictions, no
overrides, no merging): median {fmt(self.walk_median_ms)} ms, so the whole 3-layer
computation costs {self.median_ms / self.walk_median_ms:.2f}x that walk.

The result is the stacked, merged, non-overlapping list of shifts: {self.shifts:,} shifts
for the year.
"""
        return Section(KEY, TITLE, body, self.figures())


def hour_walk(end: datetime) -> int:
    """The baseline: the weekly layer's person for each hour, the naive way."""
    zone = ZoneInfo("Europe/Berlin")
    people = ("alice", "bob", "carol", "dave")
    first_monday = datetime(2025, 12, 29, 9, tzinfo=zone)
    changes, previous, instant = 0, "", START
    while instant < end:
        local = instant.astimezone(zone)
        who = people[((local - first_monday).days // 7) % len(people)]
        changes += who != previous
        previous, instant = who, instant + timedelta(hours=1)
    return changes


def run(runs: int, command: str) -> Result:
    end = START + timedelta(days=DAYS)
    shifts: list[Shift] = final_shifts(SCHEDULE, START, end, OVERRIDES)  # warm-up
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        shifts = final_shifts(SCHEDULE, START, end, OVERRIDES)
        timings.append(time.perf_counter() - started)
    hour_walk(end)  # warm-up
    walk = []
    for _ in range(runs):
        started = time.perf_counter()
        hour_walk(end)
        walk.append(time.perf_counter() - started)
    return Result(
        MachineFacts.collect(),
        command,
        runs,
        tuple(timings),
        len(shifts),
        tuple(walk),
        code_state(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_schedule", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=50, help="timed runs")
    parser.add_argument("--no-report", action="store_true", help="leave REPORT.md alone")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be positive")
    result = run(args.runs, " ".join([".venv/bin/python -m benchmarks.bench_schedule", *argv]))
    print(f"{TITLE}  ({result.facts.cpus} CPUs)")
    print(result.table())
    if not args.no_report:
        report: Path = REPORT_PATH
        write_section(result.section(), result.facts, report)
        print(f"wrote {report}")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
