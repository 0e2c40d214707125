"""The run state machine on a real database: every transition, every refusal audited,
approval rules (self-approval, missing role, expiry), double presses acting once, the sweep
that expires approvals and interrupts runs whose executor died."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot import timeline
from bot.app import Firebreak
from bot.db import AppendOnlyError, Database
from bot.incidents import service
from bot.incidents.config import IncidentsSection
from bot.runbooks import records, runs
from bot.runbooks.plan import Host, Plan, PlannedStep
from bot.runbooks.records import RunbookRun, RunbookRunFact, plan_from_json, plan_to_json

NOW = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
GROUPS = {"ops": frozenset({"alice", "carol"})}
NAMES = {"U0ALICE": "alice", "U0BOB": "bob", "U0DAVE": "dave"}

PLAN = Plan(
    runbook_id="restart-service",
    title="Restart a systemd service",
    risk="high",
    needs_approval=True,
    allowed_roles=("commander", "ops"),
    params={"service": "nginx", "lines": 200},
    hosts=(Host("web-1", "10.0.0.5", 22, "deploy", ("web",)), Host("web-2", "10.0.0.6")),
    steps=(
        PlannedStep("status", ("systemctl", "status", "nginx"), 30, frozenset({0, 3})),
        PlannedStep(
            "restart", ("sudo", "-n", "systemctl", "restart", "nginx"), 120, on_failure="rollback"
        ),
    ),
    rollback=(PlannedStep("start", ("sudo", "-n", "systemctl", "start", "nginx"), 60),),
    concurrency=5,
    max_failures=1,
    redact=("(?i)(password|token)=\\S+",),
)
OPEN = replace(PLAN, risk="low", needs_approval=False, allowed_roles=())


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def incident_id(db: Database) -> int:
    """INC with U0ALICE commanding (she declared it) and U0BOB as ops."""
    policy = IncidentsSection()
    with db.session_scope() as session:
        declared = service.declare(
            session,
            title="Checkout down",
            declared_by="U0ALICE",
            declare_key="k1",
            policy=policy,
            now=NOW,
            severity="sev2",
        )
        incident = declared.incident
        service.assign_role(
            session, incident, "commander", "U0ALICE", actor="U0ALICE", policy=policy, now=NOW
        )
        service.assign_role(
            session, incident, "ops", "U0BOB", actor="U0ALICE", policy=policy, now=NOW
        )
        return incident.id


def kinds(db: Database, run_id: int) -> list[str]:
    with db.session_scope() as session:
        return [fact.kind for fact in runs.facts(session, run_id)]


def incident_kinds(db: Database, incident_id: int) -> list[str]:
    with db.session_scope() as session:
        return [
            event.kind
            for event in timeline.for_incident(session, incident_id)
            if event.kind.startswith("runbook_")
        ]


def requested(
    db: Database, plan: Plan = PLAN, incident_id: int | None = None, requester: str = "U0ALICE"
) -> int:
    with db.session_scope() as session:
        run = runs.request(
            session,
            plan,
            requester=requester,
            source="slack",
            incident_id=incident_id,
            now=NOW,
            person_name=NAMES.get(requester),
            groups=GROUPS,
        )
        return run.id


def status(db: Database, run_id: int) -> str:
    with db.session_scope() as session:
        return runs.get(session, run_id).status


def test_the_plan_is_stored_as_shown_and_read_back_unchanged() -> None:
    assert plan_from_json(plan_to_json(PLAN)) == PLAN


def test_a_request_is_stored_with_its_hosts_and_audited_in_the_incident(
    db: Database, incident_id: int
) -> None:
    run_id = requested(db, incident_id=incident_id)
    with db.session_scope() as session:
        run = runs.get(session, run_id)
        assert run.status == records.AWAITING_CONFIRMATION
        assert run.plan["steps"][1]["argv"] == ["sudo", "-n", "systemctl", "restart", "nginx"]
        assert run.params == {"service": "nginx", "lines": 200}
        assert [(h.name, h.address, h.port, h.status) for h in runs.hosts(session, run_id)] == [
            ("web-1", "10.0.0.5", 22, "pending"),
            ("web-2", "10.0.0.6", 22, "pending"),
        ]
        events = [
            e for e in timeline.for_incident(session, incident_id) if e.kind == "runbook_requested"
        ]
        assert events[0].actor == "U0ALICE"
        assert events[0].data["run"] == run_id and events[0].data["hosts"] == ["web-1", "web-2"]
    assert kinds(db, run_id) == ["runbook_requested"]


def test_a_requester_without_an_allowed_role_is_refused_and_the_refusal_is_stored(
    db: Database, incident_id: int
) -> None:
    run_id = requested(db, incident_id=incident_id, requester="U0DAVE")
    with db.session_scope() as session:
        run = runs.get(session, run_id)
        assert run.status == records.REFUSED and run.finished_at == NOW
        assert run.refusal is not None and "commander, ops" in run.refusal
        assert {h.status for h in runs.hosts(session, run_id)} == {"skipped"}
    assert kinds(db, run_id) == ["runbook_requested", "runbook_refused"]
    assert incident_kinds(db, incident_id) == ["runbook_requested", "runbook_refused"]


def test_who_is_allowed_roles_in_the_incident_or_groups_of_people(
    db: Database, incident_id: int
) -> None:
    with db.session_scope() as session:
        incident = service.get(session, incident_id)
        assert runs.allowed(session, OPEN, "U0ANYONE", None, None)
        assert runs.allowed(session, PLAN, "U0BOB", "bob", incident, GROUPS)  # ops in the incident
        assert runs.allowed(session, PLAN, "cli:carol", "carol", None, GROUPS)  # in group ops
        refused = runs.allowed(session, PLAN, "U0BOB", "bob", None, GROUPS)  # no incident
        assert not refused and "commander, ops" in refused.reason
        assert not runs.allowed(session, PLAN, "U0DAVE", "dave", incident, GROUPS)


def test_a_request_refused_before_planning_is_stored(db: Database) -> None:
    with db.session_scope() as session:
        run = runs.refuse(
            session,
            runbook_id="restart-service",
            params={"service": "apache"},
            requester="cli:ops",
            source="cli",
            incident_id=None,
            reason="service: 'apache' is not one of nginx, php-fpm",
            now=NOW,
        )
        run_id = run.id
    with db.session_scope() as session:
        run = runs.get(session, run_id)
        assert (run.status, run.plan, run.params) == ("refused", {}, {"service": "apache"})
        with pytest.raises(runs.RunError, match="before it had a plan"):
            runs.plan_of(run)
    assert kinds(db, run_id) == ["runbook_refused"]


def test_only_the_requester_confirms_and_a_second_press_changes_nothing(db: Database) -> None:
    run_id = requested(db)
    with db.session_scope() as session:
        other = runs.confirm(session, run_id, "U0BOB", NOW)
    assert not other.changed and "Only the requester" in other.reason
    assert status(db, run_id) == records.AWAITING_CONFIRMATION
    with db.session_scope() as session:
        first = runs.confirm(session, run_id, "U0ALICE", NOW)
        assert first.changed and first.run.status == records.AWAITING_APPROVAL
        assert first.run.expires_at == NOW + timedelta(minutes=15)
    with db.session_scope() as session:
        again = runs.confirm(session, run_id, "U0ALICE", NOW)
    assert not again.changed and "waiting for approval" in again.reason
    assert kinds(db, run_id) == ["runbook_requested", "runbook_refused", "runbook_confirmed"]


def test_a_run_that_needs_no_approval_is_queued_at_confirmation(db: Database) -> None:
    run_id = requested(db, OPEN)
    with db.session_scope() as session:
        decision = runs.confirm(session, run_id, "U0ALICE", NOW)
    assert decision.run.status == records.APPROVED and decision.run.expires_at is None


def test_two_replicas_pressing_confirm_at_once_act_once(db: Database, database_url: str) -> None:
    run_id = requested(db)
    replicas = [Database(database_url), Database(database_url)]
    start = threading.Barrier(2)
    decisions: list[runs.Decision] = []

    def press(replica: Database) -> None:
        start.wait()
        with replica.session_scope() as session:
            decisions.append(runs.confirm(session, run_id, "U0ALICE", NOW))

    threads = [threading.Thread(target=press, args=(replica,)) for replica in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for replica in replicas:
        replica.dispose()
    assert sorted(decision.changed for decision in decisions) == [False, True]
    assert kinds(db, run_id).count("runbook_confirmed") == 1


def confirmed(db: Database, incident_id: int | None = None) -> int:
    run_id = requested(db, incident_id=incident_id)
    with db.session_scope() as session:
        runs.confirm(session, run_id, "U0ALICE", NOW)
    return run_id


def test_self_approval_is_refused_audited_and_leaves_the_run_waiting(
    db: Database, incident_id: int
) -> None:
    run_id = confirmed(db, incident_id)
    with db.session_scope() as session:
        decision = runs.approve(session, run_id, "U0ALICE", NOW, groups=GROUPS)
    assert not decision.changed and "someone else must approve" in decision.reason
    assert status(db, run_id) == records.AWAITING_APPROVAL
    assert incident_kinds(db, incident_id)[-1] == "runbook_approval_refused"
    with db.session_scope() as session:
        fact = runs.facts(session, run_id)[-1]
        assert (fact.kind, fact.actor, fact.data["requester"]) == (
            "runbook_approval_refused",
            "U0ALICE",
            "U0ALICE",
        )


def test_an_approver_without_an_allowed_role_is_refused_and_audited(
    db: Database, incident_id: int
) -> None:
    run_id = confirmed(db, incident_id)
    with db.session_scope() as session:
        decision = runs.approve(session, run_id, "U0DAVE", NOW, person_name="dave", groups=GROUPS)
    assert not decision.changed and "dave holds none" in decision.reason
    assert status(db, run_id) == records.AWAITING_APPROVAL
    assert kinds(db, run_id)[-1] == "runbook_approval_refused"


def test_an_approver_with_a_role_approves_once(db: Database, incident_id: int) -> None:
    run_id = confirmed(db, incident_id)
    with db.session_scope() as session:
        decision = runs.approve(session, run_id, "U0BOB", NOW + timedelta(minutes=1))
        assert decision.changed and decision.run.status == records.APPROVED
        assert decision.run.approver == "U0BOB" and decision.run.expires_at is None
    with db.session_scope() as session:
        again = runs.approve(session, run_id, "U0BOB", NOW + timedelta(minutes=2))
    assert not again.changed and "approved and queued" in again.reason
    with db.session_scope() as session:
        event = [
            e for e in timeline.for_incident(session, incident_id) if e.kind == "runbook_approved"
        ]
        assert [(e.actor, e.data["requester"]) for e in event] == [("U0BOB", "U0ALICE")]


def test_an_approval_past_its_deadline_expires_the_run(db: Database, incident_id: int) -> None:
    run_id = confirmed(db, incident_id)
    with db.session_scope() as session:
        decision = runs.approve(session, run_id, "U0BOB", NOW + timedelta(minutes=15))
    assert decision.changed and "has passed" in decision.reason
    assert status(db, run_id) == records.EXPIRED
    assert incident_kinds(db, incident_id)[-1] == "runbook_approval_expired"


def test_cancel_before_the_run_starts_cancels_it_and_its_hosts(db: Database) -> None:
    run_id = confirmed(db)
    with db.session_scope() as session:
        refused = runs.cancel(session, run_id, "U0DAVE", NOW, person_name="dave", groups=GROUPS)
    assert not refused.changed and "Only the requester" in refused.reason
    with db.session_scope() as session:
        decision = runs.cancel(
            session, run_id, "cli:carol", NOW, person_name="carol", groups=GROUPS
        )
        assert decision.changed and decision.run.status == records.CANCELLED
        assert {h.status for h in runs.hosts(session, run_id)} == {"cancelled"}
    with db.session_scope() as session:
        assert not runs.cancel(session, run_id, "U0ALICE", NOW).changed
    assert kinds(db, run_id)[-2:] == ["runbook_refused", "runbook_cancelled"]


def test_cancel_while_running_is_recorded_for_the_executor(db: Database) -> None:
    run_id = requested(db, OPEN)
    with db.session_scope() as session:
        runs.confirm(session, run_id, "U0ALICE", NOW)
    with db.session_scope() as session:
        runs.claim(session, run_id, NOW)
    with db.session_scope() as session:
        decision = runs.cancel(session, run_id, "U0ALICE", NOW)
        assert decision.changed and decision.run.status == records.RUNNING
        assert decision.run.cancel_requested_by == "U0ALICE"
    with db.session_scope() as session:
        assert "already being cancelled" in runs.cancel(session, run_id, "U0ALICE", NOW).reason


def test_only_an_approved_run_is_claimed_and_only_once(db: Database, incident_id: int) -> None:
    run_id = confirmed(db, incident_id)
    with db.session_scope() as session, pytest.raises(runs.RunError, match="waiting for approval"):
        runs.claim(session, run_id, NOW)
    with db.session_scope() as session:
        runs.approve(session, run_id, "U0BOB", NOW)
    with db.session_scope() as session:
        run = runs.claim(session, run_id, NOW)
        assert run.status == records.RUNNING and run.heartbeat_at == NOW
    with db.session_scope() as session, pytest.raises(runs.RunError, match="is running"):
        runs.claim(session, run_id, NOW)
    with db.session_scope() as session:
        started = [
            e for e in timeline.for_incident(session, incident_id) if e.kind == "runbook_started"
        ]
        assert [(e.data["requester"], e.data["approver"]) for e in started] == [
            ("U0ALICE", "U0BOB")
        ]


def test_the_sweep_expires_approvals_and_interrupts_runs_that_stopped_beating(
    db: Database, incident_id: int
) -> None:
    waiting = confirmed(db, incident_id)
    running = requested(db, OPEN, incident_id=incident_id)
    fresh = requested(db, OPEN)
    for run_id in (running, fresh):
        with db.session_scope() as session:
            runs.confirm(session, run_id, "U0ALICE", NOW)
            runs.claim(session, run_id, NOW)
    with db.session_scope() as session:
        runs.get(session, fresh, lock=True).heartbeat_at = NOW + timedelta(minutes=20)
    with db.session_scope() as session:
        assert runs.sweep(session, NOW + timedelta(seconds=30)) == {
            "expired": [],
            "interrupted": [],
        }
    with db.session_scope() as session:
        swept = runs.sweep(session, NOW + timedelta(minutes=20, seconds=30))
    assert swept == {"expired": [waiting], "interrupted": [running]}
    assert (status(db, waiting), status(db, running), status(db, fresh)) == (
        "expired",
        "interrupted",
        "running",
    )
    with db.session_scope() as session:
        assert {h.status for h in runs.hosts(session, running)} == {"interrupted"}
        event = [
            e
            for e in timeline.for_incident(session, incident_id)
            if e.kind == "runbook_interrupted"
        ]
        assert event[0].data["hosts"] == ["web-1", "web-2"]
        again = runs.sweep(session, NOW + timedelta(minutes=20, seconds=45))
        assert again == {"expired": [], "interrupted": []}


def test_unknown_runs_incidents_and_sources_are_clear_errors(db: Database) -> None:
    with db.session_scope() as session:
        with pytest.raises(runs.RunError, match="no runbook run R-999"):
            runs.confirm(session, 999, "U0ALICE", NOW)
        with pytest.raises(runs.RunError, match="no incident INC-42"):
            runs.request(session, OPEN, requester="U0A", source="slack", incident_id=42, now=NOW)
        with pytest.raises(runs.RunError, match="slack or cli"):
            runs.request(session, OPEN, requester="U0A", source="web", incident_id=None, now=NOW)
    with db.session_scope() as session:
        assert session.scalars(select(RunbookRun)).all() == []


def test_run_facts_are_append_only(db: Database) -> None:
    run_id = requested(db)
    with pytest.raises(AppendOnlyError), db.session_scope() as session:
        fact = session.scalars(select(RunbookRunFact).where(RunbookRunFact.run_id == run_id)).one()
        fact.actor = "someone else"


def test_the_leaders_job_sweeps_runs_at_its_instant(firebreak: Firebreak) -> None:
    db = firebreak.db
    run_id = requested(db, OPEN)
    with db.session_scope() as session:
        runs.confirm(session, run_id, "U0ALICE", NOW)
        runs.claim(session, run_id, NOW)
    firebreak.clock.use(lambda: NOW + timedelta(seconds=59))
    assert firebreak.jobs.sweep_runbook_runs() == {"expired": [], "interrupted": []}
    firebreak.clock.use(lambda: NOW + timedelta(seconds=61))
    assert firebreak.jobs.sweep_runbook_runs() == {"expired": [], "interrupted": [run_id]}
    assert status(db, run_id) == records.INTERRUPTED
    firebreak.jobs.start()
    try:
        scheduler = firebreak.jobs.scheduler
        assert scheduler is not None and scheduler.get_job("runbook-runs") is not None
    finally:
        firebreak.jobs.stop()
