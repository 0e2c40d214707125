"""The `Transport` protocol: how the executor reaches a host. `integrations.ssh` implements it.

The executor opens one `Connection` per host per run, runs the plan's steps on it one after
another, and closes it in `finally`. Failures to reach a host are exceptions that say which
kind (the run records the kind per host); a command that ran, however it ended, is a
`CommandResult`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from bot.runbooks.plan import Host

Stream = Literal["stdout", "stderr"]
OutputSink = Callable[[Stream, bytes], None]


class HostError(Exception):
    """The host could not be used; nothing ran there. `kind` names why, for the record."""

    kind = "error"

    def __init__(self, host: str, detail: str) -> None:
        super().__init__(f"{host}: {detail}")
        self.host = host
        self.detail = detail


class HostKeyRejected(HostError):
    """Unknown host key, or a key that differs from the pinned one: a security event."""

    kind = "host_key"

    def __init__(self, host: str, detail: str, *, fingerprint: str | None = None) -> None:
        super().__init__(host, detail)
        self.fingerprint = fingerprint  # what the host offered (SHA256:...), when known


class Unreachable(HostError):
    kind = "unreachable"


class AuthFailed(HostError):
    kind = "auth"


@dataclass(frozen=True)
class CommandResult:
    exit_code: int | None  # None when the command was killed or the channel was lost
    duration: float  # seconds
    timed_out: bool = False
    cancelled: bool = False
    output_truncated: bool = False  # the sink was given only the first max_bytes


class Connection(Protocol):
    @property
    def host_key_fingerprint(self) -> str:
        """The host key the connection was verified against: `SHA256:` + base64, as ssh shows."""
        ...

    def run(
        self,
        argv: tuple[str, ...],
        *,
        timeout: float,
        on_output: OutputSink,
        cancelled: threading.Event,
        max_bytes: int,
    ) -> CommandResult:
        """Run `bot.runbooks.command.remote_command(argv, timeout)` on the host and wait for it.

        stdout and stderr are drained together as they arrive and handed to `on_output` (up to
        `max_bytes` in all; the rest is read and dropped, so the remote side never blocks).
        At `timeout`, or as soon as `cancelled` is set, the remote process is killed and the
        result says so. Never raises for a command that started; raises `HostError` when the
        connection is lost before it could start."""
        ...

    def close(self) -> None: ...


class Transport(Protocol):
    def connect(self, host: Host, *, timeout: float) -> Connection:
        """Open a verified, authenticated connection, or raise `HostError` (its subclass says
        why). Never trusts a host key that is not pinned."""
        ...
