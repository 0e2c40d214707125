"""The runbook transport over SSH (paramiko): pinned host keys, one identity, nothing else.

`SshTransport.connect` opens a TCP connection, negotiates only host-key algorithms whose keys
are pinned for that host in FIREBREAK_KNOWN_HOSTS, refuses any other key before
authenticating (so nothing can run on an impostor), then logs in with the one key from
FIREBREAK_SSH_KEY: no agent, no ~/.ssh, no passwords, no system known_hosts.

`SshConnection.run` executes `remote_command(argv, timeout)` (GNU `timeout` around the
shlex-quoted argv) on a fresh channel, drains stdout and stderr together, and reads the exit
status last. The shell first prints the session's pid (taken out of stdout again) and then
`exec`s the command, so that pid is `timeout`, leader of the step's process group. On cancel,
or when the host overruns its own deadline, the group gets TERM, then KILL `KILL_AFTER` + 1
seconds later, by `kill -s SIG -- -PID` on a second channel of the same connection. (The SSH
`signal` request is only the fallback when no pid was seen: OpenSSH refuses it for root
logins, and closing a channel without a pty signals nothing.) Because a dropped connection
signals nothing either, the line starts a watchdog (`WATCHDOG`) that TERMs the group when the
channel's stdin reaches EOF: a killed Firebreak leaves no step running on its hosts.
"""

from __future__ import annotations

import logging
import secrets
import select
import shlex
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import paramiko
from paramiko.common import cMSG_CHANNEL_REQUEST
from paramiko.message import Message

from bot.config import ConfigError
from bot.runbooks.command import KILL_AFTER, remote_command
from bot.runbooks.plan import Host
from bot.runbooks.transport import (
    AuthFailed,
    CommandResult,
    HostError,
    HostKeyRejected,
    OutputSink,
    Stream,
    Unreachable,
)
from integrations._ssh_known_hosts import KnownHosts, KnownHostsError, fingerprint

log = logging.getLogger(__name__)

KEY_VARIABLE = "FIREBREAK_SSH_KEY"
KNOWN_HOSTS_VARIABLE = "FIREBREAK_KNOWN_HOSTS"
KEEPALIVE = 15  # seconds between keepalive requests on an idle connection
GRACE = 5.0  # seconds past the remote deadline (timeout + KILL_AFTER) before we stop waiting
# How long the `kill` on a second channel may take: it goes through the login's shell, whose
# start-up files can take seconds on a loaded host (a slow ~/.bashrc); closing its channel
# early could lose the kill and leave the step running until its remote deadline.
KILL_PATIENCE = 20.0
POLL = 0.2  # seconds between checks of `cancelled` while a command runs
CHUNK = 65536
MARKER_WINDOW = 65536  # stdout bytes searched for the pid line before giving up
TIMED_OUT_CODES = frozenset({124, 137})  # GNU timeout: deadline hit (TERM), or KILLed after it


# -- the identity -----------------------------------------------------------------------


def load_identity(path: Path) -> Any:
    """The private key at `path` (unencrypted OpenSSH or PEM: ed25519, ecdsa or rsa);
    `ConfigError` naming FIREBREAK_SSH_KEY when it cannot be used. The key is never logged."""
    where = f"{KEY_VARIABLE}={path}"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([f"{where}: the file does not exist"]) from None
    except IsADirectoryError:
        raise ConfigError([f"{where}: is a directory; give the private key file"]) from None
    except OSError as error:
        raise ConfigError(
            [f"{where}: cannot be read ({error.strerror}); make it readable by Firebreak's user"]
        ) from None
    if data.lstrip().startswith((b"ssh-", b"ecdsa-")):
        raise ConfigError([f"{where}: this is a public key; give the private key file"])
    try:
        return paramiko.PKey.from_path(path)
    except (TypeError, paramiko.PasswordRequiredException):
        # cryptography raises TypeError for exactly this: an encrypted key, no password.
        raise ConfigError(
            [
                f"{where}: the key is protected by a passphrase, which Firebreak cannot "
                "type; give it a key without one (ssh-keygen -p -N '' -f COPY on a copy "
                "kept readable only by Firebreak's user, or a dedicated key)"
            ]
        ) from None
    except paramiko.UnknownKeyType:
        raise ConfigError(
            [f"{where}: unsupported key type; use an ed25519, ecdsa or rsa key"]
        ) from None
    except (ValueError, paramiko.SSHException) as error:
        raise ConfigError(
            [
                f"{where}: not a private key Firebreak can read ({error}); expected an "
                "OpenSSH or PEM ed25519, ecdsa or rsa private key"
            ]
        ) from None


def load_known_hosts(path: Path) -> KnownHosts:
    try:
        return KnownHosts.load(path)
    except KnownHostsError as error:
        raise ConfigError([f"{KNOWN_HOSTS_VARIABLE}: {p}" for p in error.problems]) from None


# -- the transport ----------------------------------------------------------------------


class SshTransport:
    """`bot.runbooks.transport.Transport` over SSH. Thread-safe: one instance serves a run's
    parallel hosts; every `connect` makes an independent connection."""

    def __init__(self, identity: Any, known_hosts: KnownHosts, *, keepalive: int = KEEPALIVE):
        self.identity = identity  # paramiko.PKey
        self.known_hosts = known_hosts
        self.keepalive = keepalive

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> SshTransport:
        """From FIREBREAK_SSH_KEY and FIREBREAK_KNOWN_HOSTS (paths); `ConfigError` lists every
        problem with either, naming the variable."""
        problems: list[str] = []
        identity: Any = None
        known_hosts: KnownHosts | None = None
        key_path = environ.get(KEY_VARIABLE, "").strip()
        if not key_path:
            problems.append(
                f"{KEY_VARIABLE} is not set: point it at the private key runbooks log in "
                "with (ed25519, ecdsa or rsa; its public half in the hosts' authorized_keys)"
            )
        else:
            try:
                identity = load_identity(Path(key_path))
            except ConfigError as error:
                problems.extend(error.problems)
        known_path = environ.get(KNOWN_HOSTS_VARIABLE, "").strip()
        if not known_path:
            problems.append(
                f"{KNOWN_HOSTS_VARIABLE} is not set: point it at a known_hosts file pinning "
                "every inventory host's key (`ssh-keyscan -p PORT HOST`, fingerprints checked)"
            )
        else:
            try:
                known_hosts = load_known_hosts(Path(known_path))
            except ConfigError as error:
                problems.extend(error.problems)
        if problems or known_hosts is None:
            raise ConfigError(problems)
        return cls(identity, known_hosts)

    def connect(self, host: Host, *, timeout: float) -> SshConnection:
        sock = _open_socket(host, timeout)
        transport = paramiko.Transport(sock)
        try:
            offered = self._verified_handshake(transport, host, timeout)
            self._authenticate(transport, host, timeout)
            transport.set_keepalive(self.keepalive)
        except BaseException:
            transport.close()
            raise
        return SshConnection(transport, host, fingerprint(offered))

    def _verified_handshake(self, transport: Any, host: Host, timeout: float) -> Any:
        """Key exchange, then the host key check: the offered key, or `HostKeyRejected`."""
        where = f"{host.address}:{host.port}"
        options = transport.get_security_options()
        pinned_algorithms = self.known_hosts.algorithms(host.address, host.port, options.key_types)
        if pinned_algorithms:
            options.key_types = pinned_algorithms
        transport.banner_timeout = timeout
        transport.handshake_timeout = timeout
        transport.auth_timeout = timeout
        try:
            transport.start_client(timeout=timeout)
        except paramiko.SSHException as error:
            if pinned_algorithms and "host key" in str(error).lower():
                self._reject(host, None, "it offers none of the key types pinned for it")
            raise Unreachable(host.name, f"SSH handshake with {where} failed: {error}") from None
        except (EOFError, OSError) as error:
            raise Unreachable(host.name, f"{where} closed the connection: {error}") from None
        offered = transport.get_remote_server_key()
        reason = self.known_hosts.check(host.address, host.port, offered)
        if reason is not None:
            self._reject(host, offered, reason)
        return offered

    def _reject(self, host: Host, offered: Any, reason: str) -> None:
        shown = fingerprint(offered) if offered is not None else None
        detail = f"host key refused: {reason}"
        if offered is not None:
            detail += f" (offered {offered.get_name()} {shown})"
        log.warning("ssh: %s (%s): %s", host.name, host.address, detail)
        raise HostKeyRejected(host.name, detail, fingerprint=shown)

    def _authenticate(self, transport: Any, host: Host, timeout: float) -> None:
        try:
            transport.auth_publickey(host.user, self.identity)
        except paramiko.BadAuthenticationType as error:
            raise AuthFailed(
                host.name,
                f"{host.address} does not accept public keys for {host.user!r} "
                f"(it allows: {', '.join(error.allowed_types) or 'nothing'})",
            ) from None
        except paramiko.AuthenticationException:
            raise AuthFailed(
                host.name,
                f"{host.address} refused the key from {KEY_VARIABLE} for user {host.user!r}: "
                "is its public half in that user's authorized_keys?",
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as error:
            raise Unreachable(host.name, f"connection lost during login: {error}") from None
        if not transport.is_authenticated():
            raise AuthFailed(host.name, f"login as {host.user!r} did not complete")


def _open_socket(host: Host, timeout: float) -> socket.socket:
    where = f"{host.address}:{host.port}"
    try:
        return socket.create_connection((host.address, host.port), timeout=timeout)
    except socket.gaierror as error:
        raise Unreachable(host.name, f"cannot resolve {host.address}: {error.strerror}") from None
    except TimeoutError:
        raise Unreachable(host.name, f"no answer from {where} within {timeout:g}s") from None
    except ConnectionRefusedError:
        raise Unreachable(host.name, f"connection refused by {where} (no SSH server?)") from None
    except OSError as error:
        raise Unreachable(host.name, f"cannot connect to {where}: {error.strerror}") from None


# -- one connection ---------------------------------------------------------------------


class _Output:
    """Hands the first `max_bytes` to the sink and drops the rest, after taking the pid line
    (`<marker><pid>\n`, the first thing our shell prints) out of stdout."""

    def __init__(self, sink: OutputSink, max_bytes: int, marker: bytes) -> None:
        self.sink = sink
        self.left = max(0, max_bytes)
        self.truncated = False
        self.marker = marker
        self.pid: int | None = None
        self._held: bytes | None = b""  # stdout held back until the pid line is found

    def feed(self, stream: Stream, data: bytes) -> None:
        if stream == "stdout" and self._held is not None:
            data = self._take_pid(self._held + data)
        if not data:
            return
        kept = data[: self.left]
        if kept:
            self.left -= len(kept)
            self.sink(stream, kept)
        if len(kept) < len(data):
            self.truncated = True

    def _take_pid(self, held: bytes) -> bytes:
        start = held.find(self.marker)
        end = held.find(b"\n", start) if start >= 0 else -1
        if end >= 0:
            digits = held[start + len(self.marker) : end]
            self.pid = int(digits) if digits.isdigit() else None
            self._held = None
            return held[:start] + held[end + 1 :]
        if len(held) > MARKER_WINDOW:  # a login script printing a lot: give up on the pid
            self._held = None
            return held
        self._held = held
        return b""

    def flush(self) -> None:
        held, self._held = self._held, None
        if held:
            self.feed("stdout", held)


def _drain(channel: Any, output: _Output) -> None:
    while channel.recv_ready():
        output.feed("stdout", channel.recv(CHUNK))
    while channel.recv_stderr_ready():
        output.feed("stderr", channel.recv_stderr(CHUNK))


def _wait(channel: Any, seconds: float) -> None:
    """Wait up to `seconds` for output, the end of output, the exit status or the close."""
    if channel.eof_received or channel.closed:
        channel.status_event.wait(seconds)  # the output is over; only the status is to come
    else:
        select.select([channel], [], [], seconds)


def _ended(channel: Any) -> bool:
    """The command's output is read and its exit status (or the channel's close) is in."""
    if channel.recv_ready() or channel.recv_stderr_ready():
        return False
    if channel.closed:
        return True
    return bool(channel.eof_received and channel.exit_status_ready())


# The watchdog: a background subshell that holds the channel's stdin (kept on fd 3, since a
# POSIX shell gives an `&` list /dev/null for stdin) and, once it reads EOF (our channel or
# the whole connection closed: we never send input), TERMs the step's process group; GNU
# `timeout` passes that on and KILLs the group `KILL_AFTER` seconds later. Armed only when
# stdin is a pipe or socket (sshd's channel), never on a /dev/null that would end at once.
WATCHDOG = (
    "if [ -p /dev/stdin ] || [ -S /dev/stdin ]; then exec 3<&0; "
    "(cat <&3; kill -s TERM -- -$$) >/dev/null 2>&1 & fi"
)


def command_line(argv: tuple[str, ...], timeout: float, marker: str) -> str:
    """What the remote login shell (a POSIX shell, as `shlex.join` quoting assumes) runs:
    print the session's pid behind `marker`, start the `WATCHDOG`, then `exec` the
    `remote_command` with stdin from /dev/null (the channel is the watchdog's alone), so that
    pid is GNU `timeout` itself, the leader of a process group holding everything the step
    (and the watchdog) started. `marker` is ours (letters, digits, dashes), never user input."""
    command = remote_command(argv, timeout)
    return f"echo {marker}$$; {WATCHDOG}; exec {command} </dev/null 3<&-"


class SshConnection:
    """`bot.runbooks.transport.Connection`: one authenticated SSH connection to one host."""

    def __init__(self, transport: Any, host: Host, host_key_fingerprint: str) -> None:
        self._transport = transport
        self._host = host
        self._fingerprint = host_key_fingerprint

    @property
    def host_key_fingerprint(self) -> str:
        return self._fingerprint

    def run(
        self,
        argv: tuple[str, ...],
        *,
        timeout: float,
        on_output: OutputSink,
        cancelled: threading.Event,
        max_bytes: int,
    ) -> CommandResult:
        marker = f"firebreak-pid-{secrets.token_hex(6)}:"
        output = _Output(on_output, max_bytes, marker.encode("ascii"))
        started = time.monotonic()
        local_deadline = started + timeout + KILL_AFTER + GRACE
        channel = self._start(command_line(argv, timeout, marker), timeout)
        stopped: str | None = None
        ended = False
        try:
            while not _ended(channel):
                if cancelled.is_set():
                    stopped = "cancelled"
                    break
                remaining = local_deadline - time.monotonic()
                if remaining <= 0:
                    stopped = "timed_out"
                    break
                _wait(channel, min(POLL, remaining))
                _drain(channel, output)
            ended = stopped is None
            if ended:
                output.flush()
        finally:
            if not ended:  # cancelled, overran, or an exception (a failing sink, say)
                self._stop(channel, output)
            channel.close()
        duration = time.monotonic() - started
        status = channel.exit_status if ended and channel.exit_status_ready() else -1
        exit_code = status if status >= 0 else None  # -1: killed by a signal, or lost
        timed_out = stopped == "timed_out" or (exit_code in TIMED_OUT_CODES and duration >= timeout)
        return CommandResult(
            exit_code=None if timed_out else exit_code,
            duration=duration,
            timed_out=timed_out,
            cancelled=stopped == "cancelled",
            output_truncated=output.truncated,
        )

    def _start(self, line: str, timeout: float) -> Any:
        try:
            channel = self._transport.open_session(timeout=min(timeout, 30.0))
        except (paramiko.SSHException, EOFError, OSError) as error:
            raise Unreachable(self._host.name, f"connection lost: {error}") from None
        try:
            channel.exec_command(line)
        except (paramiko.SSHException, EOFError, OSError) as error:
            channel.close()
            raise HostError(
                self._host.name, f"the host did not start the command: {error}"
            ) from None
        return channel

    def _stop(self, channel: Any, output: _Output) -> None:
        """TERM the remote command's process group, KILL it if it outlives `KILL_AFTER` + 1 s,
        reading (and dropping) output meanwhile so the remote side never blocks on a write."""
        output.left = 0  # a stopped command's last words are not worth a failing sink
        for signal_name, patience in (("TERM", KILL_AFTER + 1.0), ("KILL", GRACE)):
            if _ended(channel):
                return
            self._signal(channel, output.pid, signal_name)
            deadline = time.monotonic() + patience
            while not _ended(channel) and time.monotonic() < deadline:
                _wait(channel, min(POLL, max(0.0, deadline - time.monotonic())))
                _drain(channel, output)
        if not _ended(channel):
            log.warning("ssh: %s: the command did not end after TERM and KILL", self._host.name)

    def _signal(self, channel: Any, pid: int | None, name: str) -> None:
        """Signal the command's process group: `kill -s NAME -- -PID` on a second channel of
        the same connection (works for every user, root included); without a pid, the SSH
        `signal` request, which OpenSSH 7.9+ honours only for non-root logins."""
        if pid is None or pid <= 1:
            _send_signal(channel, name)
            return
        kill = shlex.join(["kill", "-s", name, "--", f"-{pid}"])
        try:
            killer = self._transport.open_session(timeout=KILL_PATIENCE)
        except (paramiko.SSHException, EOFError, OSError) as error:
            log.info(
                "ssh: %s: could not open a channel to stop the command: %s", self._host.name, error
            )
            _send_signal(channel, name)
            return
        try:
            killer.exec_command(kill)
            killer.status_event.wait(KILL_PATIENCE)
        except (paramiko.SSHException, EOFError, OSError) as error:
            log.info("ssh: %s: could not send %s: %s", self._host.name, name, error)
        finally:
            killer.close()

    def close(self) -> None:
        self._transport.close()


def _send_signal(channel: Any, name: str) -> None:
    """The RFC 4254 `signal` channel request (`TERM`, `KILL`: names without `SIG`). paramiko
    has no public call for it; this builds the message exactly as its own
    `Channel.send_exit_status` builds `exit-status`. OpenSSH 7.9+ `killpg`s the session,
    except for root logins (it refuses: "session signalling requires privilege separation")."""
    if channel.closed or not channel.active:
        return
    message = Message()
    message.add_byte(cMSG_CHANNEL_REQUEST)
    message.add_int(channel.remote_chanid)
    message.add_string("signal")
    message.add_boolean(False)  # want_reply
    message.add_string(name)
    try:
        channel.transport._send_user_message(message)
    except (paramiko.SSHException, EOFError, OSError) as error:
        log.info("ssh: could not send %s to the remote command: %s", name, error)
