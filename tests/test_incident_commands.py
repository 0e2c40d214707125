"""Channel commands: each change updates Slack and writes exactly one timeline event."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from bot.app import Firebreak
from bot.incidents import service
from bot.sandbox import SlackSandbox
from tests.conftest import Slack, last_response_text


@pytest.fixture
def incident_channel(slack: Slack, sandbox: SlackSandbox, general: str) -> str:
    slack.run("declare sev2 Checkout latency above 2s", channel=general)
    channel = sandbox.channel_by_name("inc-1-checkout-latency-above-2s")
    assert channel is not None
    return channel.id


def events(app: Firebreak, incident_id: int = 1) -> list[tuple[str, str, dict[str, Any]]]:
    with app.db.session_scope() as session:
        incident = service.get(session, incident_id)
        return [(e.kind, e.actor, e.data) for e in service.events(session, incident)]


def new_events(app: Firebreak, before: int) -> list[tuple[str, str, dict[str, Any]]]:
    return events(app)[before:]


def test_severity_change_updates_topic_summary_announcement_and_timeline(
    slack: Slack,
    sandbox: SlackSandbox,
    firebreak: Firebreak,
    incident_channel: str,
    announce_channel: str,
) -> None:
    before = len(events(firebreak))
    slack.run("sev sev1", channel=incident_channel, user="U0BOB")

    assert new_events(firebreak, before) == [
        ("severity_changed", "U0BOB", {"from": "sev2", "to": "sev1"})
    ]
    assert sandbox.channel(incident_channel).topic.startswith("SEV1 · investigating")
    summary = sandbox.message(incident_channel, sandbox.pins(incident_channel)[0])
    assert summary.edited and "SEV1" in summary.text
    assert "SEV1" in str(sandbox.messages(announce_channel)[-1].blocks)
    assert "<@U0BOB> changed severity sev2 → sev1" in sandbox.messages(incident_channel)[-1].text


def test_same_severity_changes_nothing_and_says_so(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, incident_channel: str
) -> None:
    before, calls = len(events(firebreak)), len(sandbox.calls)
    slack.run("sev sev2", channel=incident_channel)
    assert new_events(firebreak, before) == []
    assert "already sev2" in last_response_text(sandbox)
    assert [c.method for c in sandbox.calls[calls:]] == []


def test_status_role_note_and_resolve(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, incident_channel: str
) -> None:
    before = len(events(firebreak))
    slack.run("status identified", channel=incident_channel)
    slack.run("role commander <@U0BOB|bob>", channel=incident_channel)
    slack.run("note Rolled back deploy 42", channel=incident_channel, user="U0CAROL")
    slack.run("resolve Bad deploy rolled back", channel=incident_channel)

    assert new_events(firebreak, before) == [
        ("status_changed", "U0ALICE", {"from": "investigating", "to": "identified"}),
        ("role_assigned", "U0ALICE", {"role": "commander", "user": "U0BOB", "previous": "U0ALICE"}),
        ("responder_invited", "firebreak", {"user": "U0BOB"}),
        ("note_added", "U0CAROL", {"text": "Rolled back deploy 42"}),
        ("resolved", "U0ALICE", {"from": "identified", "resolution": "Bad deploy rolled back"}),
    ]
    posts = [m.text for m in sandbox.messages(incident_channel)][-4:]
    assert posts == [
        ":arrows_counterclockwise: <@U0ALICE> changed status investigating → identified",
        ":bust_in_silhouette: <@U0ALICE> made <@U0BOB> commander (was <@U0ALICE>)",
        ":memo: <@U0CAROL> added a note: Rolled back deploy 42",
        ":white_check_mark: <@U0ALICE> resolved the incident: Bad deploy rolled back",
    ]
    channel = sandbox.channel(incident_channel)
    assert "U0BOB" in channel.members
    assert channel.topic.startswith("SEV2 · resolved · Commander: <@U0BOB>")
    summary = sandbox.message(incident_channel, sandbox.pins(incident_channel)[0])
    assert summary.blocks is not None
    assert all(block["type"] != "actions" for block in summary.blocks), "resolved: no buttons"
    assert "Bad deploy rolled back" in str(summary.blocks)


def test_people_from_the_config_can_be_named_without_a_mention(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, incident_channel: str
) -> None:
    slack.run("role scribe carol", channel=incident_channel)
    assert events(firebreak)[-2][0:2] == ("role_assigned", "U0ALICE")
    assert "U0CAROL" in sandbox.channel(incident_channel).members


def test_note_does_not_touch_topic_or_summary(
    slack: Slack, sandbox: SlackSandbox, incident_channel: str
) -> None:
    calls = len(sandbox.calls)
    slack.run("note Looking at the DB dashboards", channel=incident_channel)
    assert [c.method for c in sandbox.calls[calls:]] == ["chat.postMessage"]


def test_resolved_incident_refuses_changes_until_reopened(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, incident_channel: str
) -> None:
    slack.run("resolve", channel=incident_channel)
    slack.run("resolve", channel=incident_channel)
    assert "already resolved" in last_response_text(sandbox)
    slack.run("sev sev1", channel=incident_channel)
    assert "is resolved" in last_response_text(sandbox)
    slack.run("status monitoring", channel=incident_channel)
    assert events(firebreak)[-1][0] == "reopened"
    with firebreak.db.session_scope() as session:
        incident = service.get(session, 1)
        assert incident.resolved_at is None and incident.status == "monitoring"
    summary = sandbox.message(incident_channel, sandbox.pins(incident_channel)[0])
    assert summary.blocks is not None and summary.blocks[-1]["type"] == "actions"


def test_reopening_is_refused_while_the_same_person_has_that_title_open_again(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, incident_channel: str, general: str
) -> None:
    slack.run("resolve", channel=incident_channel)
    title = events(firebreak)[0][2]["title"]
    slack.run(f"declare {title}", channel=general)  # the same person, the same title: INC-2
    slack.run("status monitoring", channel=incident_channel)
    told = last_response_text(sandbox)
    assert told.startswith("INC-1 can't be reopened while INC-2"), told
    with firebreak.db.session_scope() as session:
        assert service.get(session, 1).is_resolved
        assert service.get(session, 2).resolved_at is None


def test_timeline_is_ephemeral_and_newest_last(
    slack: Slack, sandbox: SlackSandbox, incident_channel: str
) -> None:
    slack.run("note first", channel=incident_channel)
    slack.run("note second", channel=incident_channel)
    messages_before = len(sandbox.messages(incident_channel))
    slack.run("timeline", channel=incident_channel)
    payload = sandbox.responses()[-1].payload
    assert payload.get("response_type", "ephemeral") == "ephemeral"
    text = "\n".join(b["text"]["text"] for b in payload["blocks"] if b["type"] == "section")
    assert text.index("first") < text.index("second")
    first_line = text.splitlines()[0]
    assert first_line.split(" · ", 1)[1] == "<@U0ALICE> declared SEV2: Checkout latency above 2s"
    assert len(sandbox.messages(incident_channel)) == messages_before


def test_long_timeline_fits_slack_limits_and_keeps_the_newest(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, incident_channel: str
) -> None:
    with firebreak.db.session_scope() as session:
        incident = service.get(session, 1)
        for number in range(600):
            service.add_note(
                session,
                incident,
                f"note {number:03d} " + "x" * 150,
                actor="U0BOB",
                now=firebreak.clock(),
            )
    slack.run("timeline", channel=incident_channel)
    # The sandbox refuses over 50 blocks or over 3,000 characters a section, like Slack.
    payload = sandbox.responses()[-1].payload
    assert len(payload["blocks"]) <= 50
    sections = [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]
    assert all(len(s) <= 3000 for s in sections)
    assert "note 599" in sections[-1]
    assert "earlier events are not shown" in str(payload["blocks"][1])


def test_list_shows_open_incidents_with_channel_links(
    slack: Slack, sandbox: SlackSandbox, general: str, incident_channel: str
) -> None:
    slack.run("declare sev4 Search results stale", channel=general)
    second = sandbox.channel_by_name("inc-2-search-results-stale")
    assert second is not None
    slack.run("resolve", channel=second.id)
    slack.run("list", channel=general)
    text = last_response_text(sandbox)
    assert f"<#{incident_channel}>" in text and "INC-1" in text
    assert "INC-2" not in text


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("frobnicate", "`frobnicate` is not an `/incident` command"),
        ("sev sev9", "`sev9` is not a severity. Choose one of: sev1, sev2, sev3, sev4, sev5"),
        ("status fixed", "Choose one of: investigating, identified, monitoring, resolved"),
        (
            "role chef <@U0BOB>",
            "`chef` is not a role. Choose one of: commander, comms, scribe, ops",
        ),
        ("role ops", "Usage: `/incident role <role> <@person>`"),
        ("role ops mallory", "`mallory` is not a person I know"),
        ("note", "The note is empty"),
        ("list everything", "`/incident list` takes no arguments"),
    ],
)
def test_bad_commands_are_answered_at_once_with_the_valid_choices(
    slack: Slack,
    sandbox: SlackSandbox,
    firebreak: Firebreak,
    general: str,
    command: str,
    expected: str,
) -> None:
    reply = slack.run(command, channel=general)
    assert reply.status == 200
    assert expected in reply.json()["text"]
    # Nothing reached Slack but bolt's one-off, cached auth.test.
    assert {c.method for c in sandbox.calls} <= {"auth.test"}
    assert sandbox.responses() == []


def test_help_lists_the_grammar(slack: Slack, general: str) -> None:
    text = slack.run("help", channel=general).json()["text"]
    for verb in ("declare", "sev", "status", "role", "note", "resolve", "timeline", "list"):
        assert f"/incident {verb}" in text


def test_channel_commands_outside_an_incident_channel_say_where_to_go(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str, incident_channel: str
) -> None:
    before = len(events(firebreak))
    slack.run("sev sev1", channel=general)
    text = last_response_text(sandbox)
    assert "only in an incident channel" in text and f"<#{incident_channel}>" in text
    assert len(events(firebreak)) == before


def test_concurrent_notes_are_all_recorded_once(
    slack: Slack, firebreak: Firebreak, incident_channel: str
) -> None:
    before = len(events(firebreak))
    errors: list[int] = []

    def send(number: int) -> None:
        reply = slack.command(f"note parallel {number}", user="U0BOB", channel=incident_channel)
        if reply.status != 200:
            errors.append(reply.status)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    slack.settle()
    assert errors == []
    notes = sorted(
        data["text"] for kind, _, data in new_events(firebreak, before) if kind == "note_added"
    )
    assert notes == sorted(f"parallel {n}" for n in range(30))
