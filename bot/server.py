"""Run the WSGI app on waitress, a threaded production-grade pure-Python server."""

from __future__ import annotations

import gc
import logging
import signal
import sys
from collections.abc import Callable
from types import FrameType

from waitress.server import create_server

from bot.app import Firebreak

log = logging.getLogger(__name__)
# Slack payloads are a few KiB; anything near this is not Slack.
MAX_BODY = 1024 * 1024


def serve(
    app: Firebreak,
    host: str,
    port: int,
    *,
    threads: int = 24,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then finish accepted work and close cleanly."""
    server = create_server(
        app.web,
        host=host,
        port=port,
        threads=threads,
        ident="firebreak",
        channel_timeout=30,
        max_request_body_size=MAX_BODY,
    )
    url = f"http://{host}:{server.effective_port}"

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received signal %s, stopping", signum)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # Startup objects live for the whole process: keep them out of the collector's full
    # passes, whose pauses otherwise set the latency tail (see benchmarks/REPORT.md).
    gc.collect()
    gc.freeze()
    if on_listening is not None:
        on_listening(url)
    try:
        server.run()
    finally:
        server.close()
        app.close()
