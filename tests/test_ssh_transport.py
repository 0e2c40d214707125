"""integrations.ssh against real OpenSSH sshd servers (tests/sshd.py).

What a security reviewer asks: does a value reach the host as exactly one argv element
whatever it contains (a fixed injection corpus and a hypothesis property, both checked by a
remote script that prints its argv as JSON)? Is an unknown or changed host key refused before
anything runs? Does a timeout or a cancel leave no remote process behind? Does 10 MB of
interleaved output flow without deadlock, truncated for the record but fully drained? Plus
auth failures, closed ports, exit codes and the configuration errors of from_environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import ConfigError
from bot.runbooks.transport import AuthFailed, CommandResult, HostKeyRejected, Stream, Unreachable
from integrations._ssh_known_hosts import KnownHosts, KnownHostsError, fingerprint
from integrations.ssh import SshConnection, SshTransport, load_identity
from tests.conftest import wait_for
from tests.sshd import Fleet, SshServer, _free_port, generate_key

PYTHON = sys.executable  # the "remote" host is this machine: its Python runs the scripts
PRINT_ARGV = str(Path(__file__).parent / "fixtures" / "runbooks" / "print_argv.py")
PRINT = (PYTHON, "-I", "-S", PRINT_ARGV)


@dataclass
class Ran:
    result: CommandResult
    chunks: list[tuple[Stream, bytes]] = field(default_factory=list)

    def stream(self, name: Stream) -> bytes:
        return b"".join(data for stream, data in self.chunks if stream == name)


def run(
    connection: SshConnection,
    argv: tuple[str, ...],
    *,
    timeout: float = 30,
    max_bytes: int = 1 << 20,
    cancelled: threading.Event | None = None,
) -> Ran:
    chunks: list[tuple[Stream, bytes]] = []
    result = connection.run(
        argv,
        timeout=timeout,
        on_output=lambda stream, data: chunks.append((stream, data)),
        cancelled=cancelled or threading.Event(),
        max_bytes=max_bytes,
    )
    return Ran(result, chunks)


def received_argv(connection: SshConnection, values: list[str]) -> list[str]:
    ran = run(connection, (*PRINT, *values))
    # stderr is not checked for silence: the login shell may print there first (bash sources
    # ~/.bashrc for SSH commands; here root's runs `pyenv init`, which can complain).
    assert ran.result.exit_code == 0, ran.stream("stderr")
    return list(json.loads(ran.stream("stdout")))


def processes_with(marker: str) -> list[str]:
    """Command lines of live processes on this machine (the "remote" host) naming `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


@pytest.fixture(scope="module")
def fleet(sshd_hosts_module: Callable[..., Fleet]) -> Fleet:
    return sshd_hosts_module(2)


@pytest.fixture(scope="module")
def transport(fleet: Fleet) -> SshTransport:
    return SshTransport.from_environment(fleet.environment())


@pytest.fixture(scope="module")
def connection(fleet: Fleet, transport: SshTransport) -> Iterator[SshConnection]:
    connection = transport.connect(fleet[0].host(), timeout=10)
    yield connection
    connection.close()


# -- (a), (b) every value arrives as exactly one argv element ----------------------------

CORPUS = [
    "$(id)",
    "`id`",
    "; id",
    "a;b",
    "a|id",
    "| id",
    "true && id",
    "false || id",
    "&",
    "'",
    '"',
    "it's",
    'say "hi"',
    "'\"'\"'",
    "${IFS}id",
    "$IFS",
    "$HOME",
    "${PATH}",
    "$((1+1))",
    "> /tmp/firebreak-should-not-exist",
    "< /etc/passwd",
    "2>&1",
    "*",
    "/*",
    "?",
    "[a-z]*",
    "{a,b}",
    "-rf",
    "--help",
    "-",
    "--",
    "--no-preserve-root",
    "ünïcödé ☃ 日本語 🔥",
    "a\u00a0b",
    "",
    " ",
    "  leading and trailing  ",
    "\t",
    "a\tb",
    "\\",
    "\\n",
    "a\\",
    "%s%n%x",
    "%",
    "~",
    "~root",
    "!",
    "!!",
    "#not a comment",
    "a\rb",
    "\x1b[31mred",
    "(subshell)",
    "exec id",
]


@pytest.mark.parametrize("value", CORPUS, ids=[repr(v) for v in CORPUS])
def test_each_value_of_the_injection_corpus_arrives_as_one_argv_element(
    connection: SshConnection, value: str
) -> None:
    assert received_argv(connection, ["before", value, "after"]) == ["before", value, "after"]


def test_the_whole_corpus_at_once_and_no_shell_ever_ran_a_value(
    connection: SshConnection, tmp_path: Path
) -> None:
    pwned = tmp_path / "pwned"
    attacks = [
        f"; touch {pwned}",
        f"$(touch {pwned})",
        f"`touch {pwned}`",
        f"&& touch {pwned}",
        f"| touch {pwned}",
        f"> {pwned}",
        f"'; touch {pwned}; '",
        f'"; touch {pwned}; "',
    ]
    values = CORPUS + attacks
    assert received_argv(connection, values) == values
    assert not pwned.exists()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    values=st.lists(
        st.text(
            st.characters(exclude_categories=["Cs"], exclude_characters="\x00\n"),
            max_size=30,
        ),
        min_size=1,
        max_size=4,
    )
)
def test_any_printable_values_arrive_unchanged(
    connection: SshConnection, values: list[str]
) -> None:
    assert received_argv(connection, values) == values


# -- (c) host keys ------------------------------------------------------------------------


def _never_logged_in(server: SshServer) -> bool:
    return "Accepted publickey" not in server.log()


def test_an_unknown_host_is_refused_before_login(
    sshd_hosts: Callable[..., Fleet], tmp_path: Path
) -> None:
    fleet = sshd_hosts(2)
    known_hosts = fleet.write_known_hosts(tmp_path / "known_hosts", [fleet[1]])
    transport = SshTransport.from_environment(fleet.environment(known_hosts))
    with pytest.raises(HostKeyRejected) as caught:
        transport.connect(fleet[0].host(), timeout=10)
    assert caught.value.fingerprint == fleet[0].fingerprint
    assert caught.value.host == fleet[0].name
    assert "not in" in caught.value.detail and fleet[0].fingerprint in caught.value.detail
    assert _never_logged_in(fleet[0])
    # The pinned neighbour is fine, so the refusal was about the key.
    transport.connect(fleet[1].host(), timeout=10).close()


def test_a_changed_host_key_is_refused_before_login(
    sshd_hosts: Callable[..., Fleet], tmp_path: Path
) -> None:
    fleet = sshd_hosts(2)
    impostor_key = fleet[1].host_key.public.split()[:2]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{fleet[0].port} {' '.join(impostor_key)}\n")
    transport = SshTransport.from_environment(fleet.environment(known_hosts))
    with pytest.raises(HostKeyRejected) as caught:
        transport.connect(fleet[0].host(), timeout=10)
    assert caught.value.fingerprint == fleet[0].fingerprint != fleet[1].fingerprint
    assert "does not match" in caught.value.detail
    assert caught.value.kind == "host_key"
    assert _never_logged_in(fleet[0])


def test_a_revoked_key_is_refused_even_when_pinned(
    sshd_hosts: Callable[..., Fleet], tmp_path: Path
) -> None:
    fleet = sshd_hosts(1)
    known_hosts = fleet.write_known_hosts(tmp_path / "known_hosts")
    kind, blob = fleet[0].host_key.public.split()[:2]
    with known_hosts.open("a") as file:
        file.write(f"@revoked * {kind} {blob}\n")
    transport = SshTransport.from_environment(fleet.environment(known_hosts))
    with pytest.raises(HostKeyRejected, match="revoked"):
        transport.connect(fleet[0].host(), timeout=10)
    assert _never_logged_in(fleet[0])


def test_hashed_known_hosts_written_by_ssh_keygen_work(
    sshd_hosts: Callable[..., Fleet], tmp_path: Path
) -> None:
    fleet = sshd_hosts(2)
    known_hosts = fleet.write_known_hosts(tmp_path / "known_hosts", [fleet[0]], hashed=True)
    assert str(fleet[0].port) not in known_hosts.read_text()  # really hashed
    transport = SshTransport.from_environment(fleet.environment(known_hosts))
    connection = transport.connect(fleet[0].host(), timeout=10)
    try:
        assert connection.host_key_fingerprint == fleet[0].fingerprint
        assert run(connection, ("true",)).result.exit_code == 0
    finally:
        connection.close()
    with pytest.raises(HostKeyRejected):  # the hashed name matches only its own host
        transport.connect(fleet[1].host(), timeout=10)


def test_port_22_entries_use_the_plain_name_like_openssh(tmp_path: Path) -> None:
    key = paramiko.Ed25519Key.from_private_key_file(str(generate_key(tmp_path / "host").path))
    other = paramiko.Ed25519Key.from_private_key_file(str(generate_key(tmp_path / "other").path))
    line = f"web-1.example.com,10.0.0.5 {key.get_name()} {key.get_base64()}\n"
    (tmp_path / "plain").write_text(line + f"[10.0.0.6]:2222 ssh-ed25519 {other.get_base64()}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(tmp_path / "plain")], check=True,
                   capture_output=True)  # fmt: skip
    for name in ("plain", "plain.old"):  # hashed by ssh-keygen, and the original
        known = KnownHosts.load(tmp_path / name)
        assert known.check("10.0.0.5", 22, key) is None
        assert known.check("WEB-1.example.com", 22, key) is None  # names are case-blind
        assert known.check("10.0.0.5", 2222, key) is not None  # [10.0.0.5]:2222 not pinned
        assert known.check("10.0.0.5", 22, other) is not None
        assert known.check("10.0.0.6", 2222, other) is None
        assert known.check("10.0.0.6", 22, other) is not None
        assert known.algorithms("10.0.0.5", 22, ["ecdsa-sha2-nistp256", "ssh-ed25519"]) == [
            "ssh-ed25519"
        ]


# -- (d) timeouts and cancel leave nothing behind ------------------------------------------


def _sleeper(
    marker: str, *, ignore_term: bool = False, started: Path | None = None
) -> tuple[str, ...]:
    code = "import pathlib, signal, sys, time\n"
    if ignore_term:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    if started is not None:
        code += f"pathlib.Path({str(started)!r}).touch()\n"
    code += "print('sleeping', flush=True)\ntime.sleep(600)\n"
    return (PYTHON, "-c", code, marker)


def run_past_its_timeout(connection: SshConnection, directory: Path) -> tuple[Ran, str]:
    """Run a 600 s sleeper with a short timeout, doubling the timeout until the sleeper has
    really started before its deadline (a loaded machine may take a while to start Python),
    so "nothing left behind" is never true merely because nothing ran."""
    for timeout in (1, 2, 4, 8, 16):
        marker = f"firebreak-test-{uuid.uuid4().hex}"
        started = directory / marker
        ran = run(connection, _sleeper(marker, started=started), timeout=timeout)
        if started.exists():
            return ran, marker
    raise AssertionError("the sleeper never started within 16 s")


def test_a_timeout_kills_the_remote_command(connection: SshConnection, tmp_path: Path) -> None:
    ran, marker = run_past_its_timeout(connection, tmp_path)
    assert ran.result.timed_out and ran.result.exit_code is None and not ran.result.cancelled
    assert processes_with(marker) == []
    assert run(connection, ("true",)).result.exit_code == 0  # the connection lives on


def _cancel_once_running(marker: str) -> threading.Event:
    cancelled = threading.Event()

    def cancel() -> None:
        wait_for(lambda: processes_with(marker), timeout=30)
        cancelled.set()

    threading.Thread(target=cancel, daemon=True).start()
    return cancelled


def test_cancel_kills_the_remote_command(connection: SshConnection) -> None:
    marker = f"firebreak-test-{uuid.uuid4().hex}"
    ran = run(connection, _sleeper(marker), timeout=600, cancelled=_cancel_once_running(marker))
    assert ran.result.cancelled and ran.result.exit_code is None and not ran.result.timed_out
    assert processes_with(marker) == []
    assert run(connection, ("true",)).result.exit_code == 0


def test_cancel_kills_a_command_that_ignores_term(connection: SshConnection) -> None:
    marker = f"firebreak-test-{uuid.uuid4().hex}"
    sleeper = _sleeper(marker, ignore_term=True)
    ran = run(connection, sleeper, timeout=600, cancelled=_cancel_once_running(marker))
    assert ran.result.cancelled and ran.result.exit_code is None
    assert processes_with(marker) == []


# -- (e) large output -----------------------------------------------------------------------

FLOOD = """
import os, sys
block = 128 * 1024
for index in range(80):  # 10 MiB in all, alternating between the two streams
    os.write(1 if index % 2 == 0 else 2, bytes([65 + index % 26]) * block)
sys.exit(3)
"""
FLOOD_BYTES = 80 * 128 * 1024


def test_ten_megabytes_interleaved_are_drained_and_truncated(connection: SshConnection) -> None:
    ran = run(connection, (PYTHON, "-c", FLOOD), max_bytes=65536)
    assert ran.result.exit_code == 3  # the script wrote everything: nothing blocked it
    assert ran.result.output_truncated
    assert sum(len(data) for _, data in ran.chunks) == 65536
    assert ran.stream("stdout") == b"A" * len(ran.stream("stdout"))  # the first block's start


def test_ten_megabytes_arrive_whole_when_allowed(connection: SshConnection) -> None:
    ran = run(connection, (PYTHON, "-c", FLOOD), max_bytes=FLOOD_BYTES)
    assert ran.result.exit_code == 3 and not ran.result.output_truncated
    half = FLOOD_BYTES // 2
    expected_out = b"".join(bytes([65 + i % 26]) * 131072 for i in range(0, 80, 2))
    expected_err = b"".join(bytes([65 + i % 26]) * 131072 for i in range(1, 80, 2))
    assert len(ran.stream("stdout")) == half and ran.stream("stdout") == expected_out
    assert ran.stream("stderr").endswith(expected_err)  # after anything the login shell said


# -- (f), (g), (h) --------------------------------------------------------------------------


def test_a_key_that_is_not_authorised_fails_authentication(
    fleet: Fleet, transport: SshTransport, tmp_path: Path
) -> None:
    stranger = load_identity(generate_key(tmp_path / "stranger").path)
    with pytest.raises(AuthFailed) as caught:
        SshTransport(stranger, transport.known_hosts).connect(fleet[1].host(), timeout=10)
    assert caught.value.kind == "auth" and "refused the key" in caught.value.detail


def test_a_wrong_user_fails_authentication(fleet: Fleet, transport: SshTransport) -> None:
    with pytest.raises(AuthFailed):
        transport.connect(fleet[1].host(user="firebreak-no-such-user"), timeout=10)


@pytest.mark.parametrize("kind", ["ecdsa", "rsa"])
def test_ecdsa_and_rsa_identities_log_in(fleet: Fleet, tmp_path: Path, kind: str) -> None:
    pair = generate_key(tmp_path / kind, f"firebreak-{kind}", kind=kind)
    with (fleet.directory / "authorized_keys").open("a") as file:
        file.write(pair.public + "\n")
    environ = fleet.environment() | {"FIREBREAK_SSH_KEY": str(pair.path)}
    connection = SshTransport.from_environment(environ).connect(fleet[1].host(), timeout=10)
    try:
        assert received_argv(connection, [kind]) == [kind]
    finally:
        connection.close()


def test_a_closed_port_is_unreachable(transport: SshTransport, fleet: Fleet) -> None:
    host = fleet[0].host()
    closed = type(host)(name="gone", address="127.0.0.1", port=_free_port(), user=host.user)
    with pytest.raises(Unreachable) as caught:
        transport.connect(closed, timeout=5)
    assert caught.value.kind == "unreachable" and "refused" in caught.value.detail


@pytest.mark.parametrize("code", [0, 1, 2, 42, 125, 126, 255])
def test_exit_codes_pass_through(connection: SshConnection, code: int) -> None:
    ran = run(connection, (PYTHON, "-c", f"import sys; sys.exit({code})"))
    assert ran.result.exit_code == code
    assert not ran.result.timed_out and not ran.result.cancelled


def test_stdout_and_stderr_stay_apart(connection: SshConnection) -> None:
    code = "import sys; print('out'); print('err', file=sys.stderr)"
    ran = run(connection, (PYTHON, "-c", code))
    assert ran.stream("stdout") == b"out\n"
    assert ran.stream("stderr").endswith(b"err\n") and b"out" not in ran.stream("stderr")


def test_the_fingerprint_is_the_one_ssh_keygen_shows(
    connection: SshConnection, fleet: Fleet
) -> None:
    shown = subprocess.run(
        ["ssh-keygen", "-lf", str(fleet[0].host_key_path)], capture_output=True, text=True
    ).stdout.split()[1]
    assert connection.host_key_fingerprint == shown == fleet[0].fingerprint


# -- from_environment -----------------------------------------------------------------------


def _problems(environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        SshTransport.from_environment(environ)
    return "\n".join(caught.value.problems)


def test_unset_variables_are_named() -> None:
    problems = _problems({})
    assert "FIREBREAK_SSH_KEY is not set" in problems
    assert "FIREBREAK_KNOWN_HOSTS is not set" in problems


def test_unusable_identities_are_explained(fleet: Fleet, tmp_path: Path) -> None:
    known = str(fleet.write_known_hosts())
    encrypted = tmp_path / "encrypted"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret-pass", "-f", str(encrypted)],
        check=True,
    )
    garbage = tmp_path / "garbage"
    garbage.write_text("not a key\n")
    cases = {
        str(tmp_path / "missing"): "does not exist",
        str(tmp_path): "is a directory",
        str(encrypted): "passphrase",
        str(encrypted) + ".pub": "public key",
        str(garbage): "not a private key",
    }
    for path, words in cases.items():
        problems = _problems({"FIREBREAK_SSH_KEY": path, "FIREBREAK_KNOWN_HOSTS": known})
        assert f"FIREBREAK_SSH_KEY={path}" in problems and words in problems, problems
        assert "secret-pass" not in problems


def test_bad_known_hosts_lines_are_named_by_line(fleet: Fleet, tmp_path: Path) -> None:
    good = fleet[0].known_hosts_line()
    bad = tmp_path / "known_hosts"
    bad.write_text(
        "# a comment\n"
        f"{good}\n"
        "[127.0.0.1]:2222 ssh-ed25519\n"
        "*.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==\n"
        "host ssh-ed25519 !!!notbase64\n"
        "host ssh-dss AAAAB3NzaC1kc3MAAACBAP==\n"
        f"@cert-authority {good}\n"
    )
    problems = _problems(
        {"FIREBREAK_SSH_KEY": str(fleet.identity), "FIREBREAK_KNOWN_HOSTS": str(bad)}
    )
    for line, words in [
        (3, "expected"),
        (4, "wildcards"),
        (5, "base64"),
        (6, "not supported"),
        (7, "@cert-authority"),
    ]:
        assert f"FIREBREAK_KNOWN_HOSTS: {bad}:{line}: " in problems and words in problems
    assert f"{bad}:2:" not in problems


def test_an_empty_or_missing_known_hosts_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("# nothing pinned yet\n")
    for path, words in [(empty, "pins no host keys"), (tmp_path / "nope", "does not exist")]:
        problems = _problems(
            {"FIREBREAK_SSH_KEY": str(fleet.identity), "FIREBREAK_KNOWN_HOSTS": str(path)}
        )
        assert words in problems


def test_known_hosts_errors_list_every_problem(tmp_path: Path) -> None:
    with pytest.raises(KnownHostsError) as caught:
        KnownHosts.parse("a b\n" * 30, "kh")
    assert len(caught.value.problems) == 21 and "10 more" in caught.value.problems[-1]


def test_fingerprint_matches_paramiko(fleet: Fleet) -> None:
    key = paramiko.Ed25519Key.from_private_key_file(str(fleet[0].host_key_path))
    assert fingerprint(key) == key.fingerprint == fleet[0].fingerprint
    assert os.path.basename(PRINT_ARGV) == "print_argv.py"
