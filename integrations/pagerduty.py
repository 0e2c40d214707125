"""PagerDuty Events API v2 (`POST /v2/enqueue`) in, an `Event` out.

Anything that can page PagerDuty can page Firebreak: Alertmanager's `pagerduty_configs`,
Grafana's PagerDuty contact point, PagerDuty's own clients. The event is validated the way
PagerDuty does (the required fields, 32-character routing key, the severity and action
enums, the 1024-character summary) and every problem is reported in one `Invalid`, which
the HTTP layer answers with PagerDuty's 400 body. The routing key is only read here: the
HTTP layer maps it to a Firebreak service and adds the `service` label.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from bot.alerts.model import (
    MAX_KEY,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    MAX_SUMMARY,
    Alert,
    Batch,
    Link,
)
from integrations._alertpayload import without_status_prefix
from integrations._fields import (
    Problems,
    as_array,
    as_object,
    bounded_links,
    child,
    choice_field,
    first_line,
    item,
    name_problem,
    shorten,
    string_field,
    text_problem,
    time_field,
    web_link,
)

ROUTING_KEY_LENGTH = 32
EVENT_ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
# Payload fields that become labels of the alert, besides `severity`.
LABEL_FIELDS = ("source", "component", "group", "class")
# custom_details deeper than this are refused (nobody nests details this deep on purpose).
MAX_DETAIL_DEPTH = 32


@dataclass(frozen=True)
class Event:
    """One Events API v2 event: the routing key it came with, and its alerts as a batch."""

    routing_key: str
    batch: Batch


@dataclass(frozen=True)
class Payload:
    """The checked `payload`: empty for a resolve or acknowledge that sent none."""

    summary: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    timestamp: datetime | None = None


def parse(body: object) -> Event:
    """The event a PagerDuty Events API v2 request carries (the JSON body, decoded).

    A trigger without `dedup_key` gets a new one (a UUID, as PagerDuty makes them) in
    `batch.dedup_key`, for the answer. Raises `Invalid` listing every bad field, and nothing
    else, whatever `body` is.
    """
    problems = Problems()
    event = as_object(body, "body", problems)
    if event is None:
        problems.raise_if_any()
    assert event is not None
    routing_key = read_routing_key(event, problems)
    action = choice_field(event, "event_action", "", problems, EVENT_ACTIONS, required=True)
    dedup_key = read_dedup_key(event, action, problems)
    payload = read_payload(event, action, problems)
    links = read_links(event, problems)
    problems.raise_if_any()
    assert routing_key is not None and action is not None and payload is not None
    key = dedup_key or uuid.uuid4().hex
    return Event(routing_key=routing_key, batch=build_batch(action, key, payload, links))


def read_routing_key(event: Mapping[str, object], problems: Problems) -> str | None:
    """The `routing_key`: 32 characters, like a PagerDuty integration key."""
    key = string_field(event, "routing_key", "", problems, required=True)
    if key is not None and len(key) != ROUTING_KEY_LENGTH:
        problems.add(
            "routing_key",
            f"must be {ROUTING_KEY_LENGTH} characters long (the integration key of a "
            f"Firebreak service); got {len(key)}",
        )
        return None
    return key


def read_dedup_key(
    event: Mapping[str, object], action: str | None, problems: Problems
) -> str | None:
    """The `dedup_key`, at most MAX_KEY characters; required unless the action is trigger
    (None then means: make one)."""
    before = len(problems)
    key = string_field(event, "dedup_key", "", problems, limit=MAX_KEY)
    refused = len(problems) > before
    if key is not None and not key.strip():
        key = None
    if key is None and action in ("acknowledge", "resolve") and not refused:
        problems.add(
            "dedup_key",
            f"is required for event_action {action}: the dedup_key of the alert to {action}",
        )
    return key


def read_payload(
    event: Mapping[str, object], action: str | None, problems: Problems
) -> Payload | None:
    """The `payload`: required for a trigger (with summary, source and severity); for a
    resolve or acknowledge optional, and checked only for the types of what it holds."""
    required = action == "trigger"
    if event.get("payload") is None:
        if required:
            problems.add(
                "payload",
                "is required for event_action trigger: an object with summary, source and severity",
            )
            return None
        return Payload()
    raw = as_object(event["payload"], "payload", problems)
    if raw is None:
        return None
    before = len(problems)
    summary = string_field(
        raw,
        "summary",
        "payload",
        problems,
        required=required,
        limit=MAX_SUMMARY,
        empty_ok=not required,
    )
    severity = choice_field(raw, "severity", "payload", problems, SEVERITIES, required=required)
    labels = {"severity": severity} if severity else {}
    for name in LABEL_FIELDS:
        value = string_field(
            raw,
            name,
            "payload",
            problems,
            required=required and name == "source",
            limit=MAX_LABEL_VALUE,
            empty_ok=not (required and name == "source"),
        )
        if value:
            labels[name] = value
    timestamp = time_field(raw, "timestamp", "payload", problems, iso8601=True)
    details = read_details(raw.get("custom_details"), "payload.custom_details", problems)
    if len(problems) > before or details is None:
        return None
    return Payload(summary=summary, labels=labels, details=details, timestamp=timestamp)


def read_details(value: object, where: str, problems: Problems) -> dict[str, str] | None:
    """`custom_details` as annotations: each top-level entry of an object becomes one (text
    as it is, anything else as JSON), at most MAX_LABELS of them, each cut to
    MAX_LABEL_VALUE; details that are not an object become the one annotation `details`."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        text = flatten(value, where, problems)
        return None if text is None else {"details": text}
    details: dict[str, str] = {}
    valid = True
    for name, entry in value.items():
        if len(details) == MAX_LABELS:
            break
        problem = name_problem(name) if isinstance(name, str) else "has a name that is not a string"
        if problem:
            problems.add(child(where, str(name)), problem)
            valid = False
            continue
        text = flatten(entry, child(where, name), problems)
        if text is None:
            valid = False
        else:
            details[name] = text
    return details if valid else None


def flatten(value: object, where: str, problems: Problems) -> str | None:
    """One detail as text: a string as it is, anything else as compact JSON; cut to
    MAX_LABEL_VALUE. None (recorded) for what cannot be kept as text."""
    problem = nested_problem(value, 0)
    if problem is None and isinstance(value, str):
        return shorten(value, MAX_LABEL_VALUE)
    if problem is None:
        try:
            return shorten(json.dumps(value, ensure_ascii=False), MAX_LABEL_VALUE)
        except ValueError:  # an integer of more than 4300 digits
            problem = "holds a number too large to keep"
        except TypeError:
            problem = "holds a value that is not JSON"
    problems.add(where, problem)
    return None


def nested_problem(value: object, depth: int) -> str | None:
    """Why a JSON value cannot be kept (NUL or a lone surrogate in a string or key, nesting
    deeper than MAX_DETAIL_DEPTH), or None."""
    if depth > MAX_DETAIL_DEPTH:
        return f"is nested more than {MAX_DETAIL_DEPTH} levels deep"
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, list):
        return next((p for v in value if (p := nested_problem(v, depth + 1))), None)
    if isinstance(value, dict):
        for name, entry in value.items():
            problem = (
                text_problem(name) if isinstance(name, str) else "has a name that is not a string"
            ) or nested_problem(entry, depth + 1)
            if problem:
                return problem
    return None


def read_links(event: Mapping[str, object], problems: Problems) -> list[Link | None]:
    """The event's links: `client_url` (named by `client`), then `links`, then `images`
    (each image links to its `href`, else to the image itself)."""
    client = string_field(event, "client", "", problems)
    client_url = string_field(event, "client_url", "", problems)
    links = [web_link(link_text(client, "Client"), client_url)]
    for index, entry in enumerate(array_field(event, "links", problems)):
        where = item("links", index)
        link = as_object(entry, where, problems)
        if link is not None:
            href = string_field(link, "href", where, problems, required=True)
            text = string_field(link, "text", where, problems)
            links.append(web_link(link_text(text, href or ""), href))
    for index, entry in enumerate(array_field(event, "images", problems)):
        where = item("images", index)
        image = as_object(entry, where, problems)
        if image is not None:
            src = string_field(image, "src", where, problems, required=True)
            href = string_field(image, "href", where, problems)
            alt = string_field(image, "alt", where, problems)
            links.append(web_link(link_text(alt, "Image"), href or src))
    return links


def array_field(event: Mapping[str, object], key: str, problems: Problems) -> list[object]:
    """The array at `event[key]`; absent, null or not an array (recorded) gives []."""
    value = event.get(key)
    if value is None:
        return []
    return as_array(value, key, problems) or []


def link_text(text: str | None, fallback: str) -> str:
    """A link's text: `text` if it says something, else `fallback`; one short line."""
    return shorten(first_line(text or "") or fallback, MAX_SUMMARY)


def build_batch(action: str, key: str, payload: Payload, links: list[Link | None]) -> Batch:
    """The batch of a checked event: one alert (firing for trigger, resolved for resolve),
    or none for an acknowledge, all under the dedup key."""
    summary = (payload.summary or "").strip()
    title = shorten(without_status_prefix(summary) or summary or key, MAX_SUMMARY)
    if action == "acknowledge":
        return Batch(
            source="pagerduty",
            group_key=key,
            title=title,
            alerts=(),
            action="acknowledge",
            dedup_key=key,
        )
    firing = action == "trigger"
    alert = Alert(
        fingerprint=key,
        status="firing" if firing else "resolved",
        labels=payload.labels,
        summary=shorten(summary or title, MAX_SUMMARY),
        annotations=payload.details,
        starts_at=payload.timestamp if firing else None,
        ends_at=None if firing else payload.timestamp,
        links=bounded_links(links),
    )
    return Batch(source="pagerduty", group_key=key, title=title, alerts=(alert,), dedup_key=key)
