"""Run every benchmark (or the named ones) with its defaults: `python -m benchmarks [name ...]`."""

from __future__ import annotations

import argparse
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
)

# name -> main(argv) -> exit code; each benchmark rewrites its own section of REPORT.md.
BENCHMARKS: dict[str, Callable[[Sequence[str]], int]] = {
    bench_slack_ack.KEY: bench_slack_ack.main,
    bench_schedule.KEY: bench_schedule.main,
    bench_paging.KEY: bench_paging.main,
    bench_alerts.KEY: bench_alerts.main,
    bench_replicas.KEY: bench_replicas.main,
    bench_postmortem.KEY: bench_postmortem.main,
    bench_runbooks.KEY: bench_runbooks.main,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="name", help=f"any of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(BENCHMARKS))
        return 0
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    failed = []
    for name in args.names or list(BENCHMARKS):
        print(f"== {name}", flush=True)
        if BENCHMARKS[name]([]) != 0:
            failed.append(name)
    if failed:
        print(f"missed target or inconsistent: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
