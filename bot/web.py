"""The WSGI app: Slack at /slack/events, health, readiness, metrics and calendar feeds."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flask import Flask, Request, Response, g, jsonify, request
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from slack_bolt import App, BoltContext
from slack_bolt.adapter.flask.handler import to_bolt_request, to_flask_response
from slack_bolt.request.internals import build_context
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from bot.clock import Clock
from bot.config import Settings
from bot.db import Database, describe, unavailable
from bot.metrics import METHODS, Metrics
from bot.oncall import ics
from bot.readiness import Readiness
from bot.slack import payloads
from bot.slack import requests as slack_requests

log = logging.getLogger(__name__)
SOCKET_MODE_REFUSAL = (
    "Firebreak runs in Socket Mode (slack.mode: socket): Slack sends requests over the "
    "WebSocket, not to /slack/events. Turn Socket Mode off in the Slack app and set "
    "slack.mode: http to use this URL."
)


def create_web_app(
    bolt: App,
    db: Database,
    metrics: Metrics,
    settings: Settings,
    clock: Clock,
    scheduler_state: Callable[[], tuple[str, bool]],
    *,
    socket_state: Callable[[], str] | None = None,
) -> Flask:
    """`socket_state` is given in Socket Mode (`bot.slack.socket_mode`): /readyz reports it
    and /slack/events refuses requests (Slack sends them over the socket)."""
    web = Flask("firebreak")
    readiness = Readiness(db, scheduler_state)
    bolt.error(payloads.on_error)  # what bolt answers when its own code or a middleware fails
    secret = settings.env.slack_signing_secret

    @web.before_request
    def started() -> None:
        g.started = time.perf_counter()

    @web.after_request
    def measured(response: Response) -> Response:
        """Every answer, errors included (Flask runs this for its 404, 405 and 500 too),
        labelled by the route's template (`/oncall/<schedule>.ics`), never the raw path."""
        rule = request.url_rule
        route = rule.rule if rule is not None else "unmatched"
        method = request.method if request.method in METHODS else "other"
        metrics.http_requests.labels(method, route, str(response.status_code)).inc()
        began = g.get("started")
        if began is not None:
            metrics.http_request_seconds.labels(route).observe(time.perf_counter() - began)
        return response

    @web.errorhandler(DBAPIError)
    @web.errorhandler(PoolTimeout)
    def database_failed(error: Exception) -> tuple[Response, int]:
        """A route whose database failed under it (`bot.db.unavailable`) answers 503 and logs
        one line; any other database error is a bug, and Flask answers 500 with a traceback."""
        if not unavailable(error):
            raise error
        log.warning("%s %s: the database failed: %s", request.method, request.path, describe(error))
        return jsonify(status="unavailable", database=type(error).__name__), 503

    @web.post("/slack/events")
    def slack_events() -> Response:
        if socket_state is not None:
            return Response(
                slack_requests.Refused(404, "socket_mode", SOCKET_MODE_REFUSAL).json(),
                status=404,
                mimetype="application/json",
            )
        started = time.perf_counter()
        response = handle_slack(bolt, request, secret.get_secret_value() if secret else None)
        metrics.slack_response_seconds.observe(time.perf_counter() - started)
        metrics.slack_requests.labels(str(response.status_code)).inc()
        return response

    @web.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @web.get("/readyz")
    def readyz() -> tuple[Response, int]:
        """200 when ready, else 503, with what each check found (`bot.readiness`)."""
        ready, body = readiness.check()
        if socket_state is not None:  # Socket Mode: not ready until the socket is connected
            body["socket"] = state = socket_state()
            if state != "connected":
                ready, body["status"] = False, "unavailable"
        return jsonify(body), 200 if ready else 503

    @web.get("/metrics")
    def metrics_endpoint() -> Response:
        """The text format 0.0.4, its content type exactly as Prometheus expects it (Flask's
        `mimetype=` would append a second charset)."""
        return Response(generate_latest(metrics.registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)

    @web.get("/oncall/<schedule>.ics")
    def oncall_calendar(schedule: str) -> Response:
        """The schedule's next 8 weeks, whole shifts, for calendar apps; the token is in the
        URL they poll. The token is checked before the name (a token is per name), so a
        wrong token gets 403 whether or not the schedule exists: names cannot be probed."""
        secret = settings.env.slack_signing_secret
        token = request.args.get("token")
        if secret is None or not ics.token_matches(secret.get_secret_value(), schedule, token):
            return Response("missing or wrong token\n", status=403, mimetype="text/plain")
        if schedule not in settings.file.schedules:
            return Response("no such schedule\n", status=404, mimetype="text/plain")
        now = clock()
        with db.session_scope() as session:
            shifts = ics.feed_shifts(session, settings.file.oncall, schedule, now)
        return Response(
            ics.calendar(schedule, shifts, generated=now),
            content_type="text/calendar; charset=utf-8",
            headers={"Cache-Control": "private, max-age=300"},
        )

    return web


def handle_slack(bolt: App, flask_request: Request, signing_secret: str | None) -> Response:
    """A request at /slack/events: refused here (401, 400) or answered by bolt.

    `bot.slack.requests` checks the signature and the body's shape first, so that what bolt
    parses and routes is a body it can (bolt crashes on a timestamp that is not a number,
    a `payload` that is not an object, an `event` that is not an object...).
    """
    if signing_secret is None:
        checked: slack_requests.Accepted | slack_requests.Refused = slack_requests.Refused(
            401, "invalid_signature", "SLACK_SIGNING_SECRET is not set."
        )
    else:
        checked = slack_requests.check(
            flask_request.get_data(),
            timestamp=flask_request.headers.get("X-Slack-Request-Timestamp"),
            signature=flask_request.headers.get("X-Slack-Signature"),
            content_type=flask_request.headers.get("Content-Type"),
            signing_secret=signing_secret,
            now=time.time(),
        )
    if isinstance(checked, slack_requests.Refused):
        log.info("refused a Slack request (%s): %s", checked.status, checked.message)
        return Response(checked.json(), status=checked.status, mimetype="application/json")
    bolt_request = to_bolt_request(flask_request)
    if bolt_request.body != checked.body:
        # Bolt takes any form containing the word "payload" (a slash command's text, say)
        # for an interaction and then finds no payload in it: give it the form as parsed.
        bolt_request.body = checked.body
        bolt_request.context = build_context(BoltContext(), checked.body)
    return to_flask_response(bolt.dispatch(bolt_request))
