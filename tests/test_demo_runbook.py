"""bot.sandbox.openssh: the OpenSSH sshd that `firebreak demo` starts for its runbook step,
driven by the real runbook transport (integrations.ssh). It serves the demo's key and
nobody else's, pins to the host key it wrote, says why when sshd is missing or will not
start, and stops without leaving a process behind. (The whole demo, on this server and on
the paramiko fallback, is played in tests/test_cli.py.)"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.runbooks.transport import AuthFailed, Stream
from bot.sandbox.openssh import SSHD, OpenSshServer, SshdUnavailable, sshd_installed
from bot.sandbox.ssh_server import write_new_identity
from integrations.ssh import SshTransport


def _require_sshd() -> None:
    if sshd_installed():
        return
    if os.environ.get("CI") or os.environ.get("FIREBREAK_REQUIRE_SSHD") == "1":
        pytest.fail(f"{SSHD} is missing (required: CI or FIREBREAK_REQUIRE_SSHD=1 is set)")
    pytest.skip(f"{SSHD} is not installed")


def processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that mention `text` (Linux /proc)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = entry.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in command:
            found.append(command)
    return found


@pytest.fixture
def server(tmp_path: Path) -> Iterator[OpenSshServer]:
    _require_sshd()
    with OpenSshServer.with_new_identity(tmp_path / "ssh") as server:
        yield server


def run_echo(transport: SshTransport, server: OpenSshServer, *words: str) -> tuple[int | None, str]:
    connection = transport.connect(server.host("demo-1", ("linux",)), timeout=10)
    output: list[bytes] = []

    def sink(stream: Stream, data: bytes) -> None:
        output.append(data)

    try:
        result = connection.run(
            ("echo", *words),
            timeout=10,
            on_output=sink,
            cancelled=threading.Event(),
            max_bytes=4096,
        )
    finally:
        connection.close()
    return result.exit_code, b"".join(output).decode()


def test_the_demo_key_runs_a_command_on_sshd_pinned_to_its_host_key(
    server: OpenSshServer,
) -> None:
    environ = server.environment()
    assert set(environ) == {"FIREBREAK_SSH_KEY", "FIREBREAK_KNOWN_HOSTS"}
    assert Path(environ["FIREBREAK_KNOWN_HOSTS"]).read_text() == server.known_hosts_line() + "\n"
    assert server.known_hosts_line().startswith(f"[127.0.0.1]:{server.port} ssh-ed25519 ")
    assert oct(Path(environ["FIREBREAK_SSH_KEY"]).stat().st_mode & 0o777) == "0o600"
    transport = SshTransport.from_environment(environ)
    connection = transport.connect(server.host("demo-1"), timeout=10)
    try:
        assert connection.host_key_fingerprint == server.fingerprint
    finally:
        connection.close()
    exit_code, said = run_echo(transport, server, "hello", "a b;$(id)")
    assert (exit_code, said) == (0, "hello a b;$(id)\n")
    assert f"Accepted publickey for {server.user}" in server.log()


def test_another_key_is_refused(server: OpenSshServer, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    write_new_identity(stranger)
    environ = {**server.environment(), "FIREBREAK_SSH_KEY": str(stranger)}
    with pytest.raises(AuthFailed):
        SshTransport.from_environment(environ).connect(server.host("demo-1"), timeout=10)


def test_stop_leaves_no_sshd_and_frees_the_port(tmp_path: Path) -> None:
    _require_sshd()
    directory = tmp_path / "ssh"
    server = OpenSshServer.with_new_identity(directory).start()
    port = server.port
    assert processes_mentioning(str(directory / "sshd_config")), "sshd runs from our config"
    assert run_echo(SshTransport.from_environment(server.environment()), server, "x")[0] == 0
    server.stop()
    assert processes_mentioning(str(directory / "sshd_config")) == []
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    server.stop()  # a second stop is harmless


def test_a_missing_sshd_is_named_with_how_to_install_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-sshd"
    server = OpenSshServer(tmp_path / "ssh", sshd=missing)
    with pytest.raises(SshdUnavailable) as raised:
        server.start()
    assert str(raised.value) == (
        f"{missing} is not installed: install OpenSSH's server "
        "(Debian and Ubuntu: apt-get install openssh-server)"
    )
    assert server.process is None


def test_an_sshd_that_will_not_start_is_reported_in_its_own_words(tmp_path: Path) -> None:
    _require_sshd()
    directory = tmp_path / "ssh"
    server = OpenSshServer(directory)
    server.host_key_path.write_text("not a key\n")  # sshd has no host key it can load
    with pytest.raises(SshdUnavailable) as raised:
        server.start()
    said = str(raised.value)
    assert said.startswith(f"{SSHD} did not start: ")
    assert "host key" in said.lower() or "hostkey" in said.lower(), said
    assert server.process is None
    assert processes_mentioning(str(directory / "sshd_config")) == []
