"""`/page` and the buttons on a page's direct message: parse, acknowledge, run, render."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond
from sqlalchemy.orm import Session

from bot import logs, outbox
from bot.incidents import service as incidents
from bot.oncall.paging import Outcome, PagingError, Triggered
from bot.slack import blocks, flows, page_grammar, payloads
from bot.slack import timeline as timeline_text
from bot.slack.context import ListenerContext
from bot.slack.text import escape

log = logging.getLogger(__name__)


def register(app: App, ctx: ListenerContext) -> None:
    @app.command("/page")
    @payloads.answered
    def page_command(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        parsed = flows.acknowledge(
            ack,
            lambda: page_grammar.parse(command.get("text") or "", ctx.config),
            is_help=lambda parsed: isinstance(parsed, page_grammar.PageHelp),
            help_text=page_grammar.HELP,
        )
        if parsed is None or isinstance(parsed, page_grammar.PageHelp):
            return
        user, channel = command["user_id"], command["channel_id"]
        if isinstance(parsed, page_grammar.Trigger):
            trigger_command = parsed

            def work() -> None:
                trigger(ctx, trigger_command, user=user, channel=channel, reply=respond)
        else:
            verb, page_id = parsed.verb, parsed.page_id

            def work() -> None:
                act(ctx, verb, page_id, user=user, reply=respond)

        ctx.workers.submit(flows.guarded(work, respond))

    def button(verb: str) -> Callable[..., None]:
        return flows.numbered_button(
            ctx,
            f"page_{verb}",
            what="a page number",
            prefix="p-",
            act=lambda page_id, user, respond: act(ctx, verb, page_id, user=user, reply=respond),
        )

    app.action(blocks.ACTION_PAGE_ACK)(button("ack"))
    app.action(blocks.ACTION_PAGE_ESCALATE)(button("escalate"))
    app.action(blocks.ACTION_PAGE_RESOLVE)(button("resolve"))


def trigger(
    ctx: ListenerContext,
    command: page_grammar.Trigger,
    *,
    user: str,
    channel: str,
    reply: flows.Reply,
) -> None:
    with ctx.db.session_scope() as session:
        incident = incidents.find_by_channel(session, channel)
        incident_id = incident.id if incident is not None else None
    logs.add(incident=incident_id)
    queued: list[int] = []

    def announce_in_the_incident(session: Session, result: Triggered) -> None:
        logs.add(page=result.page.id)  # before the commit: its DMs log with it
        if incident_id is not None and result.event is not None:
            body = {"channel": channel, "text": timeline_text.post(result.event)}
            queued.append(
                outbox.enqueue(session, outbox.POST, body, now=ctx.clock(), incident_id=incident_id)
            )

    try:
        result = ctx.pager.trigger(
            target=command.target,
            message=command.message,
            created_by=user,
            incident_id=incident_id,
            within=announce_in_the_incident,
        )
    except PagingError as error:
        reply(text=str(error))
        return
    assert result.event is not None, "a page without a dedup key is always new"
    log.info("%s triggered for %s by %s", result.page.reference, command.target, user)
    delivery = ctx.outbox.deliver(queued)
    about = f" for INC-{incident_id}" if incident_id else ""
    queued_note = " The post in the incident channel is queued." if delivery.waiting else ""
    reply(text=f"{timeline_text.post(result.event)}{about}.{queued_note}")


def act(ctx: ListenerContext, verb: str, page_id: int, *, user: str, reply: flows.Reply) -> None:
    logs.add(page=page_id)
    actions: dict[str, Callable[..., Outcome]] = {
        "ack": ctx.pager.acknowledge,
        "escalate": ctx.pager.escalate_now,
        "resolve": ctx.pager.resolve,
    }
    queued: list[int] = []
    commanded: list[int] = []  # the incident whose command the acknowledger took

    def announce_in_the_incident(session: Session, outcome: Outcome) -> None:
        if outcome.event is None or outcome.page.incident_id is None:
            return
        incident_id = outcome.page.incident_id
        incident = incidents.get(session, incident_id)
        texts = [_said(outcome)]
        if verb == "ack":
            led = incidents.take_command(session, incident, user, now=ctx.clock())
            if led is not None and led.event is not None:
                texts.append(timeline_text.post(led.event))
                commanded.append(incident_id)
        if incident.channel_id:
            for text in texts:
                body = {"channel": incident.channel_id, "text": text}
                queued.append(
                    outbox.enqueue(
                        session, outbox.POST, body, now=ctx.clock(), incident_id=incident_id
                    )
                )
        if len(texts) > 1:  # the new commander shows in the topic and summary
            queued.append(
                outbox.enqueue(
                    session, outbox.REFRESH, {}, now=ctx.clock(), incident_id=incident_id
                )
            )

    try:
        outcome = actions[verb](page_id, user, within=announce_in_the_incident)
    except PagingError as error:
        reply(text=str(error))
        return
    if outcome.event is None:
        reply(text=_unchanged(outcome))
        return
    log.info("%s: %s by %s", outcome.page.reference, outcome.event.kind, user)
    delivery = ctx.outbox.deliver(queued)
    queued_note = " The post in the incident channel is queued." if delivery.waiting else ""
    lead_note = ""
    for incident_id in commanded:
        with ctx.db.session_scope() as session:
            incident = incidents.get(session, incident_id)
            channel, reference = incident.channel_id, incident.reference
        lead_note = f" You lead {reference} now, as its commander."
        if channel:
            ctx.channels.invite_quietly(incident_id, channel, user)
    reply(text=_said(outcome) + lead_note + queued_note)


def _said(outcome: Outcome) -> str:
    assert outcome.event is not None
    return f"{timeline_text.post(outcome.event)}: {escape(outcome.page.message)}"


def _unchanged(outcome: Outcome) -> str:
    page = outcome.page
    if page.acknowledged_by and page.state == "acknowledged":
        by = timeline_text.actor(page.acknowledged_by)
        return f"{page.reference} was already acknowledged by {by}."
    return outcome.reason
