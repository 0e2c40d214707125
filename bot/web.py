"""The WSGI app: Slack at /slack/events, health, readiness, metrics and calendar feeds."""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt import App
from slack_bolt.adapter.flask import SlackRequestHandler
from sqlalchemy import text

from bot.clock import Clock
from bot.config import Settings
from bot.db import Database
from bot.metrics import Metrics
from bot.migrations import current_revision, head_revision
from bot.oncall import ics, schedules


def create_web_app(
    bolt: App,
    db: Database,
    metrics: Metrics,
    settings: Settings,
    clock: Clock,
    scheduler_state: Callable[[], tuple[str, bool]],
) -> Flask:
    web = Flask("firebreak")
    slack = SlackRequestHandler(bolt)
    head = head_revision(db.url)

    @web.post("/slack/events")
    def slack_events() -> Response:
        started = time.perf_counter()
        response: Response = slack.handle(request)
        metrics.slack_response_seconds.observe(time.perf_counter() - started)
        metrics.slack_requests.labels(str(response.status_code)).inc()
        return response

    @web.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @web.get("/readyz")
    def readyz() -> tuple[Response, int]:
        """Ready when the database answers at the schema's head and, if this replica should
        run the scheduler, it is running. `scheduler` is "leader", "standby" or "off"."""
        scheduler, healthy = scheduler_state()
        try:
            with db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                revision = current_revision(connection)
        except Exception as error:
            return (
                jsonify(status="unavailable", database=type(error).__name__, scheduler=scheduler),
                503,
            )
        if revision != head:
            return (
                jsonify(status="unavailable", schema=revision, expected=head, scheduler=scheduler),
                503,
            )
        if not healthy:
            return jsonify(status="unavailable", schema=revision, scheduler=scheduler), 503
        return jsonify(status="ready", schema=revision, scheduler=scheduler), 200

    @web.get("/metrics")
    def metrics_endpoint() -> Response:
        return Response(generate_latest(metrics.registry), mimetype=CONTENT_TYPE_LATEST)

    @web.get("/oncall/<schedule>.ics")
    def oncall_calendar(schedule: str) -> Response:
        """The schedule's next 8 weeks for calendar apps; the token is in the URL they poll."""
        if schedule not in settings.file.schedules:
            return Response("no such schedule\n", status=404, mimetype="text/plain")
        secret = settings.env.slack_signing_secret
        token = request.args.get("token")
        if secret is None or not ics.token_matches(secret.get_secret_value(), schedule, token):
            return Response("missing or wrong token\n", status=403, mimetype="text/plain")
        now = clock()
        oncall = settings.file.oncall
        with db.session_scope() as session:
            current = schedules.on_call(session, oncall, schedule, now)
            start, end = ics.feed_window(now, current)
            shifts = schedules.shifts(session, oncall, schedule, start, end)
        return Response(
            ics.calendar(schedule, shifts, generated=now),
            content_type="text/calendar; charset=utf-8",
            headers={"Cache-Control": "private, max-age=300"},
        )

    return web
