"""How a page reaches a person: the `Notifier` protocol that integrations implement.

A notifier sends one notification and returns, or raises `NotifyError`. The paging engine
owns retries (with backoff), records every attempt, and never lets one failing channel
hold up the others or the escalation clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from bot.people import Person


@dataclass(frozen=True)
class Notification:
    page_id: int
    reference: str  # "P-12"
    person: str  # the name in `people:`
    contact: Person  # Slack ID, email...
    message: str
    target: str  # what was paged: user:NAME, schedule:NAME or policy:NAME
    step: int  # 1-based escalation step
    cycle: int  # 0 on the first pass through the policy, 1 on the first repeat...
    incident: str | None  # "INC-3" when the page belongs to an incident
    paged_by: str
    # An alert's facts when the page came from monitoring: {"source", "labels", "links"}.
    details: dict[str, Any] | None = None

    @property
    def subject(self) -> str:
        about = f" ({self.incident})" if self.incident else ""
        return f"[Firebreak] Page {self.reference}{about}: {self.message}"[:200]

    @property
    def labels(self) -> list[tuple[str, str]]:
        """The alert's labels, sorted, when the page came from an alert."""
        labels = (self.details or {}).get("labels") or {}
        return sorted((str(name), str(value)) for name, value in labels.items())

    @property
    def links(self) -> list[tuple[str, str]]:
        """The alert's links (source, runbook, dashboard) as (text, url)."""
        links = (self.details or {}).get("links") or []
        return [(str(link.get("text", "link")), str(link.get("url", ""))) for link in links]

    @property
    def body(self) -> str:
        lines = [
            f"You are paged: {self.message}",
            f"Page: {self.reference} · target {self.target} · step {self.step}"
            + (f" (repeat {self.cycle})" if self.cycle else ""),
        ]
        if self.incident:
            lines.append(f"Incident: {self.incident}")
        for name, value in self.labels:
            lines.append(f"{name}: {value}")
        for text, url in self.links:
            lines.append(f"{text}: {url}")
        lines.append(f"Acknowledge in Slack, or with `/page ack {self.page_id}`.")
        return "\n".join(lines)


class NotifyError(Exception):
    """The notification was not delivered. `retryable` is False when trying again is futile
    (an unknown Slack user, an address the server refuses)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Notifier(Protocol):
    channel: str  # the name used in people.<name>.notify: slack | email | webhook

    def send(self, notification: Notification) -> None: ...
