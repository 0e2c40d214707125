"""Composition root: builds the database, Slack client, bolt app and web app from settings."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from flask import Flask
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot import logs, priority
from bot.clock import Clock
from bot.config import ConfigError, Settings
from bot.db import Database
from bot.intake import AlertIntake
from bot.jobs import JobRunner
from bot.leader import Leadership
from bot.metrics import MeasuredWebClient, Metrics
from bot.pager import Pager
from bot.slack import actions, commands, events, oncall, once, paging, runbooks
from bot.slack.alerts import SlackAlertPosts
from bot.slack.announcer import SlackAnnouncer
from bot.slack.channels import IncidentChannels
from bot.slack.context import ListenerContext
from bot.slack.outbox import SlackOutbox
from bot.slack.postmortem import SlackReminders
from bot.slack.runbook_runner import RunbookRunner
from bot.slack.socket_mode import SlackSocket
from bot.web import create_web_app
from bot.webhooks import alert_blueprint
from bot.webview.auth import WebAccess
from bot.webview.views import WebView, web_view_blueprint
from bot.workers import WorkerPool
from integrations.notifiers import build_notifiers

log = logging.getLogger(__name__)


def make_web_client(
    token: str, api_url: str, *, timeout: int = 10, metrics: Metrics | None = None
) -> WebClient:
    """The one Web API client: honours Retry-After on 429 and retries dropped connections;
    with `metrics`, counts its calls, errors and retries by method."""
    retries = [
        RateLimitErrorRetryHandler(max_retry_count=3),
        ConnectionErrorRetryHandler(max_retry_count=2),
        ServerErrorRetryHandler(max_retry_count=2),
    ]
    if metrics is not None:
        return MeasuredWebClient(
            token=token, base_url=api_url, timeout=timeout, retry_handlers=retries, metrics=metrics
        )
    return WebClient(token=token, base_url=api_url, timeout=timeout, retry_handlers=retries)


@dataclass
class Firebreak:
    settings: Settings
    db: Database
    client: WebClient
    workers: WorkerPool
    channels: IncidentChannels
    bolt: App
    metrics: Metrics
    clock: Clock
    jobs: JobRunner
    pager: Pager
    intake: AlertIntake
    leadership: Leadership | None = None
    runbooks: RunbookRunner | None = None
    socket: SlackSocket | None = None  # Socket Mode (slack.mode: socket); started by serve
    web: Flask = field(init=False)
    web_access: WebAccess = field(init=False)  # sign-in to the web view (`bot.webview`)

    def start_scheduler(self, *, poll_interval: float = 2.0) -> None:
        """Stand for scheduler leader: this replica runs the jobs while it holds the lock."""
        if self.leadership is not None:
            return
        self.leadership = Leadership(
            self.db.url,
            on_elected=self.jobs.start,
            on_lost=lambda: self.jobs.stop(wait=False),
            poll_interval=poll_interval,
        )
        self.leadership.start()

    def scheduler_state(self) -> tuple[str, bool]:
        """("leader" | "standby" | "off", healthy): off until `start_scheduler`; unhealthy if
        the election thread died or a leader's scheduler is not running."""
        leadership = self.leadership
        if leadership is None:
            return "off", True
        state = leadership.state
        healthy = leadership.alive and (state != "leader" or self.jobs.running)
        return state, healthy

    def close(self) -> None:
        if self.socket is not None:  # first: no new Slack requests while the rest stops
            self.socket.close()
        if self.leadership is not None:
            self.leadership.stop()
        self.jobs.stop()
        self.workers.wait_idle(timeout=30)
        if self.runbooks is not None:  # after the listeners: none can start a run now
            self.runbooks.close()
        self.workers.shutdown()
        self.db.dispose()


def build(settings: Settings) -> Firebreak:
    env = settings.env
    missing = [f"environment: {problem}" for problem in settings.missing_slack_variables()]
    # A malformed or shared routing key, or an alert source's token variable left unset,
    # refuses to start, as `check` does. A secret variable that is merely unset (a routing
    # key, the SMTP password, the webhook key) turns its integration off: logged here, as
    # `check` warns, so a copy of examples/firebreak.yaml starts before all is set up.
    missing += settings.file.environment_problems(os.environ)
    if missing:
        raise ConfigError(
            [*missing, "(or run `firebreak serve --sandbox` to try Firebreak without Slack)"]
        )
    for warning in settings.file.environment_warnings(os.environ):
        log.warning("%s", warning)
    assert env.slack_bot_token is not None
    db = Database(env.database_url)
    clock = Clock()
    metrics = Metrics()
    client = make_web_client(
        env.slack_bot_token.get_secret_value(), env.slack_api_url, metrics=metrics
    )
    workers = WorkerPool(size=8)
    channels = IncidentChannels(db, client, settings.file, clock)
    bolt = App(
        client=client,
        # Socket Mode needs no signing secret: bolt does not verify what comes over the socket.
        signing_secret=env.slack_signing_secret.get_secret_value()
        if env.slack_signing_secret
        else "",
        token_verification_enabled=False,
        process_before_response=False,
        listener_executor=workers.listener_executor(),
        raise_error_for_unhandled_request=False,
        logger=logging.getLogger("firebreak.bolt"),
    )
    notifiers = build_notifiers(settings.file, client, os.environ)
    oncall_config = settings.file.oncall
    slack_outbox = SlackOutbox(db, client, channels, clock)
    # Sign-in links are signed with a key derived from the signing secret (the bot token
    # where Slack reaches Firebreak without one).
    link_secret = (env.slack_signing_secret or env.slack_bot_token).get_secret_value()
    web_access = WebAccess(db, link_secret, clock, env.base_url)
    jobs = JobRunner(
        db,
        oncall_config,
        notifiers,
        clock,
        SlackAnnouncer(client, settings.file, slack_outbox),
        # The web view's ended sign-ins and sessions go with a reconcile pass, when due.
        reconcilers=[slack_outbox.reconcile, web_access.purge_if_due],
        reminders=SlackReminders(db, settings.file, slack_outbox, clock).run,
        runbook_stale_after=settings.file.runbooks.interrupted_after,
    )
    pager = Pager(db, oncall_config, jobs, clock)
    runbook_runner = RunbookRunner(settings, db, client, clock)
    ctx = ListenerContext(
        config=settings.file,
        db=db,
        client=client,
        channels=channels,
        workers=workers,
        pager=pager,
        jobs=jobs,
        clock=clock,
        outbox=slack_outbox,
        runbooks=runbook_runner,
        web=web_access,
    )
    bolt.use(once.Once(db, clock))  # a retried or doubled Slack request acts once
    commands.register(bolt, ctx)
    actions.register(bolt, ctx)
    events.register(bolt, ctx)
    oncall.register(bolt, ctx)
    paging.register(bolt, ctx)
    runbooks.register(bolt, ctx)
    jobs.observer = metrics
    posts = SlackAlertPosts(settings.file, slack_outbox, channels, clock)
    intake = AlertIntake(db, settings.file, jobs, workers, clock, metrics, posts)
    app = Firebreak(
        settings, db, client, workers, channels, bolt, metrics, clock, jobs, pager, intake
    )
    app.runbooks = runbook_runner
    if settings.socket_mode:  # Slack over a WebSocket instead of POST /slack/events
        assert env.slack_app_token is not None
        app.socket = SlackSocket(
            bolt, env.slack_app_token.get_secret_value(), env.slack_api_url, metrics=metrics
        )
    metrics.watch(db, app.scheduler_state, settings.file.incidents.severities)
    app.web = create_web_app(
        bolt,
        db,
        metrics,
        settings,
        clock,
        app.scheduler_state,
        socket_state=app.socket.state if app.socket is not None else None,
    )
    app.web.register_blueprint(alert_blueprint(intake, settings, metrics, os.environ))
    app.web_access = web_access
    # The `/oncall` page links each schedule's calendar feed, whose token the secret signs.
    calendar_secret = (
        env.slack_signing_secret.get_secret_value() if env.slack_signing_secret else None
    )
    view = WebView(db, settings.file, clock, web_access, calendar_secret=calendar_secret)
    app.web.register_blueprint(web_view_blueprint(view))
    # Requests are foreground while served: background work waits for them (bot.priority).
    app.web.wsgi_app = priority.ServingRequests(app.web.wsgi_app)  # type: ignore[method-assign]
    # A request id per request, bound to its log lines and echoed in X-Request-Id.
    app.web.wsgi_app = logs.RequestIds(app.web.wsgi_app)  # type: ignore[method-assign]
    return app
