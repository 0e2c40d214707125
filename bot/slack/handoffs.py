"""Announcing hand-offs in Slack: a DM to the incoming person, a line in `handoff_channel`.

The job runner records due hand-offs every minute (`bot.oncall.handoffs`) and, after that
transaction commits, the announcer calls `announce` for each; a Slack failure is logged and
the hand-off stays recorded (announcing again a minute later could double-notify).
"""

from __future__ import annotations

import logging

from slack_sdk import WebClient

from bot.config import FileConfig
from bot.oncall.handoffs import DueHandoff
from bot.slack import oncall_blocks
from bot.slack.channels import slack_error

log = logging.getLogger(__name__)


def announce(client: WebClient, config: FileConfig, handoff: DueHandoff) -> None:
    person = config.people.get(handoff.person)
    if person is not None:
        try:
            client.chat_postMessage(
                channel=person.slack, text=oncall_blocks.handoff_dm(config, handoff)
            )
        except Exception as error:
            log.warning(
                "hand-off DM to %s for %s failed: %s",
                handoff.person,
                handoff.schedule,
                slack_error(error),
            )
    if handoff.handoff_channel:
        try:
            client.chat_postMessage(
                channel=handoff.handoff_channel,
                text=oncall_blocks.handoff_announcement(config, handoff),
            )
        except Exception as error:
            log.warning(
                "hand-off message in %s for %s failed: %s",
                handoff.handoff_channel,
                handoff.schedule,
                slack_error(error),
            )
