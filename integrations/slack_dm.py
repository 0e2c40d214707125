"""Paging by Slack direct message: the page, plus Acknowledge, Escalate now and Resolve buttons.

`chat.postMessage` with a user ID as the channel opens (or reuses) the bot's DM with that
person. Each button carries the page ID as its value; the listeners in `bot.slack` act on it.

One call is one delivery attempt. The `WebClient` already waits out a 429 and retries dropped
connections and 5xx answers a few times (see `bot.app.make_web_client`); what still fails is
reported as `NotifyError`, retryable or not, and the paging engine decides what comes next.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.oncall.notify import Notification, NotifyError
from bot.slack.blocks import (
    ACTION_PAGE_ACK,
    ACTION_PAGE_ESCALATE,
    ACTION_PAGE_RESOLVE,
    label_text,
    links_text,
)
from bot.slack.blocks import plain_text as _plain
from bot.slack.text import escape

Block = dict[str, Any]

MAX_HEADER = 150
MAX_SECTION = 3000
MAX_FIELD = 2000
MAX_FALLBACK = 3000

# Trying again cannot help with these: the person, the token or the message itself is wrong.
PERMANENT_ERRORS = frozenset(
    {
        "user_not_found",
        "channel_not_found",
        "cannot_dm_bot",
        "user_disabled",
        "not_authed",
        "invalid_auth",
        "account_inactive",
        "missing_scope",
        "token_revoked",
        "token_expired",
        "not_allowed_token_type",
        "no_permission",
        "restricted_action",
        "team_access_not_granted",
        "invalid_blocks",
        "invalid_blocks_format",
        "msg_too_long",
        "no_text",
    }
)
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


class SlackDMNotifier:
    """Sends a page as a DM from the bot to `notification.contact.slack`."""

    channel: str = "slack"

    def __init__(self, client: WebClient) -> None:
        self._client = client

    def send(self, notification: Notification) -> None:
        user = notification.contact.slack
        try:
            self._client.chat_postMessage(
                channel=user,
                text=fallback_text(notification),
                blocks=page_blocks(notification),
                unfurl_links=False,
                unfurl_media=False,
            )
        except SlackApiError as err:
            raise self._api_error(err, user) from None
        except (URLError, OSError) as err:  # TimeoutError and ConnectionError are OSErrors
            reason = getattr(err, "reason", None) or err
            raise NotifyError(
                self._redact(f"Slack DM to {user}: could not reach Slack ({reason})"),
                retryable=True,
            ) from None

    def _api_error(self, err: SlackApiError, user: str) -> NotifyError:
        response = err.response
        status = int(getattr(response, "status_code", 0) or 0)
        code = _error_code(response)
        # Everything else is retried: 429 and 5xx, Slack's transient codes (ratelimited,
        # internal_error, fatal_error, service_unavailable, request_timeout) and codes this
        # list does not know, because a page that may still get through is worth a retry.
        retryable = status == 429 or status >= 500 or code not in PERMANENT_ERRORS
        where = f"HTTP {status}" if status else "no HTTP status"
        return NotifyError(
            self._redact(f"Slack DM to {user} failed: {code} ({where})"), retryable=retryable
        )

    def _redact(self, text: str) -> str:
        token = self._client.token
        return text.replace(token, "xoxb-***") if token else text


def _error_code(response: Any) -> str:
    try:
        code = response.get("error")
    except (AttributeError, TypeError, ValueError):
        code = None
    return str(code) if code else "unknown_error"


# -- the message ------------------------------------------------------------------------


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn(text: str, limit: int) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": _cut(text, limit)}


def _who(paged_by: str) -> str:
    return f"<@{paged_by}>" if _USER_ID.match(paged_by) else escape(paged_by)


def fallback_text(notification: Notification) -> str:
    """The notification text (push notifications and clients without Block Kit show it)."""
    return _cut(notification.body, MAX_FALLBACK)


def _alert_blocks(notification: Notification) -> list[Block]:
    """An alert's labels and links (source, runbook, dashboard), when the page has them."""
    blocks: list[Block] = []
    labels = label_text(notification.labels)
    if labels:
        blocks.append({"type": "section", "text": _mrkdwn(f"*Labels* {labels}", MAX_SECTION)})
    links = links_text(notification.links)
    if links:
        blocks.append({"type": "context", "elements": [_mrkdwn(links, MAX_FIELD)]})
    return blocks


def page_blocks(notification: Notification) -> list[Block]:
    """The page message: what, why, where in the escalation, and the three buttons."""
    step = f"{notification.step}" + (
        f" (repeat {notification.cycle})" if notification.cycle else ""
    )
    fields = [
        _mrkdwn(f"*Target*\n{escape(notification.target)}", MAX_FIELD),
        _mrkdwn(f"*Escalation step*\n{step}", MAX_FIELD),
        _mrkdwn(f"*Paged by*\n{_who(notification.paged_by)}", MAX_FIELD),
    ]
    if notification.incident:
        fields.insert(0, _mrkdwn(f"*Incident*\n{escape(notification.incident)}", MAX_FIELD))
    value = str(notification.page_id)
    return [
        {"type": "header", "text": _plain(f"Page {notification.reference}", MAX_HEADER)},
        {
            "type": "section",
            "text": _mrkdwn(f"*You are paged:* {escape(notification.message)}", MAX_SECTION),
        },
        {"type": "section", "fields": fields},
        *_alert_blocks(notification),
        {
            "type": "actions",
            "block_id": f"page_{value}",
            "elements": [
                {
                    "type": "button",
                    "action_id": ACTION_PAGE_ACK,
                    "text": _plain("Acknowledge"),
                    "style": "primary",
                    "value": value,
                },
                {
                    "type": "button",
                    "action_id": ACTION_PAGE_ESCALATE,
                    "text": _plain("Escalate now"),
                    "value": value,
                },
                {
                    "type": "button",
                    "action_id": ACTION_PAGE_RESOLVE,
                    "text": _plain("Resolve"),
                    "style": "danger",
                    "value": value,
                    "confirm": {
                        "title": _plain("Resolve this page?", 100),
                        "text": _plain(
                            f"{notification.reference} will be resolved and nobody else "
                            "will be paged for it.",
                            300,
                        ),
                        "confirm": _plain("Resolve", 30),
                        "deny": _plain("Cancel", 30),
                        "style": "danger",
                    },
                },
            ],
        },
        {
            "type": "context",
            "elements": [
                _mrkdwn(
                    f"Acknowledge to stop the escalation, or type `/page ack {value}`.",
                    MAX_FIELD,
                )
            ],
        },
    ]
