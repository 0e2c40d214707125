"""Run every benchmark (or the named ones) as REPORT.md shows them: `python -m benchmarks [name ...]`.

Each benchmark runs with the arguments below (both databases where the issue asks for
both), so `./run bench` reproduces the whole report. PostgreSQL is the server at
`FIREBREAK_BENCH_DATABASE_URL` (default: the local one, user postgres, database test);
each benchmark creates a scratch database there and drops it after. Run with no names,
the report is rewritten whole: sections of benchmarks that no longer exist are dropped.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence

from benchmarks import (
    bench_alerts,
    bench_paging,
    bench_postmortem,
    bench_replicas,
    bench_runbooks,
    bench_schedule,
    bench_slack_ack,
    bench_socket_ack,
    bench_webview,
)
from benchmarks.harness import REPORT_PATH

POSTGRES = os.environ.get(
    "FIREBREAK_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BOTH = ["--database-url", "sqlite", "--database-url", POSTGRES]

# name -> (main(argv) -> exit code, the arguments the report is made with); each benchmark
# rewrites its own section of REPORT.md.
BENCHMARKS: dict[str, tuple[Callable[[Sequence[str]], int], list[str]]] = {
    bench_slack_ack.KEY: (bench_slack_ack.main, []),
    bench_schedule.KEY: (bench_schedule.main, []),
    bench_paging.KEY: (bench_paging.main, BOTH),
    bench_alerts.KEY: (bench_alerts.main, [*BOTH, "--runs", "2"]),
    bench_replicas.KEY: (bench_replicas.main, ["--database-url", POSTGRES]),
    bench_postmortem.KEY: (bench_postmortem.main, []),
    bench_runbooks.KEY: (bench_runbooks.main, []),
    bench_socket_ack.KEY: (bench_socket_ack.main, []),
    bench_webview.KEY: (bench_webview.main, BOTH),
}

_SECTION = re.compile(
    r"\n*<!-- benchmark:(?P<key>[\w.-]+):start -->.*?<!-- benchmark:(?P=key):end -->", re.S
)


def drop_stale_sections(known: Sequence[str]) -> None:
    """Remove the sections of benchmarks that are not in `known` from REPORT.md."""
    if not REPORT_PATH.exists():
        return
    text = REPORT_PATH.read_text()
    kept = _SECTION.sub(lambda m: m.group(0) if m.group("key") in known else "", text)
    if kept != text:
        REPORT_PATH.write_text(kept)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="name", help=f"any of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, (_, arguments) in BENCHMARKS.items():
            print(f"{name} {' '.join(arguments)}".strip())
        return 0
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    if not args.names:
        drop_stale_sections(list(BENCHMARKS))
    failed = []
    for name in args.names or list(BENCHMARKS):
        benchmark, arguments = BENCHMARKS[name]
        print(f"== {name} {' '.join(arguments)}", flush=True)
        if benchmark(arguments) != 0:
            failed.append(name)
    if failed:
        print(f"missed target or inconsistent: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
