"""The alert endpoints: authenticate, parse, hand to the intake, answer. Nothing else.

- `POST /alerts/alertmanager` and `POST /alerts/grafana` take `Authorization: Bearer
  <token>` (`FIREBREAK_ALERT_TOKEN`, or the source's own `alerts.sources.<source>.token_env`).
- `POST /v2/enqueue` speaks PagerDuty Events API v2 and authenticates by routing key
  (`services.<name>.routing_key` or `routing_key_env`); the service it names becomes the
  alert's `service` label. Answers are PagerDuty's own: 202 with the dedup key, or 400
  `invalid event` naming each bad field.

A 2xx means the alerts are committed (`bot.intake.AlertIntake.receive` returns after the
commit). A database that fails under a request raises to the app's error handler, which
answers 503 so the sender retries. Bodies over `MAX_BODY` are refused with 413 before
they are read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, jsonify, request

from bot import logs
from bot.alerts import auth
from bot.alerts.model import Batch, FieldError, Invalid, Source
from bot.config import Settings
from bot.intake import AlertIntake, Received
from bot.metrics import Metrics
from integrations import alertmanager, grafana, pagerduty

log = logging.getLogger(__name__)
MAX_BODY = 1024 * 1024
MAX_DEPTH = 64
PD_INVALID = "Event object is invalid"


def alert_blueprint(
    intake: AlertIntake, settings: Settings, metrics: Metrics, environ: Mapping[str, str]
) -> Blueprint:
    routes = Blueprint("alerts", __name__)
    default = settings.env.alert_token
    default_token = default.get_secret_value() if default is not None else None
    config = settings.file

    def webhook(source: Source, parse: Callable[[object], Batch]) -> tuple[Response, int]:
        if not auth.bearer_ok(
            request.headers.get("Authorization"),
            source,
            alerts=config.alerts,
            default_token=default_token,
            environ=environ,
        ):
            log.info("refused a webhook at /alerts/%s: missing or wrong bearer token", source)
            answer = jsonify(
                status="unauthorized",
                message="Send `Authorization: Bearer <token>` with FIREBREAK_ALERT_TOKEN "
                f"(or alerts.sources.{source}.token_env's value).",
            )
            answer.headers["WWW-Authenticate"] = 'Bearer realm="firebreak"'
            return answer, 401
        body = _body()
        if isinstance(body, tuple):
            return body
        try:
            batch = parse(body)
        except Invalid as invalid:
            return _invalid(invalid.errors)
        received = intake.receive(batch)
        result = received.result
        _logged(source, batch, received)
        return (
            jsonify(
                status="ok",
                alerts=len(batch.alerts),
                new=result.new,
                repeated=result.repeated,
                resolved=result.resolved,
                routed=result.route is not None,
                page=result.triggered.page.id if result.triggered else None,
                incident=result.incident_id,
            ),
            200,
        )

    @routes.post("/alerts/alertmanager")
    def from_alertmanager() -> tuple[Response, int]:
        return _counted("alertmanager", webhook("alertmanager", alertmanager.parse))

    @routes.post("/alerts/grafana")
    def from_grafana() -> tuple[Response, int]:
        return _counted("grafana", webhook("grafana", grafana.parse))

    @routes.post("/v2/enqueue")
    def enqueue() -> tuple[Response, int]:
        return _counted("pagerduty", pagerduty_event())

    def pagerduty_event() -> tuple[Response, int]:
        body = _body(pagerduty_style=True)
        if isinstance(body, tuple):
            return body
        try:
            event = pagerduty.parse(body)
        except Invalid as invalid:
            return _pd_invalid([str(error) for error in invalid.errors])
        service = auth.service_for_routing_key(event.routing_key, config.services, environ)
        if service is None:
            log.info("refused a PagerDuty event: unknown routing key")
            return _pd_invalid(["routing_key: not the routing key of any service in Firebreak"])
        batch = _with_service(event.batch, service)
        received = intake.receive(batch)
        _logged("pagerduty", batch, received)
        return (
            jsonify(status="success", message="Event processed", dedup_key=received.dedup_key),
            202,
        )

    def _counted(endpoint: str, answer: tuple[Response, int]) -> tuple[Response, int]:
        metrics.alert_requests.labels(endpoint, str(answer[1])).inc()
        return answer

    return routes


def _logged(source: str, batch: Batch, received: Received) -> None:
    """One line for a batch taken, its alert group, incident and page bound to it."""
    result = received.result
    page = result.triggered.page.id if result.triggered is not None else None
    logs.add(alert=result.group_id, incident=result.incident_id, page=page)
    log.info(
        "%s: %d alert(s) (%s): %d new, %d repeated, %d resolved; route %s",
        source,
        len(batch.alerts),
        batch.action,
        result.new,
        result.repeated,
        result.resolved,
        result.route or "none (unrouted)",
    )


def _body(*, pagerduty_style: bool = False) -> Any:
    """The request's JSON, or the answer that refuses it (413, 400)."""
    length = request.content_length
    if length is not None and length > MAX_BODY:
        return jsonify(status="error", message=f"The body is over {MAX_BODY} bytes."), 413
    raw = request.get_data(cache=False)
    if len(raw) > MAX_BODY:
        return jsonify(status="error", message=f"The body is over {MAX_BODY} bytes."), 413
    try:
        value = json.loads(raw)
    except RecursionError:
        problem = f"body: nested more than {MAX_DEPTH} levels deep"
    except ValueError as error:  # not JSON, not UTF-8, or an integer of 4300+ digits
        problem = f"body: not valid JSON ({error})"
    else:
        if not isinstance(value, dict | list) or _depth(value) <= MAX_DEPTH:
            return value
        problem = f"body: nested more than {MAX_DEPTH} levels deep"
    if pagerduty_style:
        return _pd_invalid([problem])
    return _invalid([FieldError("body", problem.removeprefix("body: "))])


def _invalid(errors: list[FieldError]) -> tuple[Response, int]:
    return (
        jsonify(
            status="invalid",
            message="The alert payload is invalid; nothing was stored.",
            errors=[str(error) for error in errors],
        ),
        400,
    )


def _pd_invalid(errors: list[str]) -> tuple[Response, int]:
    return jsonify(status="invalid event", message=PD_INVALID, errors=errors), 400


def _with_service(batch: Batch, service: str) -> Batch:
    """The PagerDuty event's alerts labelled with the service its routing key names."""
    alerts = tuple(
        replace(alert, labels={**alert.labels, "service": service}) for alert in batch.alerts
    )
    return replace(batch, alerts=alerts)


def _depth(value: Any) -> int:
    """How deep `value` nests (a scalar is 1), counted only as far as past MAX_DEPTH.

    Only containers are walked: a scalar child adds its level without a stack entry, which
    keeps this pass a small part of a 100-alert webhook's cost."""
    deepest, stack = 1, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if not children:
            continue
        deepest = max(deepest, level + 1)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest
