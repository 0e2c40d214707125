"""The paging channels this configuration can use, by the names `people.<name>.notify` uses."""

from __future__ import annotations

from collections.abc import Mapping

from slack_sdk import WebClient

from bot.config import FileConfig
from bot.oncall.notify import Notifier
from integrations.email import EmailNotifier
from integrations.slack_dm import SlackDMNotifier
from integrations.webhook import WebhookNotifier


def build_notifiers(
    config: FileConfig, client: WebClient, environ: Mapping[str, str]
) -> dict[str, Notifier]:
    """Slack DM always; email and webhook when `notifiers:` configures them."""
    notifiers: dict[str, Notifier] = {"slack": SlackDMNotifier(client)}
    if config.notifiers.email is not None:
        notifiers["email"] = EmailNotifier(config.notifiers.email, environ)
    if config.notifiers.webhook is not None:
        notifiers["webhook"] = WebhookNotifier(config.notifiers.webhook, environ)
    return notifiers
