"""The `firebreak` command: the real console script in subprocesses, and click's CliRunner."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, inspect, text

from bot.cli import main
from bot.db import normalise_url
from bot.manifest import BOT_SCOPES
from bot.migrations import head_revision
from tests.conftest import PROXY_VARIABLES

FIREBREAK = str(Path(sys.executable).parent / "firebreak")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = PROJECT_ROOT / "examples" / "firebreak.yaml"
OUR_VARIABLES = (
    "DATABASE_URL",
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_API_URL",
    "FIREBREAK_CONFIG",
    "FIREBREAK_RUNBOOKS",
    "FIREBREAK_ALERT_TOKEN",
    "FIREBREAK_SMTP_PASSWORD",
    "FIREBREAK_WEBHOOK_SECRET",
    "FIREBREAK_CHECKOUT_ROUTING_KEY",
)
TOKENS = {"SLACK_BOT_TOKEN": "xoxb-cli-test", "SLACK_SIGNING_SECRET": "cli-test-secret"}
# The example configures email and webhook notifiers, whose secrets come from these.
NOTIFIER_SECRETS = {"FIREBREAK_SMTP_PASSWORD": "smtp-pw", "FIREBREAK_WEBHOOK_SECRET": "hook-key"}
# ...and its checkout service's routing key comes from this; the alert token from the other.
ALERT_SECRETS = {
    "FIREBREAK_CHECKOUT_ROUTING_KEY": "3f1b8a7c2d4e4f5a9b6c0d1e2f3a4b5c",
    "FIREBREAK_ALERT_TOKEN": "alert-token-cli-test",
}
BAD_CONFIG = "slack:\n  announce_channel: C0INCIDENTS\nincidents:\n  channel_prefx: inc\n"


def child_env(**overrides: str) -> dict[str, str]:
    """os.environ without proxies or any Firebreak setting of the caller's, plus overrides."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in PROXY_VARIABLES and key not in OUR_VARIABLES
    }
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env.update(overrides)
    return env


def run_script(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FIREBREAK, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def invoke(args: list[str], **env: str | None) -> Result:
    """Run the CLI in-process; variables not given are unset so the caller's cannot leak in."""
    environment: dict[str, str | None] = dict.fromkeys(OUR_VARIABLES)
    environment.update(env)
    return CliRunner().invoke(main, args, env=environment, catch_exceptions=False)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no firebreak.yaml, for in-process and child runs alike."""
    directory = tmp_path / "work"
    directory.mkdir()
    monkeypatch.chdir(directory)
    return directory


# -- check --------------------------------------------------------------------------------


def test_check_script_passes_with_a_good_config_and_tokens(workdir: Path) -> None:
    env = child_env(FIREBREAK_CONFIG=str(EXAMPLE), **TOKENS, **NOTIFIER_SECRETS, **ALERT_SECRETS)
    done = run_script(["check"], env, workdir)
    assert done.returncode == 0, done.stderr
    assert f"Configuration OK ({EXAMPLE})." in done.stdout
    assert "warning" not in done.stdout  # the example sets announce_channel
    assert "error" not in done.stderr


def test_check_names_notifier_secrets_missing_from_the_environment(workdir: Path) -> None:
    result = invoke(["check"], FIREBREAK_CONFIG=str(EXAMPLE), **TOKENS)
    assert result.exit_code == 0  # those channels are off until set (tests/test_example_config)
    assert (
        "warning: environment: FIREBREAK_SMTP_PASSWORD is not set, but "
        "notifiers.email.password_env names it" in result.stdout
    )
    assert "FIREBREAK_WEBHOOK_SECRET is not set, but notifiers.webhook.secret_env" in result.stdout


def test_check_script_fails_naming_file_line_and_key(workdir: Path) -> None:
    config = workdir / "firebreak.yaml"
    config.write_text(BAD_CONFIG, encoding="utf-8")
    done = run_script(["check"], child_env(FIREBREAK_CONFIG=str(config), **TOKENS), workdir)
    assert done.returncode != 0
    assert f"error: {config}:4: incidents.channel_prefx: unknown key" in done.stderr
    assert "Configuration OK" not in done.stdout


def test_check_with_embedded_defaults_warns_about_the_announce_channel(workdir: Path) -> None:
    result = invoke(["check"], **TOKENS)
    assert result.exit_code == 0, result.output
    assert "Configuration OK (embedded defaults)." in result.stdout
    assert "warning: slack.announce_channel is not set" in result.stdout


@pytest.mark.parametrize("missing", ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"])
def test_check_fails_when_a_slack_credential_is_unset(workdir: Path, missing: str) -> None:
    given = {name: value for name, value in TOKENS.items() if name != missing}
    result = invoke(["check"], FIREBREAK_CONFIG=str(EXAMPLE), **given)
    assert result.exit_code != 0
    assert f"error: environment: {missing} is not set" in result.stderr
    present = next(iter(given))
    assert present not in result.stderr
    assert "Configuration OK" not in result.stdout


def test_check_reports_both_credentials_and_a_bad_token_together(workdir: Path) -> None:
    result = invoke(["check"], FIREBREAK_CONFIG=str(EXAMPLE))
    assert result.exit_code != 0
    assert "SLACK_BOT_TOKEN is not set" in result.stderr
    assert "SLACK_SIGNING_SECRET is not set" in result.stderr

    result = invoke(["check"], SLACK_BOT_TOKEN="xoxp-user", SLACK_SIGNING_SECRET="s")
    assert result.exit_code != 0
    assert "error: environment: SLACK_BOT_TOKEN:" in result.stderr
    assert "xoxb-" in result.stderr


def test_check_names_a_missing_config_file(workdir: Path) -> None:
    missing = workdir / "missing.yaml"
    result = invoke(["check"], FIREBREAK_CONFIG=str(missing), **TOKENS)
    assert result.exit_code != 0
    assert f"error: {missing}: no such file" in result.stderr


# -- manifest -----------------------------------------------------------------------------


def test_manifest_points_every_request_url_at_slack_events(workdir: Path) -> None:
    result = invoke(["manifest", "--url", "https://fb.example.org"])
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load(result.stdout)
    events_url = "https://fb.example.org/slack/events"

    commands = manifest["features"]["slash_commands"]
    assert [command["command"] for command in commands] == [
        "/incident",
        "/oncall",
        "/page",
        "/runbook",
    ]
    for command in commands:
        assert command["url"] == events_url
        assert command["should_escape"] is True
        assert command["description"]
    settings = manifest["settings"]
    assert settings["interactivity"] == {"is_enabled": True, "request_url": events_url}
    assert settings["event_subscriptions"]["request_url"] == events_url
    assert "reaction_added" in settings["event_subscriptions"]["bot_events"]
    assert settings["socket_mode_enabled"] is False
    assert manifest["features"]["bot_user"]["display_name"]
    scopes = manifest["oauth_config"]["scopes"]["bot"]
    needed = {
        "chat:write",
        "channels:manage",
        "pins:write",
        "commands",
        "channels:history",
        "reactions:read",
    }
    assert needed <= set(scopes)
    assert sorted(scopes) == sorted(BOT_SCOPES)
    assert len(scopes) == len(set(scopes))


def test_manifest_url_with_a_trailing_slash_and_the_default(workdir: Path) -> None:
    trailing = yaml.safe_load(invoke(["manifest", "--url", "https://fb.example.org/"]).stdout)
    assert trailing["settings"]["interactivity"]["request_url"] == (
        "https://fb.example.org/slack/events"
    )
    default = yaml.safe_load(invoke(["manifest"]).stdout)
    url = default["features"]["slash_commands"][0]["url"]
    assert url.startswith("https://") and url.endswith("/slack/events")


# -- db upgrade ---------------------------------------------------------------------------


def test_db_upgrade_creates_the_schema_at_head(workdir: Path, empty_database_url: str) -> None:
    result = invoke(["db", "upgrade"], DATABASE_URL=empty_database_url)
    assert result.exit_code == 0, result.output
    assert "Database at head." in result.stdout

    engine = create_engine(normalise_url(empty_database_url))
    try:
        tables = set(inspect(engine).get_table_names())
        assert {"incidents", "role_assignments", "timeline_events", "alembic_version"} <= tables
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        assert [row[0] for row in versions] == [head_revision(empty_database_url)]
        columns = {column["name"] for column in inspect(engine).get_columns("incidents")}
        assert {"title", "severity", "status", "declared_at", "channel_id"} <= columns
    finally:
        engine.dispose()

    again = invoke(["db", "upgrade"], DATABASE_URL=empty_database_url)
    assert again.exit_code == 0, again.output


def test_db_upgrade_refuses_a_bad_config_before_touching_the_database(
    workdir: Path, empty_database_url: str
) -> None:
    config = workdir / "bad.yaml"
    config.write_text(BAD_CONFIG, encoding="utf-8")
    result = invoke(
        ["db", "upgrade"], DATABASE_URL=empty_database_url, FIREBREAK_CONFIG=str(config)
    )
    assert result.exit_code != 0
    assert "incidents.channel_prefx" in result.stderr
    engine = create_engine(normalise_url(empty_database_url))
    try:
        assert "alembic_version" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()


# -- demo and serve -----------------------------------------------------------------------


DEMO_CHANNEL = "#inc-1-checkout-latency-above-2s"


def play_demo(workdir: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`firebreak demo ARGS` in `workdir`, its temporary files in a directory of their own
    (returned) so a test can see that it is left empty."""
    temporary = workdir.parent / "demo-tmp"
    temporary.mkdir()
    done = run_script(["demo", *args], child_env(TMPDIR=str(temporary)), workdir, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done, temporary


def check_runbook_step(out: str, temporary: Path, server: str) -> None:
    """The demo's runbook step went through Slack to a local SSH server (`server` names
    which) and back: bob's /runbook in the incident channel, the plan, Run, and the thread
    reply with the host's real df output; then the server is gone and nothing is left."""
    intro = re.search(
        r"Runbooks run over SSH on demo-1, (.+) on 127\.0\.0\.1:(\d+): its host key "
        r"(SHA256:\S+) is pinned in the demo's known_hosts",
        out,
    )
    assert intro is not None, out[:600]
    assert intro.group(1).startswith(server), intro.group(1)
    port, fingerprint = int(intro.group(2)), intro.group(3)
    request = out[
        out.index(
            f"bob in {DEMO_CHANNEL}: /runbook run disk-usage path=/ hosts=demo-1"
        ) : out.index("bob presses Run")
    ]
    assert f"bot: posted in {DEMO_CHANNEL}: R-1: runbook disk-usage on 1 hosts" in request
    assert "space: df -h -P -- /" in request and "inodes: df -i -P -- /" in request
    run = out[out.index("bob presses Run under the plan of R-1") : out.index("/incident note")]
    assert f"bot: replied in a thread in {DEMO_CHANNEL}: *R-1* running" in run
    reply = run[run.index(f"The thread reply under the plan in {DEMO_CHANNEL} reads:") :]
    assert "*R-1* finished: *succeeded*" in reply
    assert "`demo-1` succeeded space=0 inodes=0" in reply
    # The host's own df, run over SSH: the same file system as df here shows for /.
    here = subprocess.run(
        ["df", "-h", "-P", "--", "/"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert f"demo-1 | {here[0]}" in reply  # the header line, exactly
    device = here[1].split()[0]
    assert re.search(rf"^ +demo-1 \| {re.escape(device)} .* /$", reply, re.MULTILINE), reply
    assert re.search(r"^ +demo-1 \| Filesystem +Inodes +IUsed", reply, re.MULTILINE), reply
    # The timeline has the run, with the fingerprint of the key the demo pinned.
    timeline = out[out.index("Timeline of INC-1") :]
    facts = [
        "@alice made @bob ops",
        "@bob requested runbook disk-usage (R-1): Disk usage on demo-1 (risk low)",
        "@bob confirmed runbook disk-usage (R-1)",
        "runbook disk-usage (R-1) started on demo-1 (requested by @bob)",
        "runbook disk-usage (R-1) on demo-1: succeeded in",
        "runbook disk-usage (R-1) finished: succeeded (1 succeeded)",
        "@bob added a note",
    ]
    positions = [timeline.index(fact) for fact in facts]
    assert positions == sorted(positions), "the run's facts are in order"
    assert f"host key {fingerprint}" in timeline
    # The server stopped with the demo, and its keys, config and database went with it.
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    assert list(temporary.iterdir()) == [], "the demo's temporary files are removed"


def test_demo_plays_a_whole_incident(workdir: Path) -> None:
    done, temporary = play_demo(workdir)
    out = done.stdout
    channel = DEMO_CHANNEL
    # The story starts from monitoring: Alertmanager's webhook opens the incident and pages.
    alert_step = out[out.index("Alertmanager posts a firing alert") : out.index("does not answer")]
    assert "bot: sent @carol a direct message: You are paged: Checkout latency above 2s" in (
        alert_step
    )
    assert f"bot: created channel {channel}" in alert_step
    assert f"posted in {channel}: Alerts from alertmanager: Checkout latency above 2s" in alert_step
    assert "bot: sent @alice a direct message" in out  # carol did not answer: escalated
    assert "@alice acknowledged P-1" in out and "Commander: @alice" in out
    resolved_step = out[out.index("Alertmanager posts a resolved alert") :]
    assert "(all resolved, 1 in all)" in resolved_step
    assert "alertmanager resolved P-1" in resolved_step
    assert f"bot: created channel {channel}" in out
    assert f"bot: pinned the summary in {channel}" in out
    assert "changed severity sev2 → sev1" in out
    assert f"bot: set the topic of {channel}: SEV1 · investigating" in out
    assert ":memo: @bob added a note: Rolled back deploy 2026.11.20-3; watching p99" in out
    # What the bot did for the :pushpin: is told in that step, before the next command.
    pin_step = out[out.index("alice reacts with :pushpin:") : out.index("/incident status")]
    assert f"bot: read the pinned message in {channel}" in pin_step
    assert "@alice resolved the incident: Rolled back the bad deploy" in out
    # It ends with the postmortem draft: uploaded, saved, its path and first lines printed.
    assert f"bot: uploaded INC-1.md to {channel}" in out
    draft = workdir / "postmortems" / "INC-1.md"
    assert f"Postmortem draft written to {draft.resolve()}; its first lines:" in out
    assert "    # INC-1: Checkout latency above 2s" in out
    assert "- [ ] Alert on p99 before the error rate (owner: bob), due 2026-12-01" in (
        draft.read_text(encoding="utf-8")
    )
    assert f"set the topic of {channel}: SEV1 · resolved" in out
    timeline = out[out.index("Timeline of INC-1") :]
    facts = [
        "Firebreak declared SEV2: Checkout latency above 2s",
        "alertmanager paged service:firebreak-demo",
        "P-1 step 1: notified carol",
        "P-1 step 2: notified alice",
        "@alice acknowledged P-1",
        "@alice made @alice commander",
        "@alice changed severity sev2 → sev1",
        "@bob added a note: Rolled back deploy",
        "@alice pinned a message by @carol: p99 is back under 300 ms since the rollback",
        "@alice changed status investigating → monitoring",
        "alertmanager alert resolved",
        "alertmanager resolved P-1",
        "@alice resolved the incident",
    ]
    positions = [timeline.index(fact) for fact in facts]
    assert positions == sorted(positions), "the timeline is in order"
    assert "failed" not in out and "✗" not in out
    story, web_view = out.split("Web view of INC-1: sign in as alice", 1)
    assert story.rstrip().endswith(
        "a runbook ran over SSH with its output in the channel, each fact in its timeline, "
        "and its postmortem drafted."
    )
    # It ends with a sign-in link to the web view (tests/test_webview_serve.py opens one).
    assert "/signin?token=" in web_view
    assert web_view.rstrip().endswith(
        "(Not a terminal, so the demo stops now and the link with it.)"
    )
    leftovers = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    assert leftovers == ["postmortems", "postmortems/INC-1.md"], "only the draft it wrote is left"
    # By default the runbook runs on OpenSSH's sshd where it is installed (CI installs it).
    if os.access("/usr/sbin/sshd", os.X_OK):
        check_runbook_step(out, temporary, "OpenSSH's sshd (/usr/sbin/sshd)")
    elif os.environ.get("CI") or os.environ.get("FIREBREAK_REQUIRE_SSHD") == "1":
        pytest.fail("/usr/sbin/sshd is missing (required: CI or FIREBREAK_REQUIRE_SSHD=1)")
    else:
        check_runbook_step(
            out, temporary, "the sandbox's SSH server on paramiko (OpenSSH's sshd is not installed"
        )


def test_demo_runs_its_runbook_on_the_paramiko_server_when_told(workdir: Path) -> None:
    """The fallback for machines without sshd, forced: the same story, the same runbook
    output in the incident channel's thread, from the sandbox's paramiko SSH server."""
    done, temporary = play_demo(workdir, "--ssh-server", "paramiko")
    out = done.stdout
    check_runbook_step(
        out, temporary, "the sandbox's SSH server on paramiko (--ssh-server paramiko)"
    )
    assert "OpenSSH's sshd" not in out
    assert "failed" not in out and "✗" not in out
    assert f"bot: uploaded INC-1.md to {DEMO_CHANNEL}" in out
    leftovers = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*"))
    assert leftovers == ["postmortems", "postmortems/INC-1.md"]


def test_demo_refuses_an_unknown_ssh_server(workdir: Path) -> None:
    done = run_script(["demo", "--ssh-server", "telnet"], child_env(), workdir)
    assert done.returncode == 2
    assert "'telnet' is not one of 'auto', 'openssh', 'paramiko'" in done.stderr
    assert "Traceback" not in done.stderr
    assert list(workdir.iterdir()) == []


def test_serve_with_a_malformed_config_exits_without_listening(workdir: Path) -> None:
    config = workdir / "firebreak.yaml"
    config.write_text(
        "slack:\n  announce_channel: C0INCIDENTS\npeople:\n  alice:\n    slack: U0ALICE\n"
        "    timezone: Berlin\n",
        encoding="utf-8",
    )
    database = workdir / "serve.db"
    env = child_env(FIREBREAK_CONFIG=str(config), DATABASE_URL=f"sqlite:///{database}", **TOKENS)
    done = run_script(["serve", "--port", "0"], env, workdir, timeout=30)
    assert done.returncode != 0
    assert f"error: {config}:6: people.alice.timezone:" in done.stderr
    assert "listening" not in done.stdout + done.stderr
    assert not database.exists(), "no schema is created for a configuration that cannot run"


# -- configuration files that must fail cleanly -------------------------------------------

START_9999 = (
    "people:\n  alice: {slack: U0ALICE}\nschedules:\n  primary:\n    timezone: UTC\n"
    "    layers:\n"
    "    - {name: l, users: [alice], rotation: weekly, handoff: mon 09:00, start: 9999-12-31}\n"
)
BROKEN_FILES: dict[str, tuple[bytes | None, str]] = {
    # name: (content, or None for a directory; what stderr must say after the path)
    "duplicate key": (
        b"people:\n  alice: {slack: U0A}\n  alice: {slack: U0B}\n",
        ":3: people.alice: given twice (first at line 2)",
    ),
    "not UTF-8": (
        b"people:\n  alice: {slack: U0A, email: jos\xe9@example.com}\n",
        ":2: people.alice.email: byte 0xe9 at offset",
    ),
    "a directory": (None, ": is a directory"),
    "start 9999-12-31": (
        START_9999.encode(),
        ":7: schedules.primary.layers.0.start: 9999-12-31 is out of range",
    ),
}


def broken_config(workdir: Path, case: str) -> tuple[Path, str]:
    content, message = BROKEN_FILES[case]
    config = workdir / "firebreak.yaml"
    if content is None:
        config.mkdir()
    else:
        config.write_bytes(content)
    return config, f"error: {config}{message}"


@pytest.mark.parametrize("case", list(BROKEN_FILES))
def test_check_refuses_a_broken_file_with_exit_2_and_no_traceback(workdir: Path, case: str) -> None:
    config, expected = broken_config(workdir, case)
    done = run_script(["check"], child_env(FIREBREAK_CONFIG=str(config), **TOKENS), workdir)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    assert "Configuration OK" not in done.stdout


@pytest.mark.parametrize("case", list(BROKEN_FILES))
def test_serve_refuses_a_broken_file_with_exit_2_and_no_traceback(workdir: Path, case: str) -> None:
    config, expected = broken_config(workdir, case)
    database = workdir / "serve.db"
    env = child_env(FIREBREAK_CONFIG=str(config), DATABASE_URL=f"sqlite:///{database}", **TOKENS)
    done = run_script(["serve", "--port", "0"], env, workdir)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    assert "listening" not in done.stdout + done.stderr
    assert not database.exists()


def test_oncall_refuses_a_start_date_it_cannot_count_from(workdir: Path) -> None:
    config, expected = broken_config(workdir, "start 9999-12-31")
    result = invoke(["oncall"], FIREBREAK_CONFIG=str(config))
    assert result.exit_code == 2
    assert expected in result.output


def test_firebreak_yaml_in_the_working_directory_is_checked_the_same_way(workdir: Path) -> None:
    broken_config(workdir, "duplicate key")  # no FIREBREAK_CONFIG: the default path
    result = invoke(["check"], **TOKENS)
    assert result.exit_code == 2
    assert "error: firebreak.yaml:3: people.alice: given twice" in result.output


@pytest.mark.parametrize("at", ["9999-12-31T23:00", "0001-01-01T00:00"])
def test_oncall_refuses_an_instant_it_cannot_count_to(workdir: Path, at: str) -> None:
    database = workdir / "oncall.db"
    result = invoke(
        ["oncall", "--at", at], FIREBREAK_CONFIG=str(EXAMPLE), DATABASE_URL=f"sqlite:///{database}"
    )
    assert result.exit_code == 2, result.output
    assert f"--at '{at}' is out of range; give a time from 2000 to 2099" in result.output
