"""The WSGI app: Slack at /slack/events, health, readiness, metrics and calendar feeds."""

from __future__ import annotations

import time

from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt import App
from slack_bolt.adapter.flask import SlackRequestHandler
from sqlalchemy import text

from bot.config import Settings
from bot.db import Database, utcnow
from bot.metrics import Metrics
from bot.migrations import current_revision, head_revision
from bot.oncall import ics, schedules


def create_web_app(bolt: App, db: Database, metrics: Metrics, settings: Settings) -> Flask:
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
        try:
            with db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
                revision = current_revision(connection)
        except Exception as error:
            return jsonify(status="unavailable", database=type(error).__name__), 503
        if revision != head:
            return jsonify(status="unavailable", schema=revision, expected=head), 503
        return jsonify(status="ready", schema=revision), 200

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
        now = utcnow()
        with db.session_scope() as session:
            current = schedules.on_call(session, settings.file, schedule, now)
            start, end = ics.feed_window(now, current)
            shifts = schedules.shifts(session, settings.file, schedule, start, end)
        return Response(
            ics.calendar(schedule, shifts, generated=now),
            content_type="text/calendar; charset=utf-8",
            headers={"Cache-Control": "private, max-age=300"},
        )

    return web
