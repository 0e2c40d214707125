"""The baseline server: a bare WSGI app on waitress with Firebreak's server settings.

Every HTTP benchmark sends the same requests to this endpoint in the same run, so that its
figures can be read as a ratio to the floor that any Python endpoint on this machine has:
the app reads the body, parses it (JSON, or a form as Slack sends slash commands) and
answers (202 with a small JSON body for JSON, 200 with an empty body for a form, as a Slack
acknowledgement is). It does nothing else: no signature check, no database, no Slack.

Run in its own interpreter (`python -m benchmarks.bare --threads N`), as Firebreak is.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

from benchmarks.harness import PROJECT_ROOT
from bot.server import MAX_BODY

READY = "Bare WSGI listening on "


def bare_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """Read the body, parse it, answer: the floor for any endpoint that takes a body."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        parse_qs(body.decode())
        status, answer = "200 OK", b""
    else:
        payload = json.loads(body)
        alerts = payload.get("alerts", []) if isinstance(payload, dict) else []
        status, answer = (
            "202 Accepted",
            json.dumps({"status": "ok", "alerts": len(alerts)}).encode(),
        )
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))],
    )
    return [answer]


def serve_bare(threads: int) -> None:
    """`bare_app` on waitress, with the settings `bot.server.serve` gives Firebreak."""
    from waitress.server import create_server

    server = create_server(
        bare_app,
        host="127.0.0.1",
        port=0,
        threads=threads,
        ident="bare",
        channel_timeout=30,
        max_request_body_size=MAX_BODY,
    )
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    print(f"{READY}http://127.0.0.1:{server.effective_port}", flush=True)
    try:
        server.run()
    finally:
        server.close()


@dataclass
class BareServer:
    """`serve_bare` in a subprocess (its own interpreter, as Firebreak's), for a `with`."""

    threads: int
    workdir: Path
    url: str = ""
    _process: subprocess.Popen[str] | None = field(default=None, init=False)

    def __enter__(self) -> BareServer:
        argv = [sys.executable, "-m", "benchmarks.bare", "--threads", str(self.threads)]
        log = (self.workdir / "bare.log").open("w")
        self._process = subprocess.Popen(
            argv,
            cwd=PROJECT_ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        log.close()
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line.startswith(READY):
            self.__exit__(None, None, None)
            raise RuntimeError(f"the bare WSGI server did not start: {line!r}")
        self.url = line.removeprefix(READY).strip()
        return self

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the bare server is not running")
        return self._process.pid

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bare", description=__doc__)
    parser.add_argument("--threads", type=int, default=24)
    serve_bare(parser.parse_args(argv).threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
