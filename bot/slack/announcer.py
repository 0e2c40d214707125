"""What the job runner reports, said in Slack: exhausted pages (through the outbox, in the
transaction that exhausted the page) and on-call hand-offs."""

from __future__ import annotations

from slack_sdk import WebClient
from sqlalchemy.orm import Session

from bot import outbox
from bot.config import FileConfig
from bot.oncall.handoffs import DueHandoff
from bot.oncall.models import Page
from bot.slack.handoffs import announce
from bot.slack.outbox import SlackOutbox
from bot.slack.text import escape


class SlackAnnouncer:
    def __init__(self, client: WebClient, config: FileConfig, outbox: SlackOutbox) -> None:
        self.client = client
        self.config = config
        self.outbox = outbox

    def page_exhausted(self, session: Session, page: Page) -> list[int]:
        channel = self.config.slack.announce_channel
        if channel is None:
            return []
        text = (
            f":rotating_light: Nobody acknowledged page {page.reference} "
            f"({escape(page.target)}): {escape(page.message)}. Every step and repeat went "
            "unanswered."
        )
        body = {"channel": channel, "text": text}
        return [
            outbox.enqueue(session, outbox.POST, body, now=page.exhausted_at or page.created_at)
        ]

    def send(self, queued: list[int]) -> None:
        self.outbox.deliver(queued)

    def handoffs(self, due: list[DueHandoff]) -> None:
        for handoff in due:
            announce(self.client, self.config, handoff)
