"""The inbound alert parsers: real payloads parse to the expected values, every kind of bad
input is refused with the bad field named, and no JSON at all makes them raise anything but
`Invalid` (hypothesis: arbitrary JSON, and the real fixtures with keys dropped and values
swapped)."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.alerts.model import (
    MAX_ALERTS,
    MAX_KEY,
    MAX_LABEL_NAME,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    MAX_LINKS,
    MAX_SUMMARY,
    MAX_URL,
    Alert,
    Batch,
    FieldError,
    Invalid,
    Link,
    fingerprint_of,
)
from integrations import alertmanager, grafana, pagerduty
from integrations._fields import MAX_ERRORS

FIXTURES = Path(__file__).parent / "fixtures" / "alerts"
ROUTING_KEY = "3f1b8a7c2d4e4f5a9b6c0d1e2f3a4b5c"
Parser = Callable[[object], object]
PARSERS: dict[str, Parser] = {
    "alertmanager": alertmanager.parse,
    "grafana": grafana.parse,
    "pagerduty": pagerduty.parse,
}


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def fixture_names(prefix: str) -> list[str]:
    return sorted(path.name for path in FIXTURES.glob(f"{prefix}*.json"))


def refusal(parse: Parser, body: object) -> list[FieldError]:
    with pytest.raises(Invalid) as caught:
        parse(body)
    return caught.value.errors


def assert_refused(parse: Parser, body: object, field: str, *words: str) -> None:
    """`body` is refused with an error at `field` whose problem mentions every word."""
    errors = refusal(parse, body)
    found = [error for error in errors if error.field == field]
    assert found, f"no error at {field!r}; got {[str(e) for e in errors]}"
    for word in words:
        assert any(word in error.problem for error in found), (word, [str(e) for e in found])


def case_id(case: tuple[Any, ...]) -> str:
    """A refusal case's test id: the field it names."""
    return str(case[1])


def am_body(**changes: Any) -> dict[str, Any]:
    """A minimal valid Alertmanager body, with top-level `changes`."""
    body: dict[str, Any] = {
        "version": "4",
        "groupKey": '{}:{alertname="Test"}',
        "status": "firing",
        "alerts": [am_alert()],
    }
    body.update(changes)
    return body


def am_alert(**changes: Any) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "status": "firing",
        "labels": {"alertname": "Test", "severity": "critical"},
        "annotations": {},
        "startsAt": "2024-05-01T12:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": "0123456789abcdef",
    }
    alert.update(changes)
    return alert


def pd_body(**changes: Any) -> dict[str, Any]:
    """A minimal valid PagerDuty trigger, with top-level `changes`."""
    body: dict[str, Any] = {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "db1-disk",
        "payload": {"summary": "Disk full on db1", "source": "db1", "severity": "critical"},
    }
    body.update(changes)
    return body


def pd_payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"summary": "Disk full on db1", "source": "db1", "severity": "error"}
    payload.update(changes)
    return pd_body(payload=payload)


# -- the real payloads ------------------------------------------------------------------------


def test_alertmanager_firing_group_with_a_resolved_alert_and_truncation() -> None:
    batch = alertmanager.parse(load("alertmanager-firing.json"))
    assert batch.source == "alertmanager"
    assert (
        batch.group_key
        == '{}/{severity="critical"}:{alertname="HighErrorRate", service="checkout"}'
    )
    assert batch.title == "HighErrorRate (service=checkout)"
    assert batch.truncated == 3
    assert (batch.action, batch.dedup_key) == ("notify", None)
    firing, resolved = batch.alerts
    assert firing.fingerprint == "3b1d2f0e8c7a6b54"
    assert firing.status == "firing"
    assert firing.labels["severity"] == "critical"
    assert firing.summary == "checkout: 5xx error rate above 5%"
    # Go's nanoseconds are kept to the microsecond; the zero endsAt means "not ended".
    assert firing.starts_at == datetime(2024, 5, 1, 12, 3, 10, 123456, tzinfo=UTC)
    assert firing.ends_at is None
    assert [link.text for link in firing.links] == ["Source", "Runbook"]
    assert firing.links[1].url == "https://runbooks.example.com/checkout/high-error-rate"
    assert resolved.status == "resolved"
    # No summary annotation: the description's first line.
    assert resolved.summary == "6.0% of requests to checkout fail with 5xx."
    # "+02:00" is converted to UTC.
    assert resolved.starts_at == datetime(2024, 5, 1, 9, 58, 40, 500000, tzinfo=UTC)
    assert resolved.ends_at == datetime(2024, 5, 1, 12, 4, 40, tzinfo=UTC)


def test_alertmanager_resolved_group_titled_by_its_common_summary() -> None:
    batch = alertmanager.parse(load("alertmanager-resolved.json"))
    assert batch.title == "Disk /dev/sda1 on db1.example.com will fill within 4 hours"
    (alert,) = batch.alerts
    assert alert.status == "resolved"
    assert alert.ends_at == datetime(2024, 5, 2, 4, 30, 15, tzinfo=UTC)
    assert alert.links == (
        Link(
            "Source",
            "http://prometheus.example.com:9090/graph?g0.expr=predict_linear%28node_filesystem_free_bytes%5B6h%5D%2C+4+%2A+3600%29+%3C+0&g0.tab=1",
        ),
        Link(
            "Dashboard",
            "https://grafana.example.com/d/node/node-exporter?var-instance=db1.example.com:9100",
        ),
    )


def test_alertmanager_v034_fields_are_ignored() -> None:
    batch = alertmanager.parse(load("alertmanager-v0.34-reason-routelabels.json"))
    assert batch == Batch(
        source="alertmanager",
        group_key='{}/{team="payments"}:{job="payments-api"}',
        title="TargetDown (job=payments-api)",
        alerts=(
            Alert(
                fingerprint="0c5f7e1d2a3b4c6d",
                status="firing",
                labels={"alertname": "TargetDown", "job": "payments-api", "severity": "page"},
                summary="2 of 3 payments-api targets are down.",
                annotations={
                    "description": "2 of 3 payments-api targets are down.\nCheck the deployment."
                },
                starts_at=datetime(2026, 3, 5, 8, 15, 30, 987000, tzinfo=UTC),
                links=(
                    Link(
                        "Source",
                        "http://prometheus.example.com:9090/graph?g0.expr=up%7Bjob%3D%22payments-api%22%7D+%3D%3D+0&g0.tab=1",
                    ),
                ),
            ),
        ),
    )


def test_grafana_docs_example() -> None:
    batch = grafana.parse(load("grafana-docs.json"))
    assert batch.source == "grafana"
    assert batch.group_key == "{}:{}"
    assert batch.title == "(blue)"  # Grafana's title "[FIRING:2]  (blue)" without the count
    assert [alert.fingerprint for alert in batch.alerts] == ["c6eadffa33fcdf37", "bc97ff14869b13e3"]
    first = batch.alerts[0]
    assert first.summary == "This alert was triggered for zone us-1"
    assert first.starts_at == datetime(2021, 10, 12, 7, 51, 3, 157076, tzinfo=UTC)
    assert first.ends_at is None
    # Empty dashboardURL and panelURL give no links.
    assert [link.text for link in first.links] == ["Source", "Runbook", "Silence"]
    assert "value" not in first.annotations


def test_grafana_default_payload_template() -> None:
    batch = grafana.parse(load("grafana-default-payload-template.json"))
    assert batch.group_key == "alertname"
    assert batch.title == "(val1)"
    (alert,) = batch.alerts
    assert alert.summary == "alert1"  # no summary or description: the alert name
    assert (alert.starts_at, alert.ends_at) == (None, None)  # Go's zero times
    assert alert.links[1] == Link(
        "Silence",
        "http://localhost/alerting/silence/new?alertmanager=grafana&matcher=alertname%3Dalert1&matcher=lbl1%3Dval1&orgId=1",
    )


def test_grafana_resolved_alert_with_values_and_every_link() -> None:
    batch = grafana.parse(load("grafana-resolved-values.json"))
    assert batch.title == "DatabaseCPUHigh Databases (db1.example.com warning)"
    (alert,) = batch.alerts
    assert alert.status == "resolved"
    assert alert.annotations["value"].startswith("[ var='A' labels={instance=db1.example.com}")
    assert [link.text for link in alert.links] == [
        "Source",
        "Runbook",
        "Dashboard",
        "Panel",
        "Silence",
        "Image",
    ]
    assert alert.ends_at == datetime(2024, 6, 10, 12, 45, tzinfo=UTC)


def test_pagerduty_docs_trigger() -> None:
    event = pagerduty.parse(load("pagerduty-docs-trigger.json"))
    assert event.routing_key == "samplekeyhere0000000000000000000"
    batch = event.batch
    assert (batch.source, batch.group_key, batch.dedup_key) == ("pagerduty",) + (
        "samplekeyhere",
    ) * 2
    assert batch.title == "Example alert on host1.example.com"
    (alert,) = batch.alerts
    assert alert == Alert(
        fingerprint="samplekeyhere",
        status="firing",
        labels={
            "severity": "info",
            "source": "monitoringtool:cloudvendor:central-region-dc-01:852559987:cluster/api-stats-prod-003",
            "component": "postgres",
            "group": "prod-datapipe",
            "class": "deploy",
        },
        summary="Example alert on host1.example.com",
        annotations={"ping time": "1500ms", "load avg": "0.75"},
        starts_at=datetime(2015, 7, 17, 8, 42, 58, 315000, tzinfo=UTC),
        # The image's href is the link's URL already: kept once.
        links=(
            Link("Sample Monitoring Service", "https://monitoring.example.com"),
            Link("Link text", "https://example.com/"),
        ),
    )


@pytest.mark.parametrize(
    ("name", "action"),
    [("pagerduty-docs-acknowledge.json", "acknowledge"), ("pagerduty-docs-resolve.json", "notify")],
)
def test_pagerduty_docs_acknowledge_and_resolve(name: str, action: str) -> None:
    batch = pagerduty.parse(load(name)).batch
    assert (batch.action, batch.group_key, batch.dedup_key, batch.title) == (
        action,
        "dedupkeyhere",
        "dedupkeyhere",
        "dedupkeyhere",
    )
    if action == "acknowledge":
        assert batch.alerts == ()
    else:
        (alert,) = batch.alerts
        assert (alert.fingerprint, alert.status, alert.labels) == ("dedupkeyhere", "resolved", {})


def test_pagerduty_from_alertmanager_trigger_then_resolve() -> None:
    trigger = pagerduty.parse(load("pagerduty-alertmanager-trigger.json")).batch
    resolve = pagerduty.parse(load("pagerduty-alertmanager-resolve.json")).batch
    assert trigger.group_key == resolve.group_key == trigger.dedup_key
    assert len(trigger.group_key) == 64
    # The "[FIRING:1] " / "[RESOLVED] " subject prefix is not part of the title.
    assert (
        trigger.title
        == resolve.title
        == ("HighErrorRate checkout (checkout-7d9f8-abcde:8080 checkout critical)")
    )
    assert trigger.alerts[0].status == "firing"
    assert resolve.alerts[0].status == "resolved"
    assert trigger.alerts[0].summary.startswith("[FIRING:1] HighErrorRate")
    assert trigger.alerts[0].labels == {"severity": "error", "source": "Alertmanager"}
    assert trigger.alerts[0].annotations["num_firing"] == "1"
    assert (
        trigger.alerts[0].annotations["firing"].startswith("Labels:\n - alertname = HighErrorRate")
    )
    assert trigger.alerts[0].links == (
        Link(
            "Alertmanager",
            "http://alertmanager.example.com:9093/#/alerts?receiver=firebreak-pagerduty",
        ),
    )


def test_pagerduty_from_grafana() -> None:
    event = pagerduty.parse(load("pagerduty-grafana-trigger.json"))
    (alert,) = event.batch.alerts
    assert alert.labels == {
        "severity": "critical",
        "source": "grafana-host",
        "class": "default",
        "component": "Grafana",
        "group": "default",
    }
    assert alert.annotations["resolved"] == ""
    # client_url and the "External URL" link are the same URL: one link.
    assert alert.links == (Link("Grafana", "http://localhost"),)


def test_pagerduty_client_trigger_without_dedup_key_gets_a_new_one() -> None:
    body = load("pagerduty-client-trigger.json")
    first, second = pagerduty.parse(body).batch, pagerduty.parse(body).batch
    assert re.fullmatch(r"[0-9a-f]{32}", first.dedup_key or "")
    assert first.dedup_key != second.dedup_key
    assert first.group_key == first.dedup_key == first.alerts[0].fingerprint
    assert first.alerts[0].annotations == {
        "mount": "/var/lib/postgresql",
        "free_bytes": "0",
        "tags": '["db", "disk"]',
    }


@pytest.mark.parametrize("name", sorted(path.name for path in FIXTURES.glob("*.json")))
def test_every_fixture_parses_within_bounds_and_is_not_changed(name: str) -> None:
    body = load(name)
    before = copy.deepcopy(body)
    parse = PARSERS[name.split("-")[0]]
    check_result(parse(body))
    assert body == before


# -- refused: the field is named ----------------------------------------------------------------


@pytest.mark.parametrize("body", [None, [], [{}], "alerts", 4, 1.5, True, ""])
@pytest.mark.parametrize("source", sorted(PARSERS))
def test_a_body_that_is_not_an_object(source: str, body: object) -> None:
    assert_refused(PARSERS[source], body, "body", "must be an object")


# (top-level changes to a valid body, the field named, words its problem must hold)
ENVELOPE_REFUSALS = [
    ({"groupKey": None}, "groupKey", "required"),
    ({"groupKey": ""}, "groupKey", "empty"),
    ({"groupKey": 12}, "groupKey", "string", "number"),
    ({"alerts": None}, "alerts", "required"),
    ({"alerts": []}, "alerts", "empty"),
    ({"alerts": {"0": {}}}, "alerts", "array", "object"),
    ({"alerts": [{}] * (MAX_ALERTS + 1)}, "alerts", str(MAX_ALERTS), "max_alerts"),
    ({"truncatedAlerts": -1}, "truncatedAlerts", "between"),
    ({"truncatedAlerts": 2**31}, "truncatedAlerts", "between"),
    ({"truncatedAlerts": 10**5000}, "truncatedAlerts", "between"),
    ({"truncatedAlerts": True}, "truncatedAlerts", "whole number", "boolean"),
    ({"truncatedAlerts": 1.0}, "truncatedAlerts", "whole number"),
    ({"status": "pending"}, "status", "firing, resolved"),
    ({"version": 4}, "version", "string", "number"),
    ({"receiver": {}}, "receiver", "string", "object"),
    ({"externalURL": False}, "externalURL", "string", "boolean"),
    ({"groupLabels": {"service": 1}}, "groupLabels.service", "string"),
    ({"commonLabels": []}, "commonLabels", "object"),
    ({"commonAnnotations": {"summary": "a\x00"}}, "commonAnnotations.summary", "NUL"),
]
LONG_NAME = "n" * (MAX_LABEL_NAME + 1)
# (changes to the one alert of a valid body, the field named under alerts[0], words)
ALERT_REFUSALS = [
    ({"status": "pending"}, "status", "firing, resolved", '"pending"'),
    ({"status": None}, "status", "required"),
    ({"labels": None}, "labels", "required"),
    ({"labels": ["a"]}, "labels", "object", "array"),
    ({"labels": {"severity": 3}}, "labels.severity", "string", "number"),
    ({"labels": {"up": True}}, "labels.up", "string", "boolean"),
    ({"labels": {"a.b": None}}, 'labels["a.b"]', "string", "null"),
    ({"labels": {"": "x"}}, 'labels[""]', "empty name"),
    ({"labels": {"a\nb": "x"}}, 'labels["a\\nb"]', "control"),
    ({"labels": {"a\x00": "x"}}, 'labels["a\\u0000"]', "control"),
    ({"labels": {"job": "a\x00b"}}, "labels.job", "NUL"),
    ({"labels": {"job": "a\ud800"}}, "labels.job", "surrogate"),
    ({"labels": {"job": "x" * (MAX_LABEL_VALUE + 1)}}, "labels.job", str(MAX_LABEL_VALUE)),
    ({"labels": {LONG_NAME: "x"}}, f"labels[{json.dumps(LONG_NAME[:40])}…]", str(MAX_LABEL_NAME)),
    ({"labels": {f"l{i}": "x" for i in range(MAX_LABELS + 1)}}, "labels", str(MAX_LABELS)),
    ({"annotations": {"summary": 1.5}}, "annotations.summary", "string"),
    ({"annotations": "text"}, "annotations", "object", "string"),
    ({"startsAt": "yesterday"}, "startsAt", "time like"),
    ({"startsAt": "2024-05-01"}, "startsAt", "time like"),
    ({"startsAt": "2024-05-01T12:00:00"}, "startsAt", "time like"),  # RFC 3339 has an offset
    ({"startsAt": "2024-02-30T12:00:00Z"}, "startsAt", "not a valid time"),
    ({"startsAt": "\u0662\u0660\u0662\u0664-05-01T12:00:00Z"}, "startsAt", "time like"),
    ({"endsAt": "0001-01-01T00:00:00+01:00"}, "endsAt", "range"),
    ({"endsAt": "9999-12-31T23:59:59-01:00"}, "endsAt", "range"),
    ({"endsAt": 1714564800}, "endsAt", "string", "number"),
    ({"generatorURL": ["x"]}, "generatorURL", "string", "array"),
    ({"fingerprint": 7}, "fingerprint", "string"),
    ({"fingerprint": "f" * (MAX_KEY + 1)}, "fingerprint", str(MAX_KEY)),
]


@pytest.mark.parametrize("parse", [alertmanager.parse, grafana.parse])
@pytest.mark.parametrize("case", ENVELOPE_REFUSALS, ids=case_id)
def test_envelope_refusals(parse: Parser, case: tuple[Any, ...]) -> None:
    changes, field, *words = case
    assert_refused(parse, am_body(**changes), field, *words)


@pytest.mark.parametrize("parse", [alertmanager.parse, grafana.parse])
@pytest.mark.parametrize("case", ALERT_REFUSALS, ids=case_id)
def test_alert_refusals(parse: Parser, case: tuple[Any, ...]) -> None:
    changes, field, *words = case
    assert_refused(parse, am_body(alerts=[am_alert(**changes)]), f"alerts[0].{field}", *words)


def test_alert_entries_and_repeated_fingerprints() -> None:
    assert_refused(alertmanager.parse, am_body(alerts=[am_alert(), 3]), "alerts[1]", "object")
    body = am_body(alerts=[am_alert(), am_alert()])
    assert_refused(alertmanager.parse, body, "alerts[1].fingerprint", "alerts[0]")


def test_every_bad_field_is_reported_not_just_the_first() -> None:
    body = am_body(
        groupKey=None,
        truncatedAlerts="3",
        alerts=[am_alert(status="up"), am_alert(labels={"a": 1}, fingerprint="x"), 5],
    )
    fields = [error.field for error in refusal(alertmanager.parse, body)]
    assert fields == [
        "groupKey",
        "truncatedAlerts",
        "alerts[0].status",
        "alerts[1].labels.a",
        "alerts[2]",
    ]


def test_a_flood_of_bad_fields_gets_a_bounded_answer() -> None:
    alerts = [am_alert(labels={"a": 1, "b": 2}, fingerprint=str(i)) for i in range(MAX_ALERTS)]
    errors = refusal(alertmanager.parse, am_body(alerts=alerts))
    assert len(errors) == MAX_ERRORS + 1
    assert errors[-1] == FieldError(
        "body", f"{2 * MAX_ALERTS - MAX_ERRORS} more problems are not listed; fix these first"
    )


def test_invalid_message_lists_every_error() -> None:
    with pytest.raises(Invalid) as caught:
        alertmanager.parse(am_body(groupKey=1, alerts=[]))
    assert (
        str(caught.value)
        == "groupKey: must be a string; got a number; alerts: is empty; a notification carries at least one alert"
    )


# -- Alertmanager shape: what is kept -------------------------------------------------------------


def test_unknown_fields_and_nulls_for_optional_objects_are_accepted() -> None:
    body = am_body(
        groupLabels=None,
        commonLabels=None,
        commonAnnotations=None,
        truncatedAlerts=None,
        notification_reason="repeat interval elapsed",
        future={"anything": [1, 2]},
        alerts=[am_alert(annotations=None, startsAt=None, endsAt=None, extra=[None])],
    )
    batch = alertmanager.parse(body)
    assert batch.truncated == 0
    assert batch.alerts[0].annotations == {}
    assert batch.alerts[0].starts_at is None


def test_missing_fingerprint_is_computed_from_the_labels() -> None:
    labels = {"alertname": "Test", "severity": "critical"}
    for fingerprint in (None, ""):
        alert = am_alert(fingerprint=fingerprint)
        batch = alertmanager.parse(am_body(alerts=[alert]))
        assert batch.alerts[0].fingerprint == fingerprint_of(labels)
    del alert["fingerprint"]
    assert alertmanager.parse(am_body(alerts=[alert])).alerts[0].fingerprint == fingerprint_of(
        labels
    )


@pytest.mark.parametrize(
    ("annotations", "labels", "summary"),
    [
        ({"summary": "  Disk full  ", "description": "d"}, {"alertname": "A"}, "Disk full"),
        (
            {"summary": " ", "description": "\n\n  first line \nsecond"},
            {"alertname": "A"},
            "first line",
        ),
        ({"description": " \n "}, {"alertname": "DiskFull"}, "DiskFull"),
        ({}, {"job": "node"}, "alert 0123456789abcdef"),
        ({"summary": "x" * MAX_LABEL_VALUE}, {}, "x" * (MAX_SUMMARY - 1) + "…"),
    ],
)
def test_alert_summary(annotations: dict[str, str], labels: dict[str, str], summary: str) -> None:
    alert = am_alert(annotations=annotations, labels=labels)
    assert alertmanager.parse(am_body(alerts=[alert])).alerts[0].summary == summary


@pytest.mark.parametrize(
    ("changes", "title"),
    [
        ({"commonAnnotations": {"summary": "Checkout is down"}}, "Checkout is down"),
        (
            {"groupLabels": {"alertname": "HighErrorRate", "service": "checkout", "env": "prod"}},
            "HighErrorRate (env=prod, service=checkout)",
        ),
        (
            {"groupLabels": {"service": "checkout"}, "commonLabels": {"alertname": "Down"}},
            "Down (service=checkout)",
        ),
        ({"groupLabels": {}, "commonLabels": {}}, "Test"),  # the first alert's summary
        ({"commonAnnotations": {"summary": "s" * 2000}}, "s" * (MAX_SUMMARY - 1) + "…"),
    ],
)
def test_alertmanager_title(changes: dict[str, Any], title: str) -> None:
    body = am_body(alerts=[am_alert(labels={"alertname": "Test"})], **changes)
    assert alertmanager.parse(body).title == title


def test_a_group_key_longer_than_max_key_is_kept_as_its_hash() -> None:
    long_key = "{}:{" + ", ".join(f'l{i}="{"v" * 20}"' for i in range(20)) + "}"
    assert len(long_key) > MAX_KEY
    first = alertmanager.parse(am_body(groupKey=long_key)).group_key
    assert first == alertmanager.parse(am_body(groupKey=long_key)).group_key
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", first)
    assert alertmanager.parse(am_body(groupKey="k" * MAX_KEY)).group_key == "k" * MAX_KEY


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://runbooks.example.com/x", True),
        ("HTTP://RUNBOOKS.EXAMPLE.COM/x", True),
        ("javascript:alert(1)", False),
        ("ftp://example.com/x", False),
        ("/relative/path", False),
        ("https://", False),
        ("http://[::1", False),
        ("https://example.com/a b", False),
        ("https://example.com/" + "a" * MAX_URL, False),
        ("", False),
    ],
)
def test_only_http_links_are_kept(url: str, kept: bool) -> None:
    alert = am_alert(generatorURL=url)
    links = alertmanager.parse(am_body(alerts=[alert])).alerts[0].links
    assert links == ((Link("Source", url),) if kept else ())
    if len(url) <= MAX_LABEL_VALUE:
        alert = am_alert(generatorURL=None, annotations={"runbook_url": url})
        links = alertmanager.parse(am_body(alerts=[alert])).alerts[0].links
        assert links == ((Link("Runbook", url),) if kept else ())


def test_links_are_bounded_and_each_url_kept_once() -> None:
    def extras(index: int) -> dict[str, str]:
        return {
            key: f"https://grafana.example.com/{key}/{index}"
            for key in ("dashboardURL", "panelURL", "silenceURL", "imageURL")
        }

    alert = am_alert(annotations={"runbook_url": "http://prometheus:9090/graph"}, **extras(1))
    links = grafana.parse(am_body(alerts=[alert])).alerts[0].links
    # The runbook annotation repeats the generator URL: kept once.
    assert [link.text for link in links] == ["Source", "Dashboard", "Panel", "Silence", "Image"]
    assert len(links) <= MAX_LINKS


# -- Grafana's own fields --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("[FIRING:1] HighCPU (db1)", "HighCPU (db1)"),
        ("[FIRING:12, RESOLVED:3] HighCPU (db1)", "HighCPU (db1)"),
        ("[RESOLVED] HighCPU (db1)", "HighCPU (db1)"),
        ("HighCPU on db1", "HighCPU on db1"),
        ("Reason [FIRING:1] in the middle", "Reason [FIRING:1] in the middle"),
        ("[FIRING:1] ", "Test"),  # nothing left: as Alertmanager
        ("", "Test"),
    ],
)
def test_grafana_title_without_the_firing_count(title: str, expected: str) -> None:
    body = am_body(title=title, alerts=[am_alert(labels={"alertname": "Test"})])
    assert grafana.parse(body).title == expected


def test_grafana_value_string_becomes_the_value_annotation_unless_there_is_one() -> None:
    alert = am_alert(valueString="[ var='A' value=3 ]", values={"A": 3, "B": 0.5})
    assert (
        grafana.parse(am_body(alerts=[alert])).alerts[0].annotations["value"]
        == "[ var='A' value=3 ]"
    )
    alert["annotations"] = {"value": "mine"}
    assert grafana.parse(am_body(alerts=[alert])).alerts[0].annotations == {"value": "mine"}
    alert["annotations"] = {f"a{i}": "x" for i in range(MAX_LABELS)}
    assert "value" not in grafana.parse(am_body(alerts=[alert])).alerts[0].annotations


# (changes to a valid body, or to its one alert if under "alerts[0].", field, words)
GRAFANA_REFUSALS = [
    ({"orgId": "1"}, "orgId", "whole number", "string"),
    ({"orgId": True}, "orgId", "whole number", "boolean"),
    ({"title": ["x"]}, "title", "string", "array"),
    ({"title": "a\x00"}, "title", "NUL"),
    ({"state": 1}, "state", "string"),
    ({"message": {}}, "message", "string"),
    ({"values": [1]}, "alerts[0].values", "object", "array"),
    ({"values": {"A": "1"}}, "alerts[0].values.A", "number", "string"),
    ({"values": {"B": False}}, "alerts[0].values.B", "number", "boolean"),
    ({"valueString": 3}, "alerts[0].valueString", "string"),
    ({"valueString": "v" * (MAX_LABEL_VALUE + 1)}, "alerts[0].valueString", str(MAX_LABEL_VALUE)),
    ({"dashboardURL": 1}, "alerts[0].dashboardURL", "string"),
    ({"panelURL": {}}, "alerts[0].panelURL", "string"),
    ({"silenceURL": True}, "alerts[0].silenceURL", "string"),
    ({"imageURL": "a\x00"}, "alerts[0].imageURL", "NUL"),
]


@pytest.mark.parametrize("case", GRAFANA_REFUSALS, ids=case_id)
def test_grafana_refusals(case: tuple[Any, ...]) -> None:
    changes, field, *words = case
    body = (
        am_body(alerts=[am_alert(**changes)]) if field.startswith("alerts") else am_body(**changes)
    )
    assert_refused(grafana.parse, body, field, *words)


def test_alertmanager_ignores_grafana_fields() -> None:
    body = am_body(title=3, orgId="x", alerts=[am_alert(values="x", valueString=1)])
    assert alertmanager.parse(body).title == "Test"


# -- PagerDuty Events API v2 -----------------------------------------------------------------------


# (changes to a valid trigger, or to its payload if under "payload.", field, words)
PAGERDUTY_REFUSALS = [
    ({"routing_key": None}, "routing_key", "required"),
    ({"routing_key": "samplekeyhere"}, "routing_key", "32 characters", "got 13"),
    ({"routing_key": ROUTING_KEY + "0"}, "routing_key", "32 characters"),
    ({"routing_key": 12345678901234567890123456789012}, "routing_key", "string", "number"),
    ({"event_action": None}, "event_action", "required", "trigger, acknowledge, resolve"),
    ({"event_action": "Trigger"}, "event_action", "one of", '"Trigger"'),
    ({"event_action": ["trigger"]}, "event_action", "string", "array"),
    ({"event_action": "acknowledge", "dedup_key": None}, "dedup_key", "required for event_action"),
    (
        {"event_action": "resolve", "dedup_key": ""},
        "dedup_key",
        "required for event_action resolve",
    ),
    ({"dedup_key": "d" * (MAX_KEY + 1)}, "dedup_key", str(MAX_KEY)),
    ({"dedup_key": 42}, "dedup_key", "string", "number"),
    ({"dedup_key": "a\x00"}, "dedup_key", "NUL"),
    ({"payload": None}, "payload", "required for event_action trigger", "summary"),
    ({"payload": "Disk full"}, "payload", "object", "string"),
    ({"event_action": "resolve", "payload": []}, "payload", "object", "array"),
    ({"summary": None}, "payload.summary", "required"),
    ({"summary": "  "}, "payload.summary", "empty"),
    ({"summary": "s" * (MAX_SUMMARY + 1)}, "payload.summary", str(MAX_SUMMARY)),
    ({"summary": 1}, "payload.summary", "string", "number"),
    ({"source": None}, "payload.source", "required"),
    ({"source": ""}, "payload.source", "empty"),
    ({"source": "s" * (MAX_LABEL_VALUE + 1)}, "payload.source", str(MAX_LABEL_VALUE)),
    ({"severity": None}, "payload.severity", "required", "critical, error, warning, info"),
    ({"severity": "high"}, "payload.severity", "one of", '"high"'),
    ({"severity": "CRITICAL"}, "payload.severity", "one of"),
    ({"timestamp": "17/07/2015"}, "payload.timestamp", "time like"),
    ({"timestamp": 1437122578}, "payload.timestamp", "string", "number"),
    ({"timestamp": "2015-13-17T08:42:58Z"}, "payload.timestamp", "not a valid time"),
    ({"component": 5}, "payload.component", "string"),
    ({"group": False}, "payload.group", "string", "boolean"),
    ({"class": ["x"]}, "payload.class", "string", "array"),
    ({"custom_details": {"a\tb": 1}}, 'payload.custom_details["a\\tb"]', "control"),
    ({"custom_details": {"": 1}}, 'payload.custom_details[""]', "empty name"),
    ({"custom_details": {"note": "a\x00b"}}, "payload.custom_details.note", "NUL"),
    ({"custom_details": {"deep": {"x": ["a\x00"]}}}, "payload.custom_details.deep", "NUL"),
    ({"custom_details": {"deep": {"a\ud800": 1}}}, "payload.custom_details.deep", "surrogate"),
    ({"custom_details": {"n": 10**5000}}, "payload.custom_details.n", "too large"),
    ({"custom_details": "a\x00"}, "payload.custom_details", "NUL"),
    ({"custom_details": {"set": {1, 2}}}, "payload.custom_details.set", "not JSON"),
    ({"links": {"href": "https://x"}}, "links", "array", "object"),
    ({"links": ["https://x"]}, "links[0]", "object", "string"),
    ({"links": [{"text": "x"}]}, "links[0].href", "required"),
    ({"links": [{"href": 1}]}, "links[0].href", "string"),
    ({"links": [{"href": "https://x", "text": 2}]}, "links[0].text", "string"),
    ({"images": [{"href": "https://x"}]}, "images[0].src", "required"),
    ({"images": [{"src": "https://x", "alt": None, "href": 3}]}, "images[0].href", "string"),
    ({"client": 1}, "client", "string"),
    ({"client_url": ["https://x"]}, "client_url", "string"),
]


@pytest.mark.parametrize("case", PAGERDUTY_REFUSALS, ids=case_id)
def test_pagerduty_refusals(case: tuple[Any, ...]) -> None:
    changes, field, *words = case
    body = pd_payload(**changes) if field.startswith("payload.") else pd_body(**changes)
    assert_refused(pagerduty.parse, body, field, *words)


def test_pagerduty_reports_every_error_as_pagerduty_would() -> None:
    body = {
        "routing_key": "samplekeyhere",
        "event_action": "trigger",
        "payload": {"summary": "x", "severity": "bad"},
    }
    errors = refusal(pagerduty.parse, body)
    assert [str(error) for error in errors] == [
        "routing_key: must be 32 characters long (the integration key of a Firebreak service); got 13",
        'payload.severity: must be one of critical, error, warning, info; got "bad"',
        "payload.source: is required",
    ]


def test_pagerduty_deeply_nested_details_are_refused() -> None:
    deep: object = "bottom"
    for _ in range(200):
        deep = [deep]
    assert_refused(
        pagerduty.parse,
        pd_payload(custom_details={"deep": deep}),
        "payload.custom_details.deep",
        "nested",
    )


def test_pagerduty_custom_details_are_flattened_and_bounded() -> None:
    details: dict[str, object] = {
        "text": "as is",
        "count": 3,
        "ratio": 0.5,
        "ok": True,
        "none": None,
        "nested": {"b": [1, "two"], "é": "ü"},
        "long": "x" * (MAX_LABEL_VALUE + 10),
        "big": 10**100,
    }
    details.update({f"k{i}": i for i in range(MAX_LABELS)})
    annotations = pagerduty.parse(pd_payload(custom_details=details)).batch.alerts[0].annotations
    assert len(annotations) == MAX_LABELS
    assert annotations["text"] == "as is"
    assert (annotations["count"], annotations["ratio"], annotations["ok"], annotations["none"]) == (
        "3",
        "0.5",
        "true",
        "null",
    )
    assert annotations["nested"] == '{"b": [1, "two"], "é": "ü"}'
    assert annotations["long"] == "x" * (MAX_LABEL_VALUE - 1) + "…"
    assert annotations["big"] == str(10**100)


@pytest.mark.parametrize(
    ("details", "expected"), [("plain text", "plain text"), ([1, 2], "[1, 2]"), (7, "7")]
)
def test_pagerduty_details_that_are_not_an_object(details: object, expected: str) -> None:
    annotations = pagerduty.parse(pd_payload(custom_details=details)).batch.alerts[0].annotations
    assert annotations == {"details": expected}


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2015-07-17T08:42:58.315+0000", datetime(2015, 7, 17, 8, 42, 58, 315000, tzinfo=UTC)),
        ("2015-07-17T10:42:58+02:00", datetime(2015, 7, 17, 8, 42, 58, tzinfo=UTC)),
        ("2015-07-17T08:42:58.123456Z", datetime(2015, 7, 17, 8, 42, 58, 123456, tzinfo=UTC)),
        ("2015-07-17T08:42:58", datetime(2015, 7, 17, 8, 42, 58, tzinfo=UTC)),  # no offset: UTC
        ("2015-07-17T08:42-01", datetime(2015, 7, 17, 9, 42, tzinfo=UTC)),
    ],
)
def test_pagerduty_timestamps(timestamp: str, expected: datetime) -> None:
    alert = pagerduty.parse(pd_payload(timestamp=timestamp)).batch.alerts[0]
    assert alert.starts_at == expected
    resolve = pd_payload(timestamp=timestamp) | {"event_action": "resolve"}
    assert pagerduty.parse(resolve).batch.alerts[0].ends_at == expected


def test_pagerduty_links_from_client_links_and_images() -> None:
    body = pd_body(
        client="Nagios",
        client_url="https://nagios.example.com/",
        links=[
            {"href": "https://wiki.example.com/db", "text": "Runbook"},
            {"href": "https://graphs.example.com/db"},
            {"href": "mailto:dba@example.com", "text": "Mail"},
            {"href": ""},
        ],
        images=[
            {
                "src": "https://graphs.example.com/db.png",
                "href": "https://graphs.example.com/db?big",
                "alt": "CPU",
            },
            {"src": "https://graphs.example.com/disk.png"},
        ],
    )
    assert pagerduty.parse(body).batch.alerts[0].links == (
        Link("Nagios", "https://nagios.example.com/"),
        Link("Runbook", "https://wiki.example.com/db"),
        Link("https://graphs.example.com/db", "https://graphs.example.com/db"),
        Link("CPU", "https://graphs.example.com/db?big"),
        Link("Image", "https://graphs.example.com/disk.png"),
    )
    many = pd_body(links=[{"href": f"https://x.example.com/{i}"} for i in range(40)])
    assert len(pagerduty.parse(many).batch.alerts[0].links) == MAX_LINKS


def test_pagerduty_resolve_or_acknowledge_with_a_payload() -> None:
    payload = {"summary": "[RESOLVED] Disk full on db1", "source": "db1", "severity": "error"}
    resolve = pagerduty.parse(pd_body(event_action="resolve", payload=payload)).batch
    assert resolve.title == "Disk full on db1"
    assert resolve.alerts[0].labels == {"severity": "error", "source": "db1"}
    # A partial payload is fine when nothing is required.
    partial = pagerduty.parse(pd_body(event_action="resolve", payload={"summary": ""})).batch
    assert partial.title == "db1-disk"
    ack = pagerduty.parse(pd_body(event_action="acknowledge", payload=payload)).batch
    assert (ack.action, ack.alerts, ack.title) == ("acknowledge", (), "Disk full on db1")


def test_pagerduty_trigger_with_blank_dedup_key_gets_one() -> None:
    batch = pagerduty.parse(pd_body(dedup_key="")).batch
    assert re.fullmatch(r"[0-9a-f]{32}", batch.group_key)


# -- any JSON: a result within bounds, or Invalid --------------------------------------------------

TEXT = st.text(
    st.characters() | st.sampled_from(["\x00", "\ud800", "\x1f", "\u2028", "é"]), max_size=12
) | st.sampled_from(
    "firing resolved trigger acknowledge resolve critical 0001-01-01T00:00:00Z "
    "2024-05-01T12:00:00.123456789+02:00 0001-01-01T00:00:00+01:00 https://example.com/x "
    f"javascript:x {ROUTING_KEY}".split()
)
KEYS = TEXT | st.sampled_from(
    "groupKey alerts status labels annotations startsAt endsAt fingerprint generatorURL "  # noqa: SIM905
    "truncatedAlerts values valueString title routing_key event_action dedup_key payload "
    "summary source severity custom_details links images href src".split()
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([-(2**63), 2**64, 2**31])
    | st.builds(pow, st.just(10), st.just(5000))  # str() of it raises ValueError
    | st.floats()
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=20,
)
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FIXTURE_BODIES = {source: [load(name) for name in fixture_names(source)] for source in PARSERS}


@FUZZ
@given(body=JSON, source=st.sampled_from(sorted(PARSERS)))
def test_any_json_gives_a_result_or_invalid(body: object, source: str) -> None:
    parse_or_refuse(PARSERS[source], body)


@FUZZ
@given(data=st.data(), source=st.sampled_from(sorted(PARSERS)))
def test_mutated_real_payloads_give_a_result_or_invalid(data: st.DataObject, source: str) -> None:
    body = copy.deepcopy(data.draw(st.sampled_from(FIXTURE_BODIES[source])))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(list(paths(body))))
        dropping = data.draw(st.booleans())
        if path and dropping:
            drop(body, path)
        else:
            body = replace(body, path, data.draw(JSON))
    parse_or_refuse(PARSERS[source], body)


def parse_or_refuse(parse: Parser, body: object) -> None:
    try:
        result = parse(body)
    except Invalid as invalid:
        assert invalid.errors
        assert all(isinstance(error, FieldError) for error in invalid.errors)
        assert len(invalid.errors) <= MAX_ERRORS + 1
        str(invalid).encode("utf-8")  # the answer can be sent
        return
    check_result(result)


def paths(value: object, prefix: tuple[object, ...] = ()) -> Iterator[tuple[object, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from paths(inner, (*prefix, index))


def parent_of(body: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        body = body[step]
    return body


def drop(body: Any, path: tuple[Any, ...]) -> None:
    del parent_of(body, path)[path[-1]]


def replace(body: Any, path: tuple[Any, ...], value: object) -> Any:
    if not path:
        return value
    parent_of(body, path)[path[-1]] = value
    return body


# -- what every parsed result satisfies ------------------------------------------------------------


def check_result(result: object) -> None:
    if isinstance(result, pagerduty.Event):
        assert isinstance(result.routing_key, str) and len(result.routing_key) == 32
        check_text(result.routing_key)
        batch = result.batch
        assert batch.source == "pagerduty" and batch.dedup_key == batch.group_key
        assert len(batch.alerts) == (0 if batch.action == "acknowledge" else 1)
    else:
        assert isinstance(result, Batch)
        batch = result
        assert batch.source in ("alertmanager", "grafana") and batch.dedup_key is None
        assert batch.action == "notify" and 1 <= len(batch.alerts) <= MAX_ALERTS
    assert isinstance(batch.group_key, str) and 0 < len(batch.group_key) <= MAX_KEY
    assert isinstance(batch.title, str) and len(batch.title) <= MAX_SUMMARY
    check_text(batch.group_key, batch.title)
    assert isinstance(batch.truncated, int) and 0 <= batch.truncated < 2**31
    assert len({alert.fingerprint for alert in batch.alerts}) == len(batch.alerts)
    for alert in batch.alerts:
        check_alert(alert)


def check_alert(alert: Alert) -> None:
    assert isinstance(alert.fingerprint, str) and 0 < len(alert.fingerprint) <= MAX_KEY
    assert alert.status in ("firing", "resolved")
    assert isinstance(alert.summary, str) and len(alert.summary) <= MAX_SUMMARY
    check_text(alert.fingerprint, alert.summary)
    for mapping in (alert.labels, alert.annotations):
        assert len(mapping) <= MAX_LABELS
        for name, value in mapping.items():
            assert isinstance(name, str) and 0 < len(name) <= MAX_LABEL_NAME
            assert isinstance(value, str) and len(value) <= MAX_LABEL_VALUE
            assert not re.search(r"[\x00-\x1f\x7f-\x9f]", name)
            check_text(name, value)
    for moment in (alert.starts_at, alert.ends_at):
        assert moment is None or (isinstance(moment, datetime) and moment.tzinfo is UTC)
    assert len(alert.links) <= MAX_LINKS
    for link in alert.links:
        assert isinstance(link, Link) and re.match(r"(?i)https?://", link.url)
        assert len(link.url) <= MAX_URL and len(link.text) <= MAX_SUMMARY
        check_text(link.url, link.text)


def check_text(*texts: str) -> None:
    for text in texts:
        assert "\x00" not in text
        text.encode("utf-8")
