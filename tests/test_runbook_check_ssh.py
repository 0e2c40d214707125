"""`firebreak check` looks at runbooks' SSH setup: usable key and known_hosts, every
inventory host pinned, and a note while SSH is not set up yet."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.test_cli import TOKENS, invoke

CONFIG = """\
slack: {announce_channel: C0INC}
inventory:
  user: deploy
  hosts:
    web-1: {address: 10.0.0.5, groups: [linux]}
    db-1: {address: db-1.internal, port: 2222, groups: [linux]}
"""


def _key_pair() -> tuple[bytes, str]:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return pem, public.decode("ascii")


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "firebreak.yaml").write_text(textwrap.dedent(CONFIG))
    pem, _ = _key_pair()
    key = tmp_path / "id_ed25519"
    key.write_bytes(pem)
    os.chmod(key, 0o600)
    _, host_key = _key_pair()
    (tmp_path / "known_hosts").write_text(f"10.0.0.5 {host_key}\n")
    return tmp_path


def _check(directory: Path, **environ: str) -> tuple[int, str, str]:
    result = invoke(
        ["check"],
        FIREBREAK_CONFIG=str(directory / "firebreak.yaml"),
        FIREBREAK_RUNBOOKS=str(directory / "runbooks"),
        **TOKENS,
        **environ,
    )
    return result.exit_code, result.stdout, result.stderr


def test_check_notes_that_runbooks_need_ssh_setup_when_hosts_are_listed(setup: Path) -> None:
    code, out, _ = _check(setup)
    assert code == 0, out
    assert (
        "note: runbooks cannot run until FIREBREAK_SSH_KEY and FIREBREAK_KNOWN_HOSTS are set" in out
    )


def test_check_names_every_inventory_host_without_a_pinned_key(setup: Path) -> None:
    code, out, err = _check(
        setup,
        FIREBREAK_SSH_KEY=str(setup / "id_ed25519"),
        FIREBREAK_KNOWN_HOSTS=str(setup / "known_hosts"),
    )
    assert code == 2, out
    assert err.splitlines() == [
        "error: inventory.hosts.db-1: no key for db-1.internal:2222 in FIREBREAK_KNOWN_HOSTS; "
        "runs there would be refused (add it with `ssh-keyscan -p 2222 db-1.internal` and "
        "check its fingerprint)"
    ]

    host_key = (setup / "known_hosts").read_text().split(" ", 1)[1]
    with (setup / "known_hosts").open("a") as file:
        file.write(f"[db-1.internal]:2222 {host_key}")
    code, out, err = _check(
        setup,
        FIREBREAK_SSH_KEY=str(setup / "id_ed25519"),
        FIREBREAK_KNOWN_HOSTS=str(setup / "known_hosts"),
    )
    assert code == 0, err
    assert "runbooks cannot run" not in out


def test_check_refuses_an_unusable_key_or_known_hosts_naming_the_variable(setup: Path) -> None:
    (setup / "broken_key").write_text("not a key\n")
    code, _, err = _check(
        setup,
        FIREBREAK_SSH_KEY=str(setup / "broken_key"),
        FIREBREAK_KNOWN_HOSTS=str(setup / "missing_known_hosts"),
    )
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert all(line.startswith("error: environment: ") for line in lines)
    assert "FIREBREAK_SSH_KEY" in lines[0]
    assert "FIREBREAK_KNOWN_HOSTS" in lines[1] or "missing_known_hosts" in lines[1]
    assert "Traceback" not in err
