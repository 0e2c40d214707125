"""Adversarial Slack requests: whatever arrives at /slack/events gets a clean answer.

Everything goes through the real WSGI app, signed (or deliberately not) as Slack signs, with
the sandbox Slack behind it. Every request must be answered within Slack's 3 seconds and
never with a 5xx: 401 for a signature or timestamp problem, 400 for a body that is not what
Slack sends, else bolt's answer (a command's result or a short private error, a modal's
field errors). Nothing a request carries may end in a logged traceback, and nothing may be
half-written (an incident without its `declared` event and commander, a page without its
`page_triggered` event).

The example tests pin each malformed case of the hardening issue to its status and message;
the hypothesis tests throw arbitrary text at the three command grammars, arbitrary and
truncated JSON at every interactive payload and event we handle, and arbitrary header values
at the signature check. Each prints what it sent and what it counted.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_bolt import Ack
from sqlalchemy import select

from bot.app import Firebreak
from bot.incidents import service
from bot.incidents.models import Incident, RoleAssignment
from bot.oncall.models import Page
from bot.sandbox import SlackSandbox
from bot.sandbox.outbound import Reply
from bot.slack import blocks, payloads
from bot.timeline import TimelineEvent
from tests.conftest import SECRET, Slack

FORM = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"
ANSWER_WITHIN = 3.0  # seconds: Slack gives up on an answer after 3
EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- what the tests share ---------------------------------------------------------------


@dataclass
class World:
    """A declared incident (with its channel and a message in it) and a page to Alice."""

    general: str
    channel: str  # INC-1's channel
    message_ts: str  # a message in it, to pin
    summary_ts: str  # the pinned summary with the incident's controls


@pytest.fixture
def world(slack: Slack, sandbox: SlackSandbox, general: str) -> World:
    slack.run("declare sev3 Queue backlog growing", channel=general)
    found = sandbox.channel_by_name("inc-1-queue-backlog-growing")
    assert found is not None
    slack.command("@alice disk full on db-1", user="U0BOB", channel=general, command="/page")
    slack.settle()
    ts = sandbox.post_user_message(found.id, "U0CAROL", "Found it: the cron job holds a lock")
    return World(general, found.id, ts, sandbox.pins(found.id)[0])


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO)
    yield caplog


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log records that carry a traceback: each is a failure nobody handled."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.exc_info]


def timed(send: Any, *args: Any, **kwargs: Any) -> tuple[Reply, float]:
    started = time.perf_counter()
    reply = send(*args, **kwargs)
    return reply, time.perf_counter() - started


def half_written(app: Firebreak) -> list[str]:
    """Incidents without their `declared` event or commander; pages without `page_triggered`."""
    problems = []
    with app.db.session_scope() as session:
        for incident in session.scalars(select(Incident)):
            kinds = {e.kind for e in service.events(session, incident)}
            commander = session.get(RoleAssignment, (incident.id, "commander"))
            if "declared" not in kinds or commander is None:
                problems.append(f"{incident.reference}: events {sorted(kinds)}, no commander")
        for page in session.scalars(select(Page)):
            triggered = session.scalars(
                select(TimelineEvent).where(
                    TimelineEvent.page_id == page.id, TimelineEvent.kind == "page_triggered"
                )
            ).first()
            if triggered is None:
                problems.append(f"P-{page.id}: no page_triggered event")
    return problems


def incidents(app: Firebreak) -> list[tuple[str, str, str]]:
    with app.db.session_scope() as session:
        return [(i.title, i.severity, i.status) for i in session.scalars(select(Incident))]


def signature(timestamp: str, body: bytes, secret: str = SECRET) -> str:
    """Slack's v0 signature over the bytes as sent (the body need not be UTF-8)."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def raw_headers(timestamp: str | None, sig: str | None, content_type: str) -> dict[str, str]:
    headers = {"Content-Type": content_type}
    if timestamp is not None:
        headers["X-Slack-Request-Timestamp"] = timestamp
    if sig is not None:
        headers["X-Slack-Signature"] = sig
    return headers


def interaction_body(payload_text: str) -> bytes:
    return urlencode({"payload": payload_text}).encode()


# -- payloads as Slack sends them -------------------------------------------------------


def block_action(
    sandbox: SlackSandbox, action_id: str, *, user: str, channel: str, ts: str, **action: Any
) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": {"id": "T0SANDBOX"},
        "user": {"id": user},
        "api_app_id": "A0FIREBREAK",
        "trigger_id": f"{int(time.time())}.1234567.0123abcd",
        "channel": {"id": channel},
        "container": {"type": "message", "channel_id": channel, "message_ts": ts},
        "message": {"ts": ts},
        "response_url": sandbox.new_response_url(channel, user),
        "actions": [
            {"action_id": action_id, "block_id": "actions", "action_ts": f"{time.time():.6f}"}
            | action
        ],
    }


def view_submission(
    view: dict[str, Any], values: dict[str, dict[str, Any]], *, user: str = "U0BOB"
) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "team": {"id": "T0SANDBOX"},
        "user": {"id": user},
        "api_app_id": "A0FIREBREAK",
        "trigger_id": f"{int(time.time())}.7654321.abcdef01",
        "view": {
            **view,
            "id": "V0TEST0001",
            "hash": "1732150000.Ab12Cd34",
            "state": {"values": {block: {"value": state} for block, state in values.items()}},
        },
    }


def declare_values(
    title: Any = "Login failures", severity: Any = "sev2", description: Any = ""
) -> dict[str, dict[str, Any]]:
    return {
        "title": {"type": "plain_text_input", "value": title},
        "severity": {"type": "static_select", "selected_option": {"value": severity}},
        "description": {"type": "plain_text_input", "value": description},
    }


def note_view(incident_id: str = "1") -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": blocks.VIEW_NOTE,
        "private_metadata": incident_id,
        "blocks": [],
    }


def templates(sandbox: SlackSandbox, firebreak: Firebreak, world: World) -> dict[str, Any]:
    """One well-formed payload of every interaction and event Firebreak handles (and two it
    does not: shortcuts)."""
    channel, ts = world.channel, world.summary_ts
    found: dict[str, Any] = {
        action_id: block_action(
            sandbox, action_id, user="U0BOB", channel=channel, ts=ts, type="button", value="1"
        )
        for action_id in (
            blocks.ACTION_NOTE,
            blocks.ACTION_RESOLVE,
            blocks.ACTION_PAGE_ACK,
            blocks.ACTION_PAGE_ESCALATE,
            blocks.ACTION_PAGE_RESOLVE,
        )
    }
    for action_id, value in (
        (blocks.ACTION_SEVERITY, "sev1"),
        (blocks.ACTION_STATUS, "monitoring"),
    ):
        found[action_id] = block_action(
            sandbox,
            action_id,
            user="U0BOB",
            channel=channel,
            ts=ts,
            type="static_select",
            selected_option={"value": value, "text": {"type": "plain_text", "text": value}},
        )
    declare = blocks.declare_modal(firebreak.settings.file.incidents, world.general)
    found[blocks.VIEW_DECLARE] = view_submission(declare, declare_values())
    found[blocks.VIEW_NOTE] = view_submission(
        note_view(), {"note": {"type": "plain_text_input", "value": "Consumers scaled"}}
    )
    for kind in ("shortcut", "message_action"):
        found[kind] = {
            "type": kind,
            "callback_id": "firebreak_shortcut",
            "user": {"id": "U0ALICE"},
            "team": {"id": "T0SANDBOX"},
            "trigger_id": f"{int(time.time())}.1.abc",
        }
    return found


def event_templates(world: World) -> dict[str, Any]:
    def envelope(event: dict[str, Any]) -> dict[str, Any]:
        return {
            "token": "unused",
            "team_id": "T0SANDBOX",
            "api_app_id": "A0FIREBREAK",
            "type": "event_callback",
            "event_id": f"Ev{time.time_ns()}",
            "event_time": int(time.time()),
            "event": event,
        }

    return {
        "reaction_added": envelope(
            {
                "type": "reaction_added",
                "user": "U0BOB",
                "reaction": "pushpin",
                "item": {"type": "message", "channel": world.channel, "ts": world.message_ts},
                "event_ts": f"{time.time():.6f}",
            }
        ),
        "message": envelope(
            {
                "type": "message",
                "user": "U0CAROL",
                "channel": world.channel,
                "text": "hello",
                "ts": f"{time.time():.6f}",
            }
        ),
        "url_verification": {"token": "unused", "challenge": "abc123", "type": "url_verification"},
    }


# -- example tests: each malformed case of the issue ------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    ["abc", "", " 1700000000", "+1700000000", "1_700_000_000", "1e9", "9" * 40, "12.5", "\uff10"],
)
def test_a_timestamp_that_is_not_ascii_digits_is_401_signed_or_not(
    slack: Slack,
    firebreak: Firebreak,
    general: str,
    logged: pytest.LogCaptureFixture,
    timestamp: str,
) -> None:
    body = slack.command_body("declare sev1 Forged", user="U0ALICE", channel=general)
    header = timestamp.encode("utf-8").decode("latin-1")  # what a WSGI server hands on
    replies = [
        slack.transport(body, raw_headers(header, None, FORM)),
        slack.transport(body, raw_headers(header, signature(header, body), FORM)),
    ]
    print(f"sent timestamp {timestamp!r} unsigned and signed: {[r.status for r in replies]}")
    for reply in replies:
        assert reply.status == 401, reply.body
        if timestamp:
            assert "must be a Unix time in seconds (ASCII digits only)" in reply.json()["message"]
        else:
            assert "X-Slack-Request-Timestamp header is missing" in reply.json()["message"]
    slack.settle()
    assert incidents(firebreak) == []
    assert tracebacks(logged) == []


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda sig: None, "X-Slack-Signature header is missing"),
        (lambda sig: "v0=é" + sig[4:], "must be v0= and 64 hex digits"),
        (lambda sig: sig.upper().replace("V0=", "v0="), "must be v0= and 64 hex digits"),
        (lambda sig: "v1=" + sig[3:], "must be v0= and 64 hex digits"),
        (lambda sig: sig[:-1] + ("0" if sig[-1] != "0" else "1"), "does not match the body"),
    ],
)
def test_a_malformed_or_wrong_signature_is_401(
    slack: Slack,
    firebreak: Firebreak,
    general: str,
    logged: pytest.LogCaptureFixture,
    mangle: Any,
    message: str,
) -> None:
    body = slack.command_body("declare sev1 Forged", user="U0ALICE", channel=general)
    stamp = str(int(time.time()))
    sig = mangle(signature(stamp, body))
    reply = slack.transport(body, raw_headers(stamp, sig, FORM))
    print(f"sent signature {sig!r}: {reply.status} {reply.body}")
    assert reply.status == 401
    assert message in reply.json()["message"]
    slack.settle()
    assert incidents(firebreak) == []
    assert tracebacks(logged) == []


def test_a_stale_timestamp_is_401_whatever_the_signature(slack: Slack, general: str) -> None:
    body = slack.command_body("list", user="U0ALICE", channel=general)
    stamp = str(int(time.time()) - 301)
    reply = slack.transport(body, raw_headers(stamp, signature(stamp, body), FORM))
    print(f"sent a request signed 301 s ago: {reply.status}")
    assert reply.status == 401
    assert "more than 5 minutes away" in reply.json()["message"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{nope", "The payload field is not valid JSON"),
        ('{"type": "block_actions"', "The payload field is not valid JSON"),
        ("", "The payload field is not valid JSON"),
        ("[1, 2]", "The payload field must be a JSON object, not a list."),
        ("1", "The payload field must be a JSON object, not a number."),
        ('"block_actions"', "The payload field must be a JSON object, not a string."),
        ("null", "The payload field must be a JSON object, not null."),
        ("[" * 5000 + "]" * 5000, "The payload field is nested more than 64 levels deep."),
        ("[" + "9" * 5000 + "]", "The payload field is not valid JSON (Exceeds the limit"),
        ('{"a": ' * 70 + "1" + "}" * 70, "nested more than 64 levels deep"),
        ('{"user": {"id": "U0BOB"}}', "The payload has no `type` string."),
    ],
)
def test_a_payload_that_is_not_a_json_object_is_400(
    slack: Slack, logged: pytest.LogCaptureFixture, payload: str, message: str
) -> None:
    reply = slack.send(interaction_body(payload), FORM)
    print(f"sent payload {payload[:40]!r}: {reply.status} {reply.body[:120]}")
    assert reply.status == 400
    assert message in reply.json()["message"]
    assert tracebacks(logged) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"type": "event_callback", "event": [1, 2]}',
            "The body's `event` must be an object, not a list",
        ),
        (
            b'{"type": "event_callback", "event": "reaction_added"}',
            "must be an object, not a string",
        ),
        (b'{"type": "event_callback"}', "An event_callback has no `event`."),
        (b'{"type": "event_callback", "event": {"user": "U0BOB"}}', "The event has no `type`"),
        (
            b'{"type": "event_callback", "event": {"type": "message", "user": [1]}}',
            "`body.event.user` must be a string or an object",
        ),
        (b"[1, 2]", "The body must be a JSON object, not a list."),
        (b"{bad json", "The body is not valid JSON"),
        (b'{"type": 7}', "The body has no `type` string."),
        (b"\xff\xfe{}", "The body is not UTF-8 (byte 0)."),
        (b"", "The body is empty."),
        (b'{"type": "url_verification", "command": "/incident"}', "come form-encoded"),
        (b"text=hello", "must be a slash command"),
    ],
)
def test_an_event_body_that_is_not_what_slack_sends_is_400(
    slack: Slack, logged: pytest.LogCaptureFixture, body: bytes, message: str
) -> None:
    stamp = str(int(time.time()))
    content_type = FORM if body == b"text=hello" else JSON_TYPE
    reply = slack.transport(body, raw_headers(stamp, signature(stamp, body), content_type))
    print(f"sent {body[:60]!r}: {reply.status} {reply.body[:120]}")
    assert reply.status == 400
    assert message in reply.json()["message"]
    assert tracebacks(logged) == []


def test_a_view_submission_without_state_is_answered_in_place_of_the_modal(
    slack: Slack, firebreak: Firebreak, general: str, logged: pytest.LogCaptureFixture
) -> None:
    view = blocks.declare_modal(firebreak.settings.file.incidents, general)
    payload = view_submission(view, declare_values())
    del payload["view"]["state"]
    reply, seconds = timed(slack.interaction, payload)
    slack.settle()
    print(f"sent a declare view_submission without state: {reply.status} in {seconds:.3f} s")
    assert reply.status == 200 and seconds < ANSWER_WITHIN
    answer = reply.json()
    assert answer["response_action"] == "update"
    assert answer["view"]["blocks"][0]["text"]["text"] == (
        ":x: Firebreak could not read this request from Slack: `state.values` is missing."
    )
    assert incidents(firebreak) == []
    assert tracebacks(logged) == []
    assert any("malformed Slack request" in r.getMessage() for r in logged.records)


@pytest.mark.parametrize("value", ["abc", "", "0", "1.5", "99999999999", " 1", "\u0661"])
@pytest.mark.parametrize(
    ("action_id", "what"),
    [
        (blocks.ACTION_NOTE, "an incident number"),
        (blocks.ACTION_PAGE_ACK, "a page number"),
        (blocks.ACTION_PAGE_ESCALATE, "a page number"),
        (blocks.ACTION_PAGE_RESOLVE, "a page number"),
    ],
)
def test_a_button_whose_value_is_not_an_id_is_answered_privately_at_once(
    slack: Slack,
    sandbox: SlackSandbox,
    general: str,
    logged: pytest.LogCaptureFixture,
    action_id: str,
    value: str,
    what: str,
) -> None:
    """Before: `int(action["value"])` raised after ack(), and bolt, forgetting the ack,
    answered 404 after 3 seconds."""
    payload = block_action(
        sandbox, action_id, user="U0BOB", channel=general, ts="", type="button", value=value
    )
    reply, seconds = timed(slack.interaction, payload)
    slack.settle()
    told = [r.payload for r in sandbox.responses()]
    print(f"pressed {action_id} with value {value!r}: {reply.status} in {seconds:.3f} s; {told}")
    assert reply.status == 200 and seconds < ANSWER_WITHIN
    [answer] = told
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
    assert answer["text"].startswith(":x: Firebreak could not read this request from Slack: ")
    assert f"which is not {what}." in answer["text"]
    assert sandbox.views() == [] and sandbox.calls_to("chat.postMessage") == []
    assert tracebacks(logged) == []


def test_a_button_for_an_incident_that_does_not_exist_says_so(
    slack: Slack, sandbox: SlackSandbox, general: str, logged: pytest.LogCaptureFixture
) -> None:
    payload = block_action(
        sandbox, blocks.ACTION_NOTE, user="U0BOB", channel=general, ts="", type="button", value="7"
    )
    reply = slack.interaction(payload)
    slack.settle()
    told = [r.payload["text"] for r in sandbox.responses()]
    print(f"pressed Add note for INC-7, which does not exist: {reply.status}; told {told}")
    assert reply.status == 200
    assert told == ["There is no incident INC-7."]
    assert sandbox.views() == []
    assert tracebacks(logged) == []


@pytest.mark.parametrize(
    ("action_id", "value", "expected"),
    [
        (blocks.ACTION_SEVERITY, "sev9", "`sev9` is not a severity here. Choose one of: `sev1`"),
        (blocks.ACTION_SEVERITY, "SEV1", "`SEV1` is not a severity here."),
        (blocks.ACTION_STATUS, "bogus<!channel>", "`bogus&lt;!channel&gt;` is not a status here."),
    ],
)
def test_a_select_option_that_is_not_configured_changes_nothing(
    slack: Slack,
    sandbox: SlackSandbox,
    firebreak: Firebreak,
    world: World,
    logged: pytest.LogCaptureFixture,
    action_id: str,
    value: str,
    expected: str,
) -> None:
    before = incidents(firebreak)
    payload = block_action(
        sandbox,
        action_id,
        user="U0BOB",
        channel=world.channel,
        ts=world.summary_ts,
        type="static_select",
        selected_option={"value": value, "text": {"type": "plain_text", "text": value}},
    )
    reply = slack.interaction(payload)
    slack.settle()
    text = sandbox.responses()[-1].payload["text"]
    print(f"selected {value!r} in {action_id}: {reply.status}; told {text!r}")
    assert reply.status == 200
    assert expected in text
    assert incidents(firebreak) == before
    assert tracebacks(logged) == []


def declare_errors(slack: Slack, firebreak: Firebreak, general: str, **values: Any) -> Any:
    view = blocks.declare_modal(firebreak.settings.file.incidents, general)
    reply = slack.interaction(view_submission(view, declare_values(**values)))
    slack.settle()
    return reply


@pytest.mark.parametrize(
    ("values", "block", "message"),
    [
        ({"title": "Login\x00failures"}, "title", "contains a NUL byte"),
        ({"title": "x" * 201}, "title", "The title is 201 characters long; the limit is 200."),
        ({"title": " \n\t "}, "title", "Give the incident a title"),
        ({"title": ["a list"]}, "title", "`title.value.value` should be text, not a list."),
        ({"description": "a\x00b"}, "description", "contains a NUL byte"),
        ({"description": "d" * 3001}, "description", "3,001 characters long; the limit is 3,000"),
        ({"severity": "sev9"}, "severity", "`sev9` is not a severity here."),
        ({"severity": None}, "severity", "should be text, not null"),
    ],
)
def test_the_declare_modal_refuses_bad_input_under_its_field(
    slack: Slack,
    firebreak: Firebreak,
    general: str,
    logged: pytest.LogCaptureFixture,
    values: dict[str, Any],
    block: str,
    message: str,
) -> None:
    reply = declare_errors(slack, firebreak, general, **values)
    print(f"submitted the declare modal with {str(values)[:60]}: {reply.status} {reply.body[:150]}")
    assert reply.status == 200
    assert reply.json()["response_action"] == "errors"
    assert list(reply.json()["errors"]) == [block]
    assert message in reply.json()["errors"][block]
    assert incidents(firebreak) == []
    assert tracebacks(logged) == []


def test_the_declare_modal_keeps_a_title_on_one_line_and_a_long_description(
    slack: Slack, firebreak: Firebreak, general: str
) -> None:
    reply = declare_errors(
        slack, firebreak, general, title="  Login\n\nfailures\tin EU\x07 ", description="d" * 3000
    )
    print(f"submitted a title with newlines, a tab and a bell: {reply.status}")
    assert reply.status == 200 and reply.body == ""
    with firebreak.db.session_scope() as session:
        incident = service.get(session, 1)
        assert (incident.title, len(incident.description)) == ("Login failures in EU", 3000)
    assert half_written(firebreak) == []


@pytest.mark.parametrize("metadata", ["not a channel", "C0\x00", "c0lowercase", "C" * 41, 42, None])
def test_the_declare_modal_with_broken_private_metadata_is_answered_in_place(
    slack: Slack,
    firebreak: Firebreak,
    general: str,
    logged: pytest.LogCaptureFixture,
    metadata: Any,
) -> None:
    view = blocks.declare_modal(firebreak.settings.file.incidents, general)
    view["private_metadata"] = metadata
    reply = slack.interaction(view_submission(view, declare_values()))
    slack.settle()
    print(f"submitted the declare modal with private_metadata {metadata!r}: {reply.body[:160]}")
    assert reply.status == 200
    if metadata is None:  # Slack omits an empty private_metadata: answer by DM
        assert reply.body == ""
        assert len(incidents(firebreak)) == 1
        return
    text = reply.json()["view"]["blocks"][0]["text"]["text"]
    assert "`private_metadata`" in text
    assert incidents(firebreak) == []
    assert tracebacks(logged) == []


@pytest.mark.parametrize(
    ("note", "message"),
    [
        ("a\x00b", "The note contains a NUL byte"),
        ("n" * 3001, "The note is 3,001 characters long; the limit is 3,000."),
        ("  \n ", "Write something to add."),
        ({"rich": "text"}, "`note.value.value` should be text, not an object."),
    ],
)
def test_the_note_modal_refuses_bad_input_under_its_field(
    slack: Slack,
    firebreak: Firebreak,
    world: World,
    logged: pytest.LogCaptureFixture,
    note: Any,
    message: str,
) -> None:
    before = len(service_events(firebreak))
    payload = view_submission(note_view(), {"note": {"type": "plain_text_input", "value": note}})
    reply = slack.interaction(payload)
    slack.settle()
    print(f"submitted the note modal with {str(note)[:40]!r}: {reply.body[:160]}")
    assert reply.json()["response_action"] == "errors"
    assert list(reply.json()["errors"]) == ["note"]
    assert message in reply.json()["errors"]["note"]
    assert len(service_events(firebreak)) == before
    assert tracebacks(logged) == []


def service_events(app: Firebreak, incident_id: int = 1) -> list[TimelineEvent]:
    with app.db.session_scope() as session:
        return service.events(session, service.get(session, incident_id))


def test_the_note_modal_takes_3000_characters(
    slack: Slack, firebreak: Firebreak, world: World
) -> None:
    payload = view_submission(
        note_view(), {"note": {"type": "plain_text_input", "value": "n" * 3000}}
    )
    reply = slack.interaction(payload)
    slack.settle()
    last = service_events(firebreak)[-1]
    print(f"submitted a note of 3000 characters: {reply.status}; recorded {last.kind}")
    assert (last.kind, len(last.data["text"])) == ("note_added", 3000)


@pytest.mark.parametrize(
    ("metadata", "answer"),
    [
        ("abc", "`private_metadata` is `abc`, which is not an incident number."),
        ("", "`private_metadata` is ``, which is not an incident number."),
        ("0", "which is not an incident number"),
        ("99", None),  # well-formed, but no such incident: said by direct message
    ],
)
def test_the_note_modal_with_broken_private_metadata(
    slack: Slack,
    sandbox: SlackSandbox,
    firebreak: Firebreak,
    world: World,
    logged: pytest.LogCaptureFixture,
    metadata: str,
    answer: str | None,
) -> None:
    payload = view_submission(
        note_view(metadata), {"note": {"type": "plain_text_input", "value": "A note"}}
    )
    reply = slack.interaction(payload)
    slack.settle()
    print(f"submitted the note modal for incident {metadata!r}: {reply.body[:160]}")
    assert reply.status == 200
    if answer is None:
        assert reply.body == ""
        dm = [
            c.params["text"]
            for c in sandbox.calls_to("chat.postMessage")
            if c.params.get("channel") == "U0BOB"
        ]
        assert dm[-1] == "There is no incident INC-99."
    else:
        assert answer in reply.json()["view"]["blocks"][0]["text"]["text"]
    assert [e.kind for e in service_events(firebreak)].count("note_added") == 0
    assert tracebacks(logged) == []


def test_a_pinned_message_is_copied_without_nul_and_cut_to_the_note_limit(
    slack: Slack,
    sandbox: SlackSandbox,
    firebreak: Firebreak,
    world: World,
    logged: pytest.LogCaptureFixture,
) -> None:
    text = "Root cause:\x00 " + "the cron job holds a lock. " * 300
    cleaned = text.replace("\x00", "").strip()
    ts = sandbox.post_user_message(world.channel, "U0CAROL", text)
    reply = slack.reaction_added(user="U0BOB", channel=world.channel, ts=ts)
    slack.settle()
    last = service_events(firebreak)[-1]
    kept = last.data["text"]
    print(f"pinned a message of {len(text)} characters with a NUL: kept {len(kept)}: …{kept[-70:]}")
    assert reply.status == 200
    assert last.kind == "pinned_message"
    assert "\x00" not in kept and kept.startswith("Root cause: the cron job")
    assert 2950 < len(kept) <= 3000
    assert kept.endswith(f" … (cut: the message is {len(cleaned):,} characters; read it in Slack)")
    assert kept[:2900] == cleaned[:2900]
    assert tracebacks(logged) == []


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ({"type": "message", "channel": "C0ANY", "ts": "yesterday"}, "not a message timestamp"),
        ({"type": "message", "channel": "c0-lower", "ts": "1.2"}, "which is not a Slack id"),
        ({"type": "message", "ts": "1.2"}, "`item.channel` is missing"),
    ],
)
def test_a_malformed_reaction_is_acknowledged_and_ignored(
    slack: Slack,
    firebreak: Firebreak,
    world: World,
    logged: pytest.LogCaptureFixture,
    item: Any,
    problem: str,
) -> None:
    before = len(service_events(firebreak))
    reply = slack.event(
        {"type": "reaction_added", "user": "U0BOB", "reaction": "pushpin", "item": item}
    )
    slack.settle()
    warnings = [r.getMessage() for r in logged.records if "malformed" in r.getMessage()]
    print(f"sent a reaction on {item}: {reply.status}; logged {warnings}")
    assert reply.status == 200
    assert len(service_events(firebreak)) == before
    assert any(problem in w for w in warnings)
    assert tracebacks(logged) == []


def test_a_slash_command_with_the_word_payload_reaches_its_listener(
    slack: Slack, firebreak: Firebreak, world: World
) -> None:
    """Bolt takes any form body containing "payload" for an interaction; it answered 404."""
    reply = slack.run("note the payload queue is stuck", channel=world.channel)
    last = service_events(firebreak)[-1]
    print(f"sent `/incident note the payload queue is stuck`: {reply.status}; recorded {last.data}")
    assert reply.status == 200
    assert (last.kind, last.data) == ("note_added", {"text": "the payload queue is stuck"})


def test_a_listener_that_raises_is_answered_at_once_before_or_after_its_ack(
    slack: Slack, firebreak: Firebreak, general: str, logged: pytest.LogCaptureFixture
) -> None:
    """Bolt answers a listener that raises before ack() with a 500, and one that raises after
    it with a 404 three seconds later. `payloads.answered` makes either a private answer."""

    @payloads.answered
    def before_ack(ack: Ack) -> None:
        raise RuntimeError("a bug before ack")

    @payloads.answered
    def after_ack(ack: Ack) -> None:
        ack()
        raise RuntimeError("a bug after ack")

    firebreak.bolt.command("/before")(before_ack)
    firebreak.bolt.command("/after")(after_ack)
    first, first_seconds = timed(
        slack.command, "x", user="U0ALICE", channel=general, command="/before"
    )
    second, second_seconds = timed(
        slack.command, "x", user="U0ALICE", channel=general, command="/after"
    )
    slack.settle()
    print(
        f"a listener raising before ack: {first.status} in {first_seconds:.3f} s {first.body}; "
        f"after ack: {second.status} in {second_seconds:.3f} s"
    )
    assert (first.status, second.status) == (200, 200)
    assert max(first_seconds, second_seconds) < 1.0
    assert first.json() == {"text": f":x: {payloads.WENT_WRONG}", "response_type": "ephemeral"}
    # A bug is logged with its traceback: that is what a traceback is for.
    assert [t.split(": ")[1] for t in tracebacks(logged)] == [
        "before_ack failed",
        "after_ack failed",
    ]


def test_every_listener_is_answered(firebreak: Firebreak) -> None:
    """By construction: a listener registered without `payloads.answered` fails this."""
    listeners = firebreak.bolt._listeners
    names = [listener.ack_function.__name__ for listener in listeners]
    print(f"{len(listeners)} listeners: {names}")
    assert len(listeners) >= 10
    unanswered = [
        n
        for n, li in zip(names, listeners, strict=True)
        if not getattr(li.ack_function, "answered", False)
    ]
    assert unanswered == []


# -- hypothesis: arbitrary input everywhere ---------------------------------------------

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)
SPECIAL = st.sampled_from(
    [
        "",
        "0",
        "1",
        "2",
        "-1",
        "99999999999",
        "U0ALICE",
        "U0BOB",
        "sev1",
        "sev9",
        "resolved",
        "monitoring",
        "\x00",
        "a\x00b",
        "<!channel>",
        "x" * 3001,
        "P-1",
        "1.2",
        "C0000000001",
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
    | SPECIAL
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3),
    max_leaves=6,
)
HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80
)
COMMAND_PREFIXES = {
    "/incident": [
        "",
        "declare",
        "declare sev1",
        "declare sev9",
        "sev",
        "status",
        "role commander",
        "role",
        "note",
        "resolve",
        "timeline",
        "list",
        "help",
        "payload",
        "action",
        "action fix it @bob due 2026-12-01",
        "actions",
        "postmortem",
        "postmortem done",
        "postmortem template:",
        "report",
        "alerts",
    ],
    "/runbook": [
        "",
        "list",
        "show",
        "show disk-usage",
        "run",
        "run disk-usage",
        "run disk-usage path=",
        "run disk-usage hosts=",
        "cancel",
        "cancel R-1",
        "help",
    ],
    "/oncall": ["", "override", "override cancel", "override cancel 1", "primary", "help"],
    "/page": ["", "@bob", "@alice", "ack", "escalate", "resolve", "schedule:primary", "user:bob"],
}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, child in items:
        yield (*prefix, key)
        yield from _paths(child, (*prefix, key))


def fresh(template: dict[str, Any]) -> dict[str, Any]:
    """A copy of `template` with new identities (trigger, event, action time, view), so
    that Firebreak does not take it for a retry of an earlier request and ignore it."""
    payload = copy.deepcopy(template)
    unique = time.time_ns()  # 19 digits: the same length each time, as replaying needs
    if "trigger_id" in payload:
        payload["trigger_id"] = f"{unique // 10**9}.{unique % 10**9:09d}.0123abcd"
    if "event_id" in payload:
        payload["event_id"] = f"Ev{unique}"
    for action in payload.get("actions", []):
        action["action_ts"] = f"{unique // 10**9}.{unique % 10**6:06d}"
    if "view" in payload:
        payload["view"]["id"] = f"V{unique}"
    return payload


@st.composite
def mutations(draw: st.DrawFn, template: dict[str, Any]) -> tuple[str, str]:
    """(what was done, the payload's JSON text): 1-3 values replaced or removed, or the
    JSON cut short."""
    payload = fresh(template)
    done = []
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(payload))
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = payload
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()):
            del parent[path[-1]]
            done.append(f"removed {'.'.join(map(str, path))}")
        else:
            parent[path[-1]] = draw(JSON_VALUES)
            done.append(f"set {'.'.join(map(str, path))}={str(parent[path[-1]])[:30]!r}")
    text = json.dumps(payload)
    if draw(st.integers(0, 5)) == 0:
        cut = draw(st.integers(0, len(text) - 1))
        return f"cut at {cut}/{len(text)}", text[:cut]
    return "; ".join(done), text


class Tally:
    """What a hypothesis test sent and what came back, printed at the end."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.slowest = 0.0

    def add(self, what: str, reply: Reply, seconds: float) -> None:
        self.sent[what] += 1
        self.statuses[reply.status] += 1
        self.slowest = max(self.slowest, seconds)

    def report(self, name: str) -> str:
        return (
            f"{name}: sent {sum(self.sent.values())} ({dict(self.sent)}); "
            f"statuses {dict(sorted(self.statuses.items()))}; slowest answer {self.slowest:.3f} s"
        )


def check_answer(
    reply: Reply, seconds: float, sent: str, caplog: pytest.LogCaptureFixture, allowed: set[int]
) -> None:
    found = tracebacks(caplog)
    caplog.clear()
    assert found == [], f"{sent}: logged {found}"
    assert reply.status in allowed, f"{sent}: {reply.status} {reply.body[:200]}"
    assert seconds < ANSWER_WITHIN, f"{sent}: answered after {seconds:.2f} s"


def test_arbitrary_text_in_every_command_is_answered(
    slack: Slack, firebreak: Firebreak, world: World, logged: pytest.LogCaptureFixture
) -> None:
    tally = Tally()

    @EXAMPLES
    @given(
        command=st.sampled_from(sorted(COMMAND_PREFIXES)),
        data=st.data(),
        text=TEXT | SPECIAL | st.text(max_size=400),
        in_incident=st.booleans(),
    )
    def run(command: str, data: st.DataObject, text: str, in_incident: bool) -> None:
        prefix = data.draw(st.sampled_from(COMMAND_PREFIXES[command]))
        full = f"{prefix} {text}" if prefix else text
        channel = world.channel if in_incident else world.general
        reply, seconds = timed(slack.command, full, user="U0BOB", channel=channel, command=command)
        slack.settle()
        sent = f"{command} {full[:80]!r} in {'INC-1' if in_incident else 'general'}"
        check_answer(reply, seconds, sent, logged, {200})
        tally.add(command, reply, seconds)

    run()
    with firebreak.db.session_scope() as session:
        declared = len(list(session.scalars(select(Incident))))
        paged = len(list(session.scalars(select(Page))))
    print(tally.report("commands") + f"; {declared} incidents and {paged} pages exist")
    assert half_written(firebreak) == []


# Characters that a database, a terminal or Slack treats specially: NUL (PostgreSQL
# refuses it in text), other controls, a BOM and a combining mark, bidi overrides, escaped
# markup. (A lone surrogate cannot travel in UTF-8, so Slack never sends one.)
HOSTILE = [
    "\x00",
    "a\x00b",
    "\x1b[31m",
    "\x7f\x85",
    "\ufeff\u0301",
    "\u202e\u2066",
    "&lt;@U0BOB&gt;",
]


def test_hostile_characters_after_every_command_prefix_are_answered(
    slack: Slack, firebreak: Firebreak, world: World, logged: pytest.LogCaptureFixture
) -> None:
    """Every prefix of every command, followed by each hostile text, in a plain channel
    and in an incident's: answered 200, nothing logged as a failure, nothing half-written.
    Deterministic, so a database that refuses a character fails here on every run rather
    than now and then in the hypothesis test above."""
    sent = 0
    problems: list[str] = []
    for command, prefixes in sorted(COMMAND_PREFIXES.items()):
        for prefix in prefixes:
            for hostile in HOSTILE:
                for channel in (world.general, world.channel):
                    full = f"{prefix} {hostile}" if prefix else hostile
                    reply, seconds = timed(
                        slack.command, full, user="U0BOB", channel=channel, command=command
                    )
                    slack.settle()
                    try:
                        check_answer(reply, seconds, f"{command} {full!r}", logged, {200})
                    except AssertionError as failed:
                        problems.append(str(failed).splitlines()[0])
                    sent += 1
    assert problems == []
    assert sent == 2 * len(HOSTILE) * sum(map(len, COMMAND_PREFIXES.values()))
    assert half_written(firebreak) == []


def test_arbitrary_and_truncated_json_in_every_interaction_is_answered(
    slack: Slack,
    sandbox: SlackSandbox,
    firebreak: Firebreak,
    world: World,
    logged: pytest.LogCaptureFixture,
) -> None:
    tally = Tally()
    kinds = templates(sandbox, firebreak, world)

    @settings(EXAMPLES, max_examples=400)
    @given(kind=st.sampled_from(sorted(kinds)), data=st.data())
    def run(kind: str, data: st.DataObject) -> None:
        what, text = data.draw(mutations(kinds[kind]))
        reply, seconds = timed(slack.send, interaction_body(text), FORM)
        slack.settle()
        check_answer(reply, seconds, f"{kind} ({what})", logged, {200, 400, 404})
        tally.add(f"{kind} {reply.status}", reply, seconds)

    run()
    print(tally.report("interactions") + f"; {len(incidents(firebreak))} incidents exist")
    assert half_written(firebreak) == []


def test_arbitrary_and_truncated_json_in_every_event_is_answered(
    slack: Slack, firebreak: Firebreak, world: World, logged: pytest.LogCaptureFixture
) -> None:
    tally = Tally()
    kinds = event_templates(world)

    @EXAMPLES
    @given(kind=st.sampled_from(sorted(kinds)), data=st.data(), retry=st.none() | HEADER_TEXT)
    def run(kind: str, data: st.DataObject, retry: str | None) -> None:
        what, text = data.draw(mutations(kinds[kind]))
        headers = {} if retry is None else {"X-Slack-Retry-Num": retry}
        reply, seconds = timed(slack.send, text.encode(), JSON_TYPE, headers=headers)
        slack.settle()
        check_answer(reply, seconds, f"{kind} ({what})", logged, {200, 400, 404})
        tally.add(f"{kind} {reply.status}", reply, seconds)

    run()
    pinned = [e for e in service_events(firebreak) if e.kind == "pinned_message"]
    print(tally.report("events") + f"; {len(pinned)} messages pinned")
    assert len(pinned) <= 1  # one message in the channel, pinned at most once
    assert half_written(firebreak) == []


def test_arbitrary_header_values_are_401_unless_signed(
    slack: Slack, firebreak: Firebreak, general: str, logged: pytest.LogCaptureFixture
) -> None:
    tally = Tally()
    body = slack.command_body("list", user="U0ALICE", channel=general)

    @EXAMPLES
    @given(
        timestamp=st.sampled_from(["now", "stale", "absent"]) | HEADER_TEXT,
        sig=st.sampled_from(["right", "absent"]) | HEADER_TEXT,
        retry_num=st.none() | HEADER_TEXT,
        retry_reason=st.none() | HEADER_TEXT,
        content_type=st.sampled_from([FORM, JSON_TYPE, "text/plain"]) | HEADER_TEXT,
    )
    def run(
        timestamp: str, sig: str, retry_num: str | None, retry_reason: str | None, content_type: str
    ) -> None:
        stamp: str | None = {
            "now": str(int(time.time())),
            "stale": str(int(time.time()) - 600),
            "absent": None,
        }.get(timestamp, timestamp)
        signed = {"right": signature(stamp or "", body), "absent": None}.get(sig, sig)
        headers = raw_headers(stamp, signed, content_type)
        for name, value in (
            ("X-Slack-Retry-Num", retry_num),
            ("X-Slack-Retry-Reason", retry_reason),
        ):
            if value is not None:
                headers[name] = value
        reply, seconds = timed(slack.transport, body, headers)
        slack.settle()
        valid = timestamp == "now" and sig == "right"
        expected = ({400} if content_type.split(";")[0] == JSON_TYPE else {200}) if valid else {401}
        check_answer(reply, seconds, f"headers {headers}", logged, expected)
        tally.add("valid" if valid else "invalid", reply, seconds)

    run()
    print(tally.report("headers"))
