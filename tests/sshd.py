"""Real OpenSSH `sshd` servers on 127.0.0.1 for the runbook tests and the benchmark.

Each server is one `sshd -D -e -f <config>` process on a free port with its own ed25519
host key, one authorised client key (shared by all servers of a run), public keys only, no
PAM and `StrictModes no` (the files live in a temporary directory). Its log (sshd's stderr)
goes to a file next to its config, so a failing test can print it. A server is ready when it
answers a TCP connection with its SSH banner; nothing here sleeps a fixed time. The config,
launching, readiness and stopping are `bot.sandbox.openssh`'s (the demo's sshd); this adds
ssh-keygen keys, fleets started in parallel and the pytest fixtures.

The remote user is whoever runs the tests (root in CI), so "remote" commands run on this
machine: a test can look for a leftover process with `pgrep` or `/proc`.

Use it from a test:

    def test_x(sshd_hosts):
        fleet = sshd_hosts(3)                   # three servers, stopped after the test
        known_hosts = fleet.write_known_hosts() # `[127.0.0.1]:PORT ssh-ed25519 ...` lines
        hosts = fleet.hosts()                   # bot.runbooks.plan.Host per server
        environ = fleet.environment()           # FIREBREAK_SSH_KEY, FIREBREAK_KNOWN_HOSTS

and without pytest (benchmarks): `with start_fleet(Path(dir), 20) as fleet: ...`.

A missing /usr/sbin/sshd skips the tests that need it, unless CI or FIREBREAK_REQUIRE_SSHD=1
is set: then they fail, since `.ci/run` installs openssh-server.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.runbooks.plan import Host
from bot.sandbox.openssh import (
    SSHD,
    await_banner,
    fingerprint_of,
    known_hosts_line,
    launch_sshd,
    read_log,
    sshd_config,
    stop_sshd,
)
from bot.sandbox.openssh import free_port as _free_port

READY_TIMEOUT = 15.0  # seconds for a started sshd to answer with its banner
START_ATTEMPTS = 5  # a free port can be taken between our probe and sshd's bind
INSTALL_HINT = "install the Debian package openssh-server (apt-get install openssh-server)"


class SshdMissing(RuntimeError):
    """OpenSSH's sshd (or ssh-keygen) is not installed here."""


class SshdFailed(RuntimeError):
    """An sshd did not start; the message carries its log."""


# -- keys -------------------------------------------------------------------------------


def ssh_keygen() -> str:
    path = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
    if not os.access(path, os.X_OK):
        raise SshdMissing(f"ssh-keygen not found: {INSTALL_HINT}")
    return path


@dataclass(frozen=True)
class KeyPair:
    path: Path  # the private key (an identity file)
    public: str  # "ssh-ed25519 AAAA... comment"

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.public)


def generate_key(path: Path, comment: str = "firebreak-test", kind: str = "ed25519") -> KeyPair:
    """A new unencrypted key pair at `path` (and `path`.pub), made by OpenSSH's ssh-keygen."""
    subprocess.run(
        [ssh_keygen(), "-q", "-t", kind, "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    public = path.with_name(path.name + ".pub").read_text().strip()
    return KeyPair(path=path, public=public)


# -- one server -------------------------------------------------------------------------


@dataclass
class SshServer:
    name: str
    port: int
    host_key: KeyPair  # host_key.path is the private host key sshd serves
    directory: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    user: str = field(default_factory=getpass.getuser)
    address: str = "127.0.0.1"

    @property
    def host_key_path(self) -> Path:
        return self.host_key.path

    @property
    def fingerprint(self) -> str:
        return self.host_key.fingerprint

    @property
    def log_path(self) -> Path:
        return self.directory / "sshd.log"

    def known_hosts_line(self) -> str:
        """This server's pinned key as OpenSSH writes it for a non-22 port."""
        return known_hosts_line(self.host_key.public, self.port, self.address)

    def host(self, name: str | None = None, *, user: str | None = None) -> Host:
        return Host(
            name=name or self.name,
            address=self.address,
            port=self.port,
            user=user or self.user,
            groups=("sshd",),
        )

    def log(self) -> str:
        return read_log(self.directory)

    def stop(self) -> None:
        """Stop sshd and its per-connection processes (they share its process group)."""
        stop_sshd(self.process)


_OPTIONAL_OPTIONS: list[str] | None = None


def _optional_options(directory: Path) -> list[str]:
    """Options newer OpenSSH versions need for a test server (9.8+ penalises a source that
    fails authentication, which our auth-failure tests do on purpose); older sshd rejects
    unknown options, so each is kept only if `sshd -t` accepts it."""
    global _OPTIONAL_OPTIONS
    if _OPTIONAL_OPTIONS is None:
        keep = []
        for option in ("PerSourcePenalties no",):
            config = directory / "probe_config"
            config.write_text(f"{option}\nHostKey {directory / 'probe_key'}\n")
            if not (directory / "probe_key").exists():
                generate_key(directory / "probe_key", "probe")
            checked = subprocess.run(
                [SSHD, "-t", "-f", str(config)], capture_output=True, check=False
            )
            if checked.returncode == 0:
                keep.append(option)
        _OPTIONAL_OPTIONS = keep
    return _OPTIONAL_OPTIONS


def _launch(directory: Path, name: str, authorized_keys: Path) -> SshServer:
    server_directory = directory / name
    server_directory.mkdir(parents=True, exist_ok=True)
    host_key_path = server_directory / "host_ed25519"
    host_key = (
        KeyPair(host_key_path, host_key_path.with_name("host_ed25519.pub").read_text().strip())
        if host_key_path.exists()
        else generate_key(host_key_path, f"{name}-host-key")
    )
    port = _free_port()
    config = sshd_config(
        server_directory,
        port,
        host_key=host_key_path,
        authorized_keys=authorized_keys,
        user=getpass.getuser(),
        log_level="VERBOSE",
        extra=[
            "KbdInteractiveAuthentication no",
            "MaxStartups 200",
            "MaxSessions 100",
            *_optional_options(directory),
        ],
    )
    process = launch_sshd(server_directory, config, sshd=SSHD)
    return SshServer(
        name=name, port=port, host_key=host_key, directory=server_directory, process=process
    )


def _wait_ready(server: SshServer) -> bool:
    """Wait until the server answers (True) or its process has exited (False)."""
    try:
        return await_banner(
            server.process, server.port, READY_TIMEOUT, server.directory / "sshd.log"
        )
    except TimeoutError:
        server.stop()
        raise SshdFailed(
            f"sshd {server.name} did not answer within {READY_TIMEOUT:g}s:\n{server.log()}"
        ) from None


def require_sshd() -> None:
    if not os.access(SSHD, os.X_OK):
        raise SshdMissing(f"{SSHD} not found: {INSTALL_HINT}")
    ssh_keygen()


# -- a fleet of servers -----------------------------------------------------------------


class Fleet(Sequence[SshServer]):
    """Servers started together, sharing one authorised client key; a sequence of them."""

    def __init__(self, directory: Path, client_key: KeyPair, servers: list[SshServer]) -> None:
        self.directory = directory
        self.client_key = client_key
        self.servers = servers

    def __getitem__(self, index: int) -> SshServer:  # type: ignore[override]
        return self.servers[index]

    def __len__(self) -> int:
        return len(self.servers)

    def __iter__(self) -> Iterator[SshServer]:
        return iter(self.servers)

    @property
    def identity(self) -> Path:
        """The client's private key (what FIREBREAK_SSH_KEY points at)."""
        return self.client_key.path

    def hosts(self) -> list[Host]:
        return [server.host() for server in self.servers]

    def write_known_hosts(
        self,
        path: Path | None = None,
        servers: Sequence[SshServer] | None = None,
        *,
        hashed: bool = False,
    ) -> Path:
        """A known_hosts file pinning `servers` (default: all); `hashed` runs `ssh-keygen -H`
        over it, as OpenSSH's HashKnownHosts does."""
        path = path or self.directory / ("known_hosts_hashed" if hashed else "known_hosts")
        chosen = self.servers if servers is None else servers
        path.write_text("".join(server.known_hosts_line() + "\n" for server in chosen))
        if hashed:
            subprocess.run([ssh_keygen(), "-H", "-f", str(path)], check=True, capture_output=True)
            path.with_name(path.name + ".old").unlink(missing_ok=True)
        return path

    def environment(self, known_hosts: Path | None = None) -> dict[str, str]:
        return {
            "FIREBREAK_SSH_KEY": str(self.identity),
            "FIREBREAK_KNOWN_HOSTS": str(known_hosts or self.write_known_hosts()),
        }

    def logs(self) -> str:
        return "\n".join(f"--- {server.name} ---\n{server.log()}" for server in self.servers)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def start_servers(directory: Path, authorized_keys: Path, names: Sequence[str]) -> list[SshServer]:
    """Start one sshd per name (all launched first, then each awaited) and return them ready."""
    require_sshd()
    launched: list[SshServer] = []
    try:
        pending = [_launch(directory, name, authorized_keys) for name in names]
        launched.extend(pending)
        started: list[SshServer] = []
        for attempt in range(START_ATTEMPTS):
            failed = [server for server in pending if not _wait_ready(server)]
            started.extend(server for server in pending if server not in failed)
            if not failed:
                return sorted(started, key=lambda server: names.index(server.name))
            if attempt == START_ATTEMPTS - 1:
                raise SshdFailed(
                    "sshd exited before answering:\n"
                    + "\n".join(f"--- {s.name} ---\n{s.log()}" for s in failed)
                )
            # Most likely its port was taken meanwhile: launch again on a new port.
            pending = [_launch(directory, server.name, authorized_keys) for server in failed]
            launched.extend(pending)
    except BaseException:
        for server in launched:
            server.stop()
        raise
    raise AssertionError("unreachable")


class FleetFactory:
    """`factory(count)` starts `count` new servers; `stop()` stops every one it started."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.fleets: list[Fleet] = []
        self._client_key: KeyPair | None = None
        self._number = 0

    @property
    def client_key(self) -> KeyPair:
        if self._client_key is None:
            require_sshd()
            self.directory.mkdir(parents=True, exist_ok=True)
            self._client_key = generate_key(self.directory / "client_ed25519", "firebreak-client")
            (self.directory / "authorized_keys").write_text(self._client_key.public + "\n")
        return self._client_key

    def __call__(self, count: int = 1, *, prefix: str = "sshd") -> Fleet:
        client_key = self.client_key
        names = [f"{prefix}-{self._number + index + 1}" for index in range(count)]
        self._number += count
        servers = start_servers(self.directory, self.directory / "authorized_keys", names)
        fleet = Fleet(self.directory, client_key, servers)
        self.fleets.append(fleet)
        return fleet

    def stop(self) -> None:
        for fleet in self.fleets:
            fleet.stop()


@contextmanager
def start_fleet(directory: Path, count: int, *, prefix: str = "host") -> Iterator[Fleet]:
    """For code outside pytest (the benchmark): `count` servers, stopped on exit."""
    factory = FleetFactory(directory)
    try:
        yield factory(count, prefix=prefix)
    finally:
        factory.stop()


# -- pytest fixtures --------------------------------------------------------------------


def _required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("FIREBREAK_REQUIRE_SSHD") == "1"


def _skip_or_fail(error: SshdMissing) -> None:
    if _required():
        pytest.fail(f"{error} (required: CI or FIREBREAK_REQUIRE_SSHD=1 is set)")
    pytest.skip(str(error))


@contextmanager
def _factory(prefix: str) -> Iterator[Callable[..., Fleet]]:
    # A short directory: sshd paths and socket names stay well under system limits.
    with tempfile.TemporaryDirectory(prefix=f"fb-{prefix}-") as directory:
        factory = FleetFactory(Path(directory))

        def start(count: int = 1, *, prefix: str = "sshd") -> Fleet:
            try:
                return factory(count, prefix=prefix)
            except SshdMissing as error:
                _skip_or_fail(error)
                raise

        try:
            yield start
        finally:
            factory.stop()


@pytest.fixture
def sshd_hosts() -> Iterator[Callable[..., Fleet]]:
    """`sshd_hosts(count=1)` -> a Fleet of new sshd servers, stopped after the test."""
    with _factory("test") as start:
        yield start


@pytest.fixture(scope="module")
def sshd_hosts_module() -> Iterator[Callable[..., Fleet]]:
    """Like `sshd_hosts`, for servers shared by a module's tests (stopped after the module)."""
    with _factory("module") as start:
        yield start
