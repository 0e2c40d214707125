"""A Slack failure half-way through a declaration: recorded, told, and finished by a rerun."""

from __future__ import annotations

from sqlalchemy import func, select

from bot.app import Firebreak
from bot.incidents import service
from bot.incidents.models import Incident
from bot.sandbox import SlackSandbox
from tests.conftest import Slack, last_response_text

TITLE = "Checkout down"
NAME = "inc-1-checkout-down"


def incident_count(app: Firebreak) -> int:
    with app.db.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(Incident)) or 0)


def kinds(app: Firebreak) -> list[str]:
    with app.db.session_scope() as session:
        return [e.kind for e in service.events(session, service.get(session, 1))]


def incident_channels(sandbox: SlackSandbox) -> list[str]:
    return [c["name"] for c in sandbox.snapshot()["channels"] if str(c["name"]).startswith("inc-")]


def test_create_channel_error_is_recorded_told_and_finished_by_rerunning(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    sandbox.inject_fault("conversations.create", error="restricted_action")
    slack.run(f"declare sev1 {TITLE}", channel=general)

    told = last_response_text(sandbox)
    assert "INC-1 is recorded" in told and "restricted_action" in told and "again" in told
    assert incident_count(firebreak) == 1
    assert kinds(firebreak)[-1] == "slack_error"
    assert incident_channels(sandbox) == []

    slack.run(f"declare sev1 {TITLE}", channel=general)
    assert incident_count(firebreak) == 1
    assert incident_channels(sandbox) == [NAME]
    assert "INC-1 was already declared" in last_response_text(sandbox)
    assert kinds(firebreak).count("channel_created") == 1
    assert kinds(firebreak)[-1] == "announced"


def test_rate_limit_is_waited_out_and_the_declaration_completes(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    sandbox.inject_fault("conversations.setTopic", retry_after=1)
    slack.run(f"declare {TITLE}", channel=general)
    topic_calls = sandbox.calls_to("conversations.setTopic")
    assert [c.status for c in topic_calls] == [429, 200]
    assert topic_calls[1].at - topic_calls[0].at >= 0.9, "Retry-After was honoured"
    assert "slack_error" not in kinds(firebreak)


def test_failed_summary_is_posted_once_on_rerun(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    sandbox.inject_fault("chat.postMessage", status=500, times=3)  # outlasts the client's 2 retries
    slack.run(f"declare {TITLE}", channel=general)
    assert "summary failed" in last_response_text(sandbox)
    channel = sandbox.channel_by_name(NAME)
    assert channel is not None and sandbox.pins(channel.id) == []

    slack.run(f"declare {TITLE}", channel=general)
    assert len(sandbox.pins(channel.id)) == 1
    bot_messages = [m for m in sandbox.messages(channel.id) if m.user == sandbox.bot_user_id]
    assert len(bot_messages) == 1
    assert incident_channels(sandbox) == [NAME]
    assert kinds(firebreak).count("summary_posted") == 1


def test_a_name_taken_by_someone_else_moves_to_the_next_suffix(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    sandbox.add_channel(NAME, creator="U0BOB", members=["U0BOB"])
    sandbox.add_channel(f"{NAME}-2", creator="U0BOB", members=["U0BOB"])
    slack.run(f"declare {TITLE}", channel=general)
    with firebreak.db.session_scope() as session:
        assert service.get(session, 1).channel_name == f"{NAME}-3"
    assert sandbox.channel_by_name(f"{NAME}-3") is not None


def test_topic_update_failure_after_a_change_is_recorded_not_lost(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    slack.run(f"declare {TITLE}", channel=general)
    channel = sandbox.channel_by_name(NAME)
    assert channel is not None
    sandbox.inject_fault("conversations.setTopic", error="not_in_channel")
    slack.run("sev sev1", channel=channel.id)
    with firebreak.db.session_scope() as session:
        incident = service.get(session, 1)
        assert incident.severity == "sev1"
        last = service.events(session, incident)[-2:]
    assert [e.kind for e in last] == ["severity_changed", "slack_error"]
    # The post went out; the refresh failed for good on the topic (no retry mends
    # not_in_channel), after updating the pinned summary all the same.
    assert last[1].data == {"step": "refresh the topic and summary", "error": "not_in_channel"}
    summary = sandbox.messages(channel.id)[0]
    assert summary.edited and "SEV1" in summary.text
