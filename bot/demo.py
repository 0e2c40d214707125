"""`firebreak demo`: a scripted incident against the sandbox Slack, narrated.

Starts Firebreak on a free local port with a throw-away SQLite database and the sandbox
Slack, then plays what responders would do, as signed HTTP requests, and prints what the bot
did in Slack after each step. Nothing leaves the machine; nothing is kept afterwards.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from waitress.server import create_server

from bot.app import build
from bot.config import Settings
from bot.migrations import upgrade
from bot.oncall.configuration import EscalationPolicy
from bot.playground import start_sandbox
from bot.sandbox import SlackSandbox
from bot.sandbox.outbound import OutboundSlack, http_transport
from bot.slack.blocks import ACTION_PAGE_ACK

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Step:
    who: str
    what: str
    channel: str  # "general" or "incident"
    kind: str = "command"  # command | pin | page | no answer | button


SCRIPT = [
    Step("alice", "declare sev2 Checkout latency above 2s", "general"),
    Step("alice", "sev sev1", "incident"),
    Step("alice", "role ops @bob", "incident"),
    Step("bob", "note Rolled back deploy 2026.11.20-3; watching p99", "incident"),
    Step("bob", "policy:database DB primary at 100% CPU, need a DBA", "incident", kind="page"),
    Step("carol", "", "incident", kind="no answer"),
    Step("alice", "Acknowledge", "incident", kind="button"),
    Step("carol", "p99 is back under 300 ms since the rollback", "incident", kind="pin"),
    Step("alice", "status monitoring", "incident"),
    Step("alice", "resolve Rolled back the bad deploy; p99 normal for 15 minutes", "incident"),
    Step("alice", "timeline", "incident"),
]


class Narrator:
    """Turns the sandbox's call log into sentences a person can follow."""

    def __init__(self, sandbox: SlackSandbox, names: dict[str, str], echo: Echo) -> None:
        self.sandbox, self.names, self.echo = sandbox, names, echo
        self.calls_seen = 0
        self.responses_seen = 0

    def name(self, user: str) -> str:
        return self.names.get(user, user)

    def channel(self, channel_id: str) -> str:
        try:
            return "#" + self.sandbox.channel(channel_id).name
        except KeyError:
            return channel_id

    def tell_new(self) -> None:
        calls = self.sandbox.calls
        for call in calls[self.calls_seen :]:
            line = self.describe(call.method, call.params, call.response)
            if line:
                self.echo(f"    bot: {line}")
        self.calls_seen = len(calls)
        responses = self.sandbox.responses()
        for response in responses[self.responses_seen :]:
            text = str(response.payload.get("text", ""))
            self.echo(f"    bot (only to you): {self.plain(text)}")
            for block in response.payload.get("blocks") or []:
                if block.get("type") == "section":
                    for line in block["text"]["text"].splitlines():
                        self.echo(f"        {self.plain(line)}")
        self.responses_seen = len(responses)

    def plain(self, text: str) -> str:
        """Render Slack markup (<@U..>, <#C..>, <!date^..|fallback>) for a terminal."""
        import re

        text = re.sub(
            r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>", lambda m: "@" + self.name(m.group(1)), text
        )
        text = re.sub(r"<#([CG][A-Z0-9]+)(?:\|[^>]*)?>", lambda m: self.channel(m.group(1)), text)
        return re.sub(r"<!date\^[^|]*\|([^>]*)>", r"\1", text)

    def describe(self, method: str, params: dict[str, Any], response: dict[str, Any]) -> str:
        if not response.get("ok", False):
            return f"✗ {method} failed: {response.get('error')}"
        channel = self.channel(str(params.get("channel", "")))
        text = self.plain(str(params.get("text", ""))).splitlines()[0] if params.get("text") else ""
        match method:
            case "conversations.create":
                return f"created channel #{response['channel']['name']}"
            case "conversations.invite":
                return f"invited {', '.join('@' + self.name(u) for u in str(params['users']).split(','))} to {channel}"
            case "conversations.setTopic":
                return f"set the topic of {channel}: {self.plain(str(params['topic']))}"
            case "chat.postMessage" if str(params.get("channel", "")).startswith(("U", "W")):
                return f"sent @{self.name(str(params['channel']))} a direct message: {text}"
            case "chat.postMessage":
                return f"posted in {channel}: {text}"
            case "chat.update":
                return f"updated a message in {channel}: {text}"
            case "pins.add":
                return f"pinned the summary in {channel}"
            case "chat.postEphemeral":
                return f"told @{self.name(str(params['user']))} privately: {text}"
            case "conversations.history":
                return f"read the pinned message in {channel}"
        return ""


def run_demo(settings: Settings, echo: Echo) -> None:
    with tempfile.TemporaryDirectory(prefix="firebreak-demo-") as workdir:
        env = settings.env.model_copy(
            update={"database_url": f"sqlite:///{Path(workdir) / 'demo.db'}"}
        )
        sandbox, demo_settings = start_sandbox(replace(settings, env=env))
        demo_settings = _with_demo_policy(demo_settings)
        upgrade(demo_settings.env.database_url)
        app = build(demo_settings)
        app.start_scheduler()
        server = create_server(app.web, host="127.0.0.1", port=0, threads=8)
        url = f"http://127.0.0.1:{server.effective_port}"
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            _play(demo_settings, sandbox, app.workers.wait_idle, url, echo)
        finally:
            # Let the last request finish, stop waitress's threads, then its sockets.
            app.workers.wait_idle()
            server.task_dispatcher.shutdown()
            server.close()
            thread.join(timeout=5)
            app.close()
            sandbox.stop()


DEMO_POLICY = "database"


def _with_demo_policy(settings: Settings) -> Settings:
    """A two-step policy with short waits, so the demo shows an escalation in seconds."""
    if DEMO_POLICY in settings.file.escalation_policies:
        return settings
    policy = EscalationPolicy.model_validate(
        {
            "steps": [
                {"targets": ["user:carol"], "wait": "3s"},
                {"targets": ["user:alice"], "wait": "3s"},
            ],
            "repeat": 0,
        }
    )
    policies = {**settings.file.escalation_policies, DEMO_POLICY: policy}
    return replace(
        settings, file=settings.file.model_copy(update={"escalation_policies": policies})
    )


def _dm_channel(sandbox: SlackSandbox, user: str) -> str:
    for channel in sandbox.snapshot()["channels"]:
        if channel.get("is_im") and user in channel["members"]:
            return str(channel["id"])
    raise RuntimeError(f"no direct message to {user}")


def _wait_for_dm(sandbox: SlackSandbox, user: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if sandbox.messages(_dm_channel(sandbox, user)):
                return
        except RuntimeError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the page did not escalate to {user} within {timeout:.0f} s")


def _play(
    settings: Settings, sandbox: SlackSandbox, settle: Callable[[], bool], url: str, echo: Echo
) -> None:
    people = {name: person.slack for name, person in settings.file.people.items()}
    names = {user: name for name, user in people.items()}
    assert settings.env.slack_signing_secret is not None
    slack = OutboundSlack(
        http_transport(url + "/slack/events"),
        settings.env.slack_signing_secret.get_secret_value(),
        sandbox,
    )
    general = sandbox.add_channel("general", members=list(people.values()))
    narrator = Narrator(sandbox, names, echo)
    narrator.calls_seen = len(sandbox.calls)
    echo(f"Firebreak demo: the bot runs at {url}, Slack is the local sandbox at {sandbox.api_url}")
    echo(
        "Each step is a signed request, as Slack would send it; 'bot:' lines are what Firebreak did.\n"
    )
    incident_channel = ""
    for step in SCRIPT:
        user = people[step.who]
        channel = general if step.channel == "general" else incident_channel
        if step.kind == "pin":
            ts = sandbox.post_user_message(channel, user, step.what)
            echo(f"{step.who} in {narrator.channel(channel)}: {step.what}")
            echo(f"alice reacts with :pushpin: to {step.who}'s message")
            slack.reaction_added(user=people["alice"], channel=channel, ts=ts)
        elif step.kind == "no answer":
            wait = settings.file.escalation_policies[DEMO_POLICY].steps[0].wait.total_seconds()
            echo(f"{step.who} does not answer; after {wait:.0f} s the scheduler escalates ...")
            _wait_for_dm(sandbox, people["alice"], timeout=wait + 10)
        elif step.kind == "button":
            dm = _dm_channel(sandbox, user)
            echo(f"{step.who} presses Acknowledge in the page's direct message")
            slack.block_action(ACTION_PAGE_ACK, user=user, channel=dm, value="1")
        else:
            command = "/page" if step.kind == "page" else "/incident"
            text = step.what.replace("@bob", f"<@{people['bob']}|bob>")
            echo(f"{step.who} in {narrator.channel(channel)}: {command} {step.what}")
            reply = slack.command(text, user=user, channel=channel, command=command)
            if reply.status != 200:
                echo(f"    ✗ HTTP {reply.status}: {reply.body}")
        settle()
        narrator.tell_new()
        if not incident_channel:
            created = next(
                (c for c in sandbox.calls_to("conversations.create") if c.response.get("ok")), None
            )
            if created is None:
                echo("The incident channel was not created; stopping.")
                return
            incident_channel = str(created.response["channel"]["id"])
        echo("")
    echo(
        "Done: one incident declared, changed, noted, paged, pinned and resolved, each fact in its timeline."
    )
