"""Two replicas on one PostgreSQL database: the leader dies mid-escalation, the standby takes
over the scheduler within 15 s, and every step still pages exactly once."""

from __future__ import annotations

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
