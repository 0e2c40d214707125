"""`firebreak runbook list|show|run` through click's CliRunner against real sshd servers:
the plan, streamed output, the summary table with host key fingerprints, exit statuses
0/1/2, every refusal stored with requester cli:<login>, --dry-run connecting to nothing,
--incident linking the run to the incident's timeline, and a pty subprocess answering the
confirmation prompt."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select as sql_select

from bot.cli import main
from bot.clock import system_now
from bot.db import Database
from bot.incidents import service
from bot.incidents.config import IncidentsSection
from bot.runbooks import records, runs
from bot.runbooks.records import RunbookRun
from tests.conftest import wait_for
from tests.runbook_setup import Setup, write_setup
from tests.sshd import Fleet

VARIABLES = (
    "DATABASE_URL",
    "FIREBREAK_CONFIG",
    "FIREBREAK_RUNBOOKS",
    "FIREBREAK_SSH_KEY",
    "FIREBREAK_KNOWN_HOSTS",
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_API_URL",
)


@pytest.fixture(scope="module")
def fleet(sshd_hosts_module: Callable[..., Fleet]) -> Fleet:
    return sshd_hosts_module(2)


@pytest.fixture
def setup(tmp_path: Path, fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> Setup:
    monkeypatch.chdir(tmp_path)
    return write_setup(tmp_path, fleet)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


class Cli:
    def __init__(self, setup: Setup, database_url: str, fleet: Fleet) -> None:
        self.env: dict[str, str | None] = dict.fromkeys(VARIABLES)
        self.env.update(
            DATABASE_URL=database_url,
            FIREBREAK_CONFIG=str(setup.config),
            FIREBREAK_RUNBOOKS=str(setup.runbooks),
            **fleet.environment(fleet.write_known_hosts()),
        )

    def __call__(self, *args: str, **env: str | None) -> Result:
        return CliRunner().invoke(
            main, ["runbook", *args], env={**self.env, **env}, catch_exceptions=False
        )


@pytest.fixture
def cli(setup: Setup, database_url: str, fleet: Fleet) -> Cli:
    return Cli(setup, database_url, fleet)


def stored(db: Database) -> list[RunbookRun]:
    with db.session_scope() as session:
        found = list(session.scalars(sql_select(RunbookRun).order_by(RunbookRun.id)))
        session.expunge_all()
    return found


# -- list and show ------------------------------------------------------------------------


def test_list_shows_every_runbook_with_risk_and_approval(cli: Cli) -> None:
    result = cli("list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "RISK", "APPROVAL", "TARGETS", "TITLE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"echo-args", "fail-step", "slow", "restart-thing"}
    assert rows["restart-thing"][1:3] == ["high", "yes"]
    assert rows["echo-args"][1:3] == ["low", "no"]


def test_show_gives_parameters_steps_and_rules(cli: Cli) -> None:
    result = cli("show", "echo-args")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "echo-args: Echo the words" in text
    assert "Risk: low (no approval needed)" in text
    assert "word: string; matching .{1,200} (in full, at most 256 characters); required" in text
    assert "count: int; 1..3; default 1" in text
    assert "say: printf '[%s]\\n' '{{ word }}' '{{ count }}'" in text
    assert "Targets: group sshd, at most 5 hosts" in text


def test_show_of_an_unknown_runbook_names_the_known_ones(cli: Cli) -> None:
    result = cli("show", "nope")
    assert result.exit_code == 2
    assert "there is no runbook 'nope'" in result.stderr
    assert "echo-args" in result.stderr


def test_a_broken_catalogue_is_named_by_file_and_line(cli: Cli, setup: Setup) -> None:
    (setup.runbooks / "broken.yaml").write_text("id: broken\ntitle: x\nrisk: extreme\n")
    result = cli("list")
    assert result.exit_code == 2
    assert f"{setup.runbooks / 'broken.yaml'}:3: risk:" in result.stderr


# -- dry run ------------------------------------------------------------------------------


def test_dry_run_prints_the_plan_and_needs_no_ssh_and_stores_nothing(
    cli: Cli, fleet: Fleet, db: Database
) -> None:
    result = cli(
        "run",
        "echo-args",
        "word=a b;$(id)",
        "--hosts",
        "sshd-1",
        "--dry-run",
        FIREBREAK_SSH_KEY=None,
        FIREBREAK_KNOWN_HOSTS=None,
    )
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "Runbook echo-args: Echo the words" in text
    assert f"sshd-1  {fleet[0].user}@127.0.0.1:{fleet[0].port}" in text
    assert "sshd-2" not in text
    assert "say: printf '[%s]\\n' 'a b;$(id)' 1" in text
    assert "Dry run: nothing was connected to or recorded." in text
    assert stored(db) == []


def test_dry_run_of_a_runbook_needing_approval_says_the_terminal_would_refuse(cli: Cli) -> None:
    result = cli("run", "restart-thing", "thing=cron", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Risk: high (needs approval)" in result.stdout
    assert "a real run from here would be refused" in result.stdout


# -- runs ---------------------------------------------------------------------------------


def test_run_streams_prefixed_output_and_ends_with_a_summary_table(
    cli: Cli, fleet: Fleet, db: Database, setup: Setup
) -> None:
    value = 'it\'s "$HOME" `id` ; rm -rf / | x && y > z * ü -n'
    result = cli("run", "echo-args", f"word={value}", "count=2", "--yes")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for server in fleet:
        # The value reached the host as one argument, unchanged.
        assert f"{server.name} | [{value}]" in out
        assert f"{server.name} | [2]" in out
        assert f"{server.name} | done" in out
    table = out[out.index("HOST ") :].splitlines()
    assert table[0].split() == ["HOST", "OUTCOME", "EXIT", "CODES", "DURATION", "HOST", "KEY"]
    rows = {line.split()[0]: line.split() for line in table[1:3]}
    for server in fleet:
        _, outcome, say, done, duration, fingerprint = rows[server.name]
        assert (outcome, say, done, fingerprint) == (
            "succeeded",
            "say=0",
            "host=0",
            server.fingerprint,
        )
        assert re.fullmatch(r"[0-9]+\.[0-9]s", duration)
    assert re.search(r"R-1 succeeded: 2 succeeded\.$", out.strip())
    (run,) = stored(db)
    assert (run.status, run.source, run.requester) == ("succeeded", "cli", f"cli:{setup.login}")
    assert run.params == {"word": value, "count": 2}


def test_a_failing_step_exits_1(cli: Cli, db: Database) -> None:
    result = cli("run", "fail-step", "--yes")
    assert result.exit_code == 1, result.output
    assert "sshd-1 | -- failed" in result.stdout
    assert "boom=1" in result.stdout
    assert stored(db)[0].status == records.FAILED


def test_an_unpinned_host_key_fails_that_host_and_runs_the_other(
    cli: Cli, fleet: Fleet, tmp_path: Path, db: Database
) -> None:
    known = fleet.write_known_hosts(tmp_path / "only-first", [fleet[0]])
    result = cli("run", "echo-args", "word=x", "--yes", FIREBREAK_KNOWN_HOSTS=str(known))
    assert result.exit_code == 1, result.output
    assert "sshd-1 | [x]" in result.stdout
    assert "sshd-2 | " not in result.stdout.replace("sshd-2 | -- ", "")
    assert re.search(r"^sshd-2\s+host_key\s", result.stdout, re.MULTILINE)
    assert "sshd-2: host key rejected" in result.stdout
    with db.session_scope() as session:
        kinds = [fact.kind for fact in runs.facts(session, stored(db)[0].id)]
    assert "runbook_host_key_rejected" in kinds


# -- refusals: exit 2, stored ---------------------------------------------------------------


def refusal_of(db: Database) -> RunbookRun:
    (run,) = stored(db)
    assert run.status == records.REFUSED
    assert run.source == "cli"
    assert run.requester.startswith("cli:")
    assert run.plan == {}
    return run


def test_bad_parameters_are_refused_with_every_problem_and_stored(cli: Cli, db: Database) -> None:
    result = cli("run", "echo-args", "count=9", "colour=red", "--yes")
    assert result.exit_code == 2
    assert "error: 'colour' is not a parameter of this runbook" in result.stderr
    assert "error: count: 9 is above the maximum 3" in result.stderr
    assert "error: word: is required; give word=VALUE" in result.stderr
    assert "refused and recorded as R-1" in result.stderr
    run = refusal_of(db)
    assert "colour" in (run.refusal or "") and "maximum 3" in (run.refusal or "")
    assert run.params == {"count": "9", "colour": "red"}


def test_hosts_outside_the_targets_are_refused(cli: Cli, db: Database) -> None:
    result = cli("run", "echo-args", "word=x", "--hosts", "elsewhere", "--yes")
    assert result.exit_code == 2
    assert "'elsewhere' is neither an inventory host nor a group" in result.stderr
    refusal_of(db)


def test_missing_ssh_configuration_is_refused_naming_the_variables(cli: Cli, db: Database) -> None:
    result = cli("run", "echo-args", "word=x", "--yes", FIREBREAK_SSH_KEY=None)
    assert result.exit_code == 2
    assert "SSH is not configured: FIREBREAK_SSH_KEY is not set" in result.stderr
    refusal_of(db)


def test_without_a_terminal_and_without_yes_the_run_is_refused(cli: Cli, db: Database) -> None:
    result = cli("run", "echo-args", "word=x")
    assert result.exit_code == 2
    assert "pass --yes" in result.stderr
    refusal_of(db)


def test_a_runbook_needing_approval_is_refused_in_the_terminal(cli: Cli, db: Database) -> None:
    result = cli("run", "restart-thing", "thing=cron", "--yes")
    assert result.exit_code == 2
    assert "needs approval by a second person" in result.stderr
    assert "/runbook run restart-thing" in result.stderr
    assert refusal_of(db).risk == "high"


def test_an_unknown_runbook_is_refused_and_stored(cli: Cli, db: Database) -> None:
    result = cli("run", "no-such", "a=b", "--yes")
    assert result.exit_code == 2
    assert "there is no runbook 'no-such'" in result.stderr
    assert refusal_of(db).runbook_id == "no-such"


def test_a_requester_outside_the_allowed_groups_is_refused(
    tmp_path: Path, fleet: Fleet, database_url: str, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    setup = write_setup(tmp_path, fleet)
    (setup.runbooks / "echo-args.yaml").write_text(
        (setup.runbooks / "echo-args.yaml").read_text() + "allowed_roles: [ops]\n"
    )
    result = Cli(setup, database_url, fleet)("run", "echo-args", "word=x", "--yes")
    assert result.exit_code == 2
    assert "holds none of the roles or groups ops" in result.stderr
    (run,) = stored(db)
    assert run.status == records.REFUSED and run.plan  # refused with its plan


# -- incidents ----------------------------------------------------------------------------


def test_incident_links_the_run_to_the_incident_timeline(
    cli: Cli, db: Database, fleet: Fleet
) -> None:
    with db.session_scope() as session:
        incident = service.declare(
            session,
            title="Disk full",
            severity=None,
            description="",
            declared_by="U0ALICE",
            declare_key="k",
            policy=IncidentsSection(),
            now=system_now(),
        ).incident
        incident_id = incident.id
    result = cli("run", "echo-args", "word=x", "--yes", "--incident", f"INC-{incident_id}")
    assert result.exit_code == 0, result.output
    with db.session_scope() as session:
        events = service.events(session, service.get(session, incident_id))
        kinds = [event.kind for event in events]
        finished = [event.data for event in events if event.kind == "runbook_host_finished"]
    for kind in ("runbook_requested", "runbook_confirmed", "runbook_started", "runbook_finished"):
        assert kind in kinds
    assert {data["fingerprint"] for data in finished} == {server.fingerprint for server in fleet}
    assert stored(db)[0].incident_id == incident_id


def test_an_unknown_incident_is_refused(cli: Cli, db: Database) -> None:
    result = cli("run", "echo-args", "word=x", "--yes", "--incident", "99")
    assert result.exit_code == 2
    assert "There is no incident INC-99" in result.stderr


# -- the confirmation prompt in a real terminal ---------------------------------------------


def _in_a_terminal(args: list[str], env: dict[str, str], answer: bytes) -> tuple[int, str]:
    """Run the console script on a pseudo-terminal, answer its prompt, return (status, output)."""
    leader, follower = pty.openpty()
    script = Path(sys.executable).with_name("firebreak")
    process = subprocess.Popen(
        [str(script), "runbook", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        close_fds=True,
    )
    os.close(follower)
    output = b""
    answered = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if not answered and b"[y/N]" in output:
                os.write(leader, answer)
                answered = True
        elif process.poll() is not None:
            break
    status = process.wait(timeout=30)
    os.close(leader)
    return status, output.decode(errors="replace")


@pytest.mark.parametrize(
    ("answer", "status", "outcome"), [(b"y\n", 0, "succeeded"), (b"n\n", 2, "cancelled")]
)
def test_the_prompt_in_a_terminal_runs_on_yes_and_cancels_on_no(
    cli: Cli, db: Database, answer: bytes, status: int, outcome: str
) -> None:
    env = {key: value for key, value in os.environ.items() if key not in VARIABLES}
    env.update({key: value for key, value in cli.env.items() if value is not None})
    code, output = _in_a_terminal(["run", "echo-args", "word=hi"], env, answer)
    assert code == status, output
    assert "Run R-1 on 2 hosts? [y/N]" in output
    assert stored(db)[0].status == outcome


def _sleeping(seconds: int) -> bool:
    """Whether a `sleep SECONDS` process runs here (the sshd hosts run on this machine)."""
    found = subprocess.run(["pgrep", "-xf", f"sleep {seconds}"], capture_output=True)
    return found.returncode == 0


def test_an_interrupt_cancels_the_run_and_kills_its_step(cli: Cli, db: Database) -> None:
    """Ctrl-C (SIGINT) mid-step: the run is recorded cancelled, the remote step is killed,
    the summary is printed and the exit status is 1."""
    seconds = 97  # a duration no other test sleeps, to find the remote process by
    env = {key: value for key, value in os.environ.items() if key not in VARIABLES}
    env.update({key: value for key, value in cli.env.items() if value is not None})
    env["PYTHONUNBUFFERED"] = "1"
    script = Path(sys.executable).with_name("firebreak")
    process = subprocess.Popen(
        [str(script), "runbook", "run", "slow", f"seconds={seconds}", "--yes", "--hosts=sshd-1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        # As at a terminal: a test run started in the background (`cmd &` without job
        # control, nohup) ignores SIGINT, the child would inherit that, and Python installs
        # no KeyboardInterrupt handler for an ignored SIGINT.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_for(lambda: _sleeping(seconds) or process.poll() is not None, timeout=60)
        assert process.poll() is None, "the run ended before its sleep step began"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1, (out, err)
    assert b"Cancelling R-1" in err
    assert re.search(rb"^sshd-1\s+cancelled\s+begin=0 sleep=-", out, re.MULTILINE), out
    run = stored(db)[0]
    assert (run.status, run.cancel_requested_by) == ("cancelled", run.requester)
    wait_for(lambda: not _sleeping(seconds), timeout=30)  # killed on the host, not left behind
