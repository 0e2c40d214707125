"""A new user's first steps, as the README gives them: copy examples/firebreak.yaml to
firebreak.yaml, export the Slack variables, run `firebreak check`: it passes, and says which
integrations stay off until their secret variables are set."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from werkzeug.test import Client

from bot.app import build
from bot.config import ConfigError, load_file
from bot.sandbox import SlackSandbox
from tests.conftest import PROXY_VARIABLES, make_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
FIREBREAK = str(Path(sys.executable).parent / "firebreak")
EXAMPLE_SECRETS = (
    "FIREBREAK_SMTP_PASSWORD",
    "FIREBREAK_WEBHOOK_SECRET",
    "FIREBREAK_CHECKOUT_ROUTING_KEY",
)


def readme_steps() -> tuple[str, str, list[str]]:
    """What the README's setup says: the file to copy, where to, and the variables to export."""
    copy = re.search(r"Copy `(examples/[\w.]+)` to `([\w.]+)`", README)
    assert copy, "the README no longer says which example to copy"
    export = re.search(r"^\s*export (SLACK_BOT_TOKEN=\S+(?: \w+=\S+)*)$", README, re.M)
    assert export, "the README no longer shows the export line for the Slack variables"
    names = [assignment.split("=")[0] for assignment in export.group(1).split()]
    return copy.group(1), copy.group(2), names


def user_environment(**variables: str) -> dict[str, str]:
    """The caller's environment without proxies or anything Firebreak or Slack reads."""
    ours = re.compile(r"^(FIREBREAK_|SLACK_|DATABASE_URL$)")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in PROXY_VARIABLES and not ours.match(key)
    }
    return env | variables


def test_the_example_copied_as_the_readme_says_passes_check(tmp_path: Path) -> None:
    example, target, variables = readme_steps()
    assert variables == ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"]
    shutil.copyfile(PROJECT_ROOT / example, tmp_path / target)
    values = {"SLACK_BOT_TOKEN": "xoxb-new-user", "SLACK_SIGNING_SECRET": "a-new-user-secret"}
    done = subprocess.run(
        [FIREBREAK, "check"],
        cwd=tmp_path,
        env=user_environment(**{name: values[name] for name in variables}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert f"Configuration OK ({target})." in done.stdout
    # Each integration waiting for its secret is named, with what stays off until it is set.
    assert (
        "warning: environment: FIREBREAK_SMTP_PASSWORD is not set, but "
        "notifiers.email.password_env names it; pages by email fail until it is set "
        "(people paged by email: alice)"
    ) in done.stdout
    assert (
        "warning: environment: FIREBREAK_WEBHOOK_SECRET is not set, but "
        "notifiers.webhook.secret_env names it; pages by webhook fail until it is set\n"
    ) in done.stdout
    assert (
        "warning: environment: FIREBREAK_CHECKOUT_ROUTING_KEY is not set, but "
        "services.checkout.routing_key_env names it; PagerDuty events for checkout are "
        "refused until it is set"
    ) in done.stdout


def test_with_every_secret_set_the_example_has_no_secret_warnings(tmp_path: Path) -> None:
    shutil.copyfile(PROJECT_ROOT / "examples" / "firebreak.yaml", tmp_path / "firebreak.yaml")
    secrets = {
        "SLACK_BOT_TOKEN": "xoxb-new-user",
        "SLACK_SIGNING_SECRET": "a-new-user-secret",
        "FIREBREAK_SMTP_PASSWORD": "smtp-password",
        "FIREBREAK_WEBHOOK_SECRET": "webhook-key",
        "FIREBREAK_CHECKOUT_ROUTING_KEY": "0123456789abcdef0123456789ABCDEF",
        "FIREBREAK_ALERT_TOKEN": "alert-token",
    }
    done = subprocess.run(
        [FIREBREAK, "check"],
        cwd=tmp_path,
        env=user_environment(**secrets),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Configuration OK (firebreak.yaml)." in done.stdout
    assert "warning" not in done.stdout
    # A malformed key is still an error, and is never echoed.
    done = subprocess.run(
        [FIREBREAK, "check"],
        cwd=tmp_path,
        env=user_environment(**(secrets | {"FIREBREAK_CHECKOUT_ROUTING_KEY": "too-short-key"})),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "FIREBREAK_CHECKOUT_ROUTING_KEY (services.checkout.routing_key_env) must hold" in (
        done.stderr
    )
    assert "too-short-key" not in done.stdout + done.stderr


def test_serve_starts_on_the_example_without_its_secrets_and_logs_each_one(
    database_url: str,
    sandbox: SlackSandbox,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What `check` warns about, `serve` logs and starts anyway; a PagerDuty event for the
    service whose key is unset is refused, as the warning says."""
    for name in EXAMPLE_SECRETS:
        monkeypatch.delenv(name, raising=False)
    config, found = load_file(PROJECT_ROOT / "examples" / "firebreak.yaml", required=True)
    assert found
    caplog.set_level(logging.WARNING, logger="bot.app")
    app = build(make_settings(database_url, sandbox, config))
    try:
        logged = [record.getMessage() for record in caplog.records if record.name == "bot.app"]
        for name in EXAMPLE_SECRETS:
            assert any(message.startswith(f"environment: {name} is not set") for message in logged)
        event = {
            "routing_key": "0123456789abcdef0123456789ABCDEF",
            "event_action": "trigger",
            "payload": {"summary": "checkout down", "source": "probe", "severity": "critical"},
        }
        answer = Client(app.web).post("/v2/enqueue", json=event)
        assert answer.status_code == 400
        assert answer.get_json()["status"] == "invalid event"
    finally:
        app.close()


def test_a_malformed_routing_key_still_stops_serve(
    database_url: str, sandbox: SlackSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIREBREAK_CHECKOUT_ROUTING_KEY", "not-a-key")
    config, _ = load_file(PROJECT_ROOT / "examples" / "firebreak.yaml", required=True)
    with pytest.raises(ConfigError) as refused:
        build(make_settings(database_url, sandbox, config))
    assert any("must hold exactly 32" in problem for problem in refused.value.problems)
