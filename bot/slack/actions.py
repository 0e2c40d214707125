"""The pinned summary's controls and the modals: each maps onto the same flows as commands."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk.errors import SlackApiError

from bot.incidents import service
from bot.incidents.service import MAX_NOTE, MAX_TITLE, IncidentError, validate_title
from bot.slack import blocks, flows, grammar, payloads
from bot.slack.channels import slack_error
from bot.slack.context import ListenerContext
from bot.slack.requests import SLACK_ID
from bot.slack.text import ParseError, clean, quote

log = logging.getLogger(__name__)
MAX_DESCRIPTION = 3000  # as the modal's input allows


def register(app: App, ctx: ListenerContext) -> None:
    policy = ctx.config.incidents

    def change(ack: Ack, body: dict[str, Any], command: grammar.Command, respond: Respond) -> None:
        user, channel = payloads.slack_id(body, "user.id"), payloads.slack_id(body, "channel.id")
        payloads.response_url(body)
        ack()
        ctx.workers.submit(
            flows.guarded(
                lambda: flows.in_channel(ctx, command, channel=channel, user=user, reply=respond),
                respond,
            )
        )

    @app.action(blocks.ACTION_SEVERITY)
    @payloads.answered
    def severity_selected(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond
    ) -> None:
        severity = payloads.choice(
            action, "selected_option.value", policy.severities, what="severity"
        )
        change(ack, body, grammar.SetSeverity(severity), respond)

    @app.action(blocks.ACTION_STATUS)
    @payloads.answered
    def status_selected(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond
    ) -> None:
        status = payloads.choice(action, "selected_option.value", policy.statuses, what="status")
        change(ack, body, grammar.SetStatus(status), respond)

    @app.action(blocks.ACTION_RESOLVE)
    @payloads.answered
    def resolve_pressed(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        change(ack, body, grammar.Resolve(""), respond)

    @app.action(blocks.ACTION_NOTE)
    @payloads.answered
    def note_pressed(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond
    ) -> None:
        trigger_id = payloads.trigger_id(body)
        incident_id = payloads.number(action, "value", what="an incident number")
        payloads.response_url(body)
        ack()

        def open_modal() -> None:
            try:
                with ctx.db.session_scope() as session:
                    view = blocks.note_modal(service.get(session, incident_id))
            except IncidentError as error:  # a button from a message that outlived it
                respond(text=str(error), response_type="ephemeral", replace_original=False)
                return
            ctx.client.views_open(trigger_id=trigger_id, view=view)

        ctx.workers.submit(flows.guarded(open_modal, respond))

    @app.view(blocks.VIEW_DECLARE)
    @payloads.answered
    def declare_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = payloads.slack_id(body, "user.id")
        # The view id is the same for every submission of this modal: a double click
        # declares once.
        key = f"view:{payloads.slack_id(view, 'id')}"
        channel = payloads.string(view, "private_metadata", default="")
        if channel and not SLACK_ID.fullmatch(channel):
            raise payloads.Malformed(f"`private_metadata` is `{quote(channel)}`, not a channel.")
        values = payloads.field(view, "state.values")
        try:
            title = validate_title(
                clean(
                    _input(values, "title"),
                    what="title",
                    limit=MAX_TITLE,
                    one_line=True,
                    hint="Put the rest in the description.",
                )
            )
        except (ParseError, IncidentError) as error:
            raise payloads.Malformed(str(error), block="title") from None
        severity = payloads.choice(
            values,
            "severity.value.selected_option.value",
            policy.severities,
            what="severity",
            block="severity",
        )
        try:
            description = clean(
                _input(values, "description"), what="description", limit=MAX_DESCRIPTION
            )
        except ParseError as error:
            raise payloads.Malformed(str(error), block="description") from None
        ack()
        reply = _ephemeral(ctx, channel, user)
        ctx.workers.submit(
            flows.guarded(
                lambda: flows.declare(
                    ctx,
                    title=title,
                    severity=severity,
                    description=description,
                    user=user,
                    key=key,
                    reply=reply,
                ),
                reply,
            )
        )

    @app.view(blocks.VIEW_NOTE)
    @payloads.answered
    def note_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        user = payloads.slack_id(body, "user.id")
        incident_id = payloads.number(view, "private_metadata", what="an incident number")
        values = payloads.field(view, "state.values")
        try:
            text = clean(_input(values, "note"), what="note", limit=MAX_NOTE)
        except ParseError as error:
            raise payloads.Malformed(str(error), block="note") from None
        if not text:
            raise payloads.Malformed("Write something to add.", block="note")
        ack()

        def add() -> None:
            try:
                with ctx.db.session_scope() as session:
                    channel = service.get(session, incident_id).channel_id
            except IncidentError as error:
                _ephemeral(ctx, "", user)(text=str(error))
                return
            if channel:
                flows.in_channel(
                    ctx,
                    grammar.AddNote(text),
                    channel=channel,
                    user=user,
                    reply=_ephemeral(ctx, channel, user),
                )

        ctx.workers.submit(flows.guarded(add, _ephemeral(ctx, "", user)))


def _input(values: Any, block: str) -> str:
    """What was typed into a modal's text input (`block`, action `value`): "" if nothing."""
    return payloads.string(values, f"{block}.value.value", default="", block=block)


def _ephemeral(ctx: ListenerContext, channel: str, user: str) -> flows.Reply:
    """Modals have no response_url: answer with an ephemeral message in the channel the
    modal was opened from, or a direct message (also when the ephemeral one fails: the
    channel is gone, or the bot is not in it). An answer that cannot be delivered at all
    is logged; what it answered has been done."""

    def reply(text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        if channel:
            try:
                ctx.client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=blocks)
                return
            except SlackApiError as error:
                log.warning("could not answer %s in %s: %s", user, channel, slack_error(error))
        try:
            ctx.client.chat_postMessage(channel=user, text=text, blocks=blocks)
        except SlackApiError as error:
            log.warning("could not answer %s: %s (%s)", user, slack_error(error), text[:200])

    return reply
