"""`firebreak web-link PERSON` and `firebreak web-logout PERSON`: the web view's sign-in
from a terminal. Registered on the `firebreak` group by `bot.cli`.

Only people listed in `people:` get a link (in Slack, `/incident web` serves any member of
the workspace). Links are signed with the same secret the running `firebreak serve` uses
(SLACK_SIGNING_SECRET, or SLACK_BOT_TOKEN without one) and point at FIREBREAK_BASE_URL (or
`--base-url`), so a link printed here opens a session on the server sharing this database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from bot.cli_support import fail, settings_or_fail
from bot.config import Settings

if TYPE_CHECKING:
    from bot.webview.auth import WebAccess


def _person(settings: Settings, person: str) -> tuple[str, str]:
    """(name, Slack user id) of PERSON from `people:`, or exit 2 naming who is listed."""
    people = settings.file.people
    name = person.strip().lower()
    entry = people.get(name)
    if entry is None:
        listed = ", ".join(sorted(people)) or f"nobody is listed in {settings.config_path}"
        fail(f"{person[:40]!r} is not in people: ({listed}); only listed people can sign in here")
    return name, entry.slack


@contextmanager
def _web_access(settings: Settings, base_url: str | None) -> Iterator[WebAccess]:
    from bot.clock import Clock
    from bot.config import ConfigError
    from bot.db import Database
    from bot.migrations import upgrade
    from bot.webview.auth import WebAccess

    env = settings.env
    secret = env.slack_signing_secret or env.slack_bot_token
    if secret is None:
        fail(
            "environment: SLACK_SIGNING_SECRET is not set; sign-in links are signed with it "
            "(set it as for `firebreak serve`)"
        )
    try:
        upgrade(env.database_url)
    except ConfigError as error:
        fail(*error.problems)
    database = Database(env.database_url)
    try:
        yield WebAccess(database, secret.get_secret_value(), Clock(), base_url or env.base_url)
    finally:
        database.dispose()


@click.command("web-link")
@click.argument("person")
@click.option(
    "--base-url",
    metavar="URL",
    default=None,
    help="The web view's public address (default: FIREBREAK_BASE_URL).",
)
@click.option(
    "--incident", metavar="INC-ID", default=None, help="Open this incident's page after sign-in."
)
def web_link(person: str, base_url: str | None, incident: str | None) -> None:
    """Print a sign-in link to the web view for PERSON (valid 10 minutes, works once)."""
    from bot.webview.auth import SignInRefused
    from bot.webview.queries import parse_reference

    settings = settings_or_fail()
    name, user_id = _person(settings, person)
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        fail(
            f"--base-url {base_url[:60]!r} must be an http(s) address, like https://fb.example.com"
        )
    next_path = "/"
    if incident is not None:
        number = parse_reference(incident)
        if number is None:
            fail(f"--incident {incident[:40]!r} is not an incident; give it like INC-7 or 7")
        next_path = f"/incidents/INC-{number}"
    with _web_access(settings, base_url) as access:
        try:
            link = access.link(user_id, name, next_path=next_path)
        except SignInRefused as refused:
            fail(f"{refused}, or pass --base-url")
    click.echo(link)


@click.command("web-logout")
@click.argument("person")
def web_logout(person: str) -> None:
    """End every web view session of PERSON and void their unused sign-in links."""
    settings = settings_or_fail()
    name, user_id = _person(settings, person)
    with _web_access(settings, None) as access:
        ended = access.revoke(user_id)
    click.echo(f"Signed {name} out of the web view: {ended} session(s) ended.")


def sandbox_web_view(access: WebAccess, url: str, host: str) -> str:
    """`serve --sandbox`: links point at the URL it listens on (unless FIREBREAK_BASE_URL
    says otherwise), and on a loopback address the view skips sign-in for requests from
    this machine (every page says so). Returns the line to print beside the Slack URL."""
    import ipaddress

    access.base_url = access.base_url or url
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    access.open_on_loopback = loopback
    if loopback:
        return f"Web view: {url}/ (sandbox: no sign-in from this machine)"
    return f"Web view: {url}/ (sign in with /incident web or `firebreak web-link NAME`)"
