"""The `firebreak` command."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from bot.config import ConfigError, Settings, load_settings


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


def _settings() -> Settings:
    with _config_errors():
        return load_settings()
    raise AssertionError("unreachable")


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
def main(verbose: bool) -> None:
    """Firebreak: incident response in Slack."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("slack_bolt", "slack_sdk", "waitress.queue", "alembic"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=3000, show_default=True, type=int, help="Port; 0 picks a free one.")
@click.option("--threads", default=24, show_default=True, type=int, help="HTTP worker threads.")
@click.option(
    "--sandbox", is_flag=True, help="Run against a local emulated Slack, not the real one."
)
def serve(host: str, port: int, threads: int, sandbox: bool) -> None:
    """Serve Slack requests at POST /slack/events (upgrades the database schema first)."""
    from bot.app import build
    from bot.migrations import upgrade
    from bot.server import serve as run_server

    settings = _settings()
    if sandbox:
        from bot.playground import start_sandbox

        _, settings = start_sandbox(settings)
        click.echo(f"Sandbox Slack: {settings.env.slack_api_url}", err=False)
    with _config_errors():
        upgrade(settings.env.database_url)
        app = build(settings)

    def listening(url: str) -> None:
        click.echo(f"Firebreak listening on {url}", err=False)
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


@main.command()
def check() -> None:
    """Validate the environment and the YAML configuration; exit non-zero on any error."""
    settings = _settings()
    problems = []
    env = settings.env
    if env.slack_bot_token is None:
        problems.append("environment: SLACK_BOT_TOKEN is not set (the xoxb- bot token)")
    if env.slack_signing_secret is None:
        problems.append("environment: SLACK_SIGNING_SECRET is not set (Basic Information page)")
    if problems:
        _fail(problems)
    source = str(settings.config_path) if settings.config_found else "embedded defaults"
    click.echo(f"Configuration OK ({source}).")
    if settings.file.slack.announce_channel is None:
        click.echo("warning: slack.announce_channel is not set; incidents will not be announced.")


@main.command()
@click.option(
    "--url",
    default="https://firebreak.example.com",
    show_default=True,
    help="The public base URL Slack will call.",
)
def manifest(url: str) -> None:
    """Print the Slack app manifest (YAML) to paste into Slack's app configuration."""
    from bot.manifest import render_manifest

    click.echo(render_manifest(url), nl=False)


@main.command()
def demo() -> None:
    """Play a scripted incident against the sandbox Slack and print what the bot did."""
    from bot.demo import run_demo

    run_demo(_settings(), click.echo)
