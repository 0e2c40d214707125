"""The postmortem in Slack: drafts uploaded to the channel, action items, the review's
follow-up and the numbers across incidents.

- `/incident postmortem [template:NAME]` and the "Postmortem draft" button on the resolve
  message render the draft (`bot.postmortem.draft`), save it whole under
  `postmortem.directory` (`INC-7.md`), and queue its upload in the outbox (kind `upload`,
  `bot.slack.outbox`), so a failed upload is retried with backoff and the
  `postmortem_drafted` fact is recorded when the upload is done. The requester is told what
  happened: uploaded, saved and queued for a retry, or saved but refused by Slack.
- `/incident action ...`, `/incident actions` and its Done buttons (`bot.postmortem.actions`).
- `/incident postmortem done` stops the reminders (`bot.postmortem.followup`).
- `SlackReminders.run`: the leader's job that sends due reminders to the channel and the
  commander's DM.
- `/incident report`: `bot.postmortem.report` as a table, to the requester only.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

from slack_bolt import Ack, App, Respond
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import outbox
from bot.cli_postmortem import write_whole
from bot.incidents import service
from bot.incidents.models import Incident, RoleAssignment
from bot.postmortem import actions, followup
from bot.postmortem import report as numbers
from bot.postmortem.context import UnknownIncident
from bot.postmortem.draft import render
from bot.postmortem.templates import TemplateError, Templates, UnknownTemplate
from bot.slack import flows, grammar, payloads
from bot.slack import timeline as timeline_text
from bot.slack.context import ListenerContext
from bot.slack.text import escape
from bot.slack.when import when
from bot.timeline import TimelineEvent

log = logging.getLogger(__name__)
ACTION_DRAFT = "postmortem_draft"
ACTION_ITEM_DONE = "action_item_done"
Reply = flows.Reply


def register(app: App, ctx: ListenerContext) -> None:
    """The buttons: "Postmortem draft" on the resolve message, "Done" on an action item."""

    @app.action(ACTION_DRAFT)
    @payloads.answered
    def draft_pressed(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        user, channel = payloads.slack_id(body, "user.id"), payloads.slack_id(body, "channel.id")
        payloads.response_url(body)
        ack()
        ctx.workers.submit(
            flows.guarded(
                lambda: draft(ctx, "default", channel=channel, user=user, reply=respond), respond
            )
        )

    @app.action(ACTION_ITEM_DONE)
    @payloads.answered
    def done_pressed(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond
    ) -> None:
        user, channel = payloads.slack_id(body, "user.id"), payloads.slack_id(body, "channel.id")
        item_id = payloads.number(action, "value", what="an action item number")
        payloads.response_url(body)
        ack()
        ctx.workers.submit(
            flows.guarded(
                lambda: item_done(ctx, item_id, channel=channel, user=user, reply=respond),
                respond,
            )
        )


def dispatch(
    ctx: ListenerContext, command: grammar.Command, *, channel: str, user: str, reply: Reply
) -> None:
    """Run one of `grammar.POSTMORTEM_COMMANDS` (on the worker pool)."""
    match command:
        case grammar.Postmortem(template):
            draft(ctx, template, channel=channel, user=user, reply=reply)
        case grammar.PostmortemDone():
            postmortem_done(ctx, channel=channel, user=user, reply=reply)
        case grammar.AddAction(text, owner, due):
            add_action(ctx, text, owner, due, channel=channel, user=user, reply=reply)
        case grammar.ListActions():
            list_actions(ctx, channel=channel, reply=reply)
        case grammar.ShowReport(days):
            show_report(ctx, days, reply=reply)
        case _:
            raise AssertionError(f"not a postmortem command: {command!r}")


def _incident(session: Session, channel: str, *, lock: bool = False) -> Incident | None:
    return service.find_by_channel(session, channel, lock=lock)


def _not_here(session: Session) -> dict[str, Any]:
    return {"text": flows._not_an_incident_channel(session)}


# -- drafts ---------------------------------------------------------------------------


def draft(ctx: ListenerContext, template: str, *, channel: str, user: str, reply: Reply) -> None:
    section = ctx.config.postmortem
    if section.templates_dir is not None and not section.templates_dir.is_dir():
        reply(text=f":x: postmortem.templates_dir: {section.templates_dir} is not a directory.")
        return
    templates = Templates.load(section.templates_dir)
    if template not in templates.files:
        reply(text=f":x: {escape(str(UnknownTemplate(template, templates.names)))}")
        return
    queued: int | None = None
    with ctx.db.session_scope() as session:
        incident = _incident(session, channel)
        if incident is None:
            reply(**_not_here(session))
            return
        try:
            text = render(
                session,
                incident.id,
                templates=templates,
                template=template,
                people=ctx.config.people,
                severities=ctx.config.incidents.severities,
                section=section,
                now=ctx.clock(),
            )
        except (TemplateError, UnknownIncident) as error:
            reply(text=f":x: The draft could not be rendered: {escape(str(error))}")
            return
        filename = f"{incident.reference}.md"
        path = section.directory / filename
        try:
            write_whole(path, text)
        except OSError as error:
            reply(
                text=f":x: The draft could not be saved as `{escape(str(path))}`: "
                f"{escape(error.strerror or str(error))}. Nothing was uploaded."
            )
            return
        queued = outbox.enqueue(
            session,
            outbox.UPLOAD,
            {
                "channel": channel,
                "filename": filename,
                "title": f"Postmortem draft: {incident.reference} {incident.title}"[:200],
                "content": text,
                "comment": f":page_facing_up: Postmortem draft of {incident.reference} "
                f"(template {template}), asked for by <@{user}>.",
                "template": template,
                "path": str(path),
                "user": user,
            },
            now=ctx.clock(),
            incident_id=incident.id,
        )
        reference = incident.reference
    ctx.outbox.deliver([queued])
    reply(text=_upload_outcome(ctx, queued, reference, path))


def _upload_outcome(ctx: ListenerContext, item_id: int, reference: str, path: Path) -> str:
    with ctx.db.session_scope() as session:
        item = session.get(outbox.OutboxItem, item_id)
        assert item is not None
        status, error, again = item.status, item.last_error, item.next_attempt_at
    saved = f"saved as `{escape(str(path))}`"
    if status == "sent":
        return f":page_facing_up: The postmortem draft of {reference} is uploaded here and {saved}."
    if status == "failed":
        return (
            f":warning: The postmortem draft of {reference} is {saved}, but Slack refused the "
            f"upload: {escape(error or 'unknown error')}. Fix that and ask again."
        )
    why = f" ({escape(error)})" if error else ""
    at = f" from {when(again, '{time_secs}')}" if again is not None else ""
    return (
        f":hourglass: The postmortem draft of {reference} is {saved}; the upload to the "
        f"channel did not go through yet{why}. It is retried by itself{at}; "
        "there is nothing to repeat."
    )


# -- the follow-up ------------------------------------------------------------------


def postmortem_done(ctx: ListenerContext, *, channel: str, user: str, reply: Reply) -> None:
    with ctx.db.session_scope() as session:
        incident = _incident(session, channel, lock=True)
        if incident is None:
            reply(**_not_here(session))
            return
        try:
            changed = followup.mark_done(session, incident, actor=user, now=ctx.clock())
        except followup.FollowupError as error:
            reply(text=str(error))
            return
        reference = incident.reference
        queued = (
            _post(session, ctx, incident.id, channel, _last(session, incident.id))
            if changed
            else []
        )
    if not changed:
        reply(text=f"The postmortem of {reference} is already marked done.")
        return
    if ctx.outbox.deliver(queued).waiting:
        reply(text=flows.QUEUED)


def _last(session: Session, incident_id: int) -> TimelineEvent:
    query = (
        select(TimelineEvent)
        .where(TimelineEvent.incident_id == incident_id)
        .order_by(TimelineEvent.id.desc())
        .limit(1)
    )
    return session.scalars(query).one()


def _post(
    session: Session, ctx: ListenerContext, incident_id: int, channel: str, event: TimelineEvent
) -> list[int]:
    body = {"channel": channel, "text": timeline_text.post(event)}
    return [outbox.enqueue(session, outbox.POST, body, now=ctx.clock(), incident_id=incident_id)]


def resolve_blocks(text: str, incident_id: int) -> list[dict[str, Any]]:
    """The resolve message: its sentence and a "Postmortem draft" button."""
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": ACTION_DRAFT,
                    "text": {"type": "plain_text", "text": "Postmortem draft"},
                    "value": str(incident_id),
                }
            ],
        },
    ]


class SlackReminders:
    """The leader's postmortem reminders: claim the due follow-ups and queue a channel post
    and a DM to the commander for each, in the claim's transaction; then send them."""

    def __init__(self, ctx_db: Any, config: Any, slack_outbox: Any, clock: Any) -> None:
        self.db = ctx_db
        self.config = config
        self.outbox = slack_outbox
        self.clock = clock

    def run(self) -> list[followup.Reminder]:
        now = self.clock()
        section = self.config.postmortem
        queued: list[int] = []
        with self.db.session_scope() as session:
            due = followup.claim_due(session, now, section.zone)
            for reminder in due:
                incident = session.get(Incident, reminder.incident_id)
                if incident is None or not incident.channel_id:
                    continue
                commander = session.scalars(
                    select(RoleAssignment.user_id).where(
                        RoleAssignment.incident_id == incident.id,
                        RoleAssignment.role == "commander",
                    )
                ).first()
                text = reminder_text(incident, reminder, commander, section.zone)
                queued.append(
                    outbox.enqueue(
                        session,
                        outbox.POST,
                        {"channel": incident.channel_id, "text": text},
                        now=now,
                        incident_id=incident.id,
                    )
                )
                if commander:
                    queued.append(
                        outbox.enqueue(
                            session,
                            outbox.POST,
                            {"channel": commander, "text": f"<#{incident.channel_id}>: {text}"},
                            now=now,
                        )
                    )
        if queued:
            self.outbox.deliver(queued)
        return due


def reminder_text(
    incident: Incident, reminder: followup.Reminder, commander: str | None, zone: Any
) -> str:
    due = reminder.due_at.astimezone(zone)
    at = f"{due:%a %d %b %H:%M} {due.tzname()}"
    who = f"<@{commander}>, " if commander else ""
    how = "write it with `/incident postmortem` and say `/incident postmortem done` when it is."
    if reminder.kind == "due":
        return f":alarm_clock: The postmortem of {incident.reference} is due now ({at}). {who}{how}"
    return (
        f":warning: The postmortem of {incident.reference} is overdue (it was due {at}; "
        f"reminder {reminder.number}). {who}{how}"
    )


# -- action items ---------------------------------------------------------------------


def add_action(
    ctx: ListenerContext,
    text: str,
    owner: str | None,
    due: Any,
    *,
    channel: str,
    user: str,
    reply: Reply,
) -> None:
    with ctx.db.session_scope() as session:
        incident = _incident(session, channel, lock=True)
        if incident is None:
            reply(**_not_here(session))
            return
        try:
            added = actions.add(
                session, incident.id, text, owner=owner, due=due, actor=user, now=ctx.clock()
            )
        except actions.ActionItemError as error:
            reply(text=str(error))
            return
        assert added.event is not None
        queued = _post(session, ctx, incident.id, channel, added.event)
    if ctx.outbox.deliver(queued).waiting:
        reply(text=flows.QUEUED)


def list_actions(ctx: ListenerContext, *, channel: str, reply: Reply) -> None:
    with ctx.db.session_scope() as session:
        incident = _incident(session, channel)
        if incident is None:
            reply(**_not_here(session))
            return
        answer = actions_message(incident, actions.for_incident(session, incident.id))
    reply(**answer)


def actions_message(incident: Incident, items: list[actions.ActionItemRow]) -> dict[str, Any]:
    """The action item list with a Done button per open item (shown to one person)."""
    if not items:
        return {
            "text": f"{incident.reference} has no action items yet; add one with "
            "`/incident action <text> [@owner] [due 2026-12-01]`."
        }
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"*Action items of {incident.reference}*"},
        }
    ]
    for item in items[:45]:  # a message holds at most 50 blocks
        owner = f" · owner <@{item.owner}>" if item.owner else ""
        due = f" · due {item.due.isoformat()}" if item.due else ""
        mark = ":white_check_mark:" if item.done else ":white_square:"
        section: dict[str, Any] = {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"{mark} {item.reference}: {escape(item.text)}{owner}{due}"[:3000],
            },
        }
        if not item.done:
            section["accessory"] = {
                "type": "button",
                "action_id": ACTION_ITEM_DONE,
                "text": {"type": "plain_text", "text": "Done"},
                "value": str(item.id),
            }
        blocks.append(section)
    open_count = sum(not item.done for item in items)
    text = (
        f"Action items of {incident.reference}: {open_count} open, {len(items) - open_count} done"
    )
    return {"text": text, "blocks": blocks}


def item_done(ctx: ListenerContext, item_id: int, *, channel: str, user: str, reply: Reply) -> None:
    with ctx.db.session_scope() as session:
        incident = _incident(session, channel, lock=True)
        if incident is None:
            reply(**_not_here(session))
            return
        item = session.get(actions.ActionItemRow, item_id)
        if item is None or item.incident_id != incident.id:
            reply(
                text=f"A-{item_id} is not an action item of {incident.reference}.",
                replace_original=False,
            )
            return
        done = actions.mark_done(session, item_id, actor=user, now=ctx.clock())
        queued = _post(session, ctx, incident.id, channel, done.event) if done.event else []
        answer = actions_message(incident, actions.for_incident(session, incident.id))
    ctx.outbox.deliver(queued)
    reply(**answer, replace_original=True)


# -- numbers --------------------------------------------------------------------------


def show_report(ctx: ListenerContext, days: int, *, reply: Reply) -> None:
    section = ctx.config.postmortem
    now = ctx.clock()
    with ctx.db.session_scope() as session:
        result = numbers.build(
            session,
            since=now - timedelta(days=days),
            now=now,
            zone=section.zone,
            mitigated_statuses=section.mitigated_statuses,
        )
    body = numbers.table(result)
    reply(
        text=f"*Incidents of the last {days} days* (the same as `firebreak report --since "
        f"{days}d`)\n```\n{escape(body)[:2800]}```"
    )
