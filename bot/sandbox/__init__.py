"""The sandbox Slack: a local emulator of the Slack Web API for tests, demos and `serve --sandbox`."""

from bot.sandbox.server import SlackSandbox
from bot.sandbox.state import (
    Call,
    Channel,
    Ephemeral,
    Message,
    ResponseUrlPost,
    SlackError,
    User,
    View,
)

__all__ = [
    "Call",
    "Channel",
    "Ephemeral",
    "Message",
    "ResponseUrlPost",
    "SlackError",
    "SlackSandbox",
    "User",
    "View",
]
