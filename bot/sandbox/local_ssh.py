"""What the demo's two local SSH servers have in common: keys, pinning and the client side.
Sandbox only.

`bot.sandbox.openssh.OpenSshServer` (OpenSSH's sshd) and
`bot.sandbox.ssh_server.SandboxSshServer` (paramiko's server API) both listen on 127.0.0.1,
serve an ed25519 host key and authorise one client key written next to it; `LocalSshServer`
turns that into what a runbook client needs (`host`, `known_hosts_line`, `environment`) and
makes either a context manager. Nothing here imports paramiko.
"""

from __future__ import annotations

import base64
import hashlib
import os
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Self

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bot.runbooks.plan import Host

ADDRESS = "127.0.0.1"


def write_new_identity(path: Path) -> str:
    """A new unencrypted ed25519 private key at `path` (mode 0600, OpenSSH format, what
    FIREBREAK_SSH_KEY points at); returns its public line `ssh-ed25519 AAAA...`."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return public.decode("ascii")


def fingerprint_of(public_line: str) -> str:
    """`SHA256:` + unpadded base64 of the key blob's SHA-256, exactly as `ssh-keygen -l`
    prints it, for a public key line `ssh-ed25519 AAAA... [comment]`."""
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def known_hosts_line(public_line: str, port: int, address: str = ADDRESS) -> str:
    """The key pinned for `address`:`port` as OpenSSH writes it for a non-22 port."""
    kind, blob = public_line.split()[:2]
    return f"[{address}]:{port} {kind} {blob}"


class LocalSshServer(ABC):
    """A started server on 127.0.0.1 for the current user; a context manager.

    Subclasses set `user` and `identity_path` (the client key's file, when they made it)
    and provide `port`, `public_host_key`, `start` and `stop`."""

    user: str
    identity_path: Path | None

    @property
    @abstractmethod
    def port(self) -> int: ...

    @abstractmethod
    def public_host_key(self) -> str:
        """The host key's public line, `ssh-ed25519 AAAA...`."""

    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def stop(self) -> None: ...

    # -- what clients need --------------------------------------------------------------

    @property
    def address(self) -> str:
        return ADDRESS

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.public_host_key())

    def known_hosts_line(self) -> str:
        return known_hosts_line(self.public_host_key(), self.port)

    def write_known_hosts(self, path: Path) -> Path:
        path.write_text(self.known_hosts_line() + "\n")
        return path

    def host(self, name: str = "sandbox", groups: tuple[str, ...] = ()) -> Host:
        return Host(name=name, address=ADDRESS, port=self.port, user=self.user, groups=groups)

    def environment(self) -> dict[str, str]:
        """FIREBREAK_SSH_KEY and FIREBREAK_KNOWN_HOSTS for a server made by
        `with_new_identity` (the known_hosts file is written next to the key)."""
        if self.identity_path is None:
            raise RuntimeError("environment() needs a server made by with_new_identity()")
        known_hosts = self.write_known_hosts(self.identity_path.with_name("known_hosts"))
        return {
            "FIREBREAK_SSH_KEY": str(self.identity_path),
            "FIREBREAK_KNOWN_HOSTS": str(known_hosts),
        }

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()
