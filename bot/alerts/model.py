"""The normalised alert every inbound format is parsed into.

A `Batch` is what one webhook delivered: the alerts of one group (an Alertmanager or Grafana
notification, one PagerDuty event), with the group's key. Parsers build batches from
untrusted JSON and raise `Invalid` naming each bad field; nothing downstream re-validates.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Source = Literal["alertmanager", "grafana", "pagerduty"]
SOURCES: tuple[Source, ...] = ("alertmanager", "grafana", "pagerduty")
Status = Literal["firing", "resolved"]
# What a batch asks for: notify (firing and resolved alerts as they are), or acknowledge
# the page of the group (PagerDuty `event_action: acknowledge`).
Action = Literal["notify", "acknowledge"]

# Bounds on what one alert may carry, so a hostile or buggy sender cannot store megabytes
# per row. Longer values are refused by the parsers with the field's name.
MAX_KEY = 255  # fingerprint, dedup key, group key
MAX_LABELS = 64  # labels or annotations per alert
MAX_LABEL_NAME = 128
MAX_LABEL_VALUE = 2048  # annotations such as descriptions can be long
MAX_SUMMARY = 1024
MAX_LINKS = 16
MAX_URL = 2048
MAX_ALERTS = 1000  # alerts per batch


@dataclass(frozen=True)
class Link:
    text: str
    url: str


@dataclass(frozen=True)
class Alert:
    """One alert as Firebreak keeps it, whatever sent it.

    `fingerprint` identifies the alert within its source (Alertmanager's fingerprint, or
    one computed from the labels; PagerDuty's dedup key). `summary` is one line a person
    reads first. Times are aware UTC datetimes, or None when the sender gave none.
    """

    fingerprint: str
    status: Status
    labels: dict[str, str]
    summary: str
    annotations: dict[str, str] = field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    links: tuple[Link, ...] = ()


@dataclass(frozen=True)
class Batch:
    """The alerts one request delivered, all of one group.

    `group_key` ties them to one page (and, where the route says so, one incident): the
    Alertmanager `groupKey`, or the PagerDuty `dedup_key`. `title` names the group for a
    person (the page message and the incident title). `dedup_key` is what a PagerDuty
    sender gets back (None for other sources).
    """

    source: Source
    group_key: str
    title: str
    alerts: tuple[Alert, ...]
    action: Action = "notify"
    dedup_key: str | None = None
    truncated: int = 0  # alerts the sender left out (Alertmanager's `truncatedAlerts`)


@dataclass(frozen=True)
class FieldError:
    """One bad field: where it is (`alerts[3].labels`, `payload.severity`) and what is wrong."""

    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


class Invalid(Exception):
    """A request that is not a valid payload of its format; nothing of it is stored."""

    def __init__(self, errors: list[FieldError]) -> None:
        assert errors, "Invalid needs at least one field error"
        self.errors = errors
        super().__init__("; ".join(str(error) for error in errors))


def fingerprint_of(labels: dict[str, str]) -> str:
    """A stable fingerprint for an alert that came without one: the labels, sorted, hashed
    (16 hex digits, the length Alertmanager's own fingerprints have)."""
    canonical = json.dumps(sorted(labels.items()), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
