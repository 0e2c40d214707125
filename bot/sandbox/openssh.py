"""OpenSSH's own sshd, started by `firebreak demo` so its runbook step runs over real SSH.
Sandbox only: never used in production, never a login service for anyone but the demo.

One `sshd -D -e -f CONFIG` process on 127.0.0.1 and a free port, with everything in a
directory the caller owns (and removes): a new ed25519 host key, a new client key (the
demo's FIREBREAK_SSH_KEY) whose public half is the only authorised key, the config, the pid
file and sshd's log. Public keys only, for the current user only, no PAM, no forwarding.
The server is ready when it answers with its SSH banner; nothing here sleeps a fixed time.
Where util-linux's `setpriv` exists, the kernel stops sshd if the thread that started it
dies, so even a killed demo leaves no server behind.

It has the shape of `bot.sandbox.ssh_server.SandboxSshServer` (the paramiko fallback):

    with OpenSshServer.with_new_identity(directory) as server:
        environ = server.environment()      # FIREBREAK_SSH_KEY, FIREBREAK_KNOWN_HOSTS
        host = server.host("demo-1")        # bot.runbooks.plan.Host

The launching (`sshd_config`, `launch_sshd`, `await_banner`, `stop_sshd`) is shared with
tests/sshd.py, which starts sshd fleets for the test suite with ssh-keygen's keys.
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path
from typing import Self

from bot.sandbox.local_ssh import (
    ADDRESS,
    LocalSshServer,
    fingerprint_of,
    known_hosts_line,
    write_new_identity,
)

__all__ = [
    "ADDRESS",
    "INSTALL_HINT",
    "SSHD",
    "OpenSshServer",
    "SshdUnavailable",
    "await_banner",
    "fingerprint_of",
    "free_port",
    "known_hosts_line",
    "launch_sshd",
    "read_log",
    "sshd_config",
    "sshd_installed",
    "stop_sshd",
]

log = logging.getLogger(__name__)

SSHD = Path("/usr/sbin/sshd")  # sshd re-executes itself and insists on an absolute path
READY_TIMEOUT = 10.0  # seconds for a started sshd to answer with its banner
START_ATTEMPTS = 3  # a free port can be taken between our probe and sshd's bind
INSTALL_HINT = "install OpenSSH's server (Debian and Ubuntu: apt-get install openssh-server)"


class SshdUnavailable(RuntimeError):
    """sshd is not installed here, or it did not start; the message says which and why."""


def sshd_installed(sshd: Path = SSHD) -> bool:
    return os.access(sshd, os.X_OK)


class OpenSshServer(LocalSshServer):
    """One sshd in `directory`, listening on 127.0.0.1 once started; a context manager."""

    def __init__(self, directory: Path, *, sshd: Path = SSHD) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.sshd = sshd
        self.user = getpass.getuser()
        self.host_key_path = directory / "host_ed25519"
        self.host_public = write_new_identity(self.host_key_path)
        self.identity_path = directory / "id_ed25519"
        client_public = write_new_identity(self.identity_path)
        self.authorized_keys = directory / "authorized_keys"
        self.authorized_keys.write_text(client_public + " firebreak-demo\n")
        self.process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None

    @classmethod
    def with_new_identity(cls, directory: Path) -> OpenSshServer:
        """A server authorising a new client key written to `directory`/id_ed25519."""
        return cls(directory)

    # -- what clients need --------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("OpenSSH's sshd is not started")
        return self._port

    def public_host_key(self) -> str:
        return self.host_public

    @property
    def log_path(self) -> Path:
        return self.directory / "sshd.log"

    def log(self) -> str:
        return read_log(self.directory)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        """Start sshd and wait for its banner; `SshdUnavailable` (with sshd's own words)
        when it is not installed or does not come up."""
        if not sshd_installed(self.sshd):
            raise SshdUnavailable(f"{self.sshd} is not installed: {INSTALL_HINT}")
        for _attempt in range(START_ATTEMPTS):
            port = free_port()
            config = sshd_config(
                self.directory,
                port,
                host_key=self.host_key_path,
                authorized_keys=self.authorized_keys,
                user=self.user,
                log_level="INFO",
                extra=("AuthenticationMethods publickey",),
            )
            self.process = launch_sshd(self.directory, config, sshd=self.sshd)
            self._port = port
            try:
                ready = await_banner(self.process, port, READY_TIMEOUT, self.log_path)
            except TimeoutError:
                self.stop()
                raise SshdUnavailable(
                    f"{self.sshd} did not answer on {ADDRESS}:{port} within {READY_TIMEOUT:g} s"
                ) from None
            if ready:
                log.info(
                    "sandbox sshd: listening on %s:%d (host key %s)",
                    ADDRESS,
                    self.port,
                    self.fingerprint,
                )
                return self
            # It exited: most likely its port was taken meanwhile; try another.
            self.stop()
        said = " / ".join(line for line in self.log().splitlines()[-3:] if line.strip())
        raise SshdUnavailable(f"{self.sshd} did not start: {said or 'it printed nothing'}")

    def stop(self) -> None:
        """Stop sshd and its per-connection processes (they share its process group)."""
        process, self.process = self.process, None
        if process is not None:
            stop_sshd(process)


# -- launching sshd (shared with tests/sshd.py) -----------------------------------------


def sshd_config(
    directory: Path,
    port: int,
    *,
    host_key: Path,
    authorized_keys: Path,
    user: str,
    log_level: str,
    extra: Sequence[str] = (),
) -> str:
    """An sshd_config for one server on 127.0.0.1:`port`: public keys only, for `user`
    only, no PAM, no forwarding; its pid file in `directory`; `extra` lines last."""
    lines = [
        f"Port {port}",
        f"ListenAddress {ADDRESS}",
        "AddressFamily inet",
        f"HostKey {host_key}",
        f"PidFile {directory / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized_keys}",
        f"AllowUsers {user}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "UsePAM no",
        "StrictModes no",  # the files live in a temporary directory
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "PermitUserEnvironment no",
        "X11Forwarding no",
        "AllowTcpForwarding no",
        "AllowAgentForwarding no",
        "PermitTunnel no",
        "LoginGraceTime 30",
        f"LogLevel {log_level}",
        *extra,
    ]
    return "\n".join(lines) + "\n"


PRIVSEP_DIRECTORY = Path("/run/sshd")
"""OpenSSH's privilege separation directory, which sshd started as root requires. /run is
emptied at every boot, and only the system's own sshd service (systemd-tmpfiles or its init
script) creates it again: on a machine that never started that service, root's sshd would
refuse to start ("Missing privilege separation directory")."""


def prepare_privsep() -> None:
    """Create `PRIVSEP_DIRECTORY` when running as root and it is missing."""
    if os.geteuid() == 0 and not PRIVSEP_DIRECTORY.is_dir():
        PRIVSEP_DIRECTORY.mkdir(mode=0o755, parents=True, exist_ok=True)


def launch_sshd(directory: Path, config: str, *, sshd: Path = SSHD) -> subprocess.Popen[bytes]:
    """Write `config` to `directory`/sshd_config and start `sshd -D -e` on it in its own
    process group (`stop_sshd` signals the group), its output appended to
    `directory`/sshd.log. Where util-linux's `setpriv` exists, the kernel stops sshd when
    the thread that started it goes away: start it from a thread that lives as long as it
    should (the main thread)."""
    prepare_privsep()
    path = directory / "sshd_config"
    path.write_text(config)
    with (directory / "sshd.log").open("ab") as output:
        return subprocess.Popen(  # noqa: S603 - our own sshd, our own config
            [*_die_with_parent(), str(sshd), "-D", "-e", "-f", str(path)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,  # its own process group: stop_sshd() signals the group
        )


def await_banner(process: subprocess.Popen[bytes], port: int, timeout: float, log: Path) -> bool:
    """True once the sshd on `port` answers with its SSH banner and its own `log` (the
    sshd.log `launch_sshd` writes) says it listens there, False when it exits first (most
    likely its port was taken); `TimeoutError` when it does neither within `timeout`
    seconds. The caller stops it in the last two cases. The log line is what makes the
    banner ours: another sshd that took the port between `free_port` and our bind (another
    test run on this machine) answers with a banner too, and clients would then meet a
    host key they do not know."""
    listening = f"Server listening on {ADDRESS} port {port}.".encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if _answers(port) and listening in _read_bytes(log) and process.poll() is None:
            return True
        time.sleep(0.01)  # polling a port that is not listening yet
    raise TimeoutError(f"sshd did not answer on {ADDRESS}:{port} within {timeout:g} s")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def stop_sshd(process: subprocess.Popen[bytes]) -> None:
    """Stop sshd and its per-connection processes (they share its process group)."""
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            process.wait(timeout=5)
    else:
        _signal_group(process, signal.SIGKILL)  # leftover connection handlers


def read_log(directory: Path) -> str:
    """What the sshd launched in `directory` has logged so far ("" when nothing)."""
    try:
        return (directory / "sshd.log").read_text(errors="replace")
    except OSError:
        return ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((ADDRESS, 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    """True when something on the port accepts a connection and sends an SSH banner."""
    try:
        with socket.create_connection((ADDRESS, port), timeout=2) as connection:
            connection.settimeout(2)
            return connection.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _die_with_parent() -> list[str]:
    """`setpriv --pdeathsig TERM` (util-linux) when present."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
