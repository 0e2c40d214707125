"""The `/incident` slash command: parse, acknowledge, hand the work to the pool."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond

from bot.slack import blocks, flows, grammar, payloads, postmortem
from bot.slack.context import ListenerContext


def register(app: App, ctx: ListenerContext) -> None:
    postmortem.register(app, ctx)  # the draft and action item buttons

    @app.command("/incident")
    @payloads.answered
    def incident_command(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        text = payloads.string(command, "text", default="")
        user, channel = (
            payloads.slack_id(command, "user_id"),
            payloads.slack_id(command, "channel_id"),
        )
        trigger_id = payloads.trigger_id(command)
        parsed = flows.acknowledge(
            ack,
            lambda: grammar.parse(text, ctx.config),
            is_help=lambda parsed: isinstance(parsed, grammar.Help),
            help_text=grammar.HELP,
        )
        if parsed is None:
            return
        match parsed:
            case grammar.Declare(title="", severity=_):
                work = _open_declare_modal(ctx, trigger_id, channel)
                ctx.workers.submit(flows.guarded(work, respond))
            case grammar.Declare(title, severity):
                key = f"command:{trigger_id}"
                ctx.workers.submit(
                    flows.guarded(
                        lambda: flows.declare(
                            ctx,
                            title=title,
                            severity=severity,
                            description="",
                            user=user,
                            key=key,
                            reply=respond,
                        ),
                        respond,
                    )
                )
            case (
                grammar.Postmortem()
                | grammar.PostmortemDone()
                | grammar.AddAction()
                | (grammar.ListActions() | grammar.ShowReport())
            ):
                ctx.workers.submit(
                    flows.guarded(
                        lambda: postmortem.dispatch(
                            ctx, parsed, channel=channel, user=user, reply=respond
                        ),
                        respond,
                    )
                )
            case grammar.ListOpen():
                ctx.workers.submit(flows.guarded(lambda: flows.list_open(ctx, respond), respond))
            case grammar.WebLink():
                ctx.workers.submit(flows.guarded(lambda: _web_link(ctx, user, respond), respond))
            case _:
                ctx.workers.submit(
                    flows.guarded(
                        lambda: flows.in_channel(
                            ctx, parsed, channel=channel, user=user, reply=respond
                        ),
                        respond,
                    )
                )


def _web_link(ctx: ListenerContext, user: str, respond: Respond) -> None:
    """A sign-in link for whoever typed the command: any member of the workspace whose
    request Slack signed. Answered only to them (`respond` is ephemeral)."""
    from bot.webview.auth import SignInRefused

    if ctx.web is None:
        respond(text="The web view is not available in this Firebreak.", response_type="ephemeral")
        return
    name = ctx.config.name_by_slack_id(user) or user
    try:
        link = ctx.web.link(user, name)
    except SignInRefused as refused:
        respond(text=f"I cannot make a sign-in link: {refused}.", response_type="ephemeral")
        return
    respond(
        text=(
            f"Your sign-in link to Firebreak's web view (valid 10 minutes, works once, "
            f"only for you): {link}"
        ),
        response_type="ephemeral",
    )


def _open_declare_modal(ctx: ListenerContext, trigger_id: str, channel: str) -> Any:
    def work() -> None:
        ctx.client.views_open(
            trigger_id=trigger_id, view=blocks.declare_modal(ctx.config.incidents, channel)
        )

    return work
