"""Prometheus metrics, on a registry of our own so tests and replicas never collide.

One `Metrics` per app (`bot.app.build`); `GET /metrics` serves its registry. Where each
family is counted, so that it is counted once:

- HTTP requests and their latency: a Flask before/after hook in `bot.web` (route template,
  never the raw path); the Slack ack latency at `/slack/events`.
- Slack Web API calls, errors and retries: `MeasuredWebClient`, the one outbound client.
- Alerts received: `bot.intake`.
- Pages, escalation steps, notifications and runbook runs: from the facts a transaction
  committed (`watch`). Every responder-visible change writes one timeline event (and every
  runbook transition one `RunbookRunFact`) in the transaction that makes it, so counting the
  facts at COMMIT counts each change exactly once, never a rolled-back one, and the domain
  modules stay free of any metrics code.
- Escalation lateness and scheduler job lag: `bot.jobs.JobRunner` reports them to
  `job_lag` and `escalation_lateness` (its `JobObserver`).
- Open incidents, open pages and the scheduler role: read at scrape time (`_StateCollector`),
  so they are right on every replica and after a restart, which gauges kept in memory and
  changed on each event would not be (another replica opened the incident).

Label values are bounded: route templates, Slack method names our code calls, configured
channel and severity names, fixed outcome words. Never ids or user text.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web import SlackResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session, SessionTransaction

from bot import priority
from bot.db import Database
from bot.incidents.models import Incident
from bot.oncall.models import OPEN_STATES, Page
from bot.readiness import Readiness
from bot.runbooks.records import RunbookRunFact
from bot.timeline import TimelineEvent

log = logging.getLogger(__name__)

LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENESS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
ACKNOWLEDGE = (15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_WORD = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
RUN_OUTCOMES = {
    "runbook_refused": "refused",
    "runbook_approval_refused": "refused",
    "runbook_approval_expired": "expired",
    "runbook_interrupted": "interrupted",
}
_FACTS = "firebreak.metrics.facts"


def word(value: object) -> str:
    """A label value from outside (a Slack method or error, a channel name): itself if it is
    one short word, else "other", so a strange value cannot grow the label set."""
    text = str(value)
    return text if _WORD.match(text) else "other"


class Metrics:
    def __init__(self) -> None:
        # No `*_created` series: in the 0.0.4 text format each is one more gauge per counter
        # and histogram, which nothing here reads (process-wide, like the client's default).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        # Socket Mode: the socket's state ("connected", ...), which firebreak_ready includes
        # as /readyz does; set by bot.slack.socket_mode, which adds its own families.
        self.socket_state: Callable[[], str] | None = None
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

        # -- HTTP --------------------------------------------------------------------
        self.http_requests = Counter(
            "firebreak_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_request_seconds = Histogram(
            "firebreak_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["route"],
            buckets=LATENCY,
            registry=r,
        )
        self.slack_requests = Counter(
            "firebreak_slack_requests",
            "Requests received at /slack/events, by HTTP status",
            ["status"],
            registry=r,
        )
        self.slack_response_seconds = Histogram(
            "firebreak_slack_response_seconds",
            "Time from receiving a Slack request to answering it (Slack allows 3 s)",
            buckets=LATENCY,
            registry=r,
        )
        # -- Slack Web API -----------------------------------------------------------
        self.slack_api_calls = Counter(
            "firebreak_slack_api_calls",
            "Slack Web API calls made, by method (retries inside one call count once)",
            ["method"],
            registry=r,
        )
        self.slack_api_errors = Counter(
            "firebreak_slack_api_errors",
            "Slack Web API calls that failed, by method and Slack's error code "
            "(or connection, or http_<status>)",
            ["method", "error"],
            registry=r,
        )
        self.slack_api_retries = Counter(
            "firebreak_slack_api_retries",
            "Slack Web API requests sent again, by method and reason "
            "(ratelimited, connection, server_error)",
            ["method", "reason"],
            registry=r,
        )
        self.slack_api_seconds = Histogram(
            "firebreak_slack_api_call_duration_seconds",
            "Time a Slack Web API call took, retries included, by method",
            ["method"],
            buckets=LATENCY,
            registry=r,
        )
        # -- alerts ------------------------------------------------------------------
        self.alerts_received = Counter(
            "firebreak_alerts_received",
            "Alerts received by source and outcome (new, repeat, resolved, unrouted, acknowledge)",
            ["source", "outcome"],
            registry=r,
        )
        self.alert_pages_held_back = Counter(
            "firebreak_alert_pages_held_back",
            "New alert groups whose page a route's storm limit held back",
            ["route"],
            registry=r,
        )
        self.alert_requests = Counter(
            "firebreak_alert_requests",
            "Requests at the alert endpoints, by endpoint and HTTP status",
            ["endpoint", "status"],
            registry=r,
        )
        # -- pages -------------------------------------------------------------------
        self.pages_triggered = Counter(
            "firebreak_pages_triggered",
            "Pages triggered (a deduplicated repeat is not)",
            registry=r,
        )
        self.pages_acknowledged = Counter(
            "firebreak_pages_acknowledged", "Pages acknowledged", registry=r
        )
        self.pages_escalated = Counter(
            "firebreak_pages_escalated",
            "Escalation steps run after a page's first (on timeout or on request)",
            registry=r,
        )
        self.pages_exhausted = Counter(
            "firebreak_pages_exhausted",
            "Pages that ran out of steps and repeats with nobody acknowledging",
            registry=r,
        )
        self.pages_resolved = Counter("firebreak_pages_resolved", "Pages resolved", registry=r)
        self.page_steps = Counter(
            "firebreak_page_steps",
            "Escalation steps run, by result: notified (someone was told) or nobody "
            "(no one on call for the step's targets)",
            ["result"],
            registry=r,
        )
        self.time_to_acknowledge = Histogram(
            "firebreak_page_time_to_acknowledge_seconds",
            "Time from a page being triggered to its acknowledgement",
            buckets=ACKNOWLEDGE,
            registry=r,
        )
        self.escalation_lateness = Histogram(
            "firebreak_page_escalation_lateness_seconds",
            "How late a scheduled escalation step started: its run time minus its due time",
            buckets=LATENESS,
            registry=r,
        )
        self.notification_attempts = Counter(
            "firebreak_notification_attempts",
            "Page notification attempts finished, by channel (slack, email, webhook...)",
            ["channel"],
            registry=r,
        )
        self.notification_failures = Counter(
            "firebreak_notification_failures",
            'Page notification attempts that failed, by channel; final="true" when no '
            "attempt will follow (the person was not reached on that channel)",
            ["channel", "final"],
            registry=r,
        )
        # -- runbooks and the scheduler ----------------------------------------------
        self.runbook_runs = Counter(
            "firebreak_runbook_runs",
            "Runbook runs ended, by outcome (succeeded, failed, cancelled, refused, "
            "expired, interrupted)",
            ["outcome"],
            registry=r,
        )
        self.job_lag = Histogram(
            "firebreak_scheduler_job_lag_seconds",
            "How late the scheduler handed a job to its workers, by kind (escalation, "
            "delivery, reconcile, handoffs, runbook-runs, postmortem-reminders)",
            ["kind"],  # not "job": Prometheus keeps that label for the scrape job
            buckets=LATENESS,
            registry=r,
        )

    # -- what the job runner reports (bot.jobs.JobObserver) ----------------------------

    def job_started(self, job: str, lag_seconds: float) -> None:
        self.job_lag.labels(job).observe(max(lag_seconds, 0.0))

    def escalation_started(self, lateness_seconds: float) -> None:
        self.escalation_lateness.observe(max(lateness_seconds, 0.0))

    # -- wiring --------------------------------------------------------------------------

    def watch(
        self,
        db: Database,
        scheduler_state: Callable[[], tuple[str, bool]],
        severities: Iterable[str] = (),
    ) -> None:
        """Count the facts `db`'s transactions commit, and read open incidents, open pages
        and the scheduler role from `db` and `scheduler_state` at each scrape."""
        facts = _FactCounter(self)
        db.listen("after_flush", facts.flushed)
        db.listen("after_commit", facts.committed)
        db.listen("after_soft_rollback", facts.rolled_back)
        collector = _StateCollector(db, scheduler_state, tuple(severities))
        collector.socket_state = lambda: self.socket_state() if self.socket_state else None
        self.registry.register(collector)


# -- facts -> counters ------------------------------------------------------------------


@dataclass(frozen=True)
class _Fact:
    kind: str
    data: dict[str, Any]
    acknowledged_after: float | None = None  # page_acknowledged: seconds since triggered


class _FactCounter:
    """Collects the facts a session flushes and counts them when its transaction commits.

    Each fact remembers the savepoints open when it was flushed, so a savepoint rolled back
    drops its facts; a whole transaction rolled back drops them all."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def flushed(self, session: Session, _context: object) -> None:
        savepoints = _savepoints(session)
        pending: list[tuple[tuple[SessionTransaction, ...], _Fact]] = session.info.setdefault(
            _FACTS, []
        )
        for row in session.new:
            fact: _Fact | None = None
            if isinstance(row, TimelineEvent) and row.kind.startswith("page_"):
                fact = _Fact(row.kind, dict(row.data or {}), _acknowledged_after(session, row))
            elif isinstance(row, RunbookRunFact):
                fact = _Fact(row.kind, dict(row.data or {}))
            if fact is not None:
                pending.append((savepoints, fact))

    def rolled_back(self, session: Session, previous: SessionTransaction) -> None:
        pending = session.info.get(_FACTS)
        if not pending:
            return
        if not previous.nested:
            pending.clear()
            return
        pending[:] = [(marks, fact) for marks, fact in pending if previous not in marks]

    def committed(self, session: Session) -> None:
        pending = session.info.pop(_FACTS, None)
        for _marks, fact in pending or ():
            try:
                self._count(fact)
            except Exception:  # a metric must never fail the request that committed
                log.exception("could not count a %s fact", fact.kind)

    def _count(self, fact: _Fact) -> None:
        m, data = self.metrics, fact.data
        if fact.kind == "page_triggered":
            m.pages_triggered.inc()
        elif fact.kind in ("page_step_notified", "page_step_nobody"):
            m.page_steps.labels("notified" if fact.kind == "page_step_notified" else "nobody").inc()
            if data.get("step", 1) != 1 or data.get("cycle", 0) != 0:
                m.pages_escalated.inc()
        elif fact.kind == "page_acknowledged":
            m.pages_acknowledged.inc()
            if fact.acknowledged_after is not None:
                m.time_to_acknowledge.observe(max(fact.acknowledged_after, 0.0))
        elif fact.kind == "page_exhausted":
            m.pages_exhausted.inc()
        elif fact.kind == "page_resolved":
            m.pages_resolved.inc()
        elif fact.kind == "page_delivered":
            m.notification_attempts.labels(word(data.get("channel"))).inc()
        elif fact.kind == "page_delivery_failed":
            channel = word(data.get("channel"))
            m.notification_attempts.labels(channel).inc()
            m.notification_failures.labels(channel, "true" if data.get("final") else "false").inc()
        elif fact.kind == "runbook_finished":
            m.runbook_runs.labels(word(data.get("outcome"))).inc()
        elif fact.kind == "runbook_cancelled" and not data.get("running"):
            m.runbook_runs.labels("cancelled").inc()  # a running run ends in runbook_finished
        elif fact.kind in RUN_OUTCOMES:
            m.runbook_runs.labels(RUN_OUTCOMES[fact.kind]).inc()


def _savepoints(session: Session) -> tuple[SessionTransaction, ...]:
    marks: list[SessionTransaction] = []
    transaction = session.get_nested_transaction()
    while transaction is not None and transaction.nested:
        marks.append(transaction)
        transaction = transaction.parent
    return tuple(marks)


def _acknowledged_after(session: Session, event: TimelineEvent) -> float | None:
    """Seconds from the page's trigger to this acknowledgement, if the page is loaded (it
    is: `acknowledge` reads it under its lock in the same session)."""
    if event.kind != "page_acknowledged" or event.page_id is None:
        return None
    page = session.identity_map.get(session.identity_key(Page, event.page_id))
    if not isinstance(page, Page):
        return None
    created: datetime = page.created_at
    return (event.occurred_at - created).total_seconds()


# -- read at scrape time ----------------------------------------------------------------


class _StateCollector(Collector):
    """Open incidents by severity, open pages by state, the scheduler role and readiness:
    the /readyz checks plus two indexed GROUP BY counts per scrape. A database that does
    not answer leaves the counts out (and `firebreak_database_up` 0) rather than failing
    the scrape."""

    def __init__(
        self,
        db: Database,
        scheduler_state: Callable[[], tuple[str, bool]],
        severities: Sequence[str],
    ) -> None:
        self.db = db
        self.scheduler_state = scheduler_state
        self.readiness = Readiness(db, scheduler_state)
        self.severities = severities
        self.socket_state: Callable[[], str | None] = lambda: None

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        role, healthy = self.scheduler_state()
        ready, answer = self.readiness.check()
        ready = ready and self.socket_state() in (None, "connected")
        incidents: dict[str, int] = {}
        pages: dict[str, int] = {}
        up = answer["database"] == "ok"
        try:
            with self.db.session_scope() as session:
                incidents = dict(
                    session.execute(
                        select(Incident.severity, func.count())
                        .where(Incident.resolved_at.is_(None))
                        .group_by(Incident.severity)
                    ).all()
                )
                pages = dict(
                    session.execute(
                        select(Page.state, func.count())
                        .where(Page.state.in_(OPEN_STATES))
                        .group_by(Page.state)
                    ).all()
                )
        except Exception as error:  # no tables yet, or the database just went away
            log.warning("metrics: could not read open incidents and pages: %s", error)
        return list(self._families(role, healthy, ready, up, incidents, pages))

    def _families(
        self,
        role: str | None = None,
        healthy: bool = True,
        ready: bool = True,
        up: bool = True,
        incidents: dict[str, int] | None = None,
        pages: dict[str, int] | None = None,
    ) -> Iterator[Metric]:
        leader = GaugeMetricFamily(
            "firebreak_scheduler_leader",
            "1 if this replica holds the scheduler lock and runs the jobs, else 0",
        )
        running = GaugeMetricFamily(
            "firebreak_scheduler_healthy",
            "1 unless this replica should run the scheduler and it is not running "
            "(what /readyz reports)",
        )
        database = GaugeMetricFamily(
            "firebreak_database_up", "1 if the database answered this scrape, else 0"
        )
        readyz = GaugeMetricFamily(
            "firebreak_ready",
            "1 if GET /readyz answers 200 (database up, schema current, scheduler running "
            "where it should, in Socket Mode the socket connected), else 0",
        )
        open_incidents = GaugeMetricFamily(
            "firebreak_incidents_open", "Incidents not resolved, by severity", labels=["severity"]
        )
        open_pages = GaugeMetricFamily(
            "firebreak_pages_open",
            "Pages not resolved, by state (triggered, acknowledged, exhausted)",
            labels=["state"],
        )
        if role is not None:
            leader.add_metric([], 1.0 if role == "leader" else 0.0)
            running.add_metric([], 1.0 if healthy else 0.0)
            database.add_metric([], 1.0 if up else 0.0)
            readyz.add_metric([], 1.0 if ready else 0.0)
            if up:
                counts = dict.fromkeys(self.severities, 0) | dict(incidents or {})
                for severity, count in sorted(counts.items()):
                    open_incidents.add_metric([word(severity)], float(count))
                states = dict.fromkeys(OPEN_STATES, 0) | dict(pages or {})
                for state, count in sorted(states.items()):
                    open_pages.add_metric([state], float(count))
        yield from (leader, running, database, readyz, open_incidents, open_pages)


# -- the outbound Slack client ----------------------------------------------------------


class MeasuredWebClient(WebClient):
    """slack_sdk's `WebClient`, counting each call, its failure and its retries by method.

    `api_call` is the one door every Web API method goes through; retries happen inside it
    (its retry handlers), and are counted by wrapping those handlers. It is also where
    background work yields to requests before each call (`bot.priority`)."""

    def __init__(self, *args: Any, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics
        self.retry_handlers = [_CountedRetries(h, metrics) for h in self.retry_handlers]

    def api_call(self, api_method: str, **kwargs: Any) -> SlackResponse:
        method = word(api_method)
        priority.yield_to_foreground()  # background work lets requests go first
        self.metrics.slack_api_calls.labels(method).inc()
        started = time.perf_counter()
        try:
            response = super().api_call(api_method, **kwargs)
        except SlackApiError as error:
            code = error.response.get("error") if error.response is not None else None
            if not code and error.response is not None:
                code = f"http_{error.response.status_code}"
            self.metrics.slack_api_errors.labels(method, word(code or "unknown")).inc()
            raise
        except Exception:
            self.metrics.slack_api_errors.labels(method, "connection").inc()
            raise
        finally:
            self.metrics.slack_api_seconds.labels(method).observe(time.perf_counter() - started)
        return response


_RETRY_REASONS: tuple[tuple[type[RetryHandler], str], ...] = (
    (RateLimitErrorRetryHandler, "ratelimited"),
    (ConnectionErrorRetryHandler, "connection"),
    (ServerErrorRetryHandler, "server_error"),
)


class _CountedRetries(RetryHandler):
    """A retry handler that counts each retry its inner handler decides on."""

    def __init__(self, inner: RetryHandler, metrics: Metrics) -> None:
        super().__init__(inner.max_retry_count, inner.interval_calculator)
        self.inner = inner
        self.metrics = metrics
        self.reason = next(
            (why for kind, why in _RETRY_REASONS if isinstance(inner, kind)), "other"
        )

    def can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return self.inner.can_retry(state=state, request=request, response=response, error=error)

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        method = word(request.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])
        self.metrics.slack_api_retries.labels(method, self.reason).inc()
        self.inner.prepare_for_next_attempt(
            state=state, request=request, response=response, error=error
        )
