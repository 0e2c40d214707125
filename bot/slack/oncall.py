"""The `/oncall` slash command: parse, acknowledge, hand the work to the pool.

Answers go only to the requester (ephemeral, through `respond`), after the transaction
commits. An override's "until" is resolved at the moment of the request in the requester's
time zone (their `people:` entry), or the schedule's zone for someone not listed there.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from slack_bolt import Ack, App, Respond

from bot.oncall import overrides, schedules
from bot.oncall.errors import OncallError
from bot.slack import flows, oncall_blocks, payloads
from bot.slack import oncall_grammar as grammar
from bot.slack.context import ListenerContext
from bot.slack.when import when


def register(app: App, ctx: ListenerContext) -> None:
    """Register `/oncall` listeners."""

    @app.command("/oncall")
    @payloads.answered
    def oncall_command(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        user = payloads.slack_id(command, "user_id")
        text = payloads.string(command, "text", default="")
        now = ctx.clock()

        def parse() -> tuple[grammar.Command, datetime | None]:
            parsed = grammar.parse(text, ctx.config, today=now.date())
            return parsed, _override_end(ctx, parsed, user, now)

        answer = flows.acknowledge(
            ack,
            parse,
            is_help=lambda answer: isinstance(answer[0], grammar.Help),
            help_text=grammar.HELP,
        )
        if answer is None:
            return
        parsed, ends_at = answer
        work: Callable[[], None]
        match parsed:
            case grammar.ShowAll():
                work = partial(show, ctx, None, now, respond)
            case grammar.Show(schedule):
                work = partial(show, ctx, schedule, now, respond)
            case grammar.AddOverride():
                assert ends_at is not None
                work = partial(add_override, ctx, parsed, user, now, ends_at, respond)
            case grammar.CancelOverride(override_id):
                work = partial(cancel_override, ctx, override_id, user, respond)
        ctx.workers.submit(flows.guarded(work, respond))


def requester_zone(ctx: ListenerContext, user_id: str, schedule: str) -> ZoneInfo:
    person = ctx.config.person_by_slack_id(user_id)
    if person is not None:
        return ZoneInfo(person.timezone)
    return ctx.config.schedules[schedule].zone


def _override_end(
    ctx: ListenerContext, parsed: grammar.Command, user: str, now: datetime
) -> datetime | None:
    if not isinstance(parsed, grammar.AddOverride):
        return None
    if parsed.length is not None:
        return now + parsed.length
    assert parsed.until is not None
    return parsed.until.resolve(now, requester_zone(ctx, user, parsed.schedule))


def show(ctx: ListenerContext, schedule: str | None, now: datetime, reply: flows.Reply) -> None:
    with ctx.db.session_scope() as session:
        found = schedules.statuses(
            session, ctx.config.oncall, now, [schedule] if schedule else None
        )
    reply(
        text=oncall_blocks.fallback(found),
        blocks=oncall_blocks.statuses(ctx.config, found, with_overrides=schedule is not None),
        response_type="ephemeral",
    )


def add_override(
    ctx: ListenerContext,
    parsed: grammar.AddOverride,
    user: str,
    now: datetime,
    ends_at: datetime,
    reply: flows.Reply,
) -> None:
    try:
        with ctx.db.session_scope() as session:
            override = overrides.add(
                session,
                ctx.config.oncall,
                schedule=parsed.schedule,
                person=parsed.person,
                starts_at=now,
                ends_at=ends_at,
                created_by=user,
                now=ctx.clock(),
            )
            override_id = override.id
    except OncallError as error:
        reply(text=f":x: {error}", response_type="ephemeral")
        return
    reply(
        text=(
            f"Override #{override_id}: {oncall_blocks.who(ctx.config, parsed.person)} is on call "
            f"for *{parsed.schedule}* from now until {when(ends_at)}. "
            f"End it early with `/oncall override cancel {override_id}`."
        ),
        response_type="ephemeral",
    )


def cancel_override(ctx: ListenerContext, override_id: int, user: str, reply: flows.Reply) -> None:
    try:
        with ctx.db.session_scope() as session:
            override = overrides.cancel(session, override_id, by=user, now=ctx.clock())
            schedule, person = override.schedule, override.person
    except OncallError as error:
        reply(text=f":x: {error}", response_type="ephemeral")
        return
    reply(
        text=(
            f"Cancelled override #{override_id} "
            f"({oncall_blocks.who(ctx.config, person)} on *{schedule}*)."
        ),
        response_type="ephemeral",
    )
