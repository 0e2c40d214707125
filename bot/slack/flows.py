"""What happens after the acknowledgement: run the domain, then tell Slack.

Shared by the slash command, the summary's buttons and the modals, so each way of asking
for a change behaves the same. `reply` shows something to the requester only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from slack_bolt import Ack, Respond
from sqlalchemy.orm import Session

from bot import db, logs, outbox
from bot.incidents import service
from bot.incidents.models import Incident
from bot.incidents.service import Change, IncidentError
from bot.slack import alerts, blocks, grammar, payloads
from bot.slack import timeline as timeline_text
from bot.slack.channels import SetupFailed
from bot.slack.context import ListenerContext
from bot.slack.grammar import ParseError

log = logging.getLogger(__name__)
T = TypeVar("T")
Reply = Callable[..., Any]
# Changes that show in the topic, the pinned summary and the announcement.
REFRESHING = (grammar.SetSeverity, grammar.SetStatus, grammar.AssignRole, grammar.Resolve)


def declare(
    ctx: ListenerContext,
    *,
    title: str,
    severity: str | None,
    description: str,
    user: str,
    key: str,
    reply: Reply,
) -> None:
    try:
        with ctx.db.session_scope() as session:
            declaration = service.declare(
                session,
                title=title,
                severity=severity,
                description=description,
                declared_by=user,
                declare_key=key,
                policy=ctx.config.incidents,
                now=ctx.clock(),
            )
            incident_id, reference = declaration.incident.id, declaration.incident.reference
    except IncidentError as error:
        reply(text=str(error))
        return
    logs.add(incident=incident_id)
    if declaration.created:
        log.info("%s declared by %s", reference, user)
    try:
        setup = ctx.channels.open(incident_id, user)
    except SetupFailed as failed:
        reply(
            text=(
                f":warning: {reference} is recorded, but setting it up in Slack stopped: {failed}. "
                "Run the same command again to finish; nothing will be declared twice."
            )
        )
        return
    if declaration.created:
        reply(text=f":rotating_light: Declared {reference}: <#{setup.channel_id}>")
    else:
        reply(text=f"{reference} was already declared; it is set up in <#{setup.channel_id}>.")


def in_channel(
    ctx: ListenerContext, command: grammar.Command, *, channel: str, user: str, reply: Reply
) -> None:
    """A command typed in (or a button pressed in) an incident channel.

    The change, its timeline event, and the channel post and refresh it calls for (the
    outbox) commit together; Slack is called after the commit, so no lock is held across a
    network call and an outage delays the post instead of losing it.
    """
    answer: dict[str, Any] | None = None
    change: Change | None = None
    queued: list[int] = []
    try:
        with ctx.db.session_scope() as session:
            incident = service.find_by_channel(session, channel, lock=True)
            logs.add(incident=incident.id if incident is not None else None)
            if incident is None:
                answer = {"text": _not_an_incident_channel(session)}
            elif isinstance(command, grammar.ShowAlerts):
                answer = alerts.listing(session, incident.id, incident.reference)
            elif isinstance(command, grammar.ShowTimeline):
                events = service.events(session, incident)
                answer = {
                    "text": f"Timeline of {incident.reference}",
                    "blocks": blocks.timeline(incident, events),
                }
            else:
                change = _apply(session, ctx, incident, command, user)
                if change.event is not None:
                    _follow_up(session, ctx, change)
                    queued = _enqueue_posts(session, ctx, change, channel, command)
    except IncidentError as error:
        answer = {"text": str(error)}
    if answer is not None:
        reply(**answer)
        return
    assert change is not None
    if change.event is None:
        reply(text=change.reason)
        return
    log.info("%s: %s by %s", change.incident.reference, change.event.kind, user)
    delivery = ctx.outbox.deliver(queued)
    if delivery.waiting:
        reply(text=QUEUED)
    if isinstance(command, grammar.AssignRole):
        ctx.channels.invite_quietly(change.incident.id, channel, command.user_id)


QUEUED = (
    "Done and recorded. The channel post is queued (Slack has not taken it yet, or posts "
    "before it are still on their way); it will go out by itself. There is nothing to repeat."
)


def _enqueue_posts(
    session: Session, ctx: ListenerContext, change: Change, channel: str, command: grammar.Command
) -> list[int]:
    """The channel post of a change, and the refresh of topic and summary it calls for."""
    assert change.event is not None
    now, incident_id = ctx.clock(), change.incident.id
    body: dict[str, Any] = {"channel": channel, "text": timeline_text.post(change.event)}
    if change.event.kind == "resolved":  # with its "Postmortem draft" button
        from bot.slack.postmortem import resolve_blocks

        body["blocks"] = resolve_blocks(body["text"], incident_id)
    queued = [outbox.enqueue(session, outbox.POST, body, now=now, incident_id=incident_id)]
    if isinstance(command, REFRESHING):
        queued.append(outbox.enqueue(session, outbox.REFRESH, {}, now=now, incident_id=incident_id))
    return queued


def _follow_up(session: Session, ctx: ListenerContext, change: Change) -> None:
    """Resolving arms the postmortem's reminders, reopening cancels them (same transaction)."""
    assert change.event is not None
    if change.event.kind in ("resolved", "reopened"):
        from bot.postmortem import followup

        section = ctx.config.postmortem
        followup.sync(session, change.incident, due=section.due, zone=section.zone)


def _apply(
    session: Session, ctx: ListenerContext, incident: Incident, command: grammar.Command, user: str
) -> Change:
    policy, now = ctx.config.incidents, ctx.clock()
    match command:
        case grammar.SetSeverity(severity):
            return service.set_severity(
                session, incident, severity, actor=user, policy=policy, now=now
            )
        case grammar.SetStatus(status):
            return service.set_status(session, incident, status, actor=user, policy=policy, now=now)
        case grammar.AssignRole(role, user_id):
            return service.assign_role(
                session, incident, role, user_id, actor=user, policy=policy, now=now
            )
        case grammar.AddNote(text):
            return service.add_note(session, incident, text, actor=user, now=now)
        case grammar.Resolve(summary):
            return service.resolve(session, incident, summary, actor=user, now=now)
    raise AssertionError(f"not a channel command: {command!r}")


def _not_an_incident_channel(session: Session) -> str:
    open_incidents = service.list_open(session)
    where = (
        "Open incidents: " + ", ".join(f"<#{i.channel_id}>" for i in open_incidents if i.channel_id)
        if open_incidents
        else "There are no open incidents; declare one with `/incident declare`."
    )
    return f"That works only in an incident channel, and this channel isn't one. {where}"


def list_open(ctx: ListenerContext, reply: Reply) -> None:
    with ctx.db.session_scope() as session:
        text = blocks.open_list(service.list_open(session))
    reply(text=text)


def acknowledge(
    ack: Ack, parse: Callable[[], T], *, is_help: Callable[[T], bool], help_text: str
) -> T | None:
    """Parse a slash command and acknowledge it.

    A mistake or a request for help is answered in the acknowledgement itself (privately,
    within milliseconds, no database); anything else is acknowledged empty and returned, for
    the work that follows on the pool.
    """
    try:
        parsed = parse()
    except ParseError as error:
        ack(text=str(error), response_type="ephemeral")
        return None
    if is_help(parsed):
        ack(text=help_text, response_type="ephemeral")
        return None
    ack()
    return parsed


def numbered_button(
    ctx: ListenerContext,
    name: str,
    *,
    what: str,
    prefix: str,
    act: Callable[[int, str, Respond], None],
) -> Callable[..., None]:
    """The listener of a button whose value numbers what it acts on (`prefix`N; `what`
    names it when the value is malformed): it reads the presser and the response URL,
    acknowledges, and runs `act(number, user, respond)` on the worker pool, guarded.
    `name`: the listener's name, `{name}_pressed`."""

    @payloads.answered
    def pressed(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        user = payloads.slack_id(body, "user.id")
        number = payloads.number(action, "value", what=what, prefix=prefix)
        payloads.response_url(body)
        ack()
        ctx.workers.submit(guarded(lambda: act(number, user, respond), respond))

    pressed.__name__ = f"{name}_pressed"
    return pressed


def guarded(work: Callable[..., None], reply: Reply | None) -> Callable[..., None]:
    """Run `work`; if anything unexpected breaks, log it and tell the requester.

    The database failing under the work (a terminated connection, a restart: see
    `bot.db.unavailable`) is no bug: it is logged in one line, and the requester is told
    what became of the request, from what it had committed (`bot.db.watch_writes`): nothing
    (run it again), the change but not its follow-up (posts, DMs and channel setup wait in
    the database for the leader's reconcile), or unknown (the COMMIT went unanswered).
    `reply` None: nobody is waiting for an answer (an event), so the failure is only logged.
    """

    def run(*args: Any, **kwargs: Any) -> None:
        with db.watch_writes() as writes:
            try:
                work(*args, **kwargs)
            except Exception as error:
                if db.unavailable(error):
                    said = payloads.database_failed(writes)
                    log.warning(
                        "a Slack request stopped at %s, the database failed (%s); told: %s",
                        db.where(error),
                        db.describe(error),
                        said if reply is not None else "nobody (an event)",
                    )
                    text = f":warning: {said}"
                else:
                    log.exception("handling a Slack request failed")
                    text = ":x: Something went wrong on Firebreak's side; it is logged. Try again."
                if reply is None:
                    return
                try:
                    reply(text=text)
                except Exception:
                    log.exception("could not tell the requester about the failure")

    return run
