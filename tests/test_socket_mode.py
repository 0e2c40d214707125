"""Socket Mode end to end: Firebreak's bolt app on slack_sdk's Socket Mode client, talking to
the sandbox's Socket Mode server over a real WebSocket.

The same requests the HTTP tests sign and POST go here as envelopes (`socket_transport`):
declare, status, note, resolve, buttons and reactions, an acknowledgement that comes too late,
a `disconnect` and a dropped TCP connection in the middle of a flow, and two apps on one
database sharing the envelopes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from werkzeug.test import Client

from bot.app import Firebreak, build
from bot.config import ConfigError, EnvSettings, FileConfig, Settings
from bot.incidents import service
from bot.sandbox import SlackSandbox
from bot.sandbox.outbound import OutboundSlack, socket_transport
from bot.slack.socket_mode import SlackSocket, SocketRefused
from tests.conftest import TOKEN, wait_for
from tests.test_metrics import Scrape

APP_TOKEN = "xapp-1-A0FIREBREAK-test"


def socket_settings(database_url: str, sandbox: SlackSandbox, file_config: FileConfig) -> Settings:
    env = EnvSettings.model_validate(
        {
            "DATABASE_URL": database_url,
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_APP_TOKEN": APP_TOKEN,
            "SLACK_API_URL": sandbox.api_url,
        }
    )
    settings = Settings(
        env=env, file=file_config, config_path=Path("firebreak.yaml"), config_found=False
    )
    return settings.with_slack_mode("socket")


def start_socket_app(
    settings: Settings, sandbox: SlackSandbox, links: int = 1, ping_interval: float = 1.0
) -> Firebreak:
    app = build(settings)
    assert app.socket is not None
    app.socket.ping_interval = ping_interval  # a silent connection is replaced after ~4 pings
    app.socket.start()
    assert app.socket.wait_connected(timeout=10)
    sandbox.socket_mode.wait_for_links(links)
    return app


@pytest.fixture
def socket_app(
    database_url: str, sandbox: SlackSandbox, file_config: FileConfig
) -> Iterator[Firebreak]:
    app = start_socket_app(socket_settings(database_url, sandbox, file_config), sandbox)
    try:
        yield app
    finally:
        app.close()


class SocketSlack(OutboundSlack):
    """What Slack sends, as envelopes on the app's WebSocket, plus waiting for the work."""

    def __init__(self, apps: list[Firebreak], sandbox: SlackSandbox) -> None:
        super().__init__(socket_transport(sandbox), "no-signing-in-socket-mode", sandbox)
        self.apps = apps

    def settle(self) -> None:
        for app in self.apps:
            assert app.workers.wait_idle(timeout=20), "background work did not finish"

    def run(self, text: str, *, user: str = "U0ALICE", channel: str = "C0GENERAL") -> Any:
        reply = self.command(text, user=user, channel=channel)
        self.settle()
        return reply


@pytest.fixture
def slack(socket_app: Firebreak, sandbox: SlackSandbox) -> SocketSlack:
    return SocketSlack([socket_app], sandbox)


def events(app: Firebreak, incident_id: int = 1) -> list[tuple[str, str, dict[str, Any]]]:
    with app.db.session_scope() as session:
        incident = service.get(session, incident_id)
        return [(e.kind, e.actor, e.data) for e in service.events(session, incident)]


def declare(slack: SocketSlack, sandbox: SlackSandbox, general: str) -> str:
    slack.run("declare sev2 Checkout latency above 2s", channel=general)
    channel = sandbox.channel_by_name("inc-1-checkout-latency-above-2s")
    assert channel is not None
    return channel.id


def test_the_incident_flow_over_the_socket(
    slack: SocketSlack,
    sandbox: SlackSandbox,
    socket_app: Firebreak,
    general: str,
    announce_channel: str,
) -> None:
    channel = declare(slack, sandbox, general)
    assert "Declared INC-1" in sandbox.responses()[-1].payload["text"]
    assert sandbox.pins(channel), "the summary is pinned"
    assert "INC-1" in str(sandbox.messages(announce_channel)[-1].blocks)

    slack.run("status identified", channel=channel)
    slack.run("note Rolled back deploy 42", channel=channel, user="U0CAROL")
    ts = sandbox.post_user_message(channel, "U0BOB", "p99 back under 300 ms")
    slack.reaction_added(user="U0BOB", channel=channel, ts=ts)  # an events_api envelope
    slack.settle()
    slack.run("resolve Bad deploy rolled back", channel=channel)

    kinds = [kind for kind, _, _ in events(socket_app)]
    assert kinds.count("status_changed") == 1
    assert ("note_added", "U0CAROL", {"text": "Rolled back deploy 42"}) in events(socket_app)
    assert kinds.count("pinned_message") == 1
    assert kinds[-1] == "resolved"
    assert sandbox.channel(channel).topic.startswith("SEV2 · resolved")
    envelopes = sandbox.socket_mode.envelopes()
    assert {e.type for e in envelopes} == {"slash_commands", "events_api"}
    assert all(e.acknowledged and len(e.attempts) == 1 for e in envelopes)
    state = sandbox.snapshot()["socket_mode"]
    assert len(state["envelopes"]) == len(envelopes)


def test_the_ack_payload_answers_the_user_as_over_http(
    slack: SocketSlack, sandbox: SlackSandbox
) -> None:
    """A slash command's immediate answer (here help, and a parse error) travels back in
    the acknowledgement: the sandbox records it, and the sender reads it as a reply body."""
    reply = slack.run("help")
    assert reply.status == 200 and "/incident declare" in reply.json()["text"]
    wrong = slack.run("sev sev9")
    assert "sev9" in wrong.json()["text"]
    answered = [e.response for e in sandbox.socket_mode.envelopes()]
    assert answered[0] is not None and answered[0]["text"] == reply.json()["text"]
    assert sandbox.snapshot()["socket_mode"]["envelopes"][1]["response"] == wrong.json()


def test_a_late_acknowledgement_is_redelivered_and_acts_once(
    slack: SocketSlack,
    sandbox: SlackSandbox,
    socket_app: Firebreak,
    general: str,
) -> None:
    """The sandbox's deadline is shorter than the time the database takes to record the
    request (a lock held by another transaction), so the first ack comes late: the envelope
    goes out again with retry_attempt 1, and the incident is still declared once. The lock
    is let go only once the sandbox has sent the envelope again, so the first ack is late
    however slow the machine, and the sandbox keeps resending until an attempt is acked."""
    sandbox.socket_mode.ack_deadline = 0.3
    sandbox.socket_mode.max_retries = 200
    hold = threading.Event()
    released = threading.Event()

    def holder() -> None:
        # SQLite: BEGIN IMMEDIATE holds the one write lock; PostgreSQL: a table lock that
        # makes inserts wait. Either way, recording the request waits for this transaction.
        with socket_app.db.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("LOCK TABLE slack_requests IN SHARE ROW EXCLUSIVE MODE"))
            hold.set()
            released.wait(60)

    def release_after_redelivery() -> None:
        try:
            wait_for(lambda: any(len(e.attempts) > 1 for e in sandbox.socket_mode.envelopes()))
        finally:
            released.set()

    locker = threading.Thread(target=holder)
    locker.start()
    assert hold.wait(10)
    releaser = threading.Thread(target=release_after_redelivery)
    releaser.start()
    try:
        reply = slack.run("declare sev2 Checkout latency above 2s", channel=general)
    finally:
        released.set()
        locker.join()
        releaser.join()
    # Every attempt waited for the lock in the socket client's own threads; the one that
    # records the request first hands the declaration to the worker pool.
    wait_for(lambda: any("Declared INC-1" in str(r.payload) for r in sandbox.responses()))
    slack.settle()
    envelope = sandbox.socket_mode.envelopes()[-1]
    assert reply.status == 200
    assert len(envelope.attempts) >= 2
    assert [a.retry_attempt for a in envelope.attempts][:2] == [0, 1]
    with socket_app.db.session_scope() as session:
        assert len(service.list_open(session)) == 1
    assert len([c for c in sandbox.calls_to("conversations.create") if c.response["ok"]]) == 1
    declared = [r for r in sandbox.responses() if "Declared INC-1" in str(r.payload)]
    assert len(declared) == 1


def test_a_disconnect_mid_flow_loses_nothing(
    slack: SocketSlack, sandbox: SlackSandbox, socket_app: Firebreak, general: str
) -> None:
    channel = declare(slack, sandbox, general)
    first = sandbox.socket_mode.open_links()[0].id
    sandbox.socket_mode.refresh_grace = 2.0
    notes = [f"note step {n}" for n in range(6)]
    errors: list[BaseException] = []

    def send_notes() -> None:
        try:
            for note in notes:
                assert slack.command(note, user="U0BOB", channel=channel).status == 200
        except BaseException as error:  # reported below
            errors.append(error)

    sender = threading.Thread(target=send_notes)
    sender.start()
    sandbox.socket_mode.disconnect("refresh_requested")
    sender.join(timeout=60)
    assert not errors
    slack.settle()
    texts = [data["text"] for kind, _, data in events(socket_app) if kind == "note_added"]
    assert texts == [n.removeprefix("note ") for n in notes]
    wait_for(lambda: first not in [link.id for link in sandbox.socket_mode.open_links()])
    assert socket_app.socket is not None and socket_app.socket.wait_connected()
    assert slack.run("status identified", channel=channel).status == 200


def test_a_dropped_connection_is_replaced_and_nothing_is_lost(
    slack: SocketSlack, sandbox: SlackSandbox, socket_app: Firebreak, general: str
) -> None:
    channel = declare(slack, sandbox, general)
    sandbox.socket_mode.max_retries = 10  # Slack keeps trying while the app reconnects
    dropped = sandbox.socket_mode.drop()
    assert slack.run("note after the drop", channel=channel).status == 200
    texts = [data["text"] for kind, _, data in events(socket_app) if kind == "note_added"]
    assert texts == ["after the drop"]
    live = [link.id for link in sandbox.socket_mode.wait_for_links(1)]
    assert not set(live) & set(dropped)
    assert socket_app.socket is not None and socket_app.socket.wait_connected()


def test_a_connection_closed_without_a_close_frame_is_replaced_at_once(
    database_url: str, sandbox: SlackSandbox, file_config: FileConfig, general: str
) -> None:
    """The sandbox ends the TCP connection with no WebSocket close frame (as a proxy may).
    slack_sdk alone would notice only when pings go unanswered, ~4 ping intervals (here
    4 minutes), reading end-of-file in a busy loop meanwhile; Firebreak's watch sees the
    end-of-file and reconnects, so the envelope Slack keeps resending is acknowledged."""
    settings = socket_settings(database_url, sandbox, file_config)
    app = start_socket_app(settings, sandbox, ping_interval=60.0)
    try:
        dropped = sandbox.socket_mode.drop()
        slack = SocketSlack([app], sandbox)
        assert slack.run("help").status == 200
        envelope = sandbox.socket_mode.envelopes()[-1]
        assert envelope.acknowledged and envelope.acked_on not in dropped
        assert app.socket is not None and app.socket.wait_connected()
    finally:
        app.close()


def test_two_replicas_share_the_envelopes_and_act_once(
    database_url: str, sandbox: SlackSandbox, file_config: FileConfig, general: str
) -> None:
    """Two apps on one database, each with its own connection: the sandbox spreads the
    envelopes over both; a request both receive (a redelivery) still acts once."""
    settings = socket_settings(database_url, sandbox, file_config)
    first = start_socket_app(settings, sandbox, links=1)
    second = start_socket_app(settings, sandbox, links=2)
    try:
        slack = SocketSlack([first, second], sandbox)
        channel = declare(slack, sandbox, general)
        for n in range(8):
            slack.run(f"note replica note {n}", channel=channel)
        # The same slash command delivered twice (Slack resending it): one note.
        body = slack.command_body("note sent twice", user="U0BOB", channel=channel)
        headers = slack.signed_headers(body, "application/x-www-form-urlencoded")
        for _ in range(2):
            assert slack.transport(body, headers).status == 200
        slack.settle()
        links = {a.link for e in sandbox.socket_mode.envelopes() for a in e.attempts}
        assert len(links) == 2, "both connections got envelopes"
        texts = [data["text"] for kind, _, data in events(first) if kind == "note_added"]
        assert texts == [f"replica note {n}" for n in range(8)] + ["sent twice"]
        with first.db.session_scope() as session:
            assert len(service.list_open(session)) == 1
    finally:
        second.close()
        first.close()


def test_readyz_reports_the_socket_and_slack_events_is_refused(
    database_url: str, sandbox: SlackSandbox, file_config: FileConfig
) -> None:
    app = build(socket_settings(database_url, sandbox, file_config))
    try:
        client = Client(app.web)
        before = client.get("/readyz")
        assert before.status_code == 503 and before.json["socket"] == "disconnected"
        assert app.socket is not None
        app.socket.start()
        assert app.socket.wait_connected()
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json["socket"] == "connected"
        refused = client.post("/slack/events", data=b"{}", content_type="application/json")
        assert refused.status_code == 404
        assert "Socket Mode" in refused.json["message"]
        assert client.get("/healthz").status_code == 200
    finally:
        app.close()
    assert Client(app.web).get("/readyz").json["socket"] == "disconnected"


def test_metrics_report_the_socket_its_envelopes_and_reconnects(
    database_url: str, sandbox: SlackSandbox, file_config: FileConfig, general: str
) -> None:
    """/metrics (the real WSGI route, parsed by prometheus_client's parser): firebreak_ready
    includes the socket as /readyz does; envelopes are counted by type, delivery and outcome;
    a connection Slack asks to replace counts one reconnect."""
    app = build(socket_settings(database_url, sandbox, file_config))
    try:
        assert app.socket is not None
        before = Scrape(app)
        assert before.value("firebreak_ready") == 0
        assert before.value("firebreak_slack_socket_connected") == 0
        app.socket.start()
        assert app.socket.wait_connected()
        sandbox.socket_mode.wait_for_links(1)
        connected = Scrape(app)
        assert connected.value("firebreak_ready") == 1
        assert connected.value("firebreak_slack_socket_connected") == 1

        slack = SocketSlack([app], sandbox)
        slack.run("declare sev2 Checkout latency above 2s", channel=general)
        body = slack.command_body("help", user="U0BOB", channel=general)
        headers = slack.signed_headers(body, "application/x-www-form-urlencoded")
        assert slack.transport(body, headers | {"X-Slack-Retry-Num": "1"}).status == 200
        unhandled = {
            "type": "event_callback",
            "team_id": "T0FIREBREAK",
            "api_app_id": "A0",
            "event": {"type": "app_home_opened", "user": "U0BOB"},
            "event_id": "Ev1",
        }
        sandbox.socket_mode.deliver("events_api", unhandled)  # no listener takes it
        sandbox.socket_mode.disconnect("refresh_requested")
        wait_for(lambda: Scrape(app).value("firebreak_slack_socket_reconnects_total") == 1)
        assert app.socket.wait_connected()

        after = Scrape(app)
        counted = {
            (s.labels["type"], s.labels["delivery"], s.labels["outcome"]): s.value
            for s in after.families["firebreak_slack_socket_envelopes"].samples
            if s.name.endswith("_total")
        }
        assert counted == {
            ("slash_commands", "first", "acked"): 1,
            ("slash_commands", "retry", "acked"): 1,
            ("events_api", "first", "refused"): 1,
        }
        assert after.value("firebreak_ready") == 1
    finally:
        app.close()
    closed = Scrape(app)
    assert closed.value("firebreak_ready") == 0
    assert closed.value("firebreak_slack_socket_connected") == 0


@pytest.mark.parametrize(
    ("token", "error"),
    [(TOKEN, "not_allowed_token_type"), ("xapp-1-wrong", "invalid_auth")],
)
def test_a_refused_app_token_stops_with_what_to_do(
    sandbox: SlackSandbox, token: str, error: str
) -> None:
    with SlackSandbox(app_token=APP_TOKEN) as strict:
        socket = SlackSocket(_NoBolt.app(), token, strict.api_url)
        try:
            with pytest.raises(SocketRefused) as refused:
                socket.start()
        finally:
            socket.close()
        assert socket.state() == "disconnected"
        assert [c.response["error"] for c in strict.calls_to("apps.connections.open")] == [error]
        assert "SLACK_APP_TOKEN" in str(refused.value) or "connections" in str(refused.value)


def test_the_sandbox_answers_apps_connections_open_as_slack(sandbox: SlackSandbox) -> None:
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    client = WebClient(base_url=sandbox.api_url)
    url = client.apps_connections_open(app_token=APP_TOKEN)["url"]
    assert url.startswith("ws://127.0.0.1:") and "/link/?ticket=" in url
    for token, error in [(TOKEN, "not_allowed_token_type"), ("", "not_authed")]:
        with pytest.raises(SlackApiError) as failed:
            client.apps_connections_open(app_token=token)
        assert failed.value.response["error"] == error
    sandbox.app_token_scopes = ()
    with pytest.raises(SlackApiError) as failed:
        client.apps_connections_open(app_token=APP_TOKEN)
    assert failed.value.response["error"] == "missing_scope"
    assert failed.value.response["needed"] == "connections:write"


def test_build_names_the_missing_app_token(
    database_url: str, sandbox: SlackSandbox, file_config: FileConfig
) -> None:
    settings = socket_settings(database_url, sandbox, file_config)
    env = settings.env.model_copy(update={"slack_app_token": None})
    with pytest.raises(ConfigError) as failed:
        build(Settings(env, settings.file, settings.config_path, False))
    text = "\n".join(failed.value.problems)
    assert "SLACK_APP_TOKEN is not set" in text and "SLACK_SIGNING_SECRET" not in text


class _NoBolt:
    @staticmethod
    def app() -> Any:
        from slack_bolt import App

        return App(token=TOKEN, signing_secret="", token_verification_enabled=False)


# -- the command line ---------------------------------------------------------------------


def test_manifest_for_socket_mode_has_no_request_urls() -> None:
    import yaml
    from click.testing import CliRunner

    from bot.cli import main

    result = CliRunner().invoke(main, ["manifest", "--socket-mode"])
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load(result.output)
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is True
    assert "request_url" not in settings["event_subscriptions"]
    assert "request_url" not in settings["interactivity"]
    assert all("url" not in command for command in manifest["features"]["slash_commands"])
    assert "slack/events" not in result.output
    assert settings["event_subscriptions"]["bot_events"] == ["reaction_added"]


def test_check_names_the_token_the_mode_needs(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bot.cli import main

    config = tmp_path / "firebreak.yaml"
    config.write_text("slack:\n  mode: socket\n")
    env = {"FIREBREAK_CONFIG": str(config), "SLACK_BOT_TOKEN": TOKEN}
    env |= {"SLACK_SIGNING_SECRET": None, "SLACK_APP_TOKEN": None}  # type: ignore[dict-item]
    result = CliRunner().invoke(main, ["check"], env=env)
    assert result.exit_code == 2
    assert "SLACK_APP_TOKEN is not set" in result.output
    assert "SLACK_SIGNING_SECRET" not in result.output
    env["SLACK_APP_TOKEN"] = APP_TOKEN
    assert CliRunner().invoke(main, ["check"], env=env).exit_code == 0
    env["SLACK_APP_TOKEN"] = TOKEN  # a bot token where the app-level token belongs
    wrong = CliRunner().invoke(main, ["check"], env=env)
    assert wrong.exit_code == 2 and "xapp-" in wrong.output


def test_demo_plays_the_story_over_the_socket(tmp_path: Path) -> None:
    import subprocess
    import sys

    firebreak = str(Path(sys.executable).parent / "firebreak")
    done = subprocess.run(
        [firebreak, "demo", "--socket-mode", "--ssh-server", "paramiko"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "NO_PROXY": "127.0.0.1,localhost", "HOME": str(tmp_path)},
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "over Socket Mode" in done.stdout
    assert "Declared INC-1" in done.stdout or "INC-1" in done.stdout
    assert "Timeline of INC-1" in done.stdout
