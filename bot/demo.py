"""`firebreak demo`: a scripted incident against the sandbox Slack, narrated.

Starts Firebreak on a free local port with a throw-away SQLite database and the sandbox
Slack, then plays the story: Alertmanager's webhook opens the incident and pages the on-call
person, who does not answer, so the page escalates; then responders work the incident, as
signed Slack requests: one runs a read-only starter runbook (disk-usage) over SSH from the
incident channel, on a local SSH server the demo starts for the purpose (OpenSSH's sshd when
installed, else the sandbox's paramiko server; `--ssh-server` picks), and the alert resolves.
After each step it prints what the bot did in Slack. Nothing leaves the machine; nothing is
kept afterwards but the postmortem draft (postmortems/INC-1.md).
"""

from __future__ import annotations

import html
import json
import re
import secrets
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from pydantic import SecretStr
from waitress.server import create_server

from bot.alerts.routing import AlertRoute
from bot.app import Firebreak, build
from bot.config import ConfigError, Settings
from bot.migrations import upgrade
from bot.oncall.configuration import EscalationPolicy, Service
from bot.playground import start_sandbox
from bot.runbooks.inventory import Inventory
from bot.runbooks.plan import Host
from bot.sandbox import SlackSandbox
from bot.sandbox.openssh import SSHD, OpenSshServer, SshdUnavailable, sshd_installed
from bot.sandbox.outbound import OutboundSlack, http_transport, socket_transport
from bot.sandbox.ssh_server import SandboxSshServer
from bot.sandbox.state import Message
from bot.slack.blocks import ACTION_PAGE_ACK
from bot.slack.runbook_blocks import ACTION_RUN

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Step:
    who: str
    what: str
    channel: str  # "general" or "incident"
    kind: str = "command"  # command | pin | page | no answer | button | runbook | run


DEMO_RUNBOOK = "disk-usage"  # a read-only starter runbook from runbooks/
DEMO_HOST = "demo-1"
DEMO_GROUP = "linux"  # the starter runbooks' target group
SSH_SERVERS = ("auto", "openssh", "paramiko")
RUN_TIMEOUT = 60.0  # seconds for the runbook's run and its thread reply

SCRIPT = [
    Step("alertmanager", "firing", "general", kind="alert"),
    Step("carol", "", "incident", kind="no answer"),
    Step("alice", "Acknowledge", "incident", kind="button"),
    Step("alice", "sev sev1", "incident"),
    Step("alice", "role ops @bob", "incident"),
    Step("bob", f"run {DEMO_RUNBOOK} path=/ hosts={DEMO_HOST}", "incident", kind="runbook"),
    Step("bob", "Run", "incident", kind="run"),
    Step("bob", "note Rolled back deploy 2026.11.20-3; watching p99", "incident"),
    Step("carol", "p99 is back under 300 ms since the rollback", "incident", kind="pin"),
    Step("alice", "status monitoring", "incident"),
    Step("alertmanager", "resolved", "incident", kind="alert"),
    Step("alice", "alerts", "incident"),
    Step("alice", "action Alert on p99 before the error rate @bob due 2026-12-01", "incident"),
    Step("alice", "resolve Rolled back the bad deploy; p99 normal for 15 minutes", "incident"),
    Step("alice", "timeline", "incident"),
    Step("alice", "postmortem", "incident"),
]
DEMO_SERVICE = "firebreak-demo"
DEMO_ROUTE = "firebreak-demo"


def alertmanager_webhook(status: str) -> dict[str, Any]:
    """What Alertmanager posts for the demo's alert group (webhook payload version 4)."""
    ends = "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-21T03:24:00Z"
    return {
        "version": "4",
        "groupKey": '{}:{alertname="CheckoutLatencyHigh"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "firebreak",
        "groupLabels": {"alertname": "CheckoutLatencyHigh"},
        "commonLabels": {"alertname": "CheckoutLatencyHigh", "service": "checkout"},
        "commonAnnotations": {"summary": "Checkout latency above 2s"},
        "externalURL": "http://alertmanager.example.com:9093",
        "alerts": [
            {
                "status": status,
                "labels": {
                    "alertname": "CheckoutLatencyHigh",
                    "service": "checkout",
                    "severity": "critical",
                    "instance": "checkout-1",
                },
                "annotations": {
                    "summary": "Checkout p99 latency is 2.7s on checkout-1",
                    "runbook_url": "https://runbooks.example.com/checkout-latency",
                },
                "startsAt": "2026-11-21T03:02:00Z",
                "endsAt": ends,
                "generatorURL": "http://prometheus.example.com:9090/graph?g0.expr=checkout_p99",
                "fingerprint": "c0ffee00c0ffee00",
            }
        ],
    }


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
            case "chat.postMessage" if params.get("thread_ts"):
                return f"replied in a thread in {channel}: {text}"
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
            case "files.completeUploadExternal":
                names = ", ".join(str(f.get("name")) for f in response.get("files") or [])
                where = self.channel(str(params.get("channel_id", "")))
                return f"uploaded {names} to {where}"
        return ""


def run_demo(
    settings: Settings, echo: Echo, *, ssh_server: str = "auto", socket_mode: bool = False
) -> None:
    """Play the story. `ssh_server`: where the runbook step runs: "openssh" (OpenSSH's
    sshd; ConfigError when it is missing or does not start), "paramiko" (the sandbox's
    server) or "auto" (sshd when it starts here, else paramiko). `socket_mode`: Slack's
    requests go over the sandbox's Socket Mode WebSocket instead of POST /slack/events."""
    if socket_mode:
        settings = settings.with_slack_mode("socket")
    if ssh_server not in SSH_SERVERS:
        raise ConfigError([f"--ssh-server {ssh_server!r}: choose one of {', '.join(SSH_SERVERS)}"])
    with tempfile.TemporaryDirectory(prefix="firebreak-demo-") as workdir:
        catalogue = _starter_runbooks(settings)
        ssh = _start_ssh(ssh_server, Path(workdir) / "ssh") if catalogue else None
        try:
            env = settings.env.model_copy(
                update={"database_url": f"sqlite:///{Path(workdir) / 'demo.db'}"}
            )
            sandbox, demo_settings = start_sandbox(replace(settings, env=env))
            demo_settings = _with_demo_alerts(_with_demo_policy(demo_settings))
            if ssh is not None and catalogue is not None:
                demo_settings = _with_demo_runbooks(demo_settings, catalogue, ssh.server)
            upgrade(demo_settings.env.database_url)
            app = build(demo_settings)
            if ssh is not None and app.runbooks is not None:
                # The SSH setup is the demo app's own; the process environment is left alone.
                app.runbooks.environ = {
                    "FIREBREAK_RUNBOOKS": str(catalogue),
                    **ssh.server.environment(),
                }
            app.start_scheduler()
            if app.socket is not None:
                app.socket.start()
                sandbox.socket_mode.wait_for_links(1)
            server = create_server(app.web, host="127.0.0.1", port=0, threads=8)
            url = f"http://127.0.0.1:{server.effective_port}"
            stopping = threading.Event()

            def serve() -> None:
                try:
                    server.run()
                except (OSError, ValueError):
                    # Closing the sockets below races the loop's select() on them (EBADF,
                    # or a closed socket's fd of -1): expected once we stop, a bug before.
                    if not stopping.is_set():
                        raise

            thread = threading.Thread(target=serve, daemon=True)
            thread.start()
            try:
                _play(demo_settings, sandbox, app.workers.wait_idle, url, echo, ssh)
                _offer_web_view(app, demo_settings, url, echo)
            finally:
                # Let the last request finish, stop waitress's threads, then its sockets.
                app.workers.wait_idle()
                stopping.set()
                server.task_dispatcher.shutdown()
                server.close()
                thread.join(timeout=5)
                app.close()
                sandbox.stop()
        finally:
            if ssh is not None:
                ssh.server.stop()


# -- the runbook step's SSH server ----------------------------------------------------------


class DemoSshServer(Protocol):
    """What the demo needs of either SSH server (OpenSSH's or the sandbox's)."""

    @property
    def port(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    def host(self, name: str = ..., groups: tuple[str, ...] = ...) -> Host: ...

    def environment(self) -> dict[str, str]: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class DemoSsh:
    server: DemoSshServer
    description: str  # which server, and why that one, for the narration


def _start_ssh(kind: str, directory: Path) -> DemoSsh:
    """The local SSH server the runbook runs on, started, with a new host key and a new
    client key authorised for the current user, all in `directory`."""
    why = "--ssh-server paramiko"
    if kind in ("auto", "openssh"):
        try:
            server = OpenSshServer.with_new_identity(directory / "openssh").start()
            return DemoSsh(server, f"OpenSSH's sshd ({SSHD})")
        except SshdUnavailable as error:
            if kind == "openssh":
                raise ConfigError([f"--ssh-server openssh: {error}"]) from None
            why = (
                f"OpenSSH's sshd is not installed ({SSHD})" if not sshd_installed() else str(error)
            )
    sandbox_server = SandboxSshServer.with_new_identity(directory / "paramiko").start()
    return DemoSsh(sandbox_server, f"the sandbox's SSH server on paramiko ({why})")


def _starter_runbooks(settings: Settings) -> Path | None:
    """The starter catalogue holding the demo's runbook: runbooks/ of this checkout, else
    the configured FIREBREAK_RUNBOOKS directory; None when neither has it."""
    checkout = Path(__file__).resolve().parent.parent / "runbooks"
    for directory in (checkout, settings.env.runbooks_path):
        if (directory / f"{DEMO_RUNBOOK}.yaml").is_file():
            return directory.resolve()
    return None


def _with_demo_runbooks(settings: Settings, catalogue: Path, server: DemoSshServer) -> Settings:
    """The starter runbooks, and an inventory of ONE host, the demo's SSH server (the
    configured inventory is not used: the demo reaches no other machine)."""
    host = server.host(DEMO_HOST, (DEMO_GROUP,))
    inventory = Inventory.model_validate(
        {
            "hosts": {
                DEMO_HOST: {
                    "address": host.address,
                    "port": host.port,
                    "user": host.user,
                    "groups": [DEMO_GROUP],
                }
            }
        }
    )
    environ = server.environment()
    env = settings.env.model_copy(
        update={
            "runbooks_path": catalogue,
            "ssh_key": Path(environ["FIREBREAK_SSH_KEY"]),
            "known_hosts": Path(environ["FIREBREAK_KNOWN_HOSTS"]),
        }
    )
    file = settings.file.model_copy(update={"inventory": inventory})
    return replace(settings, env=env, file=file)


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


def _with_demo_alerts(settings: Settings) -> Settings:
    """A service paging the demo policy, a route to it (first, so it wins) that opens an
    incident, and an alert token for the demo's Alertmanager."""
    file = settings.file
    services = {**file.services, DEMO_SERVICE: Service(escalation_policy=DEMO_POLICY)}
    severity = "sev2" if "sev2" in file.incidents.severities else None
    route = AlertRoute.model_validate(
        {
            "name": DEMO_ROUTE,
            "match": {"alertname": "CheckoutLatencyHigh"},
            "service": DEMO_SERVICE,
            "incident": {"open": True, "severity": severity},
        }
    )
    file = file.model_copy(
        update={"services": services, "alert_routes": [route, *file.alert_routes]}
    )
    env = settings.env
    if env.alert_token is None:
        env = env.model_copy(update={"alert_token": SecretStr(secrets.token_hex(16))})
    return replace(settings, file=file, env=env)


def _send_alert(url: str, token: str, status: str) -> tuple[int, str]:
    request = urllib.request.Request(  # noqa: S310 - the demo's own server on 127.0.0.1
        url + "/alerts/alertmanager",
        data=json.dumps(alertmanager_webhook(status)).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


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
    settings: Settings,
    sandbox: SlackSandbox,
    settle: Callable[[], bool],
    url: str,
    echo: Echo,
    ssh: DemoSsh | None,
) -> None:
    people = {name: person.slack for name, person in settings.file.people.items()}
    names = {user: name for name, user in people.items()}
    assert settings.env.slack_signing_secret is not None
    transport = (
        socket_transport(sandbox) if settings.socket_mode else http_transport(url + "/slack/events")
    )
    slack = OutboundSlack(transport, settings.env.slack_signing_secret.get_secret_value(), sandbox)
    general = sandbox.add_channel("general", members=list(people.values()))
    narrator = Narrator(sandbox, names, echo)
    narrator.calls_seen = len(sandbox.calls)
    echo(f"Firebreak demo: the bot runs at {url}, Slack is the local sandbox at {sandbox.api_url}")
    if settings.socket_mode:
        echo("Slack reaches the bot over Socket Mode: a WebSocket the bot opened to the sandbox")
    if ssh is not None:
        echo(
            f"Runbooks run over SSH on {DEMO_HOST}, {ssh.description} on "
            f"127.0.0.1:{ssh.server.port}: its host key {ssh.server.fingerprint} is pinned in "
            "the demo's known_hosts, and a key made for the demo logs in."
        )
    else:
        echo(
            f"(The starter runbooks are not here: no runbooks/{DEMO_RUNBOOK}.yaml in this "
            "checkout or FIREBREAK_RUNBOOKS, so the runbook step is left out.)"
        )
    echo(
        "Each step is a signed request, as Slack would send it; 'bot:' lines are what Firebreak did.\n"
    )
    incident_channel = ""
    for step in SCRIPT:
        user = people.get(step.who, "")
        if step.kind in ("runbook", "run") and ssh is None:
            continue
        channel = general if step.channel == "general" else incident_channel
        if step.kind == "alert":
            alert = alertmanager_webhook(step.what)["alerts"][0]
            echo(f"Alertmanager posts a {step.what} alert: {alert['annotations']['summary']}")
            assert settings.env.alert_token is not None
            status, body = _send_alert(url, settings.env.alert_token.get_secret_value(), step.what)
            if status != 200:
                echo(f"    ✗ HTTP {status}: {body}")
        elif step.kind == "pin":
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
        elif step.kind == "run":
            _press_run(sandbox, slack, settle, narrator, step.who, user, channel)
            continue
        else:
            command = {"page": "/page", "runbook": "/runbook"}.get(step.kind, "/incident")
            text = step.what.replace("@bob", f"<@{people['bob']}|bob>")
            echo(f"{step.who} in {narrator.channel(channel)}: {command} {step.what}")
            reply = slack.command(text, user=user, channel=channel, command=command)
            if reply.status != 200:
                echo(f"    ✗ HTTP {reply.status}: {reply.body}")
        settle()
        narrator.tell_new()
        if step.kind == "runbook":
            _show_plan(sandbox, narrator, channel)
        if not incident_channel:
            created = next(
                (c for c in sandbox.calls_to("conversations.create") if c.response.get("ok")), None
            )
            if created is None:
                echo("The incident channel was not created; stopping.")
                return
            incident_channel = str(created.response["channel"]["id"])
        echo("")
    _show_draft(settings, echo)
    ran = " a runbook ran over SSH with its output in the channel," if ssh is not None else ""
    echo(
        "Done: one alert opened an incident and paged; the incident was changed, noted, "
        f"pinned and resolved,{ran} each fact in its timeline, and its postmortem drafted."
    )


# -- the runbook steps ----------------------------------------------------------------------


def _plan_message(sandbox: SlackSandbox, channel: str) -> Message | None:
    """The latest runbook plan message in `channel` (it has, or had, a Run button)."""
    plans = [m for m in sandbox.messages(channel) if re.match(r"R-\d+: runbook ", m.text)]
    return plans[-1] if plans else None


def _show_plan(sandbox: SlackSandbox, narrator: Narrator, channel: str) -> None:
    """What the plan message shows: parameters, hosts and the exact argv."""
    plan = _plan_message(sandbox, channel)
    if plan is None:
        return
    for block in plan.blocks or []:
        if block.get("type") == "section":
            for line in _terminal(narrator.plain(block["text"]["text"])).splitlines():
                narrator.echo(f"        {line}")


def _press_run(
    sandbox: SlackSandbox,
    slack: OutboundSlack,
    settle: Callable[[], bool],
    narrator: Narrator,
    who: str,
    user: str,
    channel: str,
) -> None:
    """Press Run on the plan message, wait for the run and its thread reply, show both."""
    plan = _plan_message(sandbox, channel)
    value = _button_value(plan, ACTION_RUN) if plan is not None else None
    if plan is None or value is None:
        narrator.echo("There is no runbook plan with a Run button to press; skipping.\n")
        return
    narrator.echo(f"{who} presses Run under the plan of R-{value}")
    reply = slack.block_action(
        ACTION_RUN, user=user, channel=channel, message_ts=plan.ts, value=value
    )
    if reply.status != 200:
        narrator.echo(f"    ✗ HTTP {reply.status}: {reply.body}")
    settle()
    thread = _wait_for_run(sandbox, channel, plan.ts, RUN_TIMEOUT)
    narrator.tell_new()
    if thread is None:
        narrator.echo(f"    ✗ the run's thread reply did not finish within {RUN_TIMEOUT:.0f} s")
    else:
        narrator.echo(f"    The thread reply under the plan in {narrator.channel(channel)} reads:")
        for line in _terminal(narrator.plain(thread.text)).splitlines():
            narrator.echo(f"        {line}")
    narrator.echo("")


def _button_value(message: Message, action_id: str) -> str | None:
    for block in message.blocks or []:
        for element in block.get("elements") or []:
            if element.get("action_id") == action_id:
                return str(element.get("value", ""))
    return None


def _wait_for_run(
    sandbox: SlackSandbox, channel: str, plan_ts: str, timeout: float
) -> Message | None:
    """The run's thread reply once it is final: its text says `finished` and the plan
    message was refreshed after it (the progress reply's last act); None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = [m for m in sandbox.messages(channel) if m.thread_ts == plan_ts]
        if replies and " finished: " in replies[-1].text:
            reply = replies[-1]
            calls = sandbox.calls
            last_reply = max(
                index
                for index, call in enumerate(calls)
                if call.params.get("ts") == reply.ts or call.params.get("thread_ts") == plan_ts
            )
            if any(
                call.method == "chat.update" and call.params.get("ts") == plan_ts
                for call in calls[last_reply + 1 :]
            ):
                return reply
        time.sleep(0.05)
    return None


def _terminal(text: str) -> str:
    """Slack mrkdwn made readable in a terminal: code fences dropped, entities decoded."""
    lines = [line for line in text.splitlines() if line.strip() != "```"]
    return html.unescape("\n".join(line.replace("```", "") for line in lines))


def _show_draft(settings: Settings, echo: Echo, lines: int = 12) -> None:
    """The postmortem draft the last step saved: its path and first lines."""
    path = settings.file.postmortem.directory / "INC-1.md"
    if not path.is_file():
        echo(f"The postmortem draft was not written to {path}.")
        return
    echo(f"Postmortem draft written to {path.resolve()}; its first lines:")
    for line in path.read_text(encoding="utf-8").splitlines()[:lines]:
        echo(f"    {line}")
    echo("")


# -- the web view ---------------------------------------------------------------------------


def _offer_web_view(app: Firebreak, settings: Settings, url: str, echo: Echo) -> None:
    """End with a sign-in link to the web view of the demo's incident. On a terminal the
    demo keeps serving until Enter, so the link can be opened; otherwise it stops."""
    import contextlib
    import sys

    from sqlalchemy import func, select

    from bot.incidents.models import Incident

    with app.db.session_scope() as session:
        latest = session.scalar(select(func.max(Incident.id)))
    name, person = next(iter(settings.file.people.items()))
    app.web_access.base_url = url
    path = f"/incidents/INC-{latest}" if latest else "/"
    link = app.web_access.link(person.slack, name, next_path=path)
    echo(f"Web view of INC-{latest}: sign in as {name} with this link (10 minutes, once):")
    echo(f"    {link}")
    if not sys.stdin.isatty():
        echo("(Not a terminal, so the demo stops now and the link with it.)")
        return
    echo("The web view stays up until you press Enter.")
    with contextlib.suppress(EOFError):  # stdin closed: stop as after Enter
        input()
