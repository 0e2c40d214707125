"""A sandbox Slack workspace for `firebreak serve --sandbox` and `firebreak demo`.

Starts the emulator in-process, adds the people from the configuration (or three demo
people), makes an announcement channel when none is configured, and returns settings that
point the bot at it. Nothing leaves the machine.
"""

from __future__ import annotations

import secrets
from dataclasses import replace

from pydantic import SecretStr

from bot.config import Settings
from bot.people import Person
from bot.sandbox import SlackSandbox

DEMO_PEOPLE = {
    "alice": Person(slack="U0ALICE", email="alice@example.com", timezone="Europe/Berlin"),
    "bob": Person(slack="U0BOB", email="bob@example.com", timezone="America/New_York"),
    "carol": Person(slack="U0CAROL", email="carol@example.com", timezone="Asia/Tokyo"),
}
SANDBOX_TOKEN = "xoxb-sandbox-token"  # noqa: S105 - only ever valid against the local emulator
SANDBOX_APP_TOKEN = "xapp-sandbox-token"  # noqa: S105 - the same, for Socket Mode


def start_sandbox(settings: Settings) -> tuple[SlackSandbox, Settings]:
    sandbox = SlackSandbox(bot_token=SANDBOX_TOKEN).start()
    people = settings.file.people or DEMO_PEOPLE
    for name, person in people.items():
        sandbox.add_user(person.slack, name, email=person.email, tz=person.timezone)
    file = settings.file
    if not file.people:
        file = file.model_copy(update={"people": DEMO_PEOPLE})
    if file.slack.announce_channel is None:
        members = [person.slack for person in people.values()]
        announce = sandbox.add_channel("incidents", members=members)
        slack = file.slack.model_copy(update={"announce_channel": announce})  # keeps slack.mode
        file = file.model_copy(update={"slack": slack})
    env = settings.env.model_copy(
        update={
            "slack_api_url": sandbox.api_url,
            "slack_bot_token": SecretStr(SANDBOX_TOKEN),
            "slack_signing_secret": settings.env.slack_signing_secret
            or SecretStr(secrets.token_hex(16)),
            # Socket Mode (serve --sandbox --socket-mode): the sandbox takes any xapp- token
            "slack_app_token": SecretStr(SANDBOX_APP_TOKEN),
        }
    )
    return sandbox, replace(settings, env=env, file=file)
