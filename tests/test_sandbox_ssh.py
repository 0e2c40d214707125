"""bot.sandbox.ssh_server: the demo's SSH server on paramiko's server API, driven by the real
runbook transport (integrations.ssh) and by OpenSSH's own `ssh` client.

It must behave like sshd where the transport can tell: argv arrives intact through
`/bin/sh -c`, exit codes and the two streams pass through, large output flows, a pinned host
key is checked, only the one authorised key logs in, cancel and timeouts leave nothing
running, and it offers nothing but exec sessions on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from bot.runbooks.transport import AuthFailed, CommandResult, HostKeyRejected
from bot.sandbox.ssh_server import SandboxSshServer, new_ed25519_key, write_new_identity
from integrations.ssh import SshConnection, SshTransport, load_identity
from tests.conftest import wait_for
from tests.test_ssh_transport import (
    CORPUS,
    FLOOD,
    FLOOD_BYTES,
    PRINT,
    processes_with,
    run,
    run_past_its_timeout,
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[SandboxSshServer]:
    with SandboxSshServer.with_new_identity(tmp_path / "ssh") as server:
        yield server


@pytest.fixture
def connection(server: SandboxSshServer) -> Iterator[SshConnection]:
    transport = SshTransport.from_environment(server.environment())
    connection = transport.connect(server.host("demo"), timeout=10)
    yield connection
    connection.close()


def test_argv_arrives_intact_through_sh_c(connection: SshConnection, tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    values = [*CORPUS, f"; touch {pwned}", f"$(touch {pwned})", f"`touch {pwned}`"]
    ran = run(connection, (*PRINT, *values))
    assert ran.result.exit_code == 0, ran.stream("stderr")
    assert json.loads(ran.stream("stdout")) == values
    assert not pwned.exists()


@pytest.mark.parametrize("code", [0, 1, 3, 255])
def test_exit_codes_and_streams_pass_through(connection: SshConnection, code: int) -> None:
    script = f"import sys; print('out'); print('err', file=sys.stderr); sys.exit({code})"
    ran = run(connection, (sys.executable, "-c", script))
    assert ran.result.exit_code == code
    assert (ran.stream("stdout"), ran.stream("stderr")) == (b"out\n", b"err\n")


def test_ten_megabytes_flow_whole(connection: SshConnection) -> None:
    ran = run(connection, (sys.executable, "-c", FLOOD), max_bytes=FLOOD_BYTES)
    assert ran.result.exit_code == 3 and not ran.result.output_truncated
    assert len(ran.stream("stdout")) + len(ran.stream("stderr")) == FLOOD_BYTES


def test_the_host_key_is_pinned(server: SandboxSshServer, tmp_path: Path) -> None:
    environ = server.environment()
    connection = SshTransport.from_environment(environ).connect(server.host(), timeout=10)
    assert connection.host_key_fingerprint == server.fingerprint
    connection.close()
    other = new_ed25519_key()
    known = tmp_path / "other_known_hosts"
    known.write_text(f"[127.0.0.1]:{server.port} ssh-ed25519 {other.get_base64()}\n")
    impostor_view = SshTransport.from_environment(environ | {"FIREBREAK_KNOWN_HOSTS": str(known)})
    with pytest.raises(HostKeyRejected) as caught:
        impostor_view.connect(server.host(), timeout=10)
    assert caught.value.fingerprint == server.fingerprint


def test_only_the_authorised_key_and_user_log_in(server: SandboxSshServer, tmp_path: Path) -> None:
    transport = SshTransport.from_environment(server.environment())
    write_new_identity(tmp_path / "stranger")
    stranger = SshTransport(load_identity(tmp_path / "stranger"), transport.known_hosts)
    with pytest.raises(AuthFailed):
        stranger.connect(server.host(), timeout=10)
    host = server.host()
    with pytest.raises(AuthFailed):
        transport.connect(type(host)(host.name, host.address, host.port, "nobody-else"), timeout=10)


def test_passwords_and_forwarding_are_refused(server: SandboxSshServer) -> None:
    client = paramiko.Transport(("127.0.0.1", server.port))
    try:
        client.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType) as caught:
            client.auth_password(server.user, "anything")
        assert caught.value.allowed_types == ["publickey"]
    finally:
        client.close()
    transport = SshTransport.from_environment(server.environment())
    connection = transport.connect(server.host(), timeout=10)
    try:
        with pytest.raises(paramiko.ChannelException):
            connection._transport.open_channel(
                "direct-tcpip", ("127.0.0.1", server.port), ("127.0.0.1", 1), timeout=10
            )
        session = connection._transport.open_session(timeout=10)
        with pytest.raises(paramiko.SSHException):
            session.invoke_shell()
    finally:
        connection.close()


def test_it_listens_on_loopback_only(server: SandboxSshServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as probe:
        assert probe.recv(64).startswith(b"SSH-2.0-")
    assert server._socket is not None
    assert server._socket.getsockname()[0] == "127.0.0.1"


def _sleeper(marker: str) -> tuple[str, ...]:
    return (sys.executable, "-c", "import time; print('up', flush=True); time.sleep(600)", marker)


def test_cancel_and_timeout_leave_nothing_running(
    connection: SshConnection, tmp_path: Path
) -> None:
    marker = f"firebreak-test-{uuid.uuid4().hex}"
    cancelled = threading.Event()

    def cancel() -> None:
        wait_for(lambda: processes_with(marker), timeout=30)
        cancelled.set()

    threading.Thread(target=cancel, daemon=True).start()
    ran = run(connection, _sleeper(marker), timeout=600, cancelled=cancelled)
    assert ran.result.cancelled and ran.result.exit_code is None
    assert processes_with(marker) == []

    ran, marker = run_past_its_timeout(connection, tmp_path)
    assert ran.result.timed_out and ran.result.exit_code is None
    assert processes_with(marker) == []


def test_stop_kills_running_commands(tmp_path: Path) -> None:
    marker = f"firebreak-test-{uuid.uuid4().hex}"
    server = SandboxSshServer.with_new_identity(tmp_path / "ssh").start()
    connection = SshTransport.from_environment(server.environment()).connect(
        server.host(), timeout=10
    )
    # Stop once the client has the command's first output: its exec request was answered
    # and it runs (seeing the process alone is not enough: the answer may still be on its
    # way, and a stop then is the client's "the host did not start the command").
    up = threading.Event()
    outcome: list[CommandResult | BaseException] = []

    def client() -> None:
        try:
            outcome.append(
                connection.run(
                    _sleeper(marker),
                    timeout=600,
                    on_output=lambda stream, data: up.set(),
                    cancelled=threading.Event(),
                    max_bytes=1 << 20,
                )
            )
        except BaseException as error:
            outcome.append(error)

    waiter = threading.Thread(target=client, daemon=True)
    waiter.start()
    assert up.wait(30), "the command never printed"
    assert processes_with(marker)
    server.stop()
    assert processes_with(marker) == []
    waiter.join(30)  # and the client learns the command is over
    assert len(outcome) == 1
    result = outcome[0]
    assert isinstance(result, CommandResult), result
    assert result.exit_code is None and not result.timed_out
    connection.close()


def test_openssh_client_speaks_to_it(server: SandboxSshServer, tmp_path: Path) -> None:
    ssh = shutil.which("ssh")
    if ssh is None:
        if os.environ.get("CI") or os.environ.get("FIREBREAK_REQUIRE_SSHD") == "1":
            pytest.fail("OpenSSH's ssh client is missing (openssh-server brings it)")
        pytest.skip("OpenSSH's ssh client is not installed")
    environ = server.environment()
    completed = subprocess.run(
        [
            ssh,
            "-F",
            "/dev/null",
            "-i",
            environ["FIREBREAK_SSH_KEY"],
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={environ['FIREBREAK_KNOWN_HOSTS']}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-p",
            str(server.port),
            f"{server.user}@127.0.0.1",
            "echo out; echo err >&2; exit 7",
        ],
        capture_output=True,
        timeout=60,
    )
    assert (completed.returncode, completed.stdout) == (7, b"out\n")
    assert b"err\n" in completed.stderr
