"""The `firebreak` command."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import click
from sqlalchemy.engine import make_url

from bot import logs
from bot.cli_postmortem import postmortem
from bot.cli_report import report
from bot.cli_runbook import runbook
from bot.cli_web import sandbox_web_view, web_link, web_logout
from bot.config import ConfigError, FileConfig, Settings, load_settings


def _fail(problems: list[str]) -> None:
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    sys.exit(2)


@contextmanager
def _config_errors() -> Iterator[None]:
    try:
        yield
    except ConfigError as error:
        _fail(error.problems)


@contextmanager
def _database_errors(url: str) -> Iterator[None]:
    """An unreachable database at start: one `error:` line naming it (password hidden)."""
    from bot.db import describe, unavailable

    try:
        yield
    except Exception as error:
        if not unavailable(error):
            raise
        shown = make_url(url).render_as_string(hide_password=True)
        _fail(
            [
                f"database: cannot reach {shown} ({describe(error)}); check DATABASE_URL "
                "and that the database server is up"
            ]
        )


def _settings() -> Settings:
    with _config_errors():
        settings = load_settings()
        logs.add_secrets(_secret_values(settings, os.environ))
        return settings
    raise AssertionError("unreachable")


def _secret_values(settings: Settings, environ: Mapping[str, str]) -> list[str | None]:
    """Every secret the settings name, for the log redaction filter (`bot.logs`)."""
    env, file = settings.env, settings.file
    values: list[str | None] = [
        secret.get_secret_value()
        for secret in (env.slack_bot_token, env.slack_signing_secret, env.alert_token)
        if secret is not None
    ]
    values.append(environ.get("SLACK_APP_TOKEN"))
    try:
        values.append(make_url(env.database_url).password)
    except Exception:  # not a URL: the database layer says so
        values.append(None)
    values += [service.routing_key_from(environ) for service in file.services.values()]
    values += [environ.get(entry.token_env) for entry in file.alerts.sources.values()]
    notifiers = file.notifiers
    if notifiers.email is not None and notifiers.email.password_env:
        values.append(environ.get(notifiers.email.password_env))
    if notifiers.webhook is not None:
        values.append(environ.get(notifiers.webhook.secret_env))
    return values


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
@click.pass_context
def main(context: click.Context, verbose: bool) -> None:
    """Firebreak: incident response in Slack."""
    context.obj = {"verbose": verbose}
    logs.configure(fmt="text", verbose=verbose)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=3000, show_default=True, type=int, help="Port; 0 picks a free one.")
@click.option("--threads", default=24, show_default=True, type=int, help="HTTP worker threads.")
@click.option(
    "--sandbox", is_flag=True, help="Run against a local emulated Slack, not the real one."
)
@click.option(
    "--socket-mode",
    is_flag=True,
    help="Take Slack's requests over Socket Mode (a WebSocket Firebreak opens; needs "
    "SLACK_APP_TOKEN) instead of POST /slack/events; the same as slack.mode: socket.",
)
@click.option(
    "--log-format",
    type=click.Choice(logs.FORMATS),
    envvar="FIREBREAK_LOG_FORMAT",
    default=None,
    help="Log lines on stderr: json (one object a line) or text. "
    "[default: text on a terminal, else json; env: FIREBREAK_LOG_FORMAT]",
)
@click.pass_context
def serve(
    context: click.Context,
    host: str,
    port: int,
    threads: int,
    sandbox: bool,
    socket_mode: bool,
    log_format: str | None,
) -> None:
    """Serve Slack requests at POST /slack/events (upgrades the database schema first)."""
    verbose = bool(context.obj and context.obj.get("verbose"))
    logs.configure(fmt=log_format or logs.default_format(), verbose=verbose)  # before imports log
    from bot.app import build
    from bot.migrations import upgrade
    from bot.server import serve as run_server

    settings = _settings()
    if socket_mode:
        settings = settings.with_slack_mode("socket")
    if sandbox:
        from bot.playground import start_sandbox

        _, settings = start_sandbox(settings)
        click.echo(f"Sandbox Slack: {settings.env.slack_api_url}", err=False)
    with _config_errors(), _database_errors(settings.env.database_url):
        upgrade(settings.env.database_url)
        app = build(settings)
    app.start_scheduler()
    if app.socket is not None:
        from bot.slack.socket_mode import SocketRefused

        try:
            app.socket.start()
        except SocketRefused as refused:
            app.close()
            _fail([str(refused)])
        click.echo("Slack over Socket Mode: " + app.socket.state(), err=False)

    def listening(url: str) -> None:
        click.echo(f"Firebreak listening on {url}", err=False)
        if sandbox:
            click.echo(sandbox_web_view(app.web_access, url, host), err=False)
        sys.stdout.flush()

    run_server(app, host, port, threads=threads, on_listening=listening)


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply the migrations up to REVISION (safe to run from several hosts at once)."""
    from bot.migrations import upgrade

    settings = _settings()
    upgrade(settings.env.database_url, revision)
    click.echo(f"Database at {revision}.")


def _ssh_findings(file: FileConfig) -> tuple[list[str], list[str]]:
    """Runbooks' SSH setup: errors when FIREBREAK_SSH_KEY / FIREBREAK_KNOWN_HOSTS are set but
    unusable, or an inventory host has no pinned key (every run there would be refused);
    a note when inventory hosts are listed but SSH is not set up yet."""
    from integrations.ssh import KEY_VARIABLE, KNOWN_HOSTS_VARIABLE, SshTransport

    hosts = file.inventory.hosts
    if not hosts:
        return [], []
    if not os.environ.get(KEY_VARIABLE) and not os.environ.get(KNOWN_HOSTS_VARIABLE):
        note = (
            f"note: runbooks cannot run until {KEY_VARIABLE} and {KNOWN_HOSTS_VARIABLE} are "
            "set (see the README's Runbooks section)"
        )
        return [], [note]
    try:
        transport = SshTransport.from_environment(os.environ)
    except ConfigError as error:
        return [f"environment: {problem}" for problem in error.problems], []
    unpinned = [
        f"inventory.hosts.{name}: no key for {entry.address}:{entry.port} in "
        f"{KNOWN_HOSTS_VARIABLE}; runs there would be refused (add it with "
        f"`ssh-keyscan -p {entry.port} {entry.address}` and check its fingerprint)"
        for name, entry in hosts.items()
        if not transport.known_hosts.pinned(entry.address, entry.port)
    ]
    return unpinned, []


@main.command()
def check() -> None:
    """Validate the environment and the YAML configuration; exit non-zero on any error."""
    settings = _settings()
    problems = []
    env = settings.env
    # Which Slack variables: SLACK_SIGNING_SECRET over HTTP, SLACK_APP_TOKEN in Socket Mode.
    problems += [f"environment: {problem}" for problem in settings.missing_slack_variables()]
    problems.extend(settings.file.environment_problems(os.environ))
    from bot.runbooks.catalogue import check_catalogue

    runbook_problems, runbook_notes = check_catalogue(
        settings.file, env.runbooks_path, explicit="FIREBREAK_RUNBOOKS" in os.environ
    )
    problems.extend(runbook_problems)
    ssh_problems, ssh_notes = _ssh_findings(settings.file)
    problems.extend(ssh_problems)
    runbook_notes = [*runbook_notes, *ssh_notes]
    from bot.postmortem.templates import template_problems

    problems.extend(template_problems(settings.file.postmortem.templates_dir))
    if problems:
        _fail(problems)
    source = str(settings.config_path) if settings.config_found else "embedded defaults"
    click.echo(f"Configuration OK ({source}).")
    for note in runbook_notes:
        click.echo(note)
    if settings.file.slack.announce_channel is None:
        click.echo("warning: slack.announce_channel is not set; incidents will not be announced.")
    for warning in settings.file.environment_warnings(os.environ):
        click.echo(f"warning: {warning}")
    default_token = env.alert_token is not None and bool(env.alert_token.get_secret_value())
    for warning in settings.file.alert_warnings(default_token=default_token, environ=os.environ):
        click.echo(f"warning: {warning}")


@main.command()
@click.option(
    "--url",
    default="https://firebreak.example.com",
    show_default=True,
    help="The public base URL Slack will call.",
)
@click.option(
    "--socket-mode",
    is_flag=True,
    help="For Socket Mode (no public URL): socket_mode_enabled and no request URLs.",
)
def manifest(url: str, socket_mode: bool) -> None:
    """Print the Slack app manifest (YAML) to paste into Slack's app configuration."""
    from bot.manifest import render_manifest

    click.echo(render_manifest(url, socket_mode=socket_mode), nl=False)


@main.command()
@click.option(
    "--ssh-server",
    type=click.Choice(["auto", "openssh", "paramiko"]),
    default="auto",
    show_default=True,
    help="The local SSH server the demo's runbook runs on: OpenSSH's sshd, the sandbox's "
    "paramiko server, or auto (sshd when it is installed and starts, else paramiko).",
)
@click.option(
    "--socket-mode",
    is_flag=True,
    help="Send Slack's requests over Socket Mode (the sandbox's WebSocket), not HTTP.",
)
def demo(ssh_server: str, socket_mode: bool) -> None:
    """Play a scripted incident against the sandbox Slack and print what the bot did."""
    from bot.demo import run_demo

    with _config_errors():
        run_demo(_settings(), click.echo, ssh_server=ssh_server, socket_mode=socket_mode)


@main.command()
@click.argument("schedule", required=False)
@click.option(
    "--at",
    "at_text",
    metavar="TIME",
    help="ISO 8601 instant, like 2026-03-30T08:00 or 2026-03-30T08:00+02:00; "
    "without a zone it is the schedule's local time. Default: now.",
)
@click.option(
    "--calendar-url",
    "base_url",
    metavar="BASE_URL",
    help="Also print each schedule's calendar subscription URL under this public base URL "
    "(needs SLACK_SIGNING_SECRET, which signs the token).",
)
def oncall(schedule: str | None, at_text: str | None, base_url: str | None) -> None:
    """Who is on call (overrides applied), until when, and who is next."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from bot.clock import system_now
    from bot.db import Database
    from bot.migrations import upgrade
    from bot.oncall import schedules
    from bot.oncall.ics import ics_token
    from bot.oncall.rotation import Shift

    settings = _settings()
    config = settings.file
    if schedule is not None and schedule not in config.schedules:
        known = ", ".join(config.schedules) or "none are configured"
        _fail([f"there is no schedule {schedule!r}; schedules: {known}"])
    if not config.schedules:
        _fail([f"no schedules are configured in {settings.config_path}"])
    try:
        given = datetime.fromisoformat(at_text) if at_text else None
    except ValueError:
        _fail([f"--at {at_text!r} is not an ISO 8601 time, like 2026-03-30T08:00"])
        raise AssertionError("unreachable") from None
    if given is not None and not 2000 <= given.year <= 2099:
        _fail([f"--at {at_text!r} is out of range; give a time from 2000 to 2099"])
    secret = settings.env.slack_signing_secret
    if base_url is not None and secret is None:
        _fail(["environment: SLACK_SIGNING_SECRET is not set; it signs the calendar tokens"])
    with _config_errors():
        upgrade(settings.env.database_url)
    db = Database(settings.env.database_url)

    def shown(moment: datetime, zone: ZoneInfo) -> str:
        return moment.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z")

    def described(shift: Shift, zone: ZoneInfo, *, current: bool) -> str:
        since = "" if current else f"from {shown(shift.start, zone)} "
        return f"{shift.person} {since}until {shown(shift.end, zone)}"

    try:
        for name in [schedule] if schedule else list(config.schedules):
            zone = config.schedules[name].zone
            at = system_now()
            if given is not None:
                at = given if given.tzinfo else given.replace(tzinfo=zone)
            with db.session_scope() as session:
                status = schedules.status(session, config.oncall, name, at)
            parts = [described(status.current, zone, current=True)] if status.current else []
            if not parts:
                parts.append("nobody on call")
            for shift in status.following:
                touching = status.current is not None and shift.start == status.current.end
                parts.append("then " + described(shift, zone, current=touching))
            click.echo(f"{name}: " + ", ".join(parts))
            for override in status.overrides:
                click.echo(
                    f"  override #{override.id}: {override.person} "
                    f"{shown(override.starts_at, zone)} to {shown(override.ends_at, zone)}"
                )
            if base_url is not None and secret is not None:
                token = ics_token(secret.get_secret_value(), name)
                click.echo(f"  calendar: {base_url.rstrip('/')}/oncall/{name}.ics?token={token}")
    finally:
        db.dispose()


@main.command()
@click.argument("target")
@click.argument("message", nargs=-1, required=True)
@click.option("--by", "by", default=None, help="Who is paging (default: cli:$USER).")
@click.option("--incident", type=int, default=None, help="Link the page to incident N.")
def page(target: str, message: tuple[str, ...], by: str | None, incident: int | None) -> None:
    """Page TARGET (user:NAME, schedule:NAME, policy:NAME, service:NAME or a person's name).

    The first step is notified at once from here; later steps are run by the scheduler
    leader of the running `firebreak serve`, which picks the page up within seconds.
    """
    import getpass

    from bot.app import build
    from bot.migrations import upgrade
    from bot.oncall.paging import PagingError

    settings = _settings()
    if ":" not in target:
        target = f"user:{target}"
    with _config_errors():
        upgrade(settings.env.database_url)
        app = build(settings)
    try:
        created = app.pager.page(
            target=target,
            message=" ".join(message),
            created_by=by or f"cli:{getpass.getuser()}",
            incident_id=incident,
        )
    except PagingError as error:
        _fail([str(error)])
    finally:
        app.close()
    due = created.next_escalation_at
    click.echo(f"Paged {target} ({created.reference}), state {created.state}.")
    if due is not None:
        click.echo(f"Next step due at {due.isoformat(timespec='seconds')} unless acknowledged.")


main.add_command(postmortem)
main.add_command(report)
main.add_command(runbook)
main.add_command(web_link)
main.add_command(web_logout)
