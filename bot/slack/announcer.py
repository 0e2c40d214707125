"""What the job runner reports, said in Slack: exhausted pages and on-call hand-offs."""

from __future__ import annotations

import logging

from slack_sdk import WebClient

from bot.config import FileConfig
from bot.oncall.handoffs import DueHandoff
from bot.oncall.models import Page
from bot.slack.handoffs import announce
from bot.slack.text import escape

log = logging.getLogger(__name__)


class SlackAnnouncer:
    def __init__(self, client: WebClient, config: FileConfig) -> None:
        self.client = client
        self.config = config

    def page_exhausted(self, page: Page) -> None:
        channel = self.config.slack.announce_channel
        if channel is None:
            return
        self.client.chat_postMessage(
            channel=channel,
            text=(
                f":rotating_light: Nobody acknowledged page {page.reference} "
                f"({escape(page.target)}): {escape(page.message)}. Every step and repeat went "
                "unanswered."
            ),
        )

    def handoffs(self, due: list[DueHandoff]) -> None:
        for handoff in due:
            announce(self.client, self.config, handoff)
