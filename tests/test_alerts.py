"""Alerts through the real app: webhooks in over HTTP (werkzeug's client into the WSGI app),
pages and incident channels out to the sandbox Slack. Dedup, grouping, resolve,
acknowledge, storm limits and bad input, on SQLite and (with FIREBREAK_TEST_DATABASE_URL)
PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy import event, func, select
from werkzeug.test import Client

from bot import timeline
from bot.alerts.model import fingerprint_of
from bot.alerts.records import AlertGroup, StoredAlert
from bot.alerts.routing import AlertRoute
from bot.app import Firebreak, build
from bot.config import ConfigError, FileConfig, Settings
from bot.incidents.models import Incident
from bot.oncall.models import Page
from bot.sandbox import SlackSandbox
from bot.slack.blocks import ACTION_PAGE_ACK
from tests.conftest import Slack, last_response_text, make_settings
from tests.test_paging import MONDAY, dms, oncall_data

TOKEN = "alert-token-for-tests"
ROUTING_KEY = "3f1b8a7c2d4e4f5a9b6c0d1e2f3a4b5c"
STARTS = "2026-03-02T09:58:00Z"


def alert_config(announce_channel: str, **route_changes: Any) -> FileConfig:
    data = oncall_data(announce_channel)
    data["services"] = {
        "checkout": {"escalation_policy": "payments", "routing_key": ROUTING_KEY},
        "default": {"escalation_policy": "payments"},
    }
    critical = {
        "name": "checkout-critical",
        "match": {"service": "checkout"},
        "match_re": {"severity": "critical|page"},
        "service": "checkout",
        "incident": {"open": True, "severity": "sev2"},
        **route_changes,
    }
    data["alert_routes"] = [critical, {"name": "default", "match": {}, "service": "default"}]
    return FileConfig.model_validate(data)


@pytest.fixture
def file_config(announce_channel: str) -> FileConfig:
    return alert_config(announce_channel)


@pytest.fixture
def settings(database_url: str, sandbox: SlackSandbox, file_config: FileConfig) -> Settings:
    base = make_settings(database_url, sandbox, file_config)
    env = base.env.model_copy(update={"alert_token": SecretStr(TOKEN)})
    return replace(base, env=env)


@pytest.fixture
def firebreak(settings: Settings) -> Iterator[Firebreak]:
    app = build(settings)
    app.clock.use(lambda: MONDAY)  # alice's week on `primary`
    try:
        yield app
    finally:
        app.close()


class Monitoring:
    """Sends webhooks into the app as Alertmanager and a PagerDuty client would."""

    def __init__(self, app: Firebreak) -> None:
        self.app = app
        self.client = Client(app.web)

    def alertmanager(
        self, payload: Any, *, token: str | None = TOKEN, raw: bytes | None = None
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        body = raw if raw is not None else json.dumps(payload).encode()
        response = self.client.post("/alerts/alertmanager", data=body, headers=headers)
        self.app.workers.wait_idle(timeout=20)
        return response.status_code, response.get_json(silent=True) or {}

    def pagerduty(self, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        response = self.client.post(
            "/v2/enqueue", data=json.dumps(event), headers={"Content-Type": "application/json"}
        )
        self.app.workers.wait_idle(timeout=20)
        return response.status_code, response.get_json(silent=True) or {}


@pytest.fixture
def monitoring(firebreak: Firebreak) -> Monitoring:
    return Monitoring(firebreak)


def am_alert(name: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "service": "checkout", "severity": "critical", **labels},
        "annotations": {
            "summary": f"{name} on checkout",
            "runbook_url": "https://runbooks.example.com/checkout",
        },
        "startsAt": STARTS,
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-03-02T10:20:00Z",
        "generatorURL": "http://prometheus.example.com/graph?g0.expr=up",
        "fingerprint": fingerprint_of({"alertname": name, **labels}),
    }


def am_payload(*alerts: dict[str, Any], group: str = "checkout") -> dict[str, Any]:
    firing = any(alert["status"] == "firing" for alert in alerts)
    return {
        "version": "4",
        "groupKey": f'{{}}:{{service="{group}"}}',
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": "firebreak",
        "groupLabels": {"service": group},
        "commonLabels": {"service": group},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example.com",
        "alerts": list(alerts),
    }


def use_routes(app: Firebreak, routes: list[AlertRoute]) -> None:
    """Route the running app's alerts by `routes` instead of its configuration's."""
    app.intake.policy = replace(app.intake.policy, routes=routes)


def count(app: Firebreak, model: Any, *where: Any) -> int:
    with app.db.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def incident_channel(app: Firebreak, sandbox: SlackSandbox) -> tuple[Incident, list[Any]]:
    with app.db.session_scope() as session:
        incident = session.scalars(select(Incident)).one()
        session.expunge(incident)
    assert incident.channel_id is not None
    return incident, sandbox.messages(incident.channel_id)


def test_an_alertmanager_group_pages_once_opens_one_incident_and_repeats_are_no_ops(
    firebreak: Firebreak, sandbox: SlackSandbox, monitoring: Monitoring
) -> None:
    first = am_payload(am_alert("HighErrorRate"), am_alert("HighLatency"))
    status, body = monitoring.alertmanager(first)
    assert status == 200, body
    assert (body["new"], body["routed"], body["incident"]) == (2, True, 1)

    # Alertmanager re-sends the whole group every group_interval: nothing new happens.
    for _ in range(3):
        status, body = monitoring.alertmanager(first)
        assert (status, body["new"], body["repeated"]) == (200, 0, 2)

    assert count(firebreak, Page) == 1
    assert count(firebreak, Incident) == 1
    assert count(firebreak, StoredAlert) == 2
    with firebreak.db.session_scope() as session:
        counts = sorted(session.scalars(select(StoredAlert.count)))
    assert counts == [4, 4]
    # alice is on call: one DM, carrying the alert's labels and links.
    texts = dms(sandbox, "U0ALICE")
    assert len(texts) == 1
    dm = next(c for c in sandbox.calls_to("chat.postMessage") if "blocks" in c.params)
    rendered = json.dumps(dm.params)
    assert "service=checkout" in rendered and "runbooks.example.com" in rendered

    incident, messages = incident_channel(firebreak, sandbox)
    assert incident.severity == "sev2" and incident.declared_by == timeline.BOT
    summaries = [m for m in messages if "Alerts from alertmanager" in m.text]
    assert len(summaries) == 1 and "2 firing" in summaries[0].text
    with firebreak.db.session_scope() as session:
        kinds = [e.kind for e in timeline.for_incident(session, incident.id)]
    assert kinds.count("alert_fired") == 2 and kinds.count("page_triggered") == 1


def test_an_opening_webhook_stays_within_its_statement_budget(
    firebreak: Firebreak, monitoring: Monitoring
) -> None:
    """Each statement is a round trip, and under a storm each one waits for the interpreter
    lock again (docs/architecture.md, Alerts): the budget of a webhook that opens a group,
    its incident and its page, besides BEGIN. PostgreSQL: 14, its three timeline facts in
    one INSERT; SQLite: 16, where the ORM inserts rows it must match to their new ids one
    at a time (no ordered RETURNING of a multi-row INSERT)."""
    sent: list[str] = []
    request_thread = threading.get_ident()

    def count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if threading.get_ident() == request_thread and not statement.startswith("BEGIN"):
            sent.append(statement.split("\n")[0][:80])

    event.listen(firebreak.db.engine, "before_cursor_execute", count)
    try:
        status, body = monitoring.alertmanager(
            am_payload(*(am_alert(f"Alert{number}") for number in range(100)))
        )
    finally:
        event.remove(firebreak.db.engine, "before_cursor_execute", count)
    assert status == 200 and (body["new"], body["incident"]) == (100, 1), body
    assert body["page"] is not None
    budget = 14 if firebreak.db.engine.dialect.name == "postgresql" else 16
    assert 0 < len(sent) <= budget, "\n".join(sent)


def test_an_alert_joining_the_group_edits_the_summary_in_place_and_pages_nobody_new(
    firebreak: Firebreak, sandbox: SlackSandbox, monitoring: Monitoring
) -> None:
    monitoring.alertmanager(am_payload(am_alert("HighErrorRate")))
    incident_channel(firebreak, sandbox)
    status, body = monitoring.alertmanager(
        am_payload(am_alert("HighErrorRate"), am_alert("DiskFull", instance="db1"))
    )
    assert (status, body["new"], body["repeated"]) == (200, 1, 1)
    _incident, after = incident_channel(firebreak, sandbox)
    summaries = [m for m in after if "Alerts from alertmanager" in m.text]
    assert len(summaries) == 1, [m.text for m in after]
    assert "2 firing" in summaries[0].text
    assert len(sandbox.calls_to("chat.update")) >= 1
    assert count(firebreak, Page) == 1 and len(dms(sandbox, "U0ALICE")) == 1


def test_when_every_alert_resolves_the_page_resolves_and_a_new_firing_pages_again(
    firebreak: Firebreak, sandbox: SlackSandbox, monitoring: Monitoring
) -> None:
    monitoring.alertmanager(am_payload(am_alert("HighErrorRate"), am_alert("HighLatency")))
    status, body = monitoring.alertmanager(
        am_payload(am_alert("HighErrorRate", "resolved"), am_alert("HighLatency"))
    )
    assert (status, body["resolved"]) == (200, 1)
    with firebreak.db.session_scope() as session:
        assert session.scalars(select(Page.state)).one() == "triggered"
    monitoring.alertmanager(
        am_payload(am_alert("HighErrorRate", "resolved"), am_alert("HighLatency", "resolved"))
    )
    with firebreak.db.session_scope() as session:
        page = session.scalars(select(Page)).one()
        group = session.scalars(select(AlertGroup)).one()
        incident = session.scalars(select(Incident)).one()
    assert (page.state, page.resolved_by, group.state) == ("resolved", "alertmanager", "resolved")
    assert incident.resolved_at is None  # people resolve incidents unless auto_resolve says so
    _, messages = incident_channel(firebreak, sandbox)
    assert any("resolved P-1" in m.text for m in messages), [m.text for m in messages]
    summary = next(m for m in messages if "Alerts from alertmanager" in m.text)
    assert "all resolved" in summary.text

    # The same group firing again after it resolved is a new problem: a new page.
    monitoring.alertmanager(am_payload(am_alert("HighErrorRate")))
    assert count(firebreak, Page) == 2
    assert count(firebreak, AlertGroup) == 2


def test_auto_resolve_resolves_the_incident_with_its_alerts(
    firebreak: Firebreak, monitoring: Monitoring, announce_channel: str
) -> None:
    use_routes(firebreak, alert_config(announce_channel, auto_resolve=True).alert_routes)
    monitoring.alertmanager(am_payload(am_alert("HighErrorRate")))
    monitoring.alertmanager(am_payload(am_alert("HighErrorRate", "resolved")))
    with firebreak.db.session_scope() as session:
        incident = session.scalars(select(Incident)).one()
        assert (incident.status, incident.resolution) == ("resolved", "every alert resolved")


def test_pagerduty_events_trigger_repeat_acknowledge_and_resolve(
    firebreak: Firebreak, sandbox: SlackSandbox, monitoring: Monitoring
) -> None:
    trigger = {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "payload": {"summary": "Checkout 5xx above 5%", "source": "lb-1", "severity": "critical"},
    }
    status, body = monitoring.pagerduty(trigger)
    assert status == 202 and body["status"] == "success" and body["message"] == "Event processed"
    key = body["dedup_key"]
    assert key
    status, again = monitoring.pagerduty({**trigger, "dedup_key": key})
    assert (status, again["dedup_key"]) == (202, key)
    assert count(firebreak, Page) == 1 and count(firebreak, Incident) == 1

    ack = {"routing_key": ROUTING_KEY, "event_action": "acknowledge", "dedup_key": key}
    assert monitoring.pagerduty(ack)[0] == 202
    with firebreak.db.session_scope() as session:
        assert session.scalars(select(Page.state)).one() == "acknowledged"
    resolve = {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": key}
    status, body = monitoring.pagerduty(resolve)
    assert (status, body["dedup_key"]) == (202, key)
    with firebreak.db.session_scope() as session:
        assert session.scalars(select(Page.state)).one() == "resolved"
        labels = session.scalars(select(StoredAlert.labels)).one()
    assert labels["service"] == "checkout" and labels["severity"] == "critical"


def test_pagerduty_refuses_unknown_keys_and_invalid_events_as_pagerduty_does(
    firebreak: Firebreak, monitoring: Monitoring
) -> None:
    unknown = {
        "routing_key": "0" * 32,
        "event_action": "trigger",
        "payload": {"summary": "x", "source": "y", "severity": "error"},
    }
    status, body = monitoring.pagerduty(unknown)
    assert status == 400 and body["status"] == "invalid event"
    assert any("routing_key" in error for error in body["errors"])
    status, body = monitoring.pagerduty(
        {"routing_key": ROUTING_KEY, "event_action": "explode", "payload": {"summary": 3}}
    )
    assert status == 400 and body["message"] == "Event object is invalid"
    assert any("event_action" in error for error in body["errors"]), body
    assert count(firebreak, StoredAlert) == 0 and count(firebreak, Page) == 0


def test_bad_requests_are_refused_with_the_field_named_and_nothing_stored(
    firebreak: Firebreak, monitoring: Monitoring
) -> None:
    good = am_payload(am_alert("HighErrorRate"))
    assert monitoring.alertmanager(good, token=None)[0] == 401
    assert monitoring.alertmanager(good, token="wrong")[0] == 401
    status, body = monitoring.alertmanager(None, raw=b"{not json")
    assert status == 400 and "JSON" in body["errors"][0]
    broken = am_payload(am_alert("HighErrorRate"))
    del broken["alerts"][0]["labels"]
    status, body = monitoring.alertmanager(broken)
    assert status == 400 and any("alerts[0].labels" in e for e in body["errors"]), body
    status, _ = monitoring.alertmanager(None, raw=b"[" * 100 + b"]" * 100)
    assert status == 400
    big = json.dumps({"alerts": ["x" * (1024 * 1024)]}).encode()
    assert monitoring.alertmanager(None, raw=big)[0] == 413
    assert count(firebreak, StoredAlert) == 0 and count(firebreak, AlertGroup) == 0


def test_a_storm_pages_up_to_the_limit_then_sends_one_notice(
    firebreak: Firebreak, sandbox: SlackSandbox, monitoring: Monitoring, announce_channel: str
) -> None:
    config = alert_config(announce_channel, storm={"max_pages": 2, "per": "5m"})
    use_routes(firebreak, config.alert_routes)
    for number in range(6):
        status, _ = monitoring.alertmanager(
            am_payload(am_alert("HighErrorRate", shard=str(number)), group=f"shard-{number}")
        )
        assert status == 200
    assert count(firebreak, AlertGroup) == 6
    assert count(firebreak, StoredAlert) == 6
    assert count(firebreak, Page) == 2
    assert count(firebreak, AlertGroup, AlertGroup.suppressed.is_(True)) == 4
    notices = [m for m in sandbox.messages(announce_channel) if "Alert storm" in m.text]
    assert len(notices) == 1, [m.text for m in sandbox.messages(announce_channel)]


def test_an_alert_no_route_matches_is_stored_and_pages_nobody(
    firebreak: Firebreak, monitoring: Monitoring, announce_channel: str
) -> None:
    config = alert_config(announce_channel)
    use_routes(firebreak, config.alert_routes[:1])
    status, body = monitoring.alertmanager(
        am_payload(am_alert("Cpu", service="search", severity="info"), group="search")
    )
    assert (status, body["routed"], body["page"]) == (200, False, None)
    assert count(firebreak, StoredAlert) == 1 and count(firebreak, Page) == 0
    metrics = Client(firebreak.web).get("/metrics").get_data(as_text=True)
    assert (
        'firebreak_alerts_received_total{outcome="unrouted",source="alertmanager"} 1.0' in metrics
    )


def test_a_long_description_is_shortened_not_refused(
    firebreak: Firebreak, monitoring: Monitoring
) -> None:
    alert = am_alert("HighErrorRate")
    alert["annotations"]["description"] = "x" * 10_000
    status, body = monitoring.alertmanager(am_payload(alert))
    assert (status, body["new"]) == (200, 1)
    with firebreak.db.session_scope() as session:
        annotations = session.scalars(select(StoredAlert.annotations)).one()
    assert len(annotations["description"]) == 2048 and annotations["description"].endswith("…")


def test_times_are_stored_in_utc(firebreak: Firebreak, monitoring: Monitoring) -> None:
    alert = am_alert("HighErrorRate")
    alert["startsAt"] = "2026-03-02T10:58:00+01:00"
    monitoring.alertmanager(am_payload(alert))
    with firebreak.db.session_scope() as session:
        starts = session.scalars(select(StoredAlert.starts_at)).one()
    assert starts == datetime(2026, 3, 2, 9, 58, tzinfo=UTC)


def test_incident_alerts_lists_the_alerts_with_their_state_to_the_asker_only(
    firebreak: Firebreak, sandbox: SlackSandbox, monitoring: Monitoring, slack: Slack
) -> None:
    monitoring.alertmanager(
        am_payload(am_alert("HighErrorRate"), am_alert("<!channel> DiskFull", instance="db1"))
    )
    monitoring.alertmanager(
        am_payload(
            am_alert("HighErrorRate", "resolved"), am_alert("<!channel> DiskFull", instance="db1")
        )
    )
    incident, messages = incident_channel(firebreak, sandbox)
    assert incident.channel_id is not None
    slack.run("alerts", channel=incident.channel_id)
    payload = sandbox.responses()[-1].payload
    assert payload.get("response_type", "ephemeral") == "ephemeral"
    assert payload["text"] == "Alerts of INC-1: 1 firing, 1 resolved"
    text = "\n".join(b["text"]["text"] for b in payload["blocks"] if b["type"] == "section")
    assert text.index("*firing*") < text.index("*resolved*")
    assert "<!channel>" not in text and "&lt;!channel&gt; DiskFull" in text
    assert "<https://runbooks.example.com/checkout|Runbook>" in text
    assert len(sandbox.messages(incident.channel_id)) == len(messages)


def test_the_same_webhook_at_the_same_instant_gives_one_alert_page_and_incident(
    firebreak: Firebreak, sandbox: SlackSandbox
) -> None:
    """Eight deliveries of one group at once (what two replicas behind a load balancer, and
    Alertmanager's own retries, produce): the database decides, not a look-up that races."""
    payload = json.dumps(am_payload(am_alert("HighErrorRate"), am_alert("HighLatency"))).encode()
    start = threading.Barrier(8)
    statuses: list[int] = []

    def deliver() -> None:
        client = Client(firebreak.web)
        start.wait()
        response = client.post(
            "/alerts/alertmanager",
            data=payload,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"},
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    firebreak.workers.wait_idle(timeout=20)
    print(f"sent 8 identical webhooks at once; answers {sorted(statuses)}")
    assert statuses == [200] * 8
    assert count(firebreak, AlertGroup) == 1
    assert count(firebreak, StoredAlert) == 2
    assert count(firebreak, Page) == 1 and count(firebreak, Incident) == 1
    with firebreak.db.session_scope() as session:
        assert sorted(session.scalars(select(StoredAlert.count))) == [8, 8]
    assert len(dms(sandbox, "U0ALICE")) == 1


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = st.sampled_from(
    ["status", "groupKey", "alerts", "labels", "annotations", "startsAt", "endsAt", "fingerprint"]
)


@examples(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(junk=JSON, field=FIELDS, value=JSON)
def test_arbitrary_json_never_yields_a_5xx_or_a_partial_write(
    firebreak: Firebreak, monitoring: Monitoring, junk: Any, field: str, value: Any
) -> None:
    before = (count(firebreak, AlertGroup), count(firebreak, StoredAlert), count(firebreak, Page))
    status, _ = monitoring.alertmanager(junk)
    assert status in (200, 400), status
    broken = am_payload(am_alert("HighErrorRate", shard=str(before[0])), group=f"g{before[0]}")
    target = broken["alerts"][0] if field in ("labels", "annotations", "startsAt") else broken
    target[field] = value
    status, body = monitoring.alertmanager(broken)
    assert status in (200, 400), status
    after = (count(firebreak, AlertGroup), count(firebreak, StoredAlert), count(firebreak, Page))
    if status == 400:
        assert after == before, body
    else:
        assert after[0] == before[0] + 1 and after[1] >= before[1] + 1
    for endpoint in ("/alerts/grafana", "/v2/enqueue"):
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        response = monitoring.client.post(endpoint, data=json.dumps(junk), headers=headers)
        assert response.status_code in (200, 202, 400), (endpoint, response.status_code)


def test_a_database_that_does_not_answer_gets_503_so_the_sender_retries(
    sandbox: SlackSandbox, file_config: FileConfig, tmp_path: Any
) -> None:
    """Nothing listens on port 9 of 127.0.0.1: every connection is refused at once, as when
    the database is down. The webhook must not be answered 2xx, and nothing may crash."""
    settings = make_settings("postgresql+psycopg://postgres@127.0.0.1:9/none", sandbox, file_config)
    settings = replace(
        settings, env=settings.env.model_copy(update={"alert_token": SecretStr(TOKEN)})
    )
    app = build(settings)
    try:
        status, body = Monitoring(app).alertmanager(am_payload(am_alert("HighErrorRate")))
        assert status == 503 and body["status"] == "unavailable", body
        pd = Monitoring(app).pagerduty(
            {
                "routing_key": ROUTING_KEY,
                "event_action": "trigger",
                "payload": {"summary": "x", "source": "y", "severity": "error"},
            }
        )
        assert pd[0] == 503
    finally:
        app.close()


def test_serve_refuses_to_start_when_a_routing_key_variable_is_malformed(
    database_url: str, sandbox: SlackSandbox, announce_channel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(Unset, it only turns the service's PagerDuty events off: tests/test_example_config.)"""
    data = oncall_data(announce_channel)
    data["services"] = {
        "checkout": {"escalation_policy": "payments", "routing_key_env": "CHECKOUT_KEY"}
    }
    monkeypatch.setenv("CHECKOUT_KEY", "not-32-letters-and-digits")
    settings = make_settings(database_url, sandbox, FileConfig.model_validate(data))
    with pytest.raises(ConfigError) as refused:
        build(settings)
    assert any("CHECKOUT_KEY (services.checkout" in problem for problem in refused.value.problems)


def test_whoever_acknowledges_an_alert_incidents_page_becomes_its_commander(
    firebreak: Firebreak, sandbox: SlackSandbox, monitoring: Monitoring, slack: Slack
) -> None:
    monitoring.alertmanager(am_payload(am_alert("HighErrorRate")))
    incident, _ = incident_channel(firebreak, sandbox)
    assert incident.channel_id is not None
    topic = sandbox.channel(incident.channel_id).topic
    assert "Commander: unassigned" in topic and "<@firebreak>" not in topic
    dm = next(c["id"] for c in sandbox.snapshot()["channels"] if c.get("is_im"))
    slack.block_action(ACTION_PAGE_ACK, user="U0ALICE", channel=dm, value="1")
    slack.settle()
    assert "You lead INC-1 now" in last_response_text(sandbox)
    assert "Commander: <@U0ALICE>" in sandbox.channel(incident.channel_id).topic
    assert "U0ALICE" in sandbox.channel(incident.channel_id).members
    texts = [m.text for m in sandbox.messages(incident.channel_id)]
    assert any("made <@U0ALICE> commander" in text for text in texts), texts


def test_sqlite_writers_take_turns_in_order_pages_first_background_last() -> None:
    """bot.db.WriteQueue (in front of SQLite's BEGIN IMMEDIATE): while one connection holds
    its turn, a background writer, a normal one and an urgent one (a page's DM) wait; they
    are served urgent, normal, background, whatever order they came in."""
    from bot.db import BACKGROUND, NORMAL, URGENT, WriteQueue

    queue = WriteQueue(timeout=60, patience=60)
    served: list[str] = []
    queue.acquire("holder")

    def writer(name: str, level: int) -> None:
        queue.acquire(name, level=level)
        served.append(name)
        queue.release(name)

    threads = []
    for name, level in (("background", BACKGROUND), ("normal", NORMAL), ("urgent", URGENT)):
        thread = threading.Thread(target=writer, args=(name, level))
        thread.start()
        threads.append(thread)
        while len(queue._waiting) < len(threads):  # each is queued before the next comes
            threading.Event().wait(0.001)
    queue.acquire("holder")  # the holder's own turn again: no deadlock with itself
    queue.release("holder")
    for thread in threads:
        thread.join(timeout=30)
    assert served == ["urgent", "normal", "background"]
    queue.acquire("after")  # free again
    queue.release("after")
