"""`/runbook` and the buttons of a run's plan message: parse, acknowledge, run, render.

- `list` and `show` answer only the requester.
- `run` checks everything before anything is posted (parameters, hosts, the SSH setup, the
  requester's roles); a refusal answers the requester with every problem and is stored. An
  accepted request posts the plan message in the channel: runbook, parameters, hosts, the
  exact argv, risk and approval, with Run / Cancel for the requester.
- Run: approved at once, or awaiting an approver (Approve / Deny) with an allowed role who
  is not the requester, until `runbooks.approval_expires`. Then the executor starts it on
  its own pools; its progress is one reply in the plan message's thread, edited in place,
  and the plan message's status line shows the outcome at the end.
- `cancel R-N` (or Cancel) stops new steps and kills running ones, here at once and on
  another replica at its executor's next heartbeat.

Every press is decided by the run's state machine under a row lock (`bot.runbooks.runs`),
so a double press, a retry or a second replica acts once; `bot.slack.once` drops Slack's
retries before they get here. In an incident channel the run belongs to the incident, and
every fact of it goes into the incident's timeline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk.errors import SlackApiError

from bot.config import ConfigError
from bot.incidents import service as incidents
from bot.runbooks import records, runs
from bot.runbooks.params import RunRefused, parse_arguments
from bot.runbooks.planning import make_plan
from bot.slack import flows, payloads, runbook_blocks
from bot.slack import runbook_grammar as grammar
from bot.slack.channels import slack_error
from bot.slack.context import ListenerContext
from bot.slack.runbook_runner import RunbookRunner
from bot.slack.text import escape
from bot.slack.timeline import actor

log = logging.getLogger(__name__)
SSH_HINT = (
    "Runbooks are not set up on this Firebreak: FIREBREAK_SSH_KEY (the private key runbooks "
    "log in with) and FIREBREAK_KNOWN_HOSTS (the pinned host keys) must both be set. "
    "Ask whoever runs Firebreak; the README's Runbooks section says how."
)


def register(app: App, ctx: ListenerContext) -> None:
    @app.command("/runbook")
    @payloads.answered
    def runbook_command(ack: Ack, command: dict[str, Any], respond: Respond) -> None:
        text = payloads.string(command, "text", default="")
        user = payloads.slack_id(command, "user_id")
        channel = payloads.slack_id(command, "channel_id")
        parsed = flows.acknowledge(
            ack,
            lambda: grammar.parse(text),
            is_help=lambda parsed: isinstance(parsed, grammar.Help),
            help_text=grammar.HELP,
        )
        if parsed is None:
            return
        work: Callable[[], None]
        match parsed:
            case grammar.ListRunbooks():
                work = lambda: show_list(ctx, respond)  # noqa: E731
            case grammar.Show(runbook_id):
                work = lambda: show_one(ctx, runbook_id, respond)  # noqa: E731
            case grammar.Run():
                run_command = parsed
                work = lambda: request(ctx, run_command, user, channel, respond)  # noqa: E731
            case grammar.Cancel(run_id):
                work = lambda: press(ctx, "cancel", run_id, user, respond)  # noqa: E731
            case _:
                return
        ctx.workers.submit(flows.guarded(work, respond))

    def button(verb: str) -> Callable[..., None]:
        return flows.numbered_button(
            ctx,
            f"runbook_{verb}",
            what="a runbook run",
            prefix="r-",
            act=lambda run_id, user, respond: press(ctx, verb, run_id, user, respond),
        )

    app.action(runbook_blocks.ACTION_RUN)(button("run"))
    app.action(runbook_blocks.ACTION_CANCEL)(button("cancel"))
    app.action(runbook_blocks.ACTION_APPROVE)(button("approve"))
    app.action(runbook_blocks.ACTION_DENY)(button("deny"))


def _runner(ctx: ListenerContext) -> RunbookRunner:
    assert ctx.runbooks is not None, "build() gives every app a RunbookRunner"
    return ctx.runbooks


def _private(reply: flows.Reply, text: str) -> None:
    reply(text=text, response_type="ephemeral", replace_original=False)


def _catalogue_problem(error: ConfigError) -> str:
    shown = "\n".join(f"• {escape(problem)}" for problem in error.problems[:10])
    return (
        ":x: Firebreak's runbook catalogue has problems, so no runbook can be used until they "
        f"are fixed (`firebreak check` lists them):\n{shown}"
    )


def show_list(ctx: ListenerContext, reply: flows.Reply) -> None:
    try:
        catalogue = _runner(ctx).catalogue()
    except ConfigError as error:
        _private(reply, _catalogue_problem(error))
        return
    _private(reply, runbook_blocks.listing(catalogue.runbooks))


def show_one(ctx: ListenerContext, runbook_id: str, reply: flows.Reply) -> None:
    try:
        catalogue = _runner(ctx).catalogue()
    except ConfigError as error:
        _private(reply, _catalogue_problem(error))
        return
    found = catalogue.get(runbook_id)
    if found is None:
        _private(reply, _unknown(runbook_id, [runbook.id for runbook in catalogue.runbooks]))
        return
    _private(reply, runbook_blocks.details(found))


def _unknown(runbook_id: str, known: list[str]) -> str:
    names = ", ".join(f"`{name}`" for name in known) or "none"
    return f"There is no runbook `{runbook_blocks.code_text(runbook_id[:64])}` (runbooks: {names})."


def request(
    ctx: ListenerContext, command: grammar.Run, user: str, channel: str, reply: flows.Reply
) -> None:
    """`/runbook run`: refuse with every problem (stored), or post the plan message."""
    runner = _runner(ctx)
    raw = dict(word.partition("=")[::2] for word in command.words if "=" in word)
    with ctx.db.session_scope() as session:
        incident = incidents.find_by_channel(session, channel)
        incident_id = incident.id if incident is not None else None
    problems: list[str] = []
    found = None
    plan = None
    try:
        catalogue = runner.catalogue()
    except ConfigError as error:
        _private(reply, _catalogue_problem(error))
        return
    found = catalogue.get(command.runbook_id)
    if found is None:
        known = ", ".join(runbook.id for runbook in catalogue.runbooks) or "none"
        problems.append(f"there is no runbook {command.runbook_id[:64]!r} (runbooks: {known})")
    else:
        try:
            arguments = parse_arguments(command.words)
            plan = make_plan(found, arguments.values, arguments.hosts, ctx.config.inventory)
        except RunRefused as error:
            problems.extend(error.problems)
    if plan is not None and runner.ssh_problems():
        problems.append(SSH_HINT)
    now = ctx.clock()
    with ctx.db.session_scope() as session:
        if problems or plan is None:
            refused = runs.refuse(
                session,
                runbook_id=command.runbook_id,
                params=raw,
                requester=user,
                source="slack",
                incident_id=incident_id,
                reason="; ".join(problems),
                now=now,
                title=found.title if found else "",
                risk=found.risk if found else "",
            )
            reference = refused.reference
            status, refusal, run_id = records.REFUSED, None, refused.id
        else:
            run = runs.request(
                session,
                plan,
                requester=user,
                source="slack",
                incident_id=incident_id,
                now=now,
                person_name=ctx.config.name_by_slack_id(user),
                groups=ctx.config.runbooks.groups,
            )
            reference, status, refusal, run_id = run.reference, run.status, run.refusal, run.id
            if status != records.REFUSED:
                text, blocks = runbook_blocks.plan_message(run, plan, runs.hosts(session, run.id))
    if problems:
        listed = "\n".join(f"• {escape(problem)}" for problem in problems)
        _private(reply, f":x: Refused (recorded as {reference}):\n{listed}")
        return
    if status == records.REFUSED:
        _private(reply, f":no_entry: Refused (recorded as {reference}): {escape(refusal or '')}")
        return
    try:
        posted = ctx.client.chat_postMessage(channel=channel, text=text, blocks=blocks)
    except SlackApiError as error:
        with ctx.db.session_scope() as session:
            runs.cancel(session, run_id, user, ctx.clock())
        _private(
            reply,
            f":x: Could not post the plan of {reference} here ({slack_error(error)}); it is "
            "cancelled. Invite Firebreak to this channel, or run it from a channel it is in.",
        )
        return
    with ctx.db.session_scope() as session:
        stored = runs.get(session, run_id, lock=True)
        stored.slack_channel, stored.slack_ts = channel, str(posted["ts"])


def press(ctx: ListenerContext, verb: str, run_id: int, user: str, reply: flows.Reply) -> None:
    """A button (or `/runbook cancel`): the state machine decides; the message follows."""
    runner = _runner(ctx)
    person = ctx.config.name_by_slack_id(user)
    groups = ctx.config.runbooks.groups
    now = ctx.clock()
    try:
        with ctx.db.session_scope() as session:
            run = runs.get(session, run_id, lock=True)
            requester, was = run.requester, run.status
            if verb == "run":
                decision = runs.confirm(
                    session,
                    run_id,
                    user,
                    now,
                    approval_expires=ctx.config.runbooks.approval_expires,
                )
            elif verb == "approve":
                decision = runs.approve(
                    session, run_id, user, now, person_name=person, groups=groups
                )
            elif was == records.AWAITING_CONFIRMATION and user != requester:
                reason = (
                    f"Only the requester can cancel run {run.reference} before it is confirmed."
                )
                runs.note(
                    session, run, "runbook_refused", actor=user, now=now, data={"reason": reason}
                )
                decision = runs.Decision(run, False, reason)
            else:
                decision = runs.cancel(
                    session, run_id, user, now, person_name=person, groups=groups
                )
            status, reference = decision.run.status, decision.run.reference
            channel, ts = decision.run.slack_channel, decision.run.slack_ts
    except runs.RunError as error:
        _private(reply, f":x: {escape(str(error))}")
        return
    if not decision.changed:
        said = escape(decision.reason)
        if verb in ("run", "cancel") and user != requester and was == records.AWAITING_CONFIRMATION:
            said = f"Only {actor(requester)} can {verb} {reference}."
        _private(reply, f":no_entry: {said}")
        return
    if decision.reason:  # changed, with a reason: the approval came too late
        _private(reply, f":hourglass: {escape(decision.reason)}")
    runner.refresh(run_id)
    if verb in ("cancel", "deny") and was == records.RUNNING:
        runner.cancel(run_id)
    if status == records.APPROVED:
        try:
            runner.start(run_id, channel, ts)
        except runs.RunError as error:  # another replica, or a press, started it first
            log.info("R-%d not started here: %s", run_id, error)
        except RuntimeError as error:
            _private(reply, f":x: {escape(str(error))}")
