"""Alerts said in Slack: the alert summary message of an incident, the posts an ingested
batch calls for, the storm notice, and `/incident alerts`.

`enqueue` runs in the ingest transaction and only writes outbox items, so what the
channel must hear commits with the alerts. The alert summary is one message per alert
group in the incident channel, rendered from the database when it is sent and edited in
place (`chat.update`) as alerts join or resolve: a late or repeated send shows the state
as it is, never an older one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from slack_sdk import WebClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import outbox
from bot.alerts import ingest
from bot.alerts.ingest import Ingested
from bot.alerts.records import FIRING, AlertGroup, StoredAlert
from bot.clock import Clock
from bot.config import FileConfig
from bot.db import Database
from bot.incidents import service as incidents
from bot.oncall.paging import Outcome
from bot.slack import timeline as timeline_text
from bot.slack.blocks import label_text, links_text
from bot.slack.channels import IncidentChannels
from bot.slack.text import escape

if TYPE_CHECKING:
    from bot.slack.outbox import SlackOutbox

ALERTS = "alerts"  # outbox kind: {"group": id}, the group's alert summary message
MAX_SHOWN = 20  # alerts listed in one message; the rest are counted
_EMOJI = {FIRING: ":fire:", "resolved": ":large_green_circle:"}


class ChannelNotReady(Exception):
    """The incident's channel is not set up yet; the outbox tries again with backoff."""


def enqueue(session: Session, config: FileConfig, result: Ingested, *, now: datetime) -> list[int]:
    """The outbox items one ingested batch calls for, in its transaction."""
    queued: list[int] = []
    if result.incident_id is not None and result.group_id is not None:
        if result.group_created or result.changed_alerts:
            # A group opened by this batch has no queued item to reuse: no look-up.
            waiting = (
                None
                if result.group_created
                else _summary_waiting(session, result.incident_id, result.group_id)
            )
            queued.append(
                waiting
                if waiting is not None
                else outbox.enqueue(
                    session,
                    ALERTS,
                    {"group": result.group_id},
                    now=now,
                    incident_id=result.incident_id,
                )
            )
        # Only page changes and an incident resolved post in the channel: read it for those
        # (a new incident has none yet).
        posts = bool(result.outcomes) or result.incident_resolved is not None
        channel = (
            incidents.get(session, result.incident_id).channel_id
            if posts and not result.incident_created
            else None
        )
        if channel is not None:
            queued.extend(_page_posts(session, channel, result.outcomes, result.incident_id, now))
            change = result.incident_resolved
            if change is not None and change.event is not None:
                body = {"channel": channel, "text": timeline_text.post(change.event)}
                queued.append(
                    outbox.enqueue(
                        session, outbox.POST, body, now=now, incident_id=result.incident_id
                    )
                )
                queued.append(
                    outbox.enqueue(
                        session, outbox.REFRESH, {}, now=now, incident_id=result.incident_id
                    )
                )
    if result.storm is not None and config.slack.announce_channel is not None:
        body = {"channel": config.slack.announce_channel, "text": storm_notice(result)}
        queued.append(outbox.enqueue(session, outbox.POST, body, now=now))
    return queued


def _summary_waiting(session: Session, incident_id: int, group_id: int) -> int | None:
    """The group's summary item if one is queued and not yet taken by a sender: it renders
    the group from the database when it is sent, so it will show this batch too, and a
    storm of webhooks into one group edits the message once, not once each.

    The row is locked: a sender claiming it waits for this transaction, and one that
    claimed it first has made it `sending` (not matched here), so a new item is queued."""
    query = (
        select(outbox.OutboxItem)
        .where(
            outbox.OutboxItem.kind == ALERTS,
            outbox.OutboxItem.incident_id == incident_id,
            outbox.OutboxItem.status.in_(("pending", "retry")),
        )
        .with_for_update()
    )
    for item in session.scalars(query):
        if item.body.get("group") == group_id:
            return item.id
    return None


def _page_posts(
    session: Session, channel: str, outcomes: Sequence[Outcome], incident_id: int, now: datetime
) -> list[int]:
    queued = []
    for outcome in outcomes:
        if outcome.event is None:
            continue
        text = f"{timeline_text.post(outcome.event)}: {escape(outcome.page.message)}"
        queued.append(
            outbox.enqueue(
                session,
                outbox.POST,
                {"channel": channel, "text": text},
                now=now,
                incident_id=incident_id,
            )
        )
    return queued


def storm_notice(result: Ingested) -> str:
    storm = result.storm
    assert storm is not None
    minutes = int(storm.per.total_seconds() // 60)
    per = f"{minutes} minutes" if minutes else f"{int(storm.per.total_seconds())} seconds"
    return (
        f":thunder_cloud_and_rain: Alert storm on route *{escape(storm.route)}*: more than "
        f"{storm.max_pages} pages in {per}. Further alerts of this route are stored and "
        f"grouped but page nobody until the rate drops (first held back: "
        f"{escape(storm.title)})."
    )


# -- the alert summary message -----------------------------------------------------------


def send_summary(db: Database, client: WebClient, clock: Clock, group_id: int) -> None:
    """Post the group's alert summary in its incident channel, or edit the one posted."""
    with db.session_scope() as session:
        group = session.get(AlertGroup, group_id)
        if group is None or group.incident_id is None:
            return
        channel = incidents.get(session, group.incident_id).channel_id
        if channel is None:
            raise ChannelNotReady(f"INC-{group.incident_id} has no channel yet")
        shown = ingest.alerts_of_group(session, group_id, limit=MAX_SHOWN)
        firing, total = ingest.group_counts(session, group_id)
        text, blocks = summary(group, shown, firing=firing, total=total)
        ts = group.summary_ts
    if ts is not None:
        client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
        return
    posted = client.chat_postMessage(
        channel=channel, text=text, blocks=blocks, unfurl_links=False, unfurl_media=False
    )

    def save(session: Session) -> None:
        row = session.get(AlertGroup, group_id, with_for_update=True)
        if row is not None and row.summary_ts is None:
            row.summary_ts = str(posted["ts"])

    db.retrying(save)


def summary(
    group: AlertGroup, alerts: Sequence[StoredAlert], *, firing: int, total: int
) -> tuple[str, list[dict[str, Any]]]:
    """The alert summary of one group: title, counts (`firing` of `total`), and the first
    MAX_SHOWN of `alerts` (firing first) with labels and links; the rest are counted."""
    state = f"{firing} firing" if firing else "all resolved"
    head = f"Alerts from {group.source}: {escape(group.title)} ({state}, {total} in all)"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{head}*"[:3000]}}
    ]
    for alert in alerts[:MAX_SHOWN]:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": alert_line(alert)}})
    if total > MAX_SHOWN:
        more = total - MAX_SHOWN
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"…and {more} more; `/incident alerts` lists all."}
                ],
            }
        )
    return head, blocks


def alert_line(alert: StoredAlert) -> str:
    """One alert as mrkdwn: state, summary, labels, links; every value escaped."""
    emoji = _EMOJI.get(alert.status, "")
    repeats = f" (seen {alert.count} times)" if alert.count > 1 else ""
    labels = label_text((str(name), str(value)) for name, value in sorted(alert.labels.items()))
    links = links_text(
        (str(link.get("text", "link")), str(link.get("url", "")))
        for link in (alert.links or {}).get("links", [])
    )
    parts = [f"{emoji} *{alert.status}*{repeats} {escape(alert.summary)}", labels, links]
    return "\n".join(part for part in parts if part)[:3000]


def listing(session: Session, incident_id: int, reference: str) -> dict[str, Any]:
    """`/incident alerts`: every alert of the incident with its state."""
    rows = ingest.alerts_of_incident(session, incident_id)
    if not rows:
        return {"text": f"{reference} has no alerts; it was not opened by monitoring."}
    firing = sum(1 for _, alert in rows if alert.status == FIRING)
    head = f"Alerts of {reference}: {firing} firing, {len(rows) - firing} resolved"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{head}*"}}
    ]
    for _, alert in rows[: MAX_SHOWN * 2]:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": alert_line(alert)}})
    if len(rows) > MAX_SHOWN * 2:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"…and {len(rows) - MAX_SHOWN * 2} more."}],
            }
        )
    return {"text": head, "blocks": blocks}


class SlackAlertPosts:
    """`bot.intake.AlertPosts` for Slack: outbox items, their delivery, channel setup."""

    def __init__(
        self,
        config: FileConfig,
        outbox_sender: SlackOutbox,
        channels: IncidentChannels,
        clock: Clock,
    ) -> None:
        self.config = config
        self.outbox = outbox_sender
        self.channels = channels
        self.clock = clock

    def enqueue(self, session: Session, result: Ingested) -> list[int]:
        return enqueue(session, self.config, result, now=self.clock())

    def deliver(self, queued: list[int]) -> None:
        self.outbox.deliver(queued)

    def set_up(self, incident_id: int, requester: str) -> None:
        self.channels.open(incident_id, requester)
