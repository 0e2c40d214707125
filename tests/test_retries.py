"""One request, one effect: Slack's retries and copies delivered to two replicas act once.

Slack retries a delivery with the same body and `X-Slack-Retry-Num`/`X-Slack-Retry-Reason`
headers; a load balancer may hand one request to two replicas. Each test below builds one
request as Slack would, delivers it three times (the 2nd and 3rd with retry headers) or to
two `firebreak serve` processes at once, and counts the effects: rows, timeline facts and
what reached the sandbox Slack. Each prints what it sent and what it counted (`-rP`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import yaml
from sqlalchemy import Integer, String, column, func, select, table
from sqlalchemy.exc import IntegrityError
from werkzeug.test import Client

from alembic import command
from bot.app import Firebreak
from bot.config import FileConfig
from bot.db import Base, Database, UTCDateTime, utcnow
from bot.idempotency import LEGACY_DUPLICATE, SlackRequest
from bot.incidents import service
from bot.incidents.config import IncidentsSection
from bot.incidents.models import Incident
from bot.migrations import alembic_config, upgrade
from bot.oncall.models import OncallOverride, Page
from bot.sandbox import SlackSandbox
from bot.sandbox.outbound import OutboundSlack, Reply, http_transport
from bot.slack import blocks
from bot.slack.once import KEEP, request_key
from bot.timeline import TimelineEvent
from tests.conftest import PEOPLE, PROXY_VARIABLES, SECRET, TOKEN, Slack
from tests.test_scheduler import firebreak_serve, wait_for

RETRY_HEADERS: list[dict[str, str]] = [
    {},
    {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"},
    {"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_timeout"},
]
FORM = "application/x-www-form-urlencoded"


def config(announce_channel: str) -> dict[str, Any]:
    weekly = {"name": "weekly", "users": ["alice", "bob", "carol"], "rotation": "weekly"}
    weekly |= {"handoff": "mon 09:00", "start": "2026-01-05"}
    return {
        "slack": {"announce_channel": announce_channel},
        "people": {name: person.model_dump() for name, person in PEOPLE.items()},
        "schedules": {"primary": {"timezone": "Europe/Berlin", "layers": [weekly]}},
        "escalation_policies": {
            "chain": {
                "steps": [
                    {"targets": ["user:alice"], "wait": "30m"},
                    {"targets": ["user:bob"], "wait": "30m"},
                ],
                "repeat": 0,
            }
        },
    }


@pytest.fixture
def file_config(announce_channel: str) -> FileConfig:
    return FileConfig.model_validate(config(announce_channel))


# -- building a request once, delivering it many times -------------------------------------


@dataclass(frozen=True)
class Request:
    """One request as Slack sends it: the body is fixed, the signature is made per delivery."""

    body: bytes
    content_type: str

    @property
    def payload(self) -> dict[str, Any]:
        form = {key: values[0] for key, values in parse_qs(self.body.decode()).items()}
        if self.content_type == FORM and "payload" in form:
            return dict(json.loads(form["payload"]))
        if self.content_type == FORM:
            return form
        return dict(json.loads(self.body))

    @property
    def response_id(self) -> str:
        return str(self.payload.get("response_url", "")).rsplit("/", 1)[-1]


def build(sandbox: SlackSandbox, make: Callable[[OutboundSlack], object]) -> Request:
    """What `make` would send, captured instead of delivered."""
    captured: list[Request] = []

    def capture(body: bytes, headers: dict[str, str]) -> Reply:
        captured.append(Request(body, headers["Content-Type"]))
        return Reply(200, "")

    make(OutboundSlack(capture, SECRET, sandbox))
    [request] = captured
    return request


def thrice(slack: Slack, request: Request) -> list[int]:
    """Deliver `request` as Slack does when it retries: three times, the same body."""
    statuses = [
        slack.send(request.body, request.content_type, headers=headers).status
        for headers in RETRY_HEADERS
    ]
    slack.settle()
    return statuses


def count(app: Firebreak, model: type[Base], *where: Any) -> int:
    with app.db.session_scope() as session:
        query = select(func.count()).select_from(model).where(*where)
        return int(session.scalar(query) or 0)


def facts(app: Firebreak, kind: str) -> int:
    return count(app, TimelineEvent, TimelineEvent.kind == kind)


def replies(sandbox: SlackSandbox, request: Request) -> int:
    return sum(1 for post in sandbox.responses() if post.response_id == request.response_id)


def ignored(caplog: pytest.LogCaptureFixture) -> int:
    return sum("duplicate delivery" in record.getMessage() for record in caplog.records)


def report(sent: str, counted: dict[str, Any]) -> None:
    print(f"sent: {sent}; counted: " + ", ".join(f"{k}={v}" for k, v in counted.items()))


@pytest.fixture(autouse=True)
def _duplicate_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.slack.once")


def declared(slack: Slack, sandbox: SlackSandbox, general: str) -> str:
    slack.run("declare sev3 Queue backlog growing", channel=general)
    channel = sandbox.channel_by_name("inc-1-queue-backlog-growing")
    assert channel is not None
    return channel.id


def posts_with(sandbox: SlackSandbox, channel: str, text: str) -> int:
    return sum(text in message.text for message in sandbox.messages(channel))


# -- slash commands -------------------------------------------------------------------------


def test_a_declare_delivered_three_times_declares_once(
    slack: Slack,
    sandbox: SlackSandbox,
    firebreak: Firebreak,
    general: str,
    announce_channel: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = build(
        sandbox,
        lambda out: out.command("declare sev2 Checkout down", user="U0ALICE", channel=general),
    )
    statuses = thrice(slack, request)
    counted = {
        "statuses": statuses,
        "incidents": count(firebreak, Incident),
        "channels created": len(sandbox.calls_to("conversations.create")),
        "summaries pinned": len(sandbox.calls_to("pins.add")),
        "announcements": posts_with(sandbox, announce_channel, "INC-1"),
        "replies": replies(sandbox, request),
        "duplicates ignored": ignored(caplog),
    }
    report("/incident declare sev2 Checkout down x3 (retries 1, 2)", counted)
    assert counted == {
        "statuses": [200, 200, 200],
        "incidents": 1,
        "channels created": 1,
        "summaries pinned": 1,
        "announcements": 1,
        "replies": 1,
        "duplicates ignored": 2,
    }


def test_a_note_delivered_three_times_is_noted_once(
    slack: Slack,
    sandbox: SlackSandbox,
    firebreak: Firebreak,
    general: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = declared(slack, sandbox, general)
    request = build(
        sandbox, lambda out: out.command("note Consumers at 12", user="U0BOB", channel=channel)
    )
    statuses = thrice(slack, request)
    counted = {
        "statuses": statuses,
        "notes": facts(firebreak, "note_added"),
        "channel posts": posts_with(sandbox, channel, "Consumers at 12"),
        "duplicates ignored": ignored(caplog),
    }
    report("/incident note Consumers at 12 x3", counted)
    assert counted == {
        "statuses": [200, 200, 200],
        "notes": 1,
        "channel posts": 1,
        "duplicates ignored": 2,
    }


def alice_dm(sandbox: SlackSandbox) -> tuple[str, list[str]]:
    """The id of the bot's DM with alice and the texts in it ("", [] if none)."""
    for channel in sandbox.snapshot()["channels"]:
        if channel.get("is_im") and "U0ALICE" in channel["members"]:
            return str(channel["id"]), [m["text"] for m in channel["messages"]]
    return "", []


def test_a_page_delivered_three_times_pages_once(
    slack: Slack,
    sandbox: SlackSandbox,
    firebreak: Firebreak,
    general: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = build(
        sandbox,
        lambda out: out.command(
            "policy:chain Disk full on db-1", user="U0CAROL", channel=general, command="/page"
        ),
    )
    statuses = thrice(slack, request)
    counted = {
        "statuses": statuses,
        "pages": count(firebreak, Page),
        "page_triggered": facts(firebreak, "page_triggered"),
        "DMs to alice": len(alice_dm(sandbox)[1]),
        "replies": replies(sandbox, request),
        "duplicates ignored": ignored(caplog),
    }
    report("/page policy:chain Disk full on db-1 x3", counted)
    assert counted == {
        "statuses": [200, 200, 200],
        "pages": 1,
        "page_triggered": 1,
        "DMs to alice": 1,
        "replies": 1,
        "duplicates ignored": 2,
    }


def test_an_override_delivered_three_times_overrides_once(
    slack: Slack,
    sandbox: SlackSandbox,
    firebreak: Firebreak,
    general: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    request = build(
        sandbox,
        lambda out: out.command(
            "override primary <@U0BOB> 2h", user="U0ALICE", channel=general, command="/oncall"
        ),
    )
    statuses = thrice(slack, request)
    counted = {
        "statuses": statuses,
        "overrides": count(firebreak, OncallOverride),
        "replies": replies(sandbox, request),
        "duplicates ignored": ignored(caplog),
    }
    report("/oncall override primary <@U0BOB> 2h x3", counted)
    assert counted == {
        "statuses": [200, 200, 200],
        "overrides": 1,
        "replies": 1,
        "duplicates ignored": 2,
    }


# -- interactions ---------------------------------------------------------------------------


def test_a_severity_select_delivered_three_times_changes_severity_once(
    slack: Slack,
    sandbox: SlackSandbox,
    firebreak: Firebreak,
    general: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = declared(slack, sandbox, general)
    summary = sandbox.pins(channel)[0]
    posts, topics = len(sandbox.messages(channel)), len(sandbox.calls_to("conversations.setTopic"))
    request = build(
        sandbox,
        lambda out: out.block_action(
            blocks.ACTION_SEVERITY,
            user="U0BOB",
            channel=channel,
            message_ts=summary,
            selected="sev1",
        ),
    )
    statuses = thrice(slack, request)
    counted = {
        "statuses": statuses,
        "severity_changed": facts(firebreak, "severity_changed"),
        "channel posts": len(sandbox.messages(channel)) - posts,
        "topic changes": len(sandbox.calls_to("conversations.setTopic")) - topics,
        "replies": replies(sandbox, request),
        "duplicates ignored": ignored(caplog),
    }
    report("block action: severity select sev1 x3", counted)
    assert counted == {
        "statuses": [200, 200, 200],
        "severity_changed": 1,
        "channel posts": 1,
        "topic changes": 1,
        "replies": 0,  # a change is told in the channel; "already sev1" would be a reply
        "duplicates ignored": 2,
    }


def test_a_page_ack_button_delivered_three_times_acknowledges_once(
    slack: Slack,
    sandbox: SlackSandbox,
    firebreak: Firebreak,
    general: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    slack.command(
        "policy:chain Disk full on db-1", user="U0CAROL", channel=general, command="/page"
    )
    slack.settle()
    dm, _ = alice_dm(sandbox)
    request = build(
        sandbox,
        lambda out: out.block_action(
            blocks.ACTION_PAGE_ACK, user="U0ALICE", channel=dm, value="1", block_id="page"
        ),
    )
    statuses = thrice(slack, request)
    with firebreak.db.session_scope() as session:
        state = session.scalars(select(Page.state)).one()
    counted = {
        "statuses": statuses,
        "page_acknowledged": facts(firebreak, "page_acknowledged"),
        "page state": state,
        "replies": replies(sandbox, request),
        "duplicates ignored": ignored(caplog),
    }
    report("block action: page ack button x3", counted)
    assert counted == {
        "statuses": [200, 200, 200],
        "page_acknowledged": 1,
        "page state": "acknowledged",
        "replies": 1,  # a repeat would answer "already acknowledged"
        "duplicates ignored": 2,
    }


DECLARE_VALUES = {
    "title": {"type": "plain_text_input", "value": "Login failures in EU"},
    "severity": {"type": "static_select", "selected_option": {"value": "sev1"}},
    "description": {"type": "plain_text_input", "value": "SSO returns 502"},
}


def test_a_declare_modal_submission_delivered_three_times_declares_once(
    slack: Slack,
    sandbox: SlackSandbox,
    firebreak: Firebreak,
    general: str,
    announce_channel: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    slack.run("declare", channel=general)
    [opened] = sandbox.views()
    request = build(
        sandbox,
        lambda out: out.view_submission(
            opened.view, DECLARE_VALUES, user="U0BOB", view_id=opened.id
        ),
    )
    statuses = thrice(slack, request)
    counted = {
        "statuses": statuses,
        "incidents": count(firebreak, Incident),
        "channels created": len(sandbox.calls_to("conversations.create")),
        "announcements": posts_with(sandbox, announce_channel, "INC-1"),
        "ephemeral replies": len(sandbox.ephemerals(general, "U0BOB")),
        "duplicates ignored": ignored(caplog),
    }
    report("view submission: declare modal x3", counted)
    assert counted == {
        "statuses": [200, 200, 200],
        "incidents": 1,
        "channels created": 1,
        "announcements": 1,
        "ephemeral replies": 1,  # without the record: "already declared" twice more
        "duplicates ignored": 2,
    }


def test_a_note_modal_submission_delivered_three_times_is_noted_once(
    slack: Slack,
    sandbox: SlackSandbox,
    firebreak: Firebreak,
    general: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = declared(slack, sandbox, general)
    slack.block_action(blocks.ACTION_NOTE, user="U0BOB", channel=channel, value="1")
    slack.settle()
    note_view = sandbox.views()[-1]
    assert note_view.view["callback_id"] == blocks.VIEW_NOTE
    values = {"note": {"type": "plain_text_input", "value": "Consumers scaled to 12"}}
    request = build(sandbox, lambda out: out.view_submission(note_view.view, values, user="U0BOB"))
    statuses = thrice(slack, request)
    counted = {
        "statuses": statuses,
        "notes": facts(firebreak, "note_added"),
        "channel posts": posts_with(sandbox, channel, "Consumers scaled to 12"),
        "duplicates ignored": ignored(caplog),
    }
    report("view submission: note modal x3", counted)
    assert counted == {
        "statuses": [200, 200, 200],
        "notes": 1,
        "channel posts": 1,
        "duplicates ignored": 2,
    }


# -- events ---------------------------------------------------------------------------------


def test_a_reaction_event_delivered_three_times_is_handled_once(
    slack: Slack,
    sandbox: SlackSandbox,
    firebreak: Firebreak,
    general: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = declared(slack, sandbox, general)
    ts = sandbox.post_user_message(channel, "U0CAROL", "Found it: the cron job holds a lock")
    request = build(sandbox, lambda out: out.reaction_added(user="U0BOB", channel=channel, ts=ts))
    statuses = thrice(slack, request)
    counted = {
        "statuses": statuses,
        "pinned_message": facts(firebreak, "pinned_message"),
        "history reads": len(sandbox.calls_to("conversations.history")),
        "duplicates ignored": ignored(caplog),
    }
    report(f"reaction_added :pushpin: {request.payload['event_id']} x3", counted)
    assert counted == {
        "statuses": [200, 200, 200],
        "pinned_message": 1,
        "history reads": 1,  # the retries never reached the listener
        "duplicates ignored": 2,
    }


def test_a_retry_arriving_while_the_first_delivery_still_works_is_ignored(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    """Slack retries an event when our first answer was slow: the slow one still acts, once."""
    channel = declared(slack, sandbox, general)
    ts = sandbox.post_user_message(channel, "U0CAROL", "Rolled back to v41")
    sandbox.inject_fault("conversations.history", delay=1.5)
    request = build(sandbox, lambda out: out.reaction_added(user="U0BOB", channel=channel, ts=ts))
    first = slack.send(request.body, request.content_type)
    retry = slack.send(request.body, request.content_type, headers=RETRY_HEADERS[1])
    slack.settle()
    counted = {
        "statuses": [first.status, retry.status],
        "pinned_message": facts(firebreak, "pinned_message"),
        "history reads": len(sandbox.calls_to("conversations.history")),
    }
    report("reaction_added, retried while the first was reading history (1.5 s)", counted)
    assert counted == {"statuses": [200, 200], "pinned_message": 1, "history reads": 1}


# -- many at once ---------------------------------------------------------------------------


def test_fifty_identical_declares_by_one_user_at_once_give_one_incident(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str, announce_channel: str
) -> None:
    """Fifty separate commands (fifty trigger ids), the same user and title, on fifty threads."""
    requests = [
        build(
            sandbox,
            lambda out: out.command("declare sev1 Payments down", user="U0ALICE", channel=general),
        )
        for _ in range(50)
    ]
    start = threading.Barrier(len(requests))
    statuses: list[int] = []

    def deliver(request: Request) -> None:
        client = Client(firebreak.web)
        headers = slack.signed_headers(request.body, request.content_type)
        start.wait(timeout=30)
        response = client.post("/slack/events", data=request.body, headers=headers)
        statuses.append(response.status_code)

    threads = [threading.Thread(target=deliver, args=(r,)) for r in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    slack.settle()
    with firebreak.db.session_scope() as session:
        channels = session.scalars(select(Incident.channel_id)).all()
    said = [str(post.payload.get("text", "")) for post in sandbox.responses()]
    counted = {
        "statuses": sorted(set(statuses)),
        "incidents": count(firebreak, Incident),
        "channels created": len(sandbox.calls_to("conversations.create")),
        "summaries pinned": len(sandbox.pins(channels[0] or "")),
        "announcements": posts_with(sandbox, announce_channel, "INC-1"),
        "declared replies": sum("Declared INC-1" in text for text in said),
        "already declared replies": sum("INC-1 was already declared" in text for text in said),
    }
    report("50 x /incident declare sev1 Payments down by U0ALICE, at once", counted)
    assert counted == {
        "statuses": [200],
        "incidents": 1,
        "channels created": 1,
        "summaries pinned": 1,
        "announcements": 1,
        "declared replies": 1,
        "already declared replies": 49,
    }


# -- the duplicate rule and the record itself -----------------------------------------------


def test_one_open_incident_per_person_and_title_but_again_after_it_is_resolved(
    firebreak: Firebreak,
) -> None:
    policy, now = IncidentsSection(), utcnow()

    def declare(title: str, key: str, by: str = "U0ALICE") -> tuple[int, bool]:
        with firebreak.db.session_scope() as session:
            made = service.declare(
                session, title=title, declared_by=by, declare_key=key, policy=policy, now=now
            )
            return made.incident.id, made.created

    first = declare("Checkout down", "k1")
    later = declare("CHECKOUT  down", "k2")  # an hour later, say: still the open one
    other_person = declare("Checkout down", "k3", by="U0BOB")
    with firebreak.db.session_scope() as session:
        service.resolve(session, service.get(session, 1), "", actor="U0ALICE", now=now)
    after_resolving = declare("Checkout down", "k4")
    # The first request retried: its own (resolved) incident, not the newer open twin.
    first_retried = declare("Checkout down", "k1")
    counted = {
        "first": first,
        "same title again": later,
        "another person": other_person,
        "after resolving": after_resolving,
        "first request retried": first_retried,
    }
    report("service.declare: same title, case and spacing; other person; after resolve", counted)
    assert counted == {
        "first": (1, True),
        "same title again": (1, False),
        "another person": (2, True),
        "after resolving": (3, True),
        "first request retried": (1, False),
    }


def test_the_database_refuses_a_second_open_incident_of_one_person_and_title(
    firebreak: Firebreak,
) -> None:
    """The index itself, bypassing `service.declare`'s look-ups (a migration that rebuilt
    `incidents` on SQLite and lost the expression index would fail here)."""

    def insert(key: str, title: str, by: str = "U0ALICE") -> None:
        with firebreak.db.session_scope() as session:
            session.add(
                Incident(
                    title=title,
                    severity="sev2",
                    status="investigating",
                    declared_by=by,
                    declared_at=utcnow(),
                    declare_key=key,
                )
            )

    insert("k1", "Checkout down")
    insert("k2", "Checkout down", by="U0BOB")
    insert(f"{LEGACY_DUPLICATE}9", "Checkout down")  # exempt: from before 0004
    with pytest.raises(IntegrityError):
        insert("k3", "CHECKOUT DOWN")
    assert count(firebreak, Incident) == 3


def test_old_keys_are_pruned_after_a_day(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    slack.run("help")
    assert count(firebreak, SlackRequest) == 1
    later = utcnow() + KEEP + timedelta(minutes=1)
    firebreak.clock.use(lambda: later)
    slack.run("help")
    with firebreak.db.session_scope() as session:
        kept = session.scalars(select(SlackRequest.received_at)).all()
    report("/incident help, then again a day later", {"keys kept": len(kept)})
    assert kept == [later]


def test_migration_0004_keeps_older_open_duplicates_but_exempts_all_but_the_newest(
    empty_database_url: str,
) -> None:
    upgrade(empty_database_url, "0003")
    # The table as 0003 left it (the model may have grown since).
    incidents = table(
        "incidents",
        column("id", Integer),
        column("title", String),
        column("description", String),
        column("severity", String),
        column("status", String),
        column("declared_by", String),
        column("declared_at", UTCDateTime()),
        column("resolved_at", UTCDateTime()),
        column("declare_key", String),
    )
    rows = [
        ("a", "Checkout down", False),
        ("b", "checkout DOWN", False),
        ("c", "Checkout down", False),
        ("d", "Checkout down", True),
        ("e", "Search slow", False),
    ]
    db = Database(empty_database_url)
    try:
        with db.engine.begin() as connection:
            for key, title, resolved in rows:
                connection.execute(
                    incidents.insert().values(
                        title=title,
                        description="",
                        severity="sev2",
                        status="investigating",
                        declared_by="U0ALICE",
                        declared_at=utcnow(),
                        resolved_at=utcnow() if resolved else None,
                        declare_key=key,
                    )
                )
        command.upgrade(alembic_config(empty_database_url), "0004")
        with db.engine.connect() as connection:
            keys = connection.scalars(
                select(incidents.c.declare_key).order_by(incidents.c.id)
            ).all()
    finally:
        db.dispose()
    assert keys == [f"{LEGACY_DUPLICATE}1", f"{LEGACY_DUPLICATE}2", "c", "d", "e"]


# -- two replicas on PostgreSQL ---------------------------------------------------------------


def together(urls: list[str], requests: list[Request], signer: OutboundSlack) -> list[int]:
    """POST requests[i] to urls[i], all released at the same instant."""
    start = threading.Barrier(len(urls))
    statuses = [0] * len(urls)
    posts = [http_transport(url + "/slack/events") for url in urls]

    def deliver(index: int) -> None:
        request = requests[index]
        headers = signer.signed_headers(request.body, request.content_type)
        start.wait(timeout=10)
        statuses[index] = posts[index](request.body, headers).status

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return statuses


@dataclass(frozen=True)
class Replicas:
    urls: list[str]
    logs: list[Path]

    def ignored(self) -> int:
        """How many duplicate deliveries the replicas logged as ignored."""
        return sum(log.read_text().count("duplicate delivery") for log in self.logs)


@pytest.fixture
def replicas(
    sandbox: SlackSandbox, announce_channel: str, database_url: str, tmp_path: Path
) -> Iterator[Replicas]:
    path = tmp_path / "firebreak.yaml"
    path.write_text(yaml.safe_dump(config(announce_channel)))
    env = {key: value for key, value in os.environ.items() if key not in PROXY_VARIABLES}
    env.update(
        DATABASE_URL=database_url,
        FIREBREAK_CONFIG=str(path),
        SLACK_API_URL=sandbox.api_url,
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
        NO_PROXY="127.0.0.1,localhost",
    )
    logs = [tmp_path / f"serve-{n}.log" for n in (1, 2)]
    with ExitStack() as stack:
        yield Replicas([stack.enter_context(firebreak_serve(env, log))[0] for log in logs], logs)


TRIALS = 20


@pytest.mark.postgresql
def test_two_replicas_given_the_same_declares_and_notes_at_once_act_once_each(
    replicas: Replicas, sandbox: SlackSandbox, announce_channel: str, database_url: str
) -> None:
    """Per trial, at the same instant: (a) one declare delivered to both replicas; (b) twin
    declares (two trigger ids, one person and title), one to each replica, which both run
    the channel setup under the incident's advisory lock; (c) one note delivered to both."""
    signer = OutboundSlack(lambda body, headers: Reply(200, ""), SECRET, sandbox)
    general = sandbox.add_channel("general", members=[p.slack for p in PEOPLE.values()])
    statuses: list[int] = []
    same = [f"Same request {n}" for n in range(TRIALS)]
    twins = [f"Twins {n}" for n in range(TRIALS)]
    twin_requests: dict[str, list[Request]] = {}

    def declare(title: str) -> Request:
        text = f"declare sev2 {title}"
        return build(sandbox, lambda out: out.command(text, user="U0ALICE", channel=general))

    for n in range(TRIALS):
        request = declare(same[n])
        statuses += together(replicas.urls, [request, request], signer)
        twin_requests[twins[n]] = [declare(twins[n]), declare(twins[n])]
        statuses += together(replicas.urls, twin_requests[twins[n]], signer)

    db = Database(database_url)
    try:

        def set_up() -> list[Incident]:
            with db.session_scope() as session:
                done = session.scalars(
                    select(Incident).where(Incident.announcement_ts.is_not(None))
                ).all()
            return list(done) if len(done) >= 2 * TRIALS else []

        wait_for(set_up, timeout=60)
        first = min(set_up(), key=lambda incident: incident.id)
        assert first.channel_id is not None
        notes = [f"Trial {n} note" for n in range(TRIALS)]
        for text in notes:
            note = build(
                sandbox,
                lambda out, text=text: out.command(
                    f"note {text}", user="U0BOB", channel=first.channel_id or ""
                ),
            )
            statuses += together(replicas.urls, [note, note], signer)

        def noted() -> bool:
            with db.session_scope() as session:
                kinds = session.scalars(
                    select(TimelineEvent).where(TimelineEvent.kind == "note_added")
                ).all()
            return len(kinds) >= TRIALS

        wait_for(noted, timeout=30)
        channel = first.channel_id
        wait_for(lambda: all(posts_with(sandbox, channel, text) for text in notes), timeout=30)
        # Room for a duplicate to show itself, and for both twins to have answered.
        wait_for(lambda: len(sandbox.responses()) >= 2 * TRIALS, timeout=30)
        time.sleep(1.5)
        with db.session_scope() as session:
            incidents = session.scalars(select(Incident)).all()
            note_facts = [
                event.data["text"]
                for event in session.scalars(
                    select(TimelineEvent).where(TimelineEvent.kind == "note_added")
                )
            ]
    finally:
        db.dispose()

    creates = [str(call.params.get("name")) for call in sandbox.calls_to("conversations.create")]
    announced = [m.text for m in sandbox.messages(announce_channel)]
    answers = {post.response_id: str(post.payload.get("text", "")) for post in sandbox.responses()}
    failures: list[str] = []
    for title in same + twins:
        mine = [incident for incident in incidents if incident.title == title]
        slug = title.lower().replace(" ", "-")
        counted: dict[str, int] = {"incidents": len(mine)}
        if len(mine) == 1:
            incident = mine[0]
            reference = re.compile(rf"\b{incident.reference}\b")
            counted["channels created"] = sum(name.endswith(slug) for name in creates)
            counted["summaries pinned"] = len(sandbox.pins(incident.channel_id or ""))
            counted["announcements"] = sum(bool(reference.search(text)) for text in announced)
            if title in twin_requests:  # both twins answered: one declared, one found it
                told = [answers.get(r.response_id, "") for r in twin_requests[title]]
                counted["declared replies"] = sum(
                    f"Declared {incident.reference}:" in text for text in told
                )
                counted["already declared replies"] = sum(
                    f"{incident.reference} was already declared" in text for text in told
                )
        if any(value != 1 for value in counted.values()):
            failures.append(f"{title}: {counted}")
    for text in notes:
        counted = {
            "note facts": note_facts.count(text),
            "channel posts": posts_with(sandbox, first.channel_id or "", text),
        }
        if any(value != 1 for value in counted.values()):
            failures.append(f"{text}: {counted}")
    counted_all = {
        "HTTP statuses": sorted(set(statuses)),
        "incidents": len(incidents),
        "channels created": len(creates),
        "notes": len(note_facts),
        "copies ignored by a replica": replicas.ignored(),
        "trials with more or less than one effect": len(failures),
    }
    report(
        f"{TRIALS} trials x (one declare to both replicas, twin declares one to each, one note "
        "to both), each pair released at the same instant",
        counted_all,
    )
    assert failures == []
    assert counted_all == {
        "HTTP statuses": [200],
        "incidents": 2 * TRIALS,
        "channels created": 2 * TRIALS,
        "notes": TRIALS,
        "copies ignored by a replica": 2 * TRIALS,  # the same declares and the notes
        "trials with more or less than one effect": 0,
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"type": "event_callback", "event_id": "Ev1", "event": {}}, ("event:Ev1", "event")),
        ({"command": "/page", "trigger_id": "1.2.ab"}, ("trigger:1.2.ab", "command")),
        ({"type": "block_actions", "trigger_id": "3.4"}, ("trigger:3.4", "block_actions")),
        ({"type": "view_submission", "trigger_id": "5.6"}, ("trigger:5.6", "view_submission")),
        (
            {
                "type": "block_actions",
                "container": {"message_ts": "17.1"},
                "actions": [{"action_ts": "17.2"}],
                "user": {"id": "U0BOB"},
            },
            ("action:17.1:17.2:U0BOB", "block_actions"),
        ),
        (
            {"type": "view_submission", "view": {"id": "V1", "hash": "h1"}},
            ("view:V1:h1", "view_submission"),
        ),
        ({"type": "event_callback", "event_id": ["Ev1"]}, None),
        ({"type": "block_suggestion", "trigger_id": "7.8"}, None),
        ({"type": "view_closed", "trigger_id": "7.9"}, None),
        ({"type": "url_verification", "challenge": "c"}, None),
        (  # any shape is accepted: what is not a string counts as missing
            {"type": "block_actions", "container": "x", "actions": [1, None], "user": 5},
            ("action::,:", "block_actions"),
        ),
    ],
)
def test_the_key_of_each_kind_of_request(
    body: dict[str, Any], expected: tuple[str, str] | None
) -> None:
    assert request_key(body) == expected


def test_an_over_long_trigger_id_is_hashed_to_fit_the_column() -> None:
    key = request_key({"command": "/incident", "trigger_id": "x" * 500})
    assert key is not None and key[0].startswith("trigger:sha256:") and len(key[0]) <= 200
