"""The pinned host keys: an OpenSSH known_hosts file, read strictly.

Only the file named by FIREBREAK_KNOWN_HOSTS is ever consulted (never ~/.ssh or /etc/ssh).
Understood: plain names (`web-1.example.com`, `10.0.0.5`), `[host]:port` names for ports
other than 22, comma-separated name lists, hashed names (`|1|salt|hash`, as `ssh-keygen -H`
writes them), several keys per host (any one of them is accepted, as during a key rotation)
and `@revoked` lines (that key is refused for every host, whatever names the line has). Wildcards, negations and
`@cert-authority` are refused when the file is loaded, with the line: a pinned file lists
each host's keys explicitly. Every malformed line is reported, never skipped silently.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

MAX_PROBLEMS = 20
RSA_ALGORITHMS = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")
SUPPORTED_TYPES = "ssh-ed25519, ecdsa-sha2-nistp256/384/521 or ssh-rsa"


class KnownHostsError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def fingerprint(key: Any) -> str:
    """`SHA256:` + unpadded base64 of the key blob's SHA-256, as `ssh` and `ssh-keygen -l` show."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def host_name(address: str, port: int) -> str:
    """The name OpenSSH looks up: `address` on port 22, `[address]:port` otherwise."""
    address = address.lower()
    return address if port == 22 else f"[{address}]:{port}"


def _hashed_matches(entry: str, name: str) -> bool:
    parts = entry.split("|")  # "", "1", salt, hash
    if len(parts) != 4:
        return False
    try:
        salt = base64.b64decode(parts[2], validate=True)
        expected = base64.b64decode(parts[3], validate=True)
    except (binascii.Error, ValueError):
        return False
    actual = hmac.new(salt, name.encode("utf-8"), hashlib.sha1).digest()
    return hmac.compare_digest(actual, expected)


@dataclass(frozen=True)
class Entry:
    names: tuple[str, ...]  # lower-case plain names, or `|1|salt|hash` hashed ones
    key_type: str
    blob: bytes
    key: Any  # paramiko.PKey
    revoked: bool
    line: int

    def matches(self, name: str) -> bool:
        return any(
            _hashed_matches(entry, name) if entry.startswith("|1|") else entry == name
            for entry in self.names
        )


def _parse_line(text: str) -> tuple[tuple[str, ...], str, bytes, Any, bool]:
    """One non-comment line -> (names, key type, blob, key, revoked); ValueError says why."""
    fields = text.split()
    revoked = False
    if fields[0].startswith("@"):
        marker = fields.pop(0)
        if marker == "@revoked":
            revoked = True
        elif marker == "@cert-authority":
            raise ValueError(
                "@cert-authority lines are not supported: pin each host's own key instead "
                "(ssh-keyscan -t ed25519 HOST, then check its fingerprint)"
            )
        else:
            raise ValueError(f"unknown marker {marker!r} (only @revoked is supported)")
    if len(fields) < 3:
        raise ValueError("expected `HOSTS KEYTYPE BASE64KEY [comment]`")
    names_field, key_type, encoded = fields[:3]
    names = tuple(
        name if name.startswith("|1|") else name.lower() for name in names_field.split(",")
    )
    for name in names:
        if not name:
            raise ValueError("an empty host name (a stray comma?)")
        if revoked:
            continue  # a revoked key is refused for every host, whatever the names say
        if not name.startswith("|1|") and any(c in name for c in "*?!"):
            raise ValueError(
                f"host pattern {name!r}: wildcards and negations are not supported in the "
                "pinned known_hosts; list each host (and [host]:port) explicitly"
            )
        if name.startswith("|") and not (name.startswith("|1|") and name.count("|") == 3):
            raise ValueError(f"hashed host name {name!r} is not in the `|1|salt|hash` form")
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the {key_type} key is not valid base64") from None
    try:
        key = paramiko.PKey.from_type_string(key_type, blob)
    except paramiko.UnknownKeyType:
        raise ValueError(
            f"key type {key_type!r} is not supported (use {SUPPORTED_TYPES})"
        ) from None
    except Exception as error:  # paramiko raises several kinds for a malformed blob
        raise ValueError(
            f"the {key_type} key data is not a valid {key_type} key ({error})"
        ) from None
    if key.get_name() != key_type:
        raise ValueError(f"the key data is a {key.get_name()} key, not {key_type}")
    return names, key_type, blob, key, revoked


class KnownHosts:
    """Pinned host keys; `check` decides whether a host's offered key may be trusted."""

    def __init__(self, entries: list[Entry], source: str) -> None:
        self.entries = entries
        self.source = source

    @classmethod
    def parse(cls, text: str, source: str) -> KnownHosts:
        entries: list[Entry] = []
        problems: list[str] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                names, key_type, blob, key, revoked = _parse_line(line)
            except ValueError as error:
                problems.append(f"{source}:{number}: {error}")
                continue
            entries.append(Entry(names, key_type, blob, key, revoked, number))
        if problems:
            shown = problems[:MAX_PROBLEMS]
            if len(problems) > MAX_PROBLEMS:
                shown.append(f"... and {len(problems) - MAX_PROBLEMS} more bad lines")
            raise KnownHostsError(shown)
        if not any(not entry.revoked for entry in entries):
            raise KnownHostsError(
                [
                    f"{source} pins no host keys: add each host's key, e.g. "
                    "`ssh-keyscan -p PORT -t ed25519 HOST >> FILE`, and compare the "
                    "fingerprints (`ssh-keygen -lf FILE`) with the hosts' own"
                ]
            )
        return cls(entries, source)

    @classmethod
    def load(cls, path: Path) -> KnownHosts:
        """Read and validate `path`; `KnownHostsError` lists every problem."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KnownHostsError([f"{path} does not exist"]) from None
        except IsADirectoryError:
            raise KnownHostsError([f"{path} is a directory, not a known_hosts file"]) from None
        except OSError as error:
            raise KnownHostsError([f"{path} cannot be read: {error.strerror}"]) from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise KnownHostsError([f"{path} is not a text file (not UTF-8)"]) from None
        return cls.parse(text, str(path))

    def pinned(self, address: str, port: int) -> list[Any]:
        """The keys pinned for this host (revoked ones left out)."""
        name = host_name(address, port)
        return [e.key for e in self.entries if not e.revoked and e.matches(name)]

    def algorithms(self, address: str, port: int, offered: list[str]) -> list[str]:
        """`offered` host-key algorithms narrowed to the pinned keys' types, in order, so the
        server is asked for a key we can check (a host with ed25519 and rsa keys whose rsa
        key alone is pinned must show the rsa one). Empty when nothing is pinned."""
        types = {key.get_name() for key in self.pinned(address, port)}
        return [
            algorithm
            for algorithm in offered
            if algorithm in types or ("ssh-rsa" in types and algorithm in RSA_ALGORITHMS)
        ]

    def check(self, address: str, port: int, offered: Any) -> str | None:
        """None when `offered` is pinned for this host; else why it is refused."""
        name = host_name(address, port)
        blob = offered.asbytes()
        if any(entry.revoked and entry.blob == blob for entry in self.entries):
            return f"the host key of {name} is marked @revoked in {self.source}"
        pinned = self.pinned(address, port)
        if not pinned:
            return (
                f"{name} is not in {self.source} (unknown host): nothing pinned for it. "
                "Verify its key out of band before adding it"
            )
        if any(key.asbytes() == blob for key in pinned):
            return None
        return (
            f"the host key of {name} does not match the key pinned in {self.source}: "
            "possibly a man-in-the-middle, or the host was rebuilt; verify before updating "
            "the file"
        )
