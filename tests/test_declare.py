"""Declaring an incident from Slack, through signed requests into the real WSGI app."""

from __future__ import annotations

from sqlalchemy import select

from bot.app import Firebreak
from bot.incidents import service
from bot.incidents.models import Incident
from bot.sandbox import SlackSandbox
from tests.conftest import Slack, last_response_text


def kinds(app: Firebreak, incident_id: int = 1) -> list[str]:
    with app.db.session_scope() as session:
        return [e.kind for e in service.events(session, service.get(session, incident_id))]


def test_declare_opens_a_channel_with_topic_summary_pin_and_announcement(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str, announce_channel: str
) -> None:
    reply = slack.run("declare sev2 Checkout latency above 2s", channel=general)
    assert reply.status == 200

    channel = sandbox.channel_by_name("inc-1-checkout-latency-above-2s")
    assert channel is not None
    assert "U0ALICE" in channel.members
    assert channel.topic.startswith("SEV2 · investigating · Commander: <@U0ALICE>")
    summary_ts = sandbox.pins(channel.id)[0]
    summary = sandbox.message(channel.id, summary_ts)
    assert summary.blocks is not None and summary.blocks[0]["text"]["text"].startswith("INC-1:")
    action_ids = [e["action_id"] for e in summary.blocks[-1]["elements"]]
    assert action_ids == [
        "incident_severity",
        "incident_status",
        "incident_note",
        "incident_resolve",
    ]
    announcement = sandbox.messages(announce_channel)[-1]
    assert f"<#{channel.id}>" in str(announcement.blocks)
    assert f"<#{channel.id}>" in last_response_text(sandbox)
    assert kinds(firebreak) == [
        "declared",
        "role_assigned",
        "channel_created",
        "responder_invited",
        "topic_set",
        "summary_posted",
        "summary_pinned",
        "announced",
    ]
    with firebreak.db.session_scope() as session:
        incident = session.scalars(select(Incident)).one()
        assert (incident.severity, incident.status, incident.channel_id) == (
            "sev2",
            "investigating",
            channel.id,
        )
