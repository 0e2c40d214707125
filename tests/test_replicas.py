"""Two replicas on one PostgreSQL database, and faults between them. The leader dies
mid-escalation: the standby takes over the scheduler within 15 s and every step still pages
exactly once. One Alertmanager webhook, and one PagerDuty trigger, acknowledge and resolve,
reach both replicas at the same instant: each acts once. The leader is SIGKILLed during an
alert storm sent through a retrying load balancer: every alert is stored once, every group
paged once. Each test prints what it sent and counted."""

from __future__ import annotations

import itertools
import json
import signal
import threading
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import func, select

from bot.alerts.records import AlertGroup, StoredAlert
from bot.db import Database, utcnow
from bot.incidents.models import Incident
from bot.oncall.models import Page, PageNotification
from bot.sandbox import SlackSandbox
from bot.sandbox.outbound import OutboundSlack, http_transport
from bot.timeline import TimelineEvent
from tests.conftest import SECRET
from tests.test_paging import dms
from tests.test_scheduler import (
    assert_the_chain_paged_each_once,
    chain_serve_env,
    firebreak_serve,
    wait_for,
)

pytestmark = pytest.mark.postgresql


def readiness(url: str) -> dict[str, Any]:
    """The JSON of `GET /readyz`, whatever its status (503 answers carry JSON too)."""
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=5) as response:
            body = response.read()
    except urllib.error.HTTPError as error:
        body = error.read()
    except OSError:
        return {}
    try:
        answer = json.loads(body)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def scheduler_role(url: str) -> str | None:
    role = readiness(url).get("scheduler")
    return role if isinstance(role, str) else None


def alice_status(database_url: str) -> str | None:
    db = Database(database_url)
    try:
        with db.session_scope() as session:
            row = session.scalars(
                select(PageNotification).where(PageNotification.person == "alice")
            ).first()
            return row.status if row is not None else None
    finally:
        db.dispose()


def test_the_standby_takes_over_a_killed_leaders_escalation_and_pages_each_step_once(
    sandbox: SlackSandbox, announce_channel: str, database_url: str, tmp_path: Path
) -> None:
    env = chain_serve_env(sandbox, announce_channel, database_url, tmp_path, "2s")
    logs = [tmp_path / "serve-1.log", tmp_path / "serve-2.log"]

    def serve_logs() -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()}" for log in logs if log.exists())

    with ExitStack() as stack:
        replicas = [stack.enter_context(firebreak_serve(env, log)) for log in logs]
        urls = [url for url, _ in replicas]

        def roles() -> list[str | None]:
            return [scheduler_role(url) for url in urls]

        try:
            wait_for(lambda: sorted(map(str, roles())) == ["leader", "standby"], timeout=20)
        except AssertionError:
            raise AssertionError(f"roles {roles()}, not one leader and one standby") from None
        leader = roles().index("leader")
        (leader_url, leader_process), (survivor_url, _) = replicas[leader], replicas[1 - leader]

        slack = OutboundSlack(http_transport(leader_url + "/slack/events"), SECRET, sandbox)
        reply = slack.command(
            "policy:chain checkout down", user="U0CAROL", channel="C0ANY", command="/page"
        )
        assert reply.status == 200
        # The leader dies mid-escalation: step 1 is done (alice's DM sent and recorded), step
        # 2 is due in 2 s. (Killed between a send and its record, a DM is sent again once the
        # lease ends: at least once, tested in tests/test_inflight.py.)
        wait_for(lambda: alice_status(database_url) == "sent")
        leader_process.send_signal(signal.SIGKILL)
        killed, killed_at = time.monotonic(), utcnow()
        assert leader_process.wait(timeout=10) == -signal.SIGKILL

        try:
            wait_for(lambda: scheduler_role(survivor_url) == "leader", timeout=15)
        except AssertionError:
            raise AssertionError("the survivor did not lead within 15 s\n" + serve_logs()) from None
        print(f"the survivor leads {time.monotonic() - killed:.2f} s after the SIGKILL")

        try:  # bob late but once, then carol, then the page is exhausted
            wait_for(
                lambda: any(
                    "Nobody acknowledged" in m.text for m in sandbox.messages(announce_channel)
                ),
                timeout=30,
            )
        except AssertionError:
            raise AssertionError("the page never ended\n" + serve_logs()) from None
        time.sleep(3)  # room for any duplicate to show itself

    rows = assert_the_chain_paged_each_once(sandbox, announce_channel, database_url)
    assert [row[:4] for row in rows] == [
        (0, "alice", "sent", 1),
        (1, "bob", "sent", 1),
        (2, "carol", "sent", 1),
    ]
    bob_sent = rows[1][4]
    assert bob_sent is not None and bob_sent > killed_at, "bob was paged by the survivor"


def test_one_webhook_delivered_to_two_replicas_at_once_pages_once_and_opens_one_incident(
    sandbox: SlackSandbox, announce_channel: str, database_url: str, tmp_path: Path
) -> None:
    """Alertmanager behind a load balancer retries into the other replica: the same group
    arrives at both at the same instant, ten times over. One group, its alerts, one page,
    one incident, one DM."""
    env = chain_serve_env(sandbox, announce_channel, database_url, tmp_path, "1m")
    config = yaml.safe_load(Path(env["FIREBREAK_CONFIG"]).read_text())
    config["services"] = {"checkout": {"escalation_policy": "chain"}}
    config["alert_routes"] = [
        {"name": "checkout", "service": "checkout", "incident": {"open": True, "severity": "sev2"}}
    ]
    Path(env["FIREBREAK_CONFIG"]).write_text(yaml.safe_dump(config))
    env["FIREBREAK_ALERT_TOKEN"] = "replica-token"
    logs = [tmp_path / "serve-1.log", tmp_path / "serve-2.log"]
    body = json.dumps(
        {
            "version": "4",
            "groupKey": '{}:{service="checkout"}',
            "status": "firing",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": name, "service": "checkout"},
                    "annotations": {"summary": f"{name} on checkout"},
                    "startsAt": "2026-03-02T09:58:00Z",
                }
                for name in ("HighErrorRate", "HighLatency")
            ],
        }
    ).encode()
    answers: list[int] = []

    def post(url: str, start: threading.Barrier) -> None:
        request = urllib.request.Request(
            url + "/alerts/alertmanager",
            data=body,
            headers={"Content-Type": "application/json", "Authorization": "Bearer replica-token"},
        )
        start.wait()
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answers.append(response.status)
        except urllib.error.HTTPError as error:
            answers.append(error.code)

    with ExitStack() as stack:
        urls = [url for url, _ in (stack.enter_context(firebreak_serve(env, log)) for log in logs)]
        for _ in range(10):
            start = threading.Barrier(2)
            threads = [threading.Thread(target=post, args=(url, start)) for url in urls]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=20)
        wait_for(lambda: len(dms(sandbox, "U0ALICE")) >= 1)
        wait_for(lambda: sandbox.channel_by_name("inc-1-higherrorrate-on-checkout") is not None)
        time.sleep(1.0)  # room for a doubled DM or channel to show up, if there were one
    print(f"sent one group to 2 replicas x 10 at once; answers {sorted(answers)}")
    assert answers == [200] * 20
    assert len(dms(sandbox, "U0ALICE")) == 1
    db = Database(database_url)
    try:
        with db.session_scope() as session:
            assert session.scalar(select(func.count()).select_from(AlertGroup)) == 1
            counts = sorted(session.scalars(select(StoredAlert.count)))
            assert session.scalar(select(func.count()).select_from(Page)) == 1
            assert session.scalar(select(func.count()).select_from(Incident)) == 1
    finally:
        db.dispose()
    assert counts == [20, 20]
    incident_channels = [c for c in sandbox.snapshot()["channels"] if c["name"].startswith("inc-")]
    assert len(incident_channels) == 1


# -- PagerDuty Events v2 into both replicas at the same instant --------------------------------

PD_ROUTING_KEY = "7c1e5b9a3d2f4e6a8b0c1d2e3f4a5b6c"


def both_at_once(urls: list[str], path: str, body: bytes, token: str | None = None) -> list[Any]:
    """POST `body` to `path` on every replica at the same instant (a barrier); the answers as
    (status, JSON body), in replica order."""
    answers: list[Any] = [None] * len(urls)
    start = threading.Barrier(len(urls))
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"

    def post(index: int) -> None:
        request = urllib.request.Request(urls[index] + path, data=body, headers=headers)
        start.wait()
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                answers[index] = (response.status, json.loads(response.read() or b"null"))
        except urllib.error.HTTPError as error:
            answers[index] = (error.code, error.read().decode(errors="replace"))

    threads = [threading.Thread(target=post, args=(index,)) for index in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return answers


def timeline_kinds(database_url: str) -> dict[str, int]:
    db = Database(database_url)
    try:
        with db.session_scope() as session:
            rows = session.execute(
                select(TimelineEvent.kind, func.count()).group_by(TimelineEvent.kind)
            ).all()
            return {kind: count for kind, count in rows}
    finally:
        db.dispose()


def page_states(database_url: str) -> list[str]:
    db = Database(database_url)
    try:
        with db.session_scope() as session:
            return list(session.scalars(select(Page.state).order_by(Page.id)))
    finally:
        db.dispose()


def test_one_pagerduty_event_sent_to_two_replicas_at_once_acts_once_each_time(
    sandbox: SlackSandbox, announce_channel: str, database_url: str, tmp_path: Path
) -> None:
    """A PagerDuty Events v2 sender behind a load balancer (or two senders for one event):
    the same trigger, then the same acknowledge, then the same resolve reach both replicas at
    the same instant, for several dedup keys. Each trigger: both answered 202 with the key,
    one group, one page, one incident, one DM; each acknowledge and resolve acts once."""
    rounds = 6
    env = chain_serve_env(sandbox, announce_channel, database_url, tmp_path, "1m")
    config = yaml.safe_load(Path(env["FIREBREAK_CONFIG"]).read_text())
    config["services"] = {"checkout": {"escalation_policy": "chain", "routing_key": PD_ROUTING_KEY}}
    config["alert_routes"] = [
        {"name": "checkout", "service": "checkout", "incident": {"open": True, "severity": "sev2"}}
    ]
    Path(env["FIREBREAK_CONFIG"]).write_text(yaml.safe_dump(config))
    logs = [tmp_path / "serve-1.log", tmp_path / "serve-2.log"]
    keys = [f"checkout-5xx-{number}" for number in range(rounds)]

    def event(action: str, key: str) -> bytes:
        data: dict[str, Any] = {
            "routing_key": PD_ROUTING_KEY,
            "event_action": action,
            "dedup_key": key,
        }
        if action == "trigger":
            data["payload"] = {
                "summary": f"Checkout 5xx above 5% ({key})",
                "source": "lb-1",
                "severity": "critical",
            }
        return json.dumps(data).encode()

    answers: dict[str, list[Any]] = {"trigger": [], "acknowledge": [], "resolve": []}
    with ExitStack() as stack:
        urls = [url for url, _ in (stack.enter_context(firebreak_serve(env, log)) for log in logs)]
        for key in keys:
            answers["trigger"] += both_at_once(urls, "/v2/enqueue", event("trigger", key))
        wait_for(lambda: len(dms(sandbox, "U0ALICE")) >= rounds)
        wait_for(
            lambda: (
                len([c for c in sandbox.snapshot()["channels"] if c["name"].startswith("inc-")])
                >= rounds
            )
        )
        for key in keys:
            answers["acknowledge"] += both_at_once(urls, "/v2/enqueue", event("acknowledge", key))
        assert page_states(database_url) == ["acknowledged"] * rounds
        for key in keys:
            answers["resolve"] += both_at_once(urls, "/v2/enqueue", event("resolve", key))
        # A sender's retry of a resolve, long after: a repeat, not a new (resolved) group.
        for url in urls:
            assert both_at_once([url], "/v2/enqueue", event("resolve", keys[0]))[0][0] == 202
        time.sleep(1.0)  # room for a doubled DM or channel to show up, if there were one
    kinds = timeline_kinds(database_url)
    incident_channels = [c for c in sandbox.snapshot()["channels"] if c["name"].startswith("inc-")]
    db = Database(database_url)
    try:
        with db.session_scope() as session:
            groups = session.scalar(select(func.count()).select_from(AlertGroup))
            alert_counts = sorted(session.scalars(select(StoredAlert.count)))
            pages = session.scalar(select(func.count()).select_from(Page))
            incidents = session.scalar(select(func.count()).select_from(Incident))
    finally:
        db.dispose()
    print(
        f"sent {rounds} dedup keys x (trigger, acknowledge, resolve) x 2 replicas at once; "
        f"counted {groups} groups, {pages} pages, {incidents} incidents, "
        f"{len(incident_channels)} channels, {len(dms(sandbox, 'U0ALICE'))} DMs, alert counts "
        f"{alert_counts}, facts { {k: v for k, v in kinds.items() if k.startswith('page_')} }"
    )
    for action, got in answers.items():
        statuses = [status for status, _ in got]
        assert statuses == [202] * 2 * rounds, (action, got)
        assert [body["dedup_key"] for _, body in got] == [k for k in keys for _ in range(2)]
    assert (groups, pages, incidents, len(incident_channels)) == (rounds,) * 4
    assert alert_counts == [2] * rounds  # both deliveries seen, stored once
    assert len(dms(sandbox, "U0ALICE")) == rounds
    assert page_states(database_url) == ["resolved"] * rounds
    assert kinds.get("page_triggered") == rounds
    assert kinds.get("page_acknowledged") == rounds
    assert kinds.get("page_resolved") == rounds


# -- the leader SIGKILLed during an alert storm ---------------------------------------------------

STORM_TOKEN = "storm-token"


class LoadBalancer:
    """Plays a load balancer in front of the replicas and Alertmanager behind it: webhooks go
    round robin; one that fails (a 5xx, a refused or reset connection, no answer) is sent
    again, whole, to the next replica, as Alertmanager retries a failed notification."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.next = itertools.count()
        self.lock = threading.Lock()
        self.sent = 0  # webhooks answered 200
        self.retries = 0  # deliveries that failed and were sent again
        self.failures: list[str] = []  # what made them fail

    def send(self, body: bytes, deadline: float = 60.0) -> None:
        start = time.monotonic()
        with self.lock:
            index = next(self.next)
        while True:
            url = self.urls[index % len(self.urls)]
            request = urllib.request.Request(
                url + "/alerts/alertmanager",
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {STORM_TOKEN}",
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    if response.status == 200:
                        with self.lock:
                            self.sent += 1
                        return
                    failure = f"HTTP {response.status}"
            except urllib.error.HTTPError as error:
                failure = f"HTTP {error.code}"
            except OSError as error:
                failure = type(error).__name__
            with self.lock:
                self.retries += 1
                self.failures.append(failure)
            assert time.monotonic() - start < deadline, f"no replica took a webhook: {failure}"
            index += 1
            time.sleep(0.05)


def storm_webhook(group: int, alerts: int) -> bytes:
    """Alertmanager's webhook for group `group` with its first `alerts` alerts firing (it
    re-sends the whole group each time, so every webhook repeats the ones before)."""
    return json.dumps(
        {
            "version": "4",
            "groupKey": f'{{}}:{{alertname="Storm{group}"}}',
            "status": "firing",
            "receiver": "firebreak",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {
                        "alertname": f"Storm{group}",
                        "service": "checkout",
                        "instance": f"node-{number}",
                    },
                    "annotations": {"summary": f"Storm{group} on node-{number}"},
                    "startsAt": "2026-03-02T09:58:00Z",
                }
                for number in range(alerts)
            ],
        }
    ).encode()


def test_the_leader_killed_mid_storm_loses_no_alert_and_pages_each_group_once(
    sandbox: SlackSandbox, announce_channel: str, database_url: str, tmp_path: Path
) -> None:
    """Two replicas take an alert storm through a load balancer; the scheduler leader is
    SIGKILLed in the middle of it. Webhooks it did not answer are retried on the other
    replica. Every alert is stored once, each group has one page, each page one DM, and the
    standby leads. (The groups opened before the kill have their DMs sent first: a DM whose
    sender dies between Slack's answer and its record is sent again, at least once, which
    tests/test_inflight.py covers. Groups opened after the kill are paged by the survivor.)"""
    before, after, senders, growth = 5, 3, 4, 12
    env = chain_serve_env(sandbox, announce_channel, database_url, tmp_path, "10m")
    config = yaml.safe_load(Path(env["FIREBREAK_CONFIG"]).read_text())
    config["services"] = {"checkout": {"escalation_policy": "chain"}}
    config["alert_routes"] = [{"name": "checkout", "service": "checkout"}]
    Path(env["FIREBREAK_CONFIG"]).write_text(yaml.safe_dump(config))
    env["FIREBREAK_ALERT_TOKEN"] = STORM_TOKEN
    logs = [tmp_path / "serve-1.log", tmp_path / "serve-2.log"]

    def serve_logs() -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()}" for log in logs if log.exists())

    def sent_dms() -> int:
        db = Database(database_url)
        try:
            with db.session_scope() as session:
                return (
                    session.scalar(
                        select(func.count())
                        .select_from(PageNotification)
                        .where(PageNotification.status == "sent")
                    )
                    or 0
                )
        finally:
            db.dispose()

    with ExitStack() as stack:
        replicas = [stack.enter_context(firebreak_serve(env, log)) for log in logs]
        urls = [url for url, _ in replicas]
        wait_for(lambda: sorted(map(str, map(scheduler_role, urls))) == ["leader", "standby"])
        leader = [scheduler_role(url) for url in urls].index("leader")
        (_, leader_process), (survivor_url, _) = replicas[leader], replicas[1 - leader]
        balancer = LoadBalancer(urls)

        # Groups 0..before-1 open, and their pages' DMs go out.
        for group in range(before):
            balancer.send(storm_webhook(group, 1))
        wait_for(lambda: sent_dms() == before)

        # The storm: each open group grows alert by alert, from several senders at once; the
        # leader dies a third of the way in.
        bodies = [
            storm_webhook(group, alerts)
            for alerts in range(2, growth + 1)
            for group in range(before)
        ]
        work = iter(bodies)
        work_lock = threading.Lock()
        answered = threading.Semaphore(0)
        errors: list[BaseException] = []

        def sender() -> None:
            while True:
                with work_lock:
                    body = next(work, None)
                if body is None:
                    return
                try:
                    balancer.send(body)
                except BaseException as error:  # reported after the join
                    errors.append(error)
                    return
                answered.release()

        threads = [threading.Thread(target=sender) for _ in range(senders)]
        for thread in threads:
            thread.start()
        for _ in range(len(bodies) // 3):
            assert answered.acquire(timeout=60), "the storm stalled\n" + serve_logs()
        leader_process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        assert leader_process.wait(timeout=10) == -signal.SIGKILL
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, f"{errors}\n{serve_logs()}"
        try:
            wait_for(lambda: scheduler_role(survivor_url) == "leader", timeout=20)
        except AssertionError:
            raise AssertionError("the survivor did not lead\n" + serve_logs()) from None
        took_over = time.monotonic() - killed

        # New groups after the kill: the balancer still tries the dead replica first at times.
        for group in range(before, before + after):
            balancer.send(storm_webhook(group, 2))
        try:
            wait_for(lambda: sent_dms() == before + after, timeout=30)
        except AssertionError:
            raise AssertionError(f"{sent_dms()} DMs sent\n{serve_logs()}") from None
        time.sleep(2.0)  # room for a doubled DM to show up, if there were one

    db = Database(database_url)
    try:
        with db.session_scope() as session:
            per_fingerprint = session.execute(
                select(StoredAlert.fingerprint, func.count()).group_by(StoredAlert.fingerprint)
            ).all()
            groups = session.scalar(select(func.count()).select_from(AlertGroup))
            pages = session.scalar(select(func.count()).select_from(Page))
            notifications = list(session.scalars(select(PageNotification.status)))
    finally:
        db.dispose()
    expected_alerts = before * growth + after * 2
    doubled = [fingerprint for fingerprint, count in per_fingerprint if count != 1]
    print(
        f"sent {balancer.sent} webhooks ({len(bodies)} in the storm, {senders} senders), "
        f"{balancer.retries} deliveries retried on the other replica "
        f"({sorted(set(balancer.failures))}); leader SIGKILLed after {len(bodies) // 3} storm "
        f"answers, survivor led {took_over:.1f} s later; counted {len(per_fingerprint)} "
        f"alerts (expected {expected_alerts}, {len(doubled)} stored twice), {groups} groups, "
        f"{pages} pages, {len(dms(sandbox, 'U0ALICE'))} DMs"
    )
    assert balancer.sent == before + len(bodies) + after
    assert len(per_fingerprint) == expected_alerts and doubled == []
    assert (groups, pages) == (before + after, before + after)
    assert notifications == ["sent"] * (before + after)
    assert len(dms(sandbox, "U0ALICE")) == before + after
