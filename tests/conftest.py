"""The test harness: real databases migrated by Alembic, the sandbox Slack, signed requests.

Every test gets its own database, copied from a template that the Alembic migrations built
once per run (a file copy on SQLite, `CREATE DATABASE ... TEMPLATE` on PostgreSQL), so the
migrations are what every test runs on and tests cannot see each other's rows. Set
`FIREBREAK_TEST_DATABASE_URL` to run the whole suite on PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from werkzeug.test import Client

from bot.app import Firebreak, build
from bot.config import EnvSettings, FileConfig, Settings, SlackSection
from bot.db import normalise_url
from bot.migrations import upgrade
from bot.people import Person
from bot.sandbox import SlackSandbox
from bot.sandbox.outbound import OutboundSlack, Reply, Transport

pytest_plugins = ["tests.sshd"]  # real OpenSSH sshd servers: sshd_hosts, sshd_hosts_module

# Property tests (hypothesis) explore new random examples on every developer run, where a
# counterexample found by chance can be investigated (and is kept in .hypothesis/). In CI
# they draw the same examples every run, so CI fails for a change, never for a dice roll.
# (A CI run once failed on `/runbook run \x00`, found by chance: that input and its like now
# have a deterministic test, tests/test_adversarial.py::test_hostile_characters_...)
hypothesis.settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
    hypothesis.settings.load_profile("ci")

TOKEN = "xoxb-test-token"
SECRET = "test-signing-secret"
PEOPLE = {
    "alice": Person(slack="U0ALICE", email="alice@example.com", timezone="Europe/Berlin"),
    "bob": Person(slack="U0BOB", email="bob@example.com", timezone="America/New_York"),
    "carol": Person(slack="U0CAROL", email="carol@example.com", timezone="Asia/Tokyo"),
}
PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches the internet; local HTTP must never detour through a proxy."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


# -- databases --------------------------------------------------------------------------


def _postgres_admin_url() -> str | None:
    url = os.environ.get("FIREBREAK_TEST_DATABASE_URL")
    return normalise_url(url) if url else None


@contextmanager
def _postgres_database(admin: str, prefix: str, template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (optionally a copy of `template`), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    copy = f' TEMPLATE "{template}"' if template else ""
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    try:
        yield name
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def _url_of(admin: str, database: str) -> str:
    return make_url(admin).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def _database_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    admin = _postgres_admin_url()
    if admin is None:
        path = tmp_path_factory.mktemp("template") / "template.db"
        upgrade(f"sqlite:///{path}")
        yield str(path)
        return
    with _postgres_database(admin, "firebreak_template") as name:
        upgrade(_url_of(admin, name))
        yield name


@pytest.fixture
def database_url(_database_template: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database for this test only."""
    admin = _postgres_admin_url()
    if admin is None:
        path = tmp_path / "firebreak.db"
        shutil.copyfile(_database_template, path)
        yield f"sqlite:///{path}"
        return
    with _postgres_database(admin, "firebreak_test", template=_database_template) as name:
        yield _url_of(admin, name)


@pytest.fixture
def empty_database_url(tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all, for testing the migrations themselves."""
    admin = _postgres_admin_url()
    if admin is None:
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with _postgres_database(admin, "firebreak_empty") as name:
        yield _url_of(admin, name)


# -- Slack ------------------------------------------------------------------------------


@pytest.fixture
def sandbox() -> Iterator[SlackSandbox]:
    with SlackSandbox(bot_token=TOKEN) as slack:
        for name, person in PEOPLE.items():
            slack.add_user(person.slack, name, email=person.email, tz=person.timezone)
        yield slack


@pytest.fixture
def announce_channel(sandbox: SlackSandbox) -> str:
    return sandbox.add_channel("incidents", members=[p.slack for p in PEOPLE.values()])


@pytest.fixture
def file_config(announce_channel: str) -> FileConfig:
    return FileConfig(slack=SlackSection(announce_channel=announce_channel), people=PEOPLE)


def make_settings(database_url: str, sandbox: SlackSandbox, file_config: FileConfig) -> Settings:
    env = EnvSettings.model_validate(
        {
            "DATABASE_URL": database_url,
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": sandbox.api_url,
        }
    )
    return Settings(
        env=env, file=file_config, config_path=Path("firebreak.yaml"), config_found=False
    )


@pytest.fixture
def settings(database_url: str, sandbox: SlackSandbox, file_config: FileConfig) -> Settings:
    return make_settings(database_url, sandbox, file_config)


@pytest.fixture
def firebreak(settings: Settings) -> Iterator[Firebreak]:
    app = build(settings)
    try:
        yield app
    finally:
        app.close()


def wsgi_transport(app: Firebreak) -> Transport:
    """Deliver into the real WSGI app (werkzeug's client: no socket, same code path)."""
    client = Client(app.web)

    def post(body: bytes, headers: dict[str, str]) -> Reply:
        response = client.post("/slack/events", data=body, headers=headers)
        return Reply(response.status_code, response.get_data(as_text=True))

    return post


class Slack(OutboundSlack):
    """Signed Slack requests into the app, plus waiting for the work they start."""

    def __init__(self, app: Firebreak, sandbox: SlackSandbox) -> None:
        super().__init__(wsgi_transport(app), SECRET, sandbox)
        self.app = app

    def settle(self) -> None:
        assert self.app.workers.wait_idle(timeout=20), "background work did not finish"

    def run(self, text: str, *, user: str = "U0ALICE", channel: str = "C0GENERAL") -> Reply:
        """A slash command, then wait for everything it started."""
        reply = self.command(text, user=user, channel=channel)
        self.settle()
        return reply


@pytest.fixture
def slack(firebreak: Firebreak, sandbox: SlackSandbox) -> Slack:
    return Slack(firebreak, sandbox)


@pytest.fixture
def general(sandbox: SlackSandbox) -> str:
    return sandbox.add_channel("general", members=[p.slack for p in PEOPLE.values()])


def last_response_text(sandbox: SlackSandbox) -> str:
    responses = sandbox.responses()
    assert responses, "the bot sent nothing to the response_url"
    return str(responses[-1].payload.get("text", ""))


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


# -- tests that need PostgreSQL ---------------------------------------------------------

_DESELECTED_POSTGRESQL = pytest.StashKey[int]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `postgresql` (replicas, leader election) need a real PostgreSQL. Without
    FIREBREAK_TEST_DATABASE_URL they are deselected, not skipped: they run in the PostgreSQL
    pass, which CI always makes."""
    if _postgres_admin_url() is not None:
        return
    deselected = [item for item in items if item.get_closest_marker("postgresql")]
    if deselected:
        items[:] = [item for item in items if not item.get_closest_marker("postgresql")]
        config.hook.pytest_deselected(items=deselected)
        config.stash[_DESELECTED_POSTGRESQL] = len(deselected)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    count = config.stash.get(_DESELECTED_POSTGRESQL, 0)
    if count:
        terminalreporter.write_line(
            f"{count} test(s) marked postgresql deselected: they run in the PostgreSQL pass "
            "(set FIREBREAK_TEST_DATABASE_URL)"
        )
