"""The database failing under the server: backends terminated while Slack traffic flows.

The first tests, on every backend, drop the connection once under the write that records
what Slack just took (a post, a summary, a DM): it is retried, so nothing is sent twice.

The main test, on PostgreSQL only: backends terminated every few hundred milliseconds.

A real `firebreak serve` on PostgreSQL and the sandbox Slack takes a stream of signed
requests (declares, notes, pages, acknowledgements by command and by button) while another
thread terminates every backend of the server (`pg_terminate_backend`, the election's
connection included) every KILL_EVERY seconds for STORM seconds. Then the terminations stop
and the leader's reconcile pass finishes what was left. Asserted:

- every HTTP answer is a 200 or a clean 503 (interactions only: Slack retries those), and
  every answer to a requester is the result or a truthful "database unavailable" message;
  nobody is told "Something went wrong", and the server logged no traceback;
- nothing half-written or doubled: each incident has one channel, one pinned summary and one
  announcement; each post the outbox holds went out, once; each note, page and
  acknowledgement is in the timeline and its channel once (none if the requester was told
  nothing was recorded); each page's DM went out once;
- the process recovers by itself: `/readyz` 200 with the scheduler "leader".
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import psycopg
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from bot import outbox, timeline
from bot.app import Firebreak
from bot.db import ConnectionLost, Database
from bot.incidents import service
from bot.incidents.models import Incident
from bot.locks import INCIDENT_LOCK_SPACE, incident_lock
from bot.oncall import paging
from bot.oncall.models import Page, PageNotification
from bot.outbox import OutboxItem
from bot.sandbox import SlackSandbox
from bot.sandbox.outbound import OutboundSlack, Reply, http_transport
from bot.slack import blocks
from bot.slack import payloads as said
from bot.timeline import TimelineEvent
from tests.conftest import PEOPLE, SECRET, Slack
from tests.test_paging import dms
from tests.test_replicas import readiness
from tests.test_scheduler import chain_serve_env, firebreak_serve, wait_for

STORM = 16.0  # seconds of terminations
KILL_EVERY = 0.3  # seconds between two rounds of pg_terminate_backend
SENDERS = 2  # threads sending requests at once
SEND_EVERY = 0.15  # seconds between two requests of one sender
SERVER = "firebreak-serve"  # the application_name of every connection the server makes
KILL = text(
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND application_name = :server"
)
RECORDED = f":warning: {said.RECORDED_UNFINISHED}"
NOT_RECORDED = (f":warning: {said.NOT_RECORDED}", f":x: {said.NOT_RECORDED}")
IN_DOUBT = f":warning: {said.IN_DOUBT}"
DATABASE_FAILED = (*NOT_RECORDED, IN_DOUBT, RECORDED)
# What each kind of request answers when it worked (a note's answer is its post).
RESULTS = {
    "declare": ":rotating_light: Declared INC-",
    "note": "Done and recorded. The channel post is queued",  # else no answer: the post
    "page": ":pager: ",
    "ack-command": "acknowledged",
    "ack-button": "acknowledged",
}


@dataclass
class Sent:
    """One request and what its requester was told (HTTP answer and response_url posts)."""

    kind: str  # declare | note | page | ack-command | ack-button
    subject: str  # the title, note or page message; the page id of an acknowledgement
    response_id: str
    status: int = 0
    answer: str = ""  # text in the HTTP answer itself (a command refused at once)
    told: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        """ok (a result), recorded (the change, its follow-up later), not recorded, in doubt,
        503, or what else the requester saw."""
        if self.status == 503:
            return "503"
        texts = [self.answer, *self.told] if self.answer else list(self.told)
        if any(t in NOT_RECORDED for t in texts):
            return "not recorded"
        if IN_DOUBT in texts:
            return "in doubt"
        if RECORDED in texts:
            return "recorded"
        return "ok"


class Traffic:
    """Signed requests into the server over HTTP, each one remembered with its answers."""

    def __init__(self, url: str, sandbox: SlackSandbox) -> None:
        self.sandbox = sandbox
        self.sent: list[Sent] = []
        self._post = http_transport(url + "/slack/events")
        self._lock = threading.Lock()

    @contextmanager
    def request(self, kind: str, subject: str) -> Iterator[OutboundSlack]:
        """Slack's side, for one request: what it sends is remembered as `Sent`."""
        sent = Sent(kind, subject, "")

        def transport(body: bytes, headers: dict[str, str]) -> Reply:
            form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
            payload = json.loads(form["payload"]) if "payload" in form else form
            sent.response_id = str(payload.get("response_url", "")).rsplit("/", 1)[-1]
            reply = self._post(body, headers)
            sent.status = reply.status
            if reply.body and reply.body.startswith("{"):
                sent.answer = str(json.loads(reply.body).get("text", ""))
            return reply

        try:
            yield OutboundSlack(transport, SECRET, self.sandbox)
        finally:
            with self._lock:
                self.sent.append(sent)

    def collect_answers(self) -> None:
        posts: dict[str, list[str]] = {}
        for post in self.sandbox.responses():
            posts.setdefault(post.response_id, []).append(str(post.payload.get("text", "")))
        for request in self.sent:
            request.told = posts.get(request.response_id, [])


class Terminator(threading.Thread):
    """Terminates the server's backends every KILL_EVERY seconds until stopped."""

    def __init__(self, database_url: str) -> None:
        super().__init__(name="terminator", daemon=True)
        url = make_url(database_url).update_query_dict({"application_name": "firebreak-test"})
        self.engine = create_engine(url, isolation_level="AUTOCOMMIT")
        self.stop = threading.Event()
        self.rounds = 0
        self.terminated = 0

    def run(self) -> None:
        with self.engine.connect() as connection:
            while not self.stop.wait(KILL_EVERY):
                self.terminated += int(connection.execute(KILL, {"server": SERVER}).scalar_one())
                self.rounds += 1

    def finish(self) -> None:
        self.stop.set()
        self.join(timeout=10)
        self.engine.dispose()


def rows(db: Database, query: Any) -> list[Any]:
    with db.session_scope() as session:
        return list(session.execute(query).all())


def settled(db: Database, url: str) -> str | None:
    """What is still unfinished (None once everything is done and the server leads)."""
    ready = readiness(url)
    if ready.get("status") != "ready" or ready.get("scheduler") != "leader":
        return f"readyz {ready}"
    waiting = rows(
        db, select(func.count()).where(OutboxItem.status.in_(("pending", "retry", "sending")))
    )[0][0]
    unsent = rows(
        db,
        select(func.count()).where(PageNotification.status.in_(("pending", "retry", "sending"))),
    )[0][0]
    unfinished = rows(db, select(func.count()).where(Incident.set_up_at.is_(None)))[0][0]
    if waiting or unsent or unfinished:
        return f"outbox {waiting}, notifications {unsent}, setups {unfinished}"
    return None


def send_traffic(traffic: Traffic, db: Database, general: str, until: float, sender: int) -> None:
    """Declares, notes, pages and acknowledgements in a fixed rotation until `until`."""
    rotation = itertools.cycle(["declare", "note", "page", "note", "ack", "declare", "page"])
    users = [person.slack for person in PEOPLE.values()]
    chooser = random.Random(sender)
    for count in itertools.count(1):
        if time.monotonic() >= until:
            return
        number = count * SENDERS + sender  # unique across senders
        kind = next(rotation)
        user = chooser.choice(users)
        channels = [
            c
            for (c,) in rows(
                db, select(Incident.channel_id).where(Incident.channel_id.is_not(None))
            )
        ]
        triggered = [p for (p,) in rows(db, select(Page.id).where(Page.state == "triggered"))]
        if kind == "declare" or not channels:
            title = f"Storm {number:03d}"
            with traffic.request("declare", title) as slack:
                slack.command(f"declare sev2 {title}", user=user, channel=general)
        elif kind == "note":
            note = f"storm note n{number:03d}"
            with traffic.request("note", note) as slack:
                slack.command(f"note {note}", user=user, channel=chooser.choice(channels))
        elif kind == "page" or not triggered:
            message = f"storm page m{number:03d}"
            with traffic.request("page", message) as slack:
                slack.command(
                    f"@carol {message}",
                    user=user,
                    channel=chooser.choice(channels),
                    command="/page",
                )
        elif number % 2:
            page_id = chooser.choice(triggered)
            with traffic.request("ack-command", str(page_id)) as slack:
                slack.command(f"ack {page_id}", user="U0CAROL", channel=general, command="/page")
        else:
            page_id = chooser.choice(triggered)
            with traffic.request("ack-button", str(page_id)) as slack:
                slack.block_action(
                    blocks.ACTION_PAGE_ACK, user="U0CAROL", channel="D0CAROL", value=f"p-{page_id}"
                )
        time.sleep(SEND_EVERY)


# -- one dropped connection under the bookkeeping of a send ---------------------------------


def dropped() -> OperationalError:
    """What SQLAlchemy raises when the server terminated the connection under a statement."""
    return OperationalError(
        "UPDATE ...",
        {},
        psycopg.OperationalError("terminating connection due to administrator command"),
    )


def failing_once(
    monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, when: Any = None
) -> list[int]:
    """Make `owner.name` raise `dropped()` the first time (`when(*args, **kwargs)` holds);
    returns the list of calls that failed."""
    original = getattr(owner, name)
    failed: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if not failed and (when is None or when(*args, **kwargs)):
            failed.append(1)
            raise dropped()
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, flaky)
    return failed


def test_a_post_whose_record_is_dropped_once_is_sent_once(
    firebreak: Firebreak,
    slack: Slack,
    sandbox: SlackSandbox,
    general: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slack.run("declare sev3 Disk full", channel=general)
    channel = sandbox.channel_by_name("inc-1-disk-full")
    assert channel is not None
    failed = failing_once(monkeypatch, outbox, "finish")
    slack.run("note cleared /var/log", user="U0BOB", channel=channel.id)
    # Recorded as sent (without the retry it would stay "sending" and go out again later).
    posted = [m.text for m in sandbox.messages(channel.id)]
    assert failed and posted.count(":memo: <@U0BOB> added a note: cleared /var/log") == 1, posted
    with firebreak.db.session_scope() as session:
        statuses = session.scalars(select(OutboxItem.status)).all()
    assert set(statuses) == {"sent"}, statuses


def test_a_summary_and_announcement_whose_record_is_dropped_once_are_posted_once(
    firebreak: Firebreak,
    slack: Slack,
    sandbox: SlackSandbox,
    general: str,
    announce_channel: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    summary = failing_once(
        monkeypatch, timeline, "record", lambda *a, **_: a[1] == "summary_posted"
    )
    reply = slack.run("declare sev2 Payments failing", channel=general)
    assert reply.status == 200
    announcement = failing_once(
        monkeypatch, timeline, "record", lambda *a, **_: a[1] == "announced"
    )
    slack.run("declare sev2 Search failing", channel=general)
    for number in (1, 2):
        with firebreak.db.session_scope() as session:
            incident = service.get(session, number)
            assert incident.set_up_at is not None and incident.channel_id is not None
            channel_id, reference = incident.channel_id, incident.reference
        firebreak.channels.open(number, "U0ALICE")  # a rerun finds everything done
        summaries = [m for m in sandbox.messages(channel_id) if m.text.startswith(f"{reference} [")]
        assert len(summaries) == 1
        announced = [
            m for m in sandbox.messages(announce_channel) if m.text.startswith(f"{reference} [")
        ]
        assert len(announced) == 1
    assert summary and announcement


def test_a_dm_whose_record_is_dropped_once_is_sent_once(
    firebreak: Firebreak,
    slack: Slack,
    sandbox: SlackSandbox,
    general: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failed = failing_once(monkeypatch, paging, "finish_notifications")
    slack.command("@carol disk full again", user="U0BOB", channel=general, command="/page")
    slack.settle()
    assert failed and len(dms(sandbox, "U0CAROL")) == 1
    with firebreak.db.session_scope() as session:
        assert session.scalars(select(PageNotification.status)).all() == ["sent"]


@pytest.mark.postgresql
def test_an_incident_lock_lost_with_its_connection_is_noticed_before_the_next_step(
    database_url: str,
) -> None:
    db = Database(database_url)
    terminator = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with incident_lock(db, 7) as held:
            held.check()
            with db.engine.connect() as probe:
                holder = probe.execute(
                    text(
                        "SELECT pid FROM pg_locks JOIN pg_database d ON d.oid = database "
                        "WHERE d.datname = current_database() AND locktype = 'advisory' "
                        "AND classid = :space AND objid = 7"
                    ),
                    {"space": INCIDENT_LOCK_SPACE},
                ).scalar_one()
            with terminator.connect() as connection:
                connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": holder})
            with incident_lock(db, 7) as other:  # the server freed it: another may take it
                other.check()
                with pytest.raises(ConnectionLost):
                    held.check()
    finally:
        terminator.dispose()
        db.dispose()


# -- backends terminated every few hundred milliseconds -------------------------------------


@pytest.mark.postgresql
def test_backends_terminated_during_traffic_leave_only_clean_answers_and_nothing_half_done(
    sandbox: SlackSandbox, announce_channel: str, database_url: str, tmp_path: Path
) -> None:
    general = sandbox.add_channel("general", members=[p.slack for p in PEOPLE.values()])
    served_url = make_url(database_url).update_query_dict({"application_name": SERVER})
    env = chain_serve_env(
        sandbox, announce_channel, served_url.render_as_string(hide_password=False), tmp_path, "2s"
    )
    log = tmp_path / "serve.log"
    db = Database(
        make_url(database_url)
        .update_query_dict({"application_name": "firebreak-test"})
        .render_as_string(hide_password=False)
    )
    started = time.monotonic()
    try:
        with firebreak_serve(env, log) as (url, _process):
            wait_for(lambda: readiness(url).get("scheduler") == "leader", timeout=20)
            traffic = Traffic(url, sandbox)
            terminator = Terminator(database_url)
            terminator.start()
            storm_started = time.monotonic()
            errors: list[BaseException] = []

            def sender(number: int) -> None:
                try:
                    send_traffic(traffic, db, general, storm_started + STORM, number)
                except BaseException as error:  # no answer at all: failed below
                    errors.append(error)

            senders = [
                threading.Thread(target=sender, args=(number,), name=f"sender-{number}")
                for number in range(SENDERS)
            ]
            try:
                for thread in senders:
                    thread.start()
                for thread in senders:
                    thread.join(timeout=STORM + 30)
            finally:
                terminator.finish()
            storm = time.monotonic() - storm_started
            assert not errors, errors
            try:
                wait_for(lambda: settled(db, url) is None, timeout=40)
            except AssertionError:
                raise AssertionError(
                    f"not settled: {settled(db, url)}\n{log.read_text()[-5000:]}"
                ) from None
            recovered = time.monotonic() - storm_started - storm
            time.sleep(1.5)  # room for a late duplicate to show itself
            traffic.collect_answers()
            check(traffic, db, sandbox, announce_channel, log)
            incidents = rows(db, select(func.count()).select_from(Incident))[0][0]
            dm_statuses = Counter(status for (status,) in rows(db, select(PageNotification.status)))
            report(traffic, terminator, incidents, dm_statuses, storm, recovered, started, log)
    finally:
        db.dispose()


def check(
    traffic: Traffic, db: Database, sandbox: SlackSandbox, announce_channel: str, log: Path
) -> None:
    server_log = log.read_text()
    assert "Traceback" not in server_log, server_log[-10000:]
    # Every HTTP answer is clean: 200, or 503 for an interaction (Slack retries it).
    for request in traffic.sent:
        assert request.status in (200, 503), request
        assert request.status == 200 or request.kind == "ack-button", request
        # The result, or what the database failing left: nothing else, no "went wrong".
        for told in [request.answer, *request.told] if request.answer else request.told:
            assert told in DATABASE_FAILED or RESULTS[request.kind] in told, request
    by_subject = {(r.kind, r.subject): r for r in traffic.sent}

    # Incidents: one channel, one pinned summary, one announcement each; none twice.
    incidents = rows(db, select(Incident.id, Incident.title, Incident.channel_id))
    titles = Counter(title for _, title, _ in incidents)
    assert max(titles.values(), default=1) == 1, titles
    channels = sandbox.snapshot()["channels"]
    announced = [m.text for m in sandbox.messages(announce_channel)]
    for incident_id, title, channel_id in incidents:
        reference = f"INC-{incident_id}"
        named = [c["id"] for c in channels if c["name"].startswith(f"inc-{incident_id}-")]
        assert named == [channel_id], (reference, named, channel_id)
        summaries = [m for m in sandbox.messages(channel_id) if m.text.startswith(f"{reference} [")]
        assert len(summaries) == 1, (reference, [m.text for m in summaries])
        assert sandbox.pins(channel_id) == [summaries[0].ts], reference
        assert sum(t.startswith(f"{reference} [") for t in announced) == 1, (reference, announced)
        assert by_subject[("declare", title)].outcome != "not recorded", title
    declared = {title for _, title, _ in incidents}
    for request in traffic.sent:
        if request.kind == "declare" and request.outcome in ("ok", "recorded"):
            assert request.subject in declared, request

    # Every post the outbox holds went out, once, and no channel shows a message twice.
    for item_id, body, status in rows(
        db,
        select(OutboxItem.id, OutboxItem.body, OutboxItem.status).where(OutboxItem.kind == "post"),
    ):
        assert status == "sent", (item_id, body, status)
        posted = [m.text for m in sandbox.messages(body["channel"])]
        assert posted.count(body["text"]) == 1, (item_id, body, posted)
    for _, _, channel_id in incidents:
        posted = Counter(m.text for m in sandbox.messages(channel_id))
        assert max(posted.values()) == 1, posted

    # Notes: in the timeline and the channel once each, none that was reported unrecorded.
    noted = Counter(
        str(data.get("text"))
        for (data,) in rows(
            db, select(TimelineEvent.data).where(TimelineEvent.kind == "note_added")
        )
    )
    for request in traffic.sent:
        if request.kind != "note":
            continue
        times = noted.get(request.subject, 0)
        expected = {"ok": (1,), "recorded": (1,), "not recorded": (0,)}.get(request.outcome, (0, 1))
        assert times in expected, (request, times)
        in_channels = sum(
            m.text.endswith(f"added a note: {request.subject}")
            for _, _, channel_id in incidents
            for m in sandbox.messages(channel_id)
        )
        assert in_channels == times, (request, in_channels, times)

    # Pages: one DM per notification sent; none that was reported unrecorded.
    pages = rows(db, select(Page.id, Page.message, Page.state))
    by_message = Counter(message for _, message, _ in pages)
    assert max(by_message.values(), default=1) == 1, by_message
    carol = dms(sandbox, "U0CAROL")
    for page_id, message, state in pages:
        statuses = [
            status
            for (status,) in rows(
                db, select(PageNotification.status).where(PageNotification.page_id == page_id)
            )
        ]
        # Sent; or cancelled, when the page was acknowledged before its DM could go out.
        allowed = [["sent"]] if state == "triggered" else [["sent"], ["cancelled"]]
        assert statuses in allowed, (page_id, state, statuses)
        in_dms = sum(f"You are paged: {message}" in t for t in carol)
        assert in_dms == statuses.count("sent"), (page_id, message, statuses, in_dms)
    for request in traffic.sent:
        if request.kind == "page" and request.outcome in ("ok", "recorded"):
            assert request.subject in by_message, request
        if request.kind == "page" and request.outcome == "not recorded":
            assert request.subject not in by_message, request


def report(
    traffic: Traffic,
    terminator: Terminator,
    incidents: int,
    dm_statuses: Counter[str],
    storm: float,
    recovered: float,
    started: float,
    log: Path,
) -> None:
    outcomes = Counter((r.kind, r.outcome) for r in traffic.sent)
    kinds = sorted({kind for kind, _ in outcomes})
    columns = ["ok", "recorded", "in doubt", "not recorded", "503"]
    lines = [
        f"{STORM:.0f} s of terminations every {KILL_EVERY} s: {terminator.rounds} rounds, "
        f"{terminator.terminated} backends terminated; {len(traffic.sent)} requests sent "
        f"by {SENDERS} senders",
        f"{'sent':<12}" + "".join(f"{c:>14}" for c in columns),
    ]
    for kind in kinds:
        lines.append(f"{kind:<12}" + "".join(f"{outcomes[(kind, c)]:>14}" for c in columns))
    server_log = log.read_text()
    lines.append(
        f"counted: {incidents} incidents, each with one channel, pinned summary and announcement; "
        f"{dm_statuses['sent']} pages DMed once each, {dm_statuses['cancelled']} DMs cancelled "
        f"(acknowledged first); {len(server_log.splitlines())} server log lines, "
        f"{server_log.count('the database failed')} of them one-line database failures, "
        "no traceback"
    )
    lines.append(
        f"storm {storm:.1f} s; everything finished {recovered:.1f} s after it; "
        f"test {time.monotonic() - started:.1f} s"
    )
    print("\n" + "\n".join(lines))
