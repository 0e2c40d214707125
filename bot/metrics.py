"""Prometheus metrics, on a registry of our own so tests and replicas never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.slack_requests = Counter(
            "firebreak_slack_requests",
            "Requests received at /slack/events, by HTTP status",
            ["status"],
            registry=self.registry,
        )
        self.alerts_received = Counter(
            "firebreak_alerts_received",
            "Alerts received by source and outcome (new, repeat, resolved, unrouted, acknowledge)",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.alert_pages_held_back = Counter(
            "firebreak_alert_pages_held_back",
            "New alert groups whose page a route's storm limit held back",
            ["route"],
            registry=self.registry,
        )
        self.alert_requests = Counter(
            "firebreak_alert_requests",
            "Requests at the alert endpoints, by endpoint and HTTP status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.slack_response_seconds = Histogram(
            "firebreak_slack_response_seconds",
            "Time from receiving a Slack request to answering it (Slack allows 3 s)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
