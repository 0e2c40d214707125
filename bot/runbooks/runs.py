"""The run state machine: request, refuse, confirm, approve, cancel, expire, interrupt.

```
awaiting_confirmation --confirm--> awaiting_approval --approve--> approved --executor--> running
        |                   \\--(no approval needed)------------/                       |
        +--cancel--> cancelled <--cancel-- (any state before the end) ------------------+
                                                 running --> succeeded | failed | cancelled
   awaiting_approval --past expires_at--> expired        running --stale heartbeat--> interrupted
```

Each transition locks the run's row and acts only from the state it expects, so two
replicas pressing the same button act once: the second finds the run moved on and changes
nothing. Every transition and every refusal writes one `RunbookRunFact` (the runs' own
audit), and, when the run belongs to an incident, one timeline event, in the caller's
transaction.

A refusal is stored, never raised: raising would roll the caller's transaction back and
lose the record. `request` returns the run (status `refused` when the requester may not run
it); `confirm`, `approve` and `cancel` return a `Decision` that says why nothing changed.
`RunError` is for requests that name no run at all, or malformed input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bot import timeline
from bot.incidents.models import Incident
from bot.incidents.service import roles
from bot.runbooks import records
from bot.runbooks.plan import Plan
from bot.runbooks.records import (
    RunbookRun,
    RunbookRunFact,
    RunbookRunHost,
    plan_from_json,
    plan_to_json,
)

APPROVAL_EXPIRES = timedelta(minutes=15)
STALE_AFTER = timedelta(seconds=60)  # a running run without a heartbeat this long is dead
HEARTBEAT = timedelta(seconds=5)  # the executor's beat, at most
SWEEP_EVERY = timedelta(seconds=15)  # the leader's sweep, at most
SOURCES = ("slack", "cli")
Groups = Mapping[str, frozenset[str]]
NO_GROUPS: Groups = {}


class RunError(Exception):
    """A request about a run that cannot be honoured; the message is shown to the user as is."""


@dataclass(frozen=True)
class Decision:
    """What a button press did: the run as it now is, and why nothing changed (if so)."""

    run: RunbookRun
    changed: bool
    reason: str = ""


@dataclass(frozen=True)
class Allowed:
    """Whether an actor may request or approve a runbook; falsy with the reason when not."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


def allowed(
    session: Session,
    plan: Plan,
    actor: str,
    person_name: str | None,
    incident: Incident | None,
    groups: Groups = NO_GROUPS,
) -> Allowed:
    """`plan.allowed_roles` empty: anyone. Otherwise the actor holds one of those roles in the
    run's incident (`bot.incidents.service.roles`), or the person (`people:` name) belongs
    to one of those groups (`groups`: group name -> person names, from the config)."""
    if not plan.allowed_roles:
        return Allowed(True)
    held = roles(session, incident) if incident is not None else {}
    for name in plan.allowed_roles:
        if held.get(name) == actor:
            return Allowed(True)
        if person_name is not None and person_name in groups.get(name, frozenset()):
            return Allowed(True)
    where = f" in {incident.reference}" if incident is not None else ""
    return Allowed(
        False,
        f"{_who(actor, person_name)} holds none of the roles or groups "
        f"{', '.join(plan.allowed_roles)}{where} that runbook {plan.runbook_id} requires.",
    )


def _who(actor: str, person_name: str | None) -> str:
    return person_name or actor.removeprefix("cli:")


def get(session: Session, run_id: int, *, lock: bool = False) -> RunbookRun:
    query = select(RunbookRun).where(RunbookRun.id == run_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    run = session.scalars(query).one_or_none()
    if run is None:
        raise RunError(f"There is no runbook run R-{run_id}.")
    return run


def hosts(session: Session, run_id: int) -> list[RunbookRunHost]:
    query = (
        select(RunbookRunHost)
        .where(RunbookRunHost.run_id == run_id)
        .order_by(RunbookRunHost.position)
        .execution_options(populate_existing=True)
    )
    return list(session.scalars(query))


def facts(session: Session, run_id: int) -> list[RunbookRunFact]:
    query = (
        select(RunbookRunFact)
        .where(RunbookRunFact.run_id == run_id)
        .order_by(RunbookRunFact.occurred_at, RunbookRunFact.id)
    )
    return list(session.scalars(query))


def plan_of(run: RunbookRun) -> Plan:
    if not run.plan:
        raise RunError(f"Run {run.reference} was refused before it had a plan.")
    return plan_from_json(run.plan)


def note(
    session: Session,
    run: RunbookRun,
    kind: str,
    *,
    actor: str,
    now: datetime,
    data: Mapping[str, Any] | None = None,
) -> None:
    """Audit one fact about `run`, and put it in its incident's timeline (if it has one)."""
    payload = {"run": run.id, "runbook": run.runbook_id, **(data or {})}
    session.add(
        RunbookRunFact(run_id=run.id, kind=kind, actor=actor, occurred_at=now, data=payload)
    )
    if run.incident_id is not None:
        timeline.record(
            session, kind, now=now, actor=actor, incident_id=run.incident_id, data=payload
        )
    else:
        session.flush()


def _source(source: str) -> str:
    if source not in SOURCES:
        raise RunError(f"A run comes from slack or cli, not {source[:20]!r}.")
    return source


def _incident(session: Session, incident_id: int | None) -> Incident | None:
    if incident_id is None:
        return None
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise RunError(f"There is no incident INC-{incident_id}.")
    return incident


def request(
    session: Session,
    plan: Plan,
    *,
    requester: str,
    source: str,
    incident_id: int | None,
    now: datetime,
    person_name: str | None = None,
    groups: Groups = NO_GROUPS,
) -> RunbookRun:
    """Store a run of `plan`, awaiting the requester's confirmation; or, when the requester
    may not run it (`allowed`), store it refused and return that (status `refused`)."""
    incident = _incident(session, incident_id)
    permitted = allowed(session, plan, requester, person_name, incident, groups)
    run = RunbookRun(
        runbook_id=plan.runbook_id,
        title=plan.title,
        risk=plan.risk,
        params=dict(plan.params),
        plan=plan_to_json(plan),
        status=records.AWAITING_CONFIRMATION if permitted else records.REFUSED,
        source=_source(source),
        requester=requester,
        incident_id=incident_id,
        requested_at=now,
        finished_at=None if permitted else now,
        refusal=None if permitted else permitted.reason,
    )
    session.add(run)
    session.flush()
    for position, host in enumerate(plan.hosts):
        session.add(
            RunbookRunHost(
                run_id=run.id,
                position=position,
                name=host.name,
                address=host.address,
                port=host.port,
                status=records.PENDING if permitted else records.SKIPPED,
                steps=[],
                output="",
                output_truncated=False,
            )
        )
    requested = {
        "title": plan.title,
        "risk": plan.risk,
        "hosts": [host.name for host in plan.hosts],
        "params": dict(plan.params),
        "source": source,
    }
    note(session, run, "runbook_requested", actor=requester, now=now, data=requested)
    if not permitted:
        note(session, run, "runbook_refused", actor=requester, now=now, data=_why(permitted))
    return run


def _why(permitted: Allowed) -> dict[str, Any]:
    return {"reason": permitted.reason}


def refuse(
    session: Session,
    *,
    runbook_id: str,
    params: Mapping[str, Any],
    requester: str,
    source: str,
    incident_id: int | None,
    reason: str,
    now: datetime,
    title: str = "",
    risk: str = "",
) -> RunbookRun:
    """Store a request refused before it had a plan (bad parameters, hosts outside the
    runbook's targets, an unknown runbook): every request is audited, refused ones too."""
    _incident(session, incident_id)
    runbook_id = _storable(runbook_id)
    run = RunbookRun(
        runbook_id=runbook_id[:64],
        title=_storable(title or runbook_id)[:200],
        risk=_storable(risk)[:8],
        params={_storable(str(key)): _storable(str(value)) for key, value in params.items()},
        plan={},
        status=records.REFUSED,
        source=_source(source),
        requester=requester,
        incident_id=incident_id,
        requested_at=now,
        finished_at=now,
        refusal=_storable(reason),
    )
    session.add(run)
    session.flush()
    note(session, run, "runbook_refused", actor=requester, now=now, data={"reason": run.refusal})
    return run


def _storable(text: str) -> str:
    """`text` with each NUL shown as `\\0`: a refusal stores what was asked as faithfully as
    the database allows (PostgreSQL refuses NUL in text), whoever asked."""
    return text.replace("\x00", "\\0")


def _unchanged(run: RunbookRun, expected: str) -> Decision:
    """A press that finds the run no longer where it expects it (a double press, another
    replica, a late button): nothing changes, and the user is told where the run is."""
    return Decision(run, False, f"Run {run.reference} is {describe(run)}; nothing to do.")


def describe(run: RunbookRun) -> str:
    """The run's state in a few words, for a user."""
    return {
        records.AWAITING_CONFIRMATION: "waiting for its requester to confirm",
        records.AWAITING_APPROVAL: "waiting for approval",
        records.APPROVED: "approved and queued",
        records.RUNNING: "running",
        records.SUCCEEDED: "finished: succeeded",
        records.FAILED: "finished: failed",
        records.CANCELLED: "cancelled",
        records.REFUSED: "refused",
        records.EXPIRED: "expired without approval",
        records.INTERRUPTED: "interrupted",
    }.get(run.status, run.status)


def confirm(
    session: Session,
    run_id: int,
    actor: str,
    now: datetime,
    *,
    approval_expires: timedelta = APPROVAL_EXPIRES,
) -> Decision:
    """The requester presses Run: awaiting approval (until `now + approval_expires`) when
    the plan needs approval, else approved (queued for the executor). Only the requester."""
    run = get(session, run_id, lock=True)
    if run.status != records.AWAITING_CONFIRMATION:
        return _unchanged(run, records.AWAITING_CONFIRMATION)
    if actor != run.requester:
        reason = f"Only the requester can confirm run {run.reference}."
        note(session, run, "runbook_refused", actor=actor, now=now, data={"reason": reason})
        return Decision(run, False, reason)
    needs_approval = plan_of(run).needs_approval
    run.confirmed_at = now
    if needs_approval:
        run.status = records.AWAITING_APPROVAL
        run.expires_at = now + approval_expires
    else:
        run.status = records.APPROVED
    data = {"needs_approval": needs_approval}
    note(session, run, "runbook_confirmed", actor=actor, now=now, data=data)
    return Decision(run, True)


def approve(
    session: Session,
    run_id: int,
    approver: str,
    now: datetime,
    *,
    person_name: str | None = None,
    groups: Groups = NO_GROUPS,
) -> Decision:
    """An approver presses Approve. Refused (audited; the run unchanged) when the approver
    is the requester or holds no allowed role; an approval past `expires_at` expires the run."""
    run = get(session, run_id, lock=True)
    if run.status != records.AWAITING_APPROVAL:
        return _unchanged(run, records.AWAITING_APPROVAL)
    if run.expires_at is not None and now >= run.expires_at:
        _expire(session, run, now)
        return Decision(
            run, True, f"The approval window of run {run.reference} has passed; request it again."
        )
    reason = ""
    if approver == run.requester:
        reason = f"{_who(approver, person_name)} requested run {run.reference}; someone else must approve it."
    else:
        permitted = allowed(
            session,
            plan_of(run),
            approver,
            person_name,
            _incident(session, run.incident_id),
            groups,
        )
        reason = permitted.reason
    if reason:
        data = {"requester": run.requester, "reason": reason}
        note(session, run, "runbook_approval_refused", actor=approver, now=now, data=data)
        return Decision(run, False, reason)
    run.status = records.APPROVED
    run.approver = approver
    run.approved_at = now
    run.expires_at = None
    data = {"requester": run.requester}
    note(session, run, "runbook_approved", actor=approver, now=now, data=data)
    return Decision(run, True)


def _expire(session: Session, run: RunbookRun, now: datetime) -> None:
    run.status = records.EXPIRED
    run.finished_at = now
    _close_hosts(session, run.id, records.SKIPPED, now)
    note(
        session,
        run,
        "runbook_approval_expired",
        actor=timeline.BOT,
        now=now,
        data={"requester": run.requester},
    )


def _close_hosts(session: Session, run_id: int, status: str, now: datetime) -> list[str]:
    """Give every unfinished host of the run `status`; returns their names."""
    names: list[str] = []
    for host in hosts(session, run_id):
        if host.status in records.HOST_UNFINISHED:
            names.append(host.name)
            host.status = status
            host.finished_at = now
    return names


def cancel(
    session: Session,
    run_id: int,
    actor: str,
    now: datetime,
    *,
    person_name: str | None = None,
    groups: Groups = NO_GROUPS,
) -> Decision:
    """Cancel a run: the requester, or anyone the runbook allows. Before it runs, the run is
    cancelled at once; while it runs, the cancel is recorded and the executor (on whichever
    replica runs it) stops new steps and kills running ones at its next heartbeat."""
    run = get(session, run_id, lock=True)
    if run.is_final:
        return Decision(run, False, f"Run {run.reference} is {describe(run)}; nothing to cancel.")
    if run.cancel_requested_at is not None:
        return Decision(run, False, f"Run {run.reference} is already being cancelled.")
    if actor != run.requester:
        permitted = allowed(
            session, plan_of(run), actor, person_name, _incident(session, run.incident_id), groups
        )
        if not permitted:
            reason = (
                f"Only the requester or someone the runbook allows can cancel: {permitted.reason}"
            )
            note(session, run, "runbook_refused", actor=actor, now=now, data={"reason": reason})
            return Decision(run, False, reason)
    running = run.status == records.RUNNING
    run.cancel_requested_by = actor
    run.cancel_requested_at = now
    if not running:
        run.status = records.CANCELLED
        run.finished_at = now
        run.expires_at = None
        _close_hosts(session, run.id, records.HOST_CANCELLED, now)
    note(session, run, "runbook_cancelled", actor=actor, now=now, data={"running": running})
    return Decision(run, True)


def expire_approvals(session: Session, now: datetime) -> list[int]:
    """Runs still awaiting approval past `expires_at` become expired; returns their ids."""
    query = (
        select(RunbookRun.id)
        .where(RunbookRun.status == records.AWAITING_APPROVAL, RunbookRun.expires_at <= now)
        .order_by(RunbookRun.id)
    )
    expired: list[int] = []
    for run_id in list(session.scalars(query)):
        run = get(session, run_id, lock=True)
        deadline = run.expires_at
        if run.status == records.AWAITING_APPROVAL and deadline is not None and deadline <= now:
            _expire(session, run, now)
            expired.append(run_id)
    return expired


def interrupt_stale(
    session: Session, now: datetime, *, stale_after: timedelta = STALE_AFTER
) -> list[int]:
    """Runs `running` whose executor stopped beating (the process died mid-run) become
    interrupted, and so do their unfinished hosts; returns their ids."""
    cutoff = now - stale_after
    query = (
        select(RunbookRun.id)
        .where(RunbookRun.status == records.RUNNING, RunbookRun.heartbeat_at < cutoff)
        .order_by(RunbookRun.id)
    )
    interrupted: list[int] = []
    for run_id in list(session.scalars(query)):
        run = get(session, run_id, lock=True)
        beat = run.heartbeat_at
        if run.status != records.RUNNING or beat is None or beat >= cutoff:
            continue  # it beat, or finished, since we looked
        run.status = records.INTERRUPTED
        run.finished_at = now
        names = _close_hosts(session, run.id, records.HOST_INTERRUPTED, now)
        data = {"hosts": names, "heartbeat_at": beat.isoformat()}
        note(session, run, "runbook_interrupted", actor=timeline.BOT, now=now, data=data)
        interrupted.append(run_id)
    return interrupted


def heartbeat_every(stale_after: timedelta = STALE_AFTER) -> float:
    """Seconds between an executor's heartbeats: `HEARTBEAT`, or a sixth of `stale_after`
    when that is shorter, so a live run beats several times before it could look dead."""
    return min(HEARTBEAT, stale_after / 6).total_seconds()


def sweep_every(stale_after: timedelta = STALE_AFTER) -> timedelta:
    """How often the leader sweeps: `SWEEP_EVERY`, or a quarter of `stale_after` when that is
    shorter, so a dead run is marked interrupted at most `stale_after` * 1.25 after its last
    beat."""
    return min(SWEEP_EVERY, stale_after / 4)


def sweep(
    session: Session, now: datetime, *, stale_after: timedelta = STALE_AFTER
) -> dict[str, list[int]]:
    """The periodic job's body: expire approvals and interrupt runs whose executor died."""
    return {
        "expired": expire_approvals(session, now),
        "interrupted": interrupt_stale(session, now, stale_after=stale_after),
    }


def claim(session: Session, run_id: int, now: datetime) -> RunbookRun:
    """Approved -> running, once (compare-and-set on the status): the executor that wins
    runs it; any other gets `RunError` saying where the run is."""
    result = session.execute(
        update(RunbookRun)
        .where(RunbookRun.id == run_id, RunbookRun.status == records.APPROVED)
        .values(status=records.RUNNING, started_at=now, heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )
    run = get(session, run_id, lock=True)
    if getattr(result, "rowcount", 0) != 1:
        raise RunError(f"Run {run.reference} is {describe(run)}, so it cannot start.")
    data = {
        "hosts": [host.name for host in hosts(session, run_id)],
        "requester": run.requester,
        "approver": run.approver,
    }
    note(session, run, "runbook_started", actor=timeline.BOT, now=now, data=data)
    return run
