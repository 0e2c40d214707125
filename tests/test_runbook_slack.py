"""`/runbook` end to end: signed requests into the real app, the sandbox Slack over HTTP, and
real OpenSSH sshd hosts. The plan message and its buttons, one thread reply edited in place
with the output and the outcome, the incident timeline, approval (self-approval refused, an
approver without the role refused, another person with the role approves, an approval past
its window expires the run), cancel mid-run, strangers' presses refused, bad parameters and
a missing SSH setup refused and stored, and a doubled press acting once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from bot.app import Firebreak, build
from bot.clock import system_now
from bot.config import EnvSettings, FileConfig, Settings
from bot.incidents import service
from bot.runbooks import records, runs
from bot.runbooks.records import RunbookRun
from bot.sandbox import SlackSandbox
from bot.sandbox.state import Message
from bot.slack import runbook_blocks
from tests.conftest import PEOPLE, SECRET, TOKEN, Slack, last_response_text, wait_for
from tests.runbook_setup import Setup, inventory, write_setup
from tests.sshd import Fleet


@pytest.fixture(scope="module")
def fleet(sshd_hosts_module: Callable[..., Fleet]) -> Fleet:
    return sshd_hosts_module(2)


@pytest.fixture
def setup(tmp_path: Path, fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> Setup:
    for name, value in fleet.environment(fleet.write_known_hosts()).items():
        monkeypatch.setenv(name, value)
    return write_setup(tmp_path, fleet)


@pytest.fixture
def firebreak(
    database_url: str, sandbox: SlackSandbox, announce_channel: str, setup: Setup, fleet: Fleet
) -> Iterator[Firebreak]:
    env = EnvSettings.model_validate(
        {
            "DATABASE_URL": database_url,
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": sandbox.api_url,
            "FIREBREAK_RUNBOOKS": str(setup.runbooks),
        }
    )
    config = FileConfig.model_validate(
        {
            "slack": {"announce_channel": announce_channel},
            "people": {name: person.model_dump() for name, person in PEOPLE.items()},
            "inventory": inventory(fleet),
            "runbooks": {"groups": {"ops": ["alice", "bob"]}, "approval_expires": "15m"},
        }
    )
    app = build(Settings(env=env, file=config, config_path=setup.config, config_found=True))
    try:
        yield app
    finally:
        app.close()


def stored(app: Firebreak) -> list[RunbookRun]:
    with app.db.session_scope() as session:
        found = list(session.scalars(select(RunbookRun).order_by(RunbookRun.id)))
        session.expunge_all()
    return found


def runbook(slack: Slack, text: str, *, user: str = "U0ALICE", channel: str) -> None:
    slack.command(text, user=user, channel=channel, command="/runbook")
    slack.settle()


def plan_message(sandbox: SlackSandbox, channel: str, reference: str) -> Message:
    found = [m for m in sandbox.messages(channel) if m.text.startswith(f"{reference}:")]
    assert len(found) == 1, [m.text for m in sandbox.messages(channel)]
    return found[0]


def blocks_text(message: Message) -> str:
    return json.dumps(message.blocks)


def buttons(message: Message) -> list[str]:
    return [
        element["action_id"]
        for block in message.blocks or []
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def status_of(message: Message) -> str:
    (context,) = [block for block in message.blocks or [] if block["type"] == "context"]
    return str(context["elements"][0]["text"])


def press(slack: Slack, action: str, run_id: int, *, user: str, channel: str, ts: str) -> None:
    slack.block_action(action, user=user, channel=channel, message_ts=ts, value=str(run_id))
    slack.settle()


def thread_replies(sandbox: SlackSandbox, channel: str, ts: str) -> list[Message]:
    return [m for m in sandbox.messages(channel) if m.thread_ts == ts]


def finished(sandbox: SlackSandbox, channel: str, reference: str) -> Message:
    """Wait until the plan message shows the outcome (the progress thread's last act)."""

    def done() -> Message | None:
        message = plan_message(sandbox, channel, reference)
        return message if "Finished" in status_of(message) else None

    result: Message = wait_for(done, timeout=60)
    return result


@pytest.fixture
def incident_channel(slack: Slack, sandbox: SlackSandbox, general: str) -> str:
    slack.run("declare sev2 Checkout latency above 2s", channel=general)
    channel = sandbox.channel_by_name("inc-1-checkout-latency-above-2s")
    assert channel is not None
    return channel.id


# -- list and show --------------------------------------------------------------------------


def test_list_and_show_answer_only_the_requester(
    slack: Slack, sandbox: SlackSandbox, general: str
) -> None:
    runbook(slack, "list", channel=general)
    listed = last_response_text(sandbox)
    assert "`echo-args` Echo the words (risk low" in listed
    assert "`restart-thing` Restart the thing (risk high, needs approval" in listed
    runbook(slack, "show echo-args", channel=general)
    shown = last_response_text(sandbox)
    assert "*`echo-args`* Echo the words" in shown
    assert "say: printf" in shown
    assert sandbox.responses()[-1].payload["response_type"] == "ephemeral"
    assert sandbox.messages(general) == []
    runbook(slack, "show nope", channel=general)
    assert "There is no runbook `nope`" in last_response_text(sandbox)


def test_help_and_grammar_mistakes_are_answered_in_the_acknowledgement(
    slack: Slack, general: str
) -> None:
    reply = slack.command("", user="U0ALICE", channel=general, command="/runbook")
    assert "/runbook run <id> key=value" in reply.json()["text"]
    reply = slack.command(
        'run echo-args word="open', user="U0ALICE", channel=general, command="/runbook"
    )
    assert "close every quote" in reply.json()["text"]


# -- a low-risk run in an incident channel ---------------------------------------------------


def test_a_run_in_an_incident_channel_end_to_end(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, incident_channel: str, fleet: Fleet
) -> None:
    channel = incident_channel
    runbook(slack, 'run echo-args word="a b;$(id) <!channel> ``` &" count=2', channel=channel)
    message = plan_message(sandbox, channel, "R-1")
    shown = blocks_text(message)
    assert "runbook `echo-args` Echo the words" in shown
    assert "Requested by <@U0ALICE>" in shown and "risk *low*" in shown
    assert "no approval needed" in shown
    assert "sshd-1" in shown and "sshd-2" in shown
    # The exact argv, escaped: the value can neither ping nor close the code block.
    assert "printf '[%s]\\\\n' 'a b;$(id) &lt;!channel&gt; `\\u200b`` &amp;' 2" in shown
    assert "<!channel>" not in shown
    assert buttons(message) == [runbook_blocks.ACTION_RUN, runbook_blocks.ACTION_CANCEL]
    assert "Waiting for <@U0ALICE> to press *Run*" in status_of(message)

    # A stranger presses Run: refused, privately, and audited.
    press(slack, runbook_blocks.ACTION_RUN, 1, user="U0CAROL", channel=channel, ts=message.ts)
    assert last_response_text(sandbox) == ":no_entry: Only <@U0ALICE> can run R-1."
    assert stored(firebreak)[0].status == records.AWAITING_CONFIRMATION

    press(slack, runbook_blocks.ACTION_RUN, 1, user="U0ALICE", channel=channel, ts=message.ts)
    final = finished(sandbox, channel, "R-1")
    assert "Finished: succeeded" in status_of(final)
    assert buttons(final) == []
    replies = thread_replies(sandbox, channel, message.ts)
    assert len(replies) == 1  # one reply, edited in place
    (reply,) = replies
    assert reply.edited
    assert "*R-1* finished: *succeeded*" in reply.text
    for server in fleet:
        assert f"{server.name} | [a b;$(id) &lt;!channel&gt; `\u200b`` &amp;]" in reply.text
        assert f"`{server.name}` succeeded say=0 host=0" in reply.text
    updates = [c for c in sandbox.calls_to("chat.update") if c.params.get("ts") == reply.ts]
    assert 1 <= len(updates) <= 10

    run = stored(firebreak)[0]
    assert (run.status, run.source, run.requester, run.incident_id) == (
        "succeeded",
        "slack",
        "U0ALICE",
        1,
    )
    assert (run.slack_channel, run.slack_ts) == (channel, message.ts)
    with firebreak.db.session_scope() as session:
        events = service.events(session, service.get(session, 1))
        kinds = [event.kind for event in events]
        prints = {e.data["fingerprint"] for e in events if e.kind == "runbook_host_finished"}
        refusals = [e for e in events if e.kind == "runbook_refused"]
    for kind in ("runbook_requested", "runbook_confirmed", "runbook_started", "runbook_finished"):
        assert kind in kinds
    assert prints == {server.fingerprint for server in fleet}
    assert [e.actor for e in refusals] == ["U0CAROL"]


def test_a_doubled_press_acts_once(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    runbook(slack, "run echo-args word=x hosts=sshd-1", channel=general)
    message = plan_message(sandbox, general, "R-1")
    payload = {
        "type": "block_actions",
        "team": {"id": "T0SANDBOX"},
        "user": {"id": "U0ALICE"},
        "api_app_id": "A0FIREBREAK",
        "trigger_id": "1.2.abcdef",
        "channel": {"id": general},
        "container": {"type": "message", "channel_id": general, "message_ts": message.ts},
        "message": {"ts": message.ts},
        "response_url": sandbox.new_response_url(general, "U0ALICE"),
        "actions": [
            {
                "action_id": runbook_blocks.ACTION_RUN,
                "block_id": "runbook-1",
                "type": "button",
                "value": "1",
                "action_ts": "1.5",
            }
        ],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    for retry in ("", "1"):
        headers = {"X-Slack-Retry-Num": retry} if retry else {}
        reply = slack.send(body, "application/x-www-form-urlencoded", headers=headers)
        assert reply.status == 200
    slack.settle()
    finished(sandbox, general, "R-1")
    # A second, separate press after the run: told where the run is, nothing changes.
    press(slack, runbook_blocks.ACTION_RUN, 1, user="U0ALICE", channel=general, ts=message.ts)
    assert "is finished: succeeded; nothing to do" in last_response_text(sandbox)
    with firebreak.db.session_scope() as session:
        kinds = [fact.kind for fact in runs.facts(session, 1)]
    assert kinds.count("runbook_confirmed") == 1
    assert kinds.count("runbook_started") == 1


# -- approval -------------------------------------------------------------------------------


def request_high_risk(slack: Slack, sandbox: SlackSandbox, channel: str, reference: str) -> Message:
    runbook(slack, "run restart-thing thing=cron hosts=sshd-1", channel=channel)
    message = plan_message(sandbox, channel, reference)
    assert "needs approval" in blocks_text(message)
    run_id = int(reference.removeprefix("R-"))
    press(slack, runbook_blocks.ACTION_RUN, run_id, user="U0ALICE", channel=channel, ts=message.ts)
    message = plan_message(sandbox, channel, reference)
    assert "*Awaiting approval*" in status_of(message)
    assert "other than <@U0ALICE>" in status_of(message)
    assert buttons(message) == [runbook_blocks.ACTION_APPROVE, runbook_blocks.ACTION_DENY]
    return message


def test_approval_by_another_person_with_the_role(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, incident_channel: str
) -> None:
    channel = incident_channel
    message = request_high_risk(slack, sandbox, channel, "R-1")

    press(slack, runbook_blocks.ACTION_APPROVE, 1, user="U0ALICE", channel=channel, ts=message.ts)
    assert "someone else must approve it" in last_response_text(sandbox)
    press(slack, runbook_blocks.ACTION_APPROVE, 1, user="U0CAROL", channel=channel, ts=message.ts)
    assert "holds none of the roles or groups ops" in last_response_text(sandbox)
    assert stored(firebreak)[0].status == records.AWAITING_APPROVAL

    press(slack, runbook_blocks.ACTION_APPROVE, 1, user="U0BOB", channel=channel, ts=message.ts)
    final = finished(sandbox, channel, "R-1")
    assert "Finished: succeeded" in status_of(final)
    (reply,) = thread_replies(sandbox, channel, message.ts)
    assert "sshd-1 | restarted cron" in reply.text
    run = stored(firebreak)[0]
    assert (run.status, run.approver) == ("succeeded", "U0BOB")
    with firebreak.db.session_scope() as session:
        events = service.events(session, service.get(session, 1))
    refused = [(e.kind, e.actor) for e in events if e.kind == "runbook_approval_refused"]
    assert refused == [
        ("runbook_approval_refused", "U0ALICE"),
        ("runbook_approval_refused", "U0CAROL"),
    ]
    assert ("runbook_approved", "U0BOB") in [(e.kind, e.actor) for e in events]


def test_an_approval_past_its_window_expires_the_run(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    message = request_high_risk(slack, sandbox, general, "R-1")
    later = system_now() + timedelta(minutes=16)
    firebreak.clock.use(lambda: later)
    press(slack, runbook_blocks.ACTION_APPROVE, 1, user="U0BOB", channel=general, ts=message.ts)
    assert "approval window of run R-1 has passed" in last_response_text(sandbox)
    assert stored(firebreak)[0].status == records.EXPIRED
    message = plan_message(sandbox, general, "R-1")
    assert "Finished: expired" in status_of(message)
    assert buttons(message) == []
    assert thread_replies(sandbox, general, message.ts) == []


def test_deny_by_an_approver_cancels_the_run(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    message = request_high_risk(slack, sandbox, general, "R-1")
    press(slack, runbook_blocks.ACTION_DENY, 1, user="U0BOB", channel=general, ts=message.ts)
    assert stored(firebreak)[0].status == records.CANCELLED
    assert "denied by <@U0BOB>" in status_of(plan_message(sandbox, general, "R-1"))


# -- cancel ---------------------------------------------------------------------------------


def test_cancel_stops_a_running_run(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    runbook(slack, "run slow seconds=90 hosts=sshd-1", channel=general)
    message = plan_message(sandbox, general, "R-1")
    press(slack, runbook_blocks.ACTION_CANCEL, 1, user="U0BOB", channel=general, ts=message.ts)
    assert last_response_text(sandbox) == ":no_entry: Only <@U0ALICE> can cancel R-1."
    press(slack, runbook_blocks.ACTION_RUN, 1, user="U0ALICE", channel=general, ts=message.ts)

    def sleeping() -> bool:
        replies = thread_replies(sandbox, general, message.ts)
        return bool(replies) and "sshd-1 | sleeping" in replies[0].text

    wait_for(sleeping, timeout=30)
    runbook(slack, "cancel R-1", channel=general)
    final = finished(sandbox, general, "R-1")
    assert "Finished: cancelled by <@U0ALICE>" in status_of(final)
    (reply,) = thread_replies(sandbox, general, message.ts)
    assert "*R-1* finished: *cancelled*" in reply.text
    assert "never" not in reply.text
    with firebreak.db.session_scope() as session:
        (host,) = runs.hosts(session, 1)
        assert host.status == records.HOST_CANCELLED
        assert [step["step"] for step in host.steps] == ["begin", "sleep"]


# -- refusals -------------------------------------------------------------------------------


def test_bad_parameters_are_refused_privately_with_every_problem_and_stored(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    runbook(slack, "run echo-args count=9 colour=red hosts=elsewhere", channel=general)
    said = last_response_text(sandbox)
    assert said.startswith(":x: Refused (recorded as R-1):")
    assert "'colour' is not a parameter of this runbook" in said
    assert "count: 9 is above the maximum 3" in said
    assert "word: is required" in said
    assert "'elsewhere' is neither an inventory host nor a group" in said
    assert sandbox.messages(general) == []
    (run,) = stored(firebreak)
    assert (run.status, run.source, run.requester) == ("refused", "slack", "U0ALICE")
    assert run.params == {"count": "9", "colour": "red", "hosts": "elsewhere"}


def test_an_unknown_runbook_is_refused_and_stored(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    runbook(slack, "run rm-everything", channel=general)
    assert "there is no runbook 'rm-everything'" in last_response_text(sandbox)
    assert stored(firebreak)[0].runbook_id == "rm-everything"


def test_without_ssh_configured_the_answer_names_the_variables(
    slack: Slack,
    sandbox: SlackSandbox,
    firebreak: Firebreak,
    general: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FIREBREAK_SSH_KEY")
    runbook(slack, "run echo-args word=x", channel=general)
    said = last_response_text(sandbox)
    assert "FIREBREAK_SSH_KEY" in said and "FIREBREAK_KNOWN_HOSTS" in said
    assert sandbox.messages(general) == []
    assert stored(firebreak)[0].status == records.REFUSED


def test_a_requester_without_an_allowed_role_is_refused(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    runbook(slack, "run restart-thing thing=cron", user="U0CAROL", channel=general)
    said = last_response_text(sandbox)
    assert said.startswith(":no_entry: Refused (recorded as R-1)")
    assert "holds none of the roles or groups ops" in said
    run = stored(firebreak)[0]
    assert (run.status, run.requester) == ("refused", "U0CAROL")
