"""Signatures, Slack's retries, modals, the summary's buttons and :pushpin: reactions."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from bot.app import Firebreak
from bot.incidents import service
from bot.incidents.models import Incident
from bot.sandbox import SlackSandbox
from bot.sandbox.outbound import OutboundSlack
from bot.slack import blocks
from bot.timeline import TimelineEvent
from tests.conftest import Slack, wsgi_transport


def count(app: Firebreak, model: type[Incident] | type[TimelineEvent]) -> int:
    with app.db.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_unsigned_wrongly_signed_and_stale_requests_get_401_and_write_nothing(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    body = slack.command_body("declare sev1 Forged", user="U0ALICE", channel=general)
    unsigned = slack.transport(body, {"Content-Type": "application/x-www-form-urlencoded"})
    forger = OutboundSlack(wsgi_transport(firebreak), "not-the-secret", sandbox)
    wrong = forger.send(body, "application/x-www-form-urlencoded")
    stale = slack.send(
        body, "application/x-www-form-urlencoded", timestamp=int(time.time()) - 6 * 60
    )
    slack.settle()
    assert (unsigned.status, wrong.status, stale.status) == (401, 401, 401)
    assert count(firebreak, Incident) == 0
    assert sandbox.calls == []


def test_a_retried_slash_command_declares_once(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    body = slack.command_body("declare sev2 Retried request", user="U0ALICE", channel=general)
    first = slack.send(body, "application/x-www-form-urlencoded")
    retry = slack.send(
        body, "application/x-www-form-urlencoded", headers={"X-Slack-Retry-Num": "1"}
    )
    slack.settle()
    assert (first.status, retry.status) == (200, 200)
    assert count(firebreak, Incident) == 1
    assert len(sandbox.calls_to("conversations.create")) == 1


def test_declare_without_a_title_opens_a_modal_and_a_double_submit_declares_once(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    slack.run("declare", channel=general)
    [opened] = sandbox.views()
    assert opened.view["callback_id"] == blocks.VIEW_DECLARE
    values = {
        "title": {"type": "plain_text_input", "value": "Login failures in EU"},
        "severity": {"type": "static_select", "selected_option": {"value": "sev1"}},
        "description": {"type": "plain_text_input", "value": "SSO returns 502"},
    }
    for _ in range(2):
        reply = slack.view_submission(opened.view, values, user="U0BOB", view_id=opened.id)
        assert reply.status == 200
    slack.settle()
    assert count(firebreak, Incident) == 1
    with firebreak.db.session_scope() as session:
        incident = service.get(session, 1)
        assert (incident.title, incident.severity, incident.description, incident.declared_by) == (
            "Login failures in EU",
            "sev1",
            "SSO returns 502",
            "U0BOB",
        )
    assert sandbox.channel_by_name("inc-1-login-failures-in-eu") is not None
    # The submit that declared says so; the other (whichever finished first) is told the
    # incident already exists, never that a second one was declared.
    told = [message.text for message in sandbox.ephemerals(general, "U0BOB")]
    assert len([text for text in told if "Declared INC-1" in text]) == 1, told
    assert all("Declared INC-1" in text or "INC-1 was already declared" in text for text in told)


def test_modal_with_a_blank_title_is_sent_back_with_an_error(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    view = blocks.declare_modal(firebreak.settings.file.incidents, general)
    values = {
        "title": {"type": "plain_text_input", "value": "   "},
        "severity": {"type": "static_select", "selected_option": {"value": "sev3"}},
    }
    reply = slack.view_submission(view, values, user="U0BOB")
    slack.settle()
    assert reply.json()["response_action"] == "errors"
    assert "title" in reply.json()["errors"]
    assert count(firebreak, Incident) == 0


def declared(slack: Slack, sandbox: SlackSandbox, general: str) -> str:
    slack.run("declare sev3 Queue backlog growing", channel=general)
    channel = sandbox.channel_by_name("inc-1-queue-backlog-growing")
    assert channel is not None
    return channel.id


def test_summary_controls_change_severity_and_status_and_resolve(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    channel = declared(slack, sandbox, general)
    ts = sandbox.pins(channel)[0]
    slack.block_action(
        blocks.ACTION_SEVERITY, user="U0BOB", channel=channel, message_ts=ts, selected="sev1"
    )
    slack.settle()
    slack.block_action(
        blocks.ACTION_STATUS, user="U0BOB", channel=channel, message_ts=ts, selected="monitoring"
    )
    slack.settle()
    slack.block_action(
        blocks.ACTION_RESOLVE, user="U0CAROL", channel=channel, message_ts=ts, value="1"
    )
    slack.settle()
    with firebreak.db.session_scope() as session:
        incident = service.get(session, 1)
        assert (incident.severity, incident.status, incident.is_resolved) == (
            "sev1",
            "resolved",
            True,
        )
        tail = [(e.kind, e.actor) for e in service.events(session, incident)][-3:]
    assert tail == [
        ("severity_changed", "U0BOB"),
        ("status_changed", "U0BOB"),
        ("resolved", "U0CAROL"),
    ]
    assert sandbox.channel(channel).topic.startswith("SEV1 · resolved")


def test_add_note_button_opens_a_modal_whose_submission_is_a_note(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    channel = declared(slack, sandbox, general)
    slack.block_action(blocks.ACTION_NOTE, user="U0BOB", channel=channel, value="1")
    slack.settle()
    note_view = sandbox.views()[-1]
    assert note_view.view["callback_id"] == blocks.VIEW_NOTE
    slack.view_submission(
        note_view.view,
        {"note": {"type": "plain_text_input", "value": "Consumers scaled to 12"}},
        user="U0BOB",
    )
    slack.settle()
    with firebreak.db.session_scope() as session:
        last = service.events(session, service.get(session, 1))[-1]
    assert (last.kind, last.actor, last.data) == (
        "note_added",
        "U0BOB",
        {"text": "Consumers scaled to 12"},
    )


def test_pushpin_copies_a_message_into_the_timeline_once(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    channel = declared(slack, sandbox, general)
    ts = sandbox.post_user_message(channel, "U0CAROL", "Found it: the cron job holds a lock")
    before = count(firebreak, TimelineEvent)
    slack.reaction_added(user="U0BOB", channel=channel, ts=ts, event_id="Ev1")
    slack.settle()  # the first pin is recorded; what follows are repeats
    slack.reaction_added(user="U0BOB", channel=channel, ts=ts, event_id="Ev1", retry_num=1)
    slack.reaction_added(user="U0ALICE", channel=channel, ts=ts, event_id="Ev2")
    slack.reaction_added(user="U0ALICE", channel=channel, ts=ts, reaction="eyes", event_id="Ev3")
    slack.settle()
    assert count(firebreak, TimelineEvent) == before + 1
    with firebreak.db.session_scope() as session:
        last = service.events(session, service.get(session, 1))[-1]
    assert (last.kind, last.actor, last.data["text"]) == (
        "pinned_message",
        "U0BOB",
        "Found it: the cron job holds a lock",
    )
    assert last.data["author"] == "U0CAROL"
    assert (last.data["channel"], last.data["ts"]) == (channel, ts)


def test_pushpin_outside_incident_channels_is_ignored(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    ts = sandbox.post_user_message(general, "U0CAROL", "lunch?")
    reply = slack.reaction_added(user="U0BOB", channel=general, ts=ts)
    slack.settle()
    assert reply.status == 200
    assert count(firebreak, TimelineEvent) == 0
    assert sandbox.calls_to("conversations.history") == []


def test_events_url_verification_answers_the_challenge(slack: Slack, sandbox: SlackSandbox) -> None:
    """Slack checks the request URL this way when the manifest is saved."""
    body = b'{"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}'
    reply = slack.send(body, "application/json")
    assert reply.status == 200
    assert "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in reply.body
    assert sandbox.calls == []
