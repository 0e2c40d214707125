"""`notifiers.email` in `firebreak check`: no SMTP password in clear text unless allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bot.cli import main

SLACK = {"SLACK_BOT_TOKEN": "xoxb-smtp-test", "SLACK_SIGNING_SECRET": "smtp-test-secret"}
PEOPLE = """people:
  alice: {slack: U0ALICE, email: alice@example.com, notify: [slack, email]}
"""


def check(workdir: Path, email: str, **env: str) -> tuple[Result, Path]:
    path = workdir / "firebreak.yaml"
    path.write_text(PEOPLE + "notifiers:\n  email:\n" + email, encoding="utf-8")
    environment: dict[str, str | None] = {
        "FIREBREAK_CONFIG": str(path),
        "FIREBREAK_SMTP_PASSWORD": None,
        "FIREBREAK_RUNBOOKS": None,
        "FIREBREAK_ALERT_TOKEN": "alert-token",
        **SLACK,
        **env,
    }
    result = CliRunner().invoke(main, ["check"], env=environment, catch_exceptions=False)
    return result, path


def line_of(path: Path, text: str) -> int:
    """The 1-based number of the first line of `path` containing `text`."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


PLAINTEXT = """    host: mail.internal
    port: 25
    starttls: false
    username: firebreak
    password_env: FIREBREAK_SMTP_PASSWORD
"""


def test_a_username_without_starttls_is_an_error_naming_file_line_and_key(workdir: Path) -> None:
    result, path = check(workdir, PLAINTEXT, FIREBREAK_SMTP_PASSWORD="hunter2")
    assert result.exit_code == 2
    assert (
        f"error: {path}:{line_of(path, 'username:')}: notifiers.email.username: logging in to mail.internal without "
        "starttls sends the password in clear text; set `starttls: true` (the server must "
        "offer STARTTLS, usually on port 587), or `allow_plaintext_auth: true` if the link to "
        "it is trusted (a relay on this host or a private network)\n"
    ) in result.stderr
    assert "hunter2" not in result.output
    assert "Configuration OK" not in result.stdout
    # starttls left out is the default, false: the same error.
    result, _ = check(workdir, PLAINTEXT.replace("    starttls: false\n", ""))
    assert result.exit_code == 2
    assert "notifiers.email.username: logging in to mail.internal without starttls" in (
        result.stderr
    )


@pytest.mark.parametrize(
    "change",
    [
        ("starttls: false", "starttls: true"),
        ("starttls: false", "starttls: false\n    allow_plaintext_auth: true"),
    ],
)
def test_starttls_or_an_explicit_allowance_passes(workdir: Path, change: tuple[str, str]) -> None:
    result, path = check(
        workdir, PLAINTEXT.replace(*change), FIREBREAK_SMTP_PASSWORD="from-the-environment"
    )
    assert result.exit_code == 0, result.stderr
    assert f"Configuration OK ({path})." in result.stdout
    assert "warning: environment" not in result.stdout


def test_no_username_needs_no_tls(workdir: Path) -> None:
    result, _ = check(workdir, "    host: 127.0.0.1\n    port: 25\n")
    assert result.exit_code == 0, result.stderr
    assert "warning: environment" not in result.stdout


def test_a_username_needs_the_password_variable_named(workdir: Path) -> None:
    email = "    host: smtp.example.com\n    starttls: true\n    username: firebreak\n"
    result, path = check(workdir, email)
    assert result.exit_code == 2
    assert (
        f"error: {path}:{line_of(path, '  email:')}: notifiers.email.password_env: is needed with a username: name the "
        "environment variable that holds the SMTP password (like FIREBREAK_SMTP_PASSWORD)"
    ) in result.stderr
    # ...by name: a password pasted in its place is refused without being echoed.
    result, path = check(workdir, email + "    password_env: s3cr3t!pass\n")
    assert result.exit_code == 2
    assert "notifiers.email.password_env: is not an environment variable name" in result.stderr
    assert "s3cr3t!pass" not in result.output


def test_an_unset_password_variable_is_a_warning_naming_who_is_paged_by_email(
    workdir: Path,
) -> None:
    email = PLAINTEXT.replace("starttls: false", "starttls: true")
    result, _ = check(workdir, email)
    assert result.exit_code == 0, result.stderr
    assert (
        "warning: environment: FIREBREAK_SMTP_PASSWORD is not set, but "
        "notifiers.email.password_env names it; pages by email fail until it is set "
        "(people paged by email: alice)\n"
    ) in result.stdout
