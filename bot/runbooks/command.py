"""The one place a remote command line is built: `shlex.join` of validated argv inside `timeout`.

OpenSSH hands the command string to the remote user's shell, so every element is quoted by
`shlex.join`; no value is ever interpolated into a string any other way. GNU `timeout` runs
the command in its own process group and kills the whole group at the deadline (TERM, then
KILL `KILL_AFTER` seconds later), so nothing outlives its deadline. The SSH transport wraps
this line with a watchdog (`integrations.ssh.command_line`) that stops the group sooner, as
soon as our connection to the host closes.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

KILL_AFTER = 5  # seconds between TERM and KILL at the deadline


def seconds(timeout: float) -> str:
    """`timeout`'s duration argument: whole seconds when whole, else a decimal."""
    if timeout <= 0:
        raise ValueError("a step timeout must be positive")
    return f"{int(timeout)}s" if float(timeout).is_integer() else f"{timeout:.3f}s"


def remote_command(argv: Sequence[str], timeout: float) -> str:
    if not argv:
        raise ValueError("a step needs at least one argv element")
    # `--` ends timeout's options before the duration; after the duration nothing is parsed.
    wrapped = ["timeout", "--kill-after", f"{KILL_AFTER}s", "--", seconds(timeout), *argv]
    return shlex.join(wrapped)
