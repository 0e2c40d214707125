"""The pinned summary's controls and the modals: each maps onto the same flows as commands."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond

from bot.incidents import service
from bot.incidents.service import MAX_TITLE, IncidentError, validate_title
from bot.slack import blocks, flows, grammar
from bot.slack.context import ListenerContext


def register(app: App, ctx: ListenerContext) -> None:
    def change(body: dict[str, Any], command: grammar.Command, respond: Respond) -> None:
        user, channel = body["user"]["id"], body["channel"]["id"]
        ctx.workers.submit(
            flows.guarded(
                lambda: flows.in_channel(ctx, command, channel=channel, user=user, reply=respond),
                respond,
            )
        )

    @app.action(blocks.ACTION_SEVERITY)
    def severity_selected(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond
    ) -> None:
        ack()
        change(body, grammar.SetSeverity(action["selected_option"]["value"]), respond)

    @app.action(blocks.ACTION_STATUS)
    def status_selected(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond
    ) -> None:
        ack()
        change(body, grammar.SetStatus(action["selected_option"]["value"]), respond)

    @app.action(blocks.ACTION_RESOLVE)
    def resolve_pressed(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        change(body, grammar.Resolve(""), respond)

    @app.action(blocks.ACTION_NOTE)
    def note_pressed(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond
    ) -> None:
        ack()
        trigger_id, incident_id = body["trigger_id"], int(action["value"])

        def open_modal() -> None:
            with ctx.db.session_scope() as session:
                view = blocks.note_modal(service.get(session, incident_id))
            ctx.client.views_open(trigger_id=trigger_id, view=view)

        ctx.workers.submit(flows.guarded(open_modal, respond))

    @app.view(blocks.VIEW_DECLARE)
    def declare_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        values = view["state"]["values"]
        title = (values["title"]["value"].get("value") or "").strip()
        try:
            title = validate_title(title)
        except IncidentError as error:
            ack(response_action="errors", errors={"title": str(error)[:MAX_TITLE]})
            return
        ack()
        severity = values["severity"]["value"]["selected_option"]["value"]
        description = values.get("description", {}).get("value", {}).get("value") or ""
        user, channel = body["user"]["id"], view.get("private_metadata") or ""
        # The view id is the same for every submission of this modal: a double click
        # declares once.
        key = f"view:{view['id']}"
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
    def note_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any]) -> None:
        text = (view["state"]["values"]["note"]["value"].get("value") or "").strip()
        if not text:
            ack(response_action="errors", errors={"note": "Write something to add."})
            return
        ack()
        user, incident_id = body["user"]["id"], int(view["private_metadata"])

        def add() -> None:
            with ctx.db.session_scope() as session:
                channel = service.get(session, incident_id).channel_id
            if channel:
                flows.in_channel(
                    ctx,
                    grammar.AddNote(text),
                    channel=channel,
                    user=user,
                    reply=_ephemeral(ctx, channel, user),
                )

        ctx.workers.submit(flows.guarded(add, _ephemeral(ctx, "", user)))


def _ephemeral(ctx: ListenerContext, channel: str, user: str) -> flows.Reply:
    """Modals have no response_url: answer with an ephemeral message, or a DM."""

    def reply(text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        if channel:
            ctx.client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=blocks)
        else:
            ctx.client.chat_postMessage(channel=user, text=text, blocks=blocks)

    return reply
