"""The Alertmanager webhook payload (version 4), shared by the Alertmanager and Grafana parsers.

Alertmanager's `notify/webhook/webhook.go` sends `template.Data` (receiver, status, alerts,
groupLabels, commonLabels, commonAnnotations, externalURL) plus version, groupKey and
truncatedAlerts. Grafana's webhook contact point sends the same envelope and alerts with
more fields; its parser passes an `ExtrasReader` that reads them for each alert. Fields this
module does not know (`notification_reason`, `routeLabels`, ...) are ignored, so a newer
sender still works.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bot.alerts.model import (
    MAX_ALERTS,
    MAX_KEY,
    MAX_LABELS,
    MAX_SUMMARY,
    Alert,
    Link,
    fingerprint_of,
)
from integrations._fields import (
    Problems,
    as_array,
    as_object,
    bounded_links,
    child,
    choice_field,
    count_field,
    first_line,
    item,
    shorten,
    string_field,
    string_map_field,
    time_field,
    web_link,
)

STATUSES = ("firing", "resolved")
# "[FIRING:2] ", "[FIRING:2, RESOLVED:1] ", "[RESOLVED] ": the count changes between repeats
# of one group, so titles are kept without it.
_STATUS_PREFIX = re.compile(r"\A\s*\[(?:FIRING:[0-9]+(?:, *RESOLVED:[0-9]+)?|RESOLVED)\] *", re.I)


@dataclass(frozen=True)
class Extras:
    """What a format adds to one alert beyond Alertmanager's fields."""

    links: tuple[Link | None, ...] = ()
    # Added to the alert's annotations where it has no such annotation already.
    annotations: dict[str, str] = field(default_factory=dict)


# Reads a format's own fields of one alert object (at `path`), recording problems.
ExtrasReader = Callable[[Mapping[str, object], str, Problems], Extras]


@dataclass(frozen=True)
class Group:
    """One notification's group, read and checked: the parts a `Batch` is made of."""

    key: str
    alerts: tuple[Alert, ...]
    truncated: int
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]


def read_group(
    body: object, problems: Problems, extras: ExtrasReader | None = None
) -> Group | None:
    """The group of an Alertmanager-shaped notification, or None with every problem
    recorded. `extras` reads a format's additional per-alert fields (Grafana's)."""
    envelope = as_object(body, "body", problems)
    if envelope is None:
        return None
    for name in ("version", "receiver", "externalURL"):
        string_field(envelope, name, "", problems)
    choice_field(envelope, "status", "", problems, STATUSES)
    key = group_key(envelope, problems)
    truncated = count_field(envelope, "truncatedAlerts", "", problems)
    group_labels = string_map_field(envelope, "groupLabels", "", problems)
    common_labels = string_map_field(envelope, "commonLabels", "", problems)
    common_annotations = string_map_field(envelope, "commonAnnotations", "", problems, lenient=True)
    alerts = read_alerts(envelope, problems, extras)
    if (
        problems
        or key is None
        or truncated is None
        or group_labels is None
        or common_labels is None
        or common_annotations is None
        or alerts is None
    ):
        return None
    return Group(key, alerts, truncated, group_labels, common_labels, common_annotations)


def group_key(envelope: Mapping[str, object], problems: Problems) -> str | None:
    """The `groupKey`. Alertmanager's key holds the route's matchers and the group's label
    values, so it can outgrow MAX_KEY; such a key is kept as its SHA-256, which is as stable
    as the key itself (Alertmanager's PagerDuty notifier does the same for its dedup_key)."""
    key = string_field(envelope, "groupKey", "", problems, required=True, empty_ok=False)
    if key is None or len(key) <= MAX_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def read_alerts(
    envelope: Mapping[str, object], problems: Problems, extras: ExtrasReader | None
) -> tuple[Alert, ...] | None:
    """The `alerts` array: 1 to MAX_ALERTS alerts with distinct fingerprints."""
    if envelope.get("alerts") is None:
        problems.add("alerts", "is required: an array of at least one alert")
        return None
    raw = as_array(envelope["alerts"], "alerts", problems)
    if raw is None:
        return None
    if not raw:
        problems.add("alerts", "is empty; a notification carries at least one alert")
        return None
    if len(raw) > MAX_ALERTS:
        problems.add(
            "alerts",
            f"has {len(raw)} alerts; at most {MAX_ALERTS} per request "
            "(set max_alerts in the sender's webhook configuration)",
        )
        return None
    alerts: list[Alert] = []
    first_at: dict[str, int] = {}
    for index, entry in enumerate(raw):
        alert = read_alert(entry, item("alerts", index), problems, extras)
        if alert is None:
            continue
        if alert.fingerprint in first_at:
            problems.add(
                child(item("alerts", index), "fingerprint"),
                f"repeats the fingerprint of alerts[{first_at[alert.fingerprint]}]; "
                "each alert of a notification must be distinct",
            )
            continue
        first_at[alert.fingerprint] = index
        alerts.append(alert)
    return tuple(alerts)


def read_alert(
    value: object, path: str, problems: Problems, extras: ExtrasReader | None
) -> Alert | None:
    """One alert object, or None with its problems recorded."""
    raw = as_object(value, path, problems)
    if raw is None:
        return None
    status = choice_field(raw, "status", path, problems, STATUSES, required=True)
    labels = string_map_field(raw, "labels", path, problems, required=True)
    annotations = string_map_field(raw, "annotations", path, problems, lenient=True)
    starts_at = time_field(raw, "startsAt", path, problems)
    ends_at = time_field(raw, "endsAt", path, problems)
    generator = string_field(raw, "generatorURL", path, problems)
    fingerprint = string_field(raw, "fingerprint", path, problems, limit=MAX_KEY)
    more = extras(raw, path, problems) if extras else Extras()
    if status is None or labels is None or annotations is None:
        return None
    for name, text in more.annotations.items():
        if name not in annotations and len(annotations) < MAX_LABELS:
            annotations[name] = text
    fingerprint = fingerprint or fingerprint_of(labels)
    return Alert(
        fingerprint=fingerprint,
        status="firing" if status == "firing" else "resolved",
        labels=labels,
        summary=alert_summary(labels, annotations, fingerprint),
        annotations=annotations,
        starts_at=starts_at,
        ends_at=ends_at,
        links=bounded_links(
            (
                web_link("Source", generator),
                web_link("Runbook", annotations.get("runbook_url")),
                web_link("Dashboard", annotations.get("dashboard_url")),
                *more.links,
            )
        ),
    )


def alert_summary(labels: dict[str, str], annotations: dict[str, str], fingerprint: str) -> str:
    """The one line a person reads first: the summary annotation, else the description's
    first line, else the alert's name, else its fingerprint."""
    text = (
        annotations.get("summary", "").strip()
        or first_line(annotations.get("description", ""))
        or labels.get("alertname", "").strip()
        or f"alert {fingerprint}"
    )
    return shorten(text, MAX_SUMMARY)


def group_title(group: Group) -> str:
    """The group's name for a person: the common summary annotation, else the alert name
    with the other grouping labels, like "HighErrorRate (service=checkout)"."""
    summary = group.common_annotations.get("summary", "").strip()
    if summary:
        return shorten(summary, MAX_SUMMARY)
    name = (
        group.group_labels.get("alertname", "").strip()
        or group.common_labels.get("alertname", "").strip()
    )
    others = ", ".join(
        f"{label}={value}"
        for label, value in sorted(group.group_labels.items())
        if label != "alertname"
    )
    if not name:
        name = group.alerts[0].summary if group.alerts else f"group {group.key}"
    return shorten(f"{name} ({others})" if others else name, MAX_SUMMARY)


def without_status_prefix(title: str) -> str:
    """`title` without a leading "[FIRING:2] " or "[RESOLVED] " (Alertmanager's and
    Grafana's default subject), so a repeat of a group keeps its title."""
    return _STATUS_PREFIX.sub("", title, count=1).strip()
