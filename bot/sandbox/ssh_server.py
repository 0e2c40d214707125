"""A small SSH server on paramiko's server API, so `firebreak demo` can run a runbook on a
machine without OpenSSH's sshd. Sandbox only: never used in production, never a login service.

It behaves like sshd where the runbook transport can tell: it listens on 127.0.0.1 only,
serves its own ed25519 host key, accepts exactly one public key (for the current user: it
cannot change users) and no passwords, opens `session` channels only (no shell, pty,
subsystem or forwarding), and runs an exec request as `/bin/sh -c COMMAND` in a new session
(so the command is a process-group leader, as under sshd) with a small sshd-like
environment, streaming stdout and stderr back as they come and sending the exit status (or
the exit signal) last. Unlike sshd it kills a command whose channel or connection goes away,
and `stop()` kills every command still running.

    with SandboxSshServer.with_new_identity(directory) as server:
        environ = server.environment()      # FIREBREAK_SSH_KEY, FIREBREAK_KNOWN_HOSTS
        host = server.host("demo-host")     # bot.runbooks.plan.Host
"""

from __future__ import annotations

import base64
import getpass
import io
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import IO, Any, Self

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paramiko.common import cMSG_CHANNEL_REQUEST
from paramiko.message import Message

from bot.sandbox.local_ssh import ADDRESS, LocalSshServer, fingerprint_of, write_new_identity

log = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
CHUNK = 32768
HANDSHAKE_TIMEOUT = 15.0


# -- keys -------------------------------------------------------------------------------


def new_ed25519_key() -> Any:
    """A fresh in-memory ed25519 key as a paramiko key (paramiko cannot generate one)."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode("ascii")))


def _public_key(line: str) -> Any:
    kind, blob = line.split()[:2]
    return paramiko.PKey.from_type_string(kind, base64.b64decode(blob))


def _public_line(key: Any) -> str:
    return f"{key.get_name()} {key.get_base64()}"


# -- one exec request -------------------------------------------------------------------


class _Command:
    """One `/bin/sh -c` process bound to one channel: output pumped back, status sent last."""

    def __init__(self, channel: Any, command: bytes, environment: dict[str, str], home: str):
        self.channel = channel
        self.process = subprocess.Popen(  # noqa: S603 - running commands is this server's job
            [b"/bin/sh", b"-c", command],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=home,
            env=environment,
            start_new_session=True,  # its own session and process group, as under sshd
        )
        self._lock = threading.Lock()
        self._pumps = [
            threading.Thread(target=self._pump, args=(stream, send), daemon=True)
            for stream, send in (
                (self.process.stdout, channel.sendall),
                (self.process.stderr, channel.sendall_stderr),
            )
        ]
        threading.Thread(target=self._run, daemon=True, name="sandbox-ssh-exec").start()

    def _pump(self, stream: IO[bytes], send: Callable[[bytes], None]) -> None:
        lost = False
        for data in iter(lambda: os.read(stream.fileno(), CHUNK), b""):
            if lost:
                continue  # keep reading so the command never blocks on a full pipe
            try:
                send(data)
            except (OSError, EOFError, paramiko.SSHException):
                lost = True
                self.kill()  # the client went away: the command goes too
        stream.close()

    def _run(self) -> None:
        for pump in self._pumps:
            pump.start()
        for pump in self._pumps:
            pump.join()
        status = self.process.wait()
        try:
            if status >= 0:
                self.channel.send_exit_status(status)
            else:
                _send_exit_signal(self.channel, -status)
            self.channel.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            self.channel.close()

    def kill(self) -> None:
        """SIGKILL the command's process group (it may have started more processes); only
        while its leader is not yet reaped, so the group id cannot belong to anyone else."""
        if self.process.poll() is None:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def wait_gone(self, timeout: float = 5.0) -> None:
        """Wait until no process of the group is left running (zombies aside)."""
        deadline = time.monotonic() + timeout
        while _group_running(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.01)


def _group_running(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    processes = Path("/proc")
    if not processes.is_dir():
        return True  # not Linux: a group that answers counts as running
    for stat in processes.glob("[0-9]*/stat"):
        try:
            state, _parent, process_group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue
        if int(process_group) == group and state != "Z":
            return True
    return False


def _send_exit_signal(channel: Any, signum: int) -> None:
    """RFC 4254 6.10 `exit-signal`, as sshd sends for a command killed by a signal
    (paramiko has `send_exit_status` but nothing for this)."""
    name = (
        signal.Signals(signum).name.removeprefix("SIG")
        if signum in signal.valid_signals()
        else "KILL"
    )
    message = Message()
    message.add_byte(cMSG_CHANNEL_REQUEST)
    message.add_int(channel.remote_chanid)
    message.add_string("exit-signal")
    message.add_boolean(False)
    message.add_string(name)
    message.add_boolean(False)  # core dumped
    message.add_string("")
    message.add_string("")
    channel.transport._send_user_message(message)


# -- the paramiko server interface -------------------------------------------------------


class _Policy(paramiko.ServerInterface):  # type: ignore[misc]
    def __init__(self, server: SandboxSshServer, peer: tuple[str, int]) -> None:
        self.server = server
        self.peer = peer

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_none(self, username: str) -> int:
        return int(paramiko.AUTH_FAILED)

    def check_auth_password(self, username: str, password: str) -> int:
        return int(paramiko.AUTH_FAILED)

    def check_auth_publickey(self, username: str, key: Any) -> int:
        if username == self.server.user and key.asbytes() == self.server.authorized_key.asbytes():
            return int(paramiko.AUTH_SUCCESSFUL)
        log.info("sandbox ssh: refused key %s for %r", fingerprint_of(_public_line(key)), username)
        return int(paramiko.AUTH_FAILED)

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return int(paramiko.OPEN_SUCCEEDED)
        return int(paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED)

    def check_channel_exec_request(self, channel: Any, command: bytes) -> bool:
        return self.server._execute(channel, command, self.peer)


# -- the server -------------------------------------------------------------------------


class SandboxSshServer(LocalSshServer):
    """Listens on 127.0.0.1 (port 0: a free one) once started; a context manager."""

    def __init__(
        self,
        authorized_key: str | Any,
        *,
        host_key: Any = None,
        port: int = 0,
        identity_path: Path | None = None,
    ) -> None:
        self.authorized_key = (
            _public_key(authorized_key) if isinstance(authorized_key, str) else authorized_key
        )
        self.host_key = host_key if host_key is not None else new_ed25519_key()
        self.identity_path = identity_path  # the client key's file, when we made it
        self.user = getpass.getuser()
        self._requested_port = port
        self._socket: socket.socket | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._transports: list[Any] = []
        self._commands: list[_Command] = []
        self._acceptor: threading.Thread | None = None

    @classmethod
    def with_new_identity(cls, directory: Path) -> SandboxSshServer:
        """A server authorising a new client key written to `directory`/id_ed25519."""
        directory.mkdir(parents=True, exist_ok=True)
        identity = directory / "id_ed25519"
        return cls(write_new_identity(identity), identity_path=identity)

    # -- what clients need --------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the sandbox SSH server is not started")
        return int(self._socket.getsockname()[1])

    def public_host_key(self) -> str:
        return _public_line(self.host_key)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Self:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((ADDRESS, self._requested_port))
        listener.listen(64)
        self._socket = listener
        self._acceptor = threading.Thread(target=self._accept, daemon=True, name="sandbox-ssh")
        self._acceptor.start()
        log.info(
            "sandbox ssh: listening on %s:%d (host key %s)", ADDRESS, self.port, self.fingerprint
        )
        return self

    def stop(self) -> None:
        """Stop listening, kill every command still running, close every connection."""
        self._stopping.set()
        if self._socket is not None:
            with suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
            self._socket.close()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        with self._lock:
            commands, transports = list(self._commands), list(self._transports)
        for command in commands:
            command.kill()
        for command in commands:
            command.wait_gone()
        for transport in transports:
            transport.close()

    # -- internals ----------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._socket is not None
        while not self._stopping.is_set():
            try:
                connection, peer = self._socket.accept()
            except OSError:
                return  # the listener was closed by stop()
            threading.Thread(
                target=self._serve, args=(connection, peer), daemon=True, name="sandbox-ssh-conn"
            ).start()

    def _serve(self, connection: socket.socket, peer: tuple[str, int]) -> None:
        transport = paramiko.Transport(connection)
        transport.add_server_key(self.host_key)
        with self._lock:
            if self._stopping.is_set():
                transport.close()
                return
            self._transports.append(transport)
        try:
            transport.start_server(server=_Policy(self, peer))
            # Exec requests are served from the transport's own thread (the callback); this
            # thread holds the open channels (paramiko closes an unreferenced one) until the
            # connection ends.
            channels: list[Any] = []
            while transport.is_active() and not self._stopping.is_set():
                channel = transport.accept(timeout=1.0)
                channels = [c for c in channels if not c.closed]
                if channel is not None:
                    channels.append(channel)
        except (paramiko.SSHException, EOFError, OSError) as error:
            log.info("sandbox ssh: connection from %s:%d ended: %s", *peer, error)
        finally:
            transport.close()
            with self._lock:
                self._transports.remove(transport)
                finished = [c for c in self._commands if c.channel.get_transport() is transport]
            for command in finished:
                command.kill()  # the connection is gone: so are its commands

    def _execute(self, channel: Any, command: bytes, peer: tuple[str, int]) -> bool:
        """Start `command` for `channel`; False (the exec request refused) once `stop()` has
        begun. The process starts and is registered under the lock `stop()` takes to list
        the commands it kills, so none can start unseen between the two."""
        home = os.path.expanduser("~")
        environment = {
            "PATH": DEFAULT_PATH,
            "HOME": home,
            "USER": self.user,
            "LOGNAME": self.user,
            "SHELL": "/bin/sh",
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "SSH_CONNECTION": f"{peer[0]} {peer[1]} {ADDRESS} {self.port}",
            "SSH_CLIENT": f"{peer[0]} {peer[1]} {self.port}",
        }
        with self._lock:
            if self._stopping.is_set():
                return False
            running = _Command(channel, command, environment, home)
            self._commands = [c for c in self._commands if c.process.poll() is None]
            self._commands.append(running)
        return True
