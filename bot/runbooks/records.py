"""Runbook runs as stored: every run, anywhere, also when refused, with its per-host results.

- `runbook_runs`: one row per request, with the plan exactly as it was shown (hosts and
  argv per step), who asked and who approved, and the run's state (`STATUSES`). Every
  transition is a guarded change of `status` (`bot.runbooks.runs`), so two replicas pressing
  the same button act once.
- `runbook_run_hosts`: one row per planned host: its outcome (`HOST_STATUSES`), the host key
  it offered, each step's exit code and duration, and its output, redacted and capped before
  it is stored.
- `runbook_run_facts`: the run's own audit trail (requested, refused, approval refused,
  cancelled...), append-only. It holds what the incident timeline would, for runs outside an
  incident too; a refusal that changes nothing about a run (self-approval, say) lives here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.db import Base, append_only
from bot.runbooks.plan import Host, Plan, PlannedStep

# Run statuses.
AWAITING_CONFIRMATION = "awaiting_confirmation"
AWAITING_APPROVAL = "awaiting_approval"
APPROVED = "approved"  # queued for the executor
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
REFUSED = "refused"
EXPIRED = "expired"
INTERRUPTED = "interrupted"
STATUSES = (
    AWAITING_CONFIRMATION,
    AWAITING_APPROVAL,
    APPROVED,
    RUNNING,
    SUCCEEDED,
    FAILED,
    CANCELLED,
    REFUSED,
    EXPIRED,
    INTERRUPTED,
)
FINAL = frozenset({SUCCEEDED, FAILED, CANCELLED, REFUSED, EXPIRED, INTERRUPTED})

# Host statuses.
PENDING = "pending"
HOST_RUNNING = "running"
HOST_SUCCEEDED = "succeeded"
HOST_FAILED = "failed"
TIMED_OUT = "timed_out"
HOST_KEY = "host_key"
UNREACHABLE = "unreachable"
AUTH = "auth"
HOST_CANCELLED = "cancelled"
SKIPPED = "skipped"
HOST_INTERRUPTED = "interrupted"
HOST_STATUSES = (
    PENDING,
    HOST_RUNNING,
    HOST_SUCCEEDED,
    HOST_FAILED,
    TIMED_OUT,
    HOST_KEY,
    UNREACHABLE,
    AUTH,
    HOST_CANCELLED,
    SKIPPED,
    HOST_INTERRUPTED,
)
HOST_UNFINISHED = frozenset({PENDING, HOST_RUNNING})


class RunbookRun(Base):
    __tablename__ = "runbook_runs"
    __table_args__ = (Index("ix_runbook_runs_status", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    runbook_id: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(200))
    risk: Mapped[str] = mapped_column(String(8))
    params: Mapped[dict[str, Any]]
    # What was shown, so what runs (`plan_to_json`); {} for a request refused before planning.
    plan: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(24))
    source: Mapped[str] = mapped_column(String(8))  # slack | cli
    requester: Mapped[str] = mapped_column(String(64))  # a timeline actor
    approver: Mapped[str | None] = mapped_column(String(64))
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    requested_at: Mapped[datetime]
    confirmed_at: Mapped[datetime | None]
    approved_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]  # the approval's deadline, while awaiting approval
    refusal: Mapped[str | None] = mapped_column(Text)
    heartbeat_at: Mapped[datetime | None]  # the executor's last sign of life
    cancel_requested_by: Mapped[str | None] = mapped_column(String(64))
    cancel_requested_at: Mapped[datetime | None]
    # The plan message in Slack, for the thread that shows progress.
    slack_channel: Mapped[str | None] = mapped_column(String(32))
    slack_ts: Mapped[str | None] = mapped_column(String(32))

    @property
    def reference(self) -> str:
        return f"R-{self.id}"

    @property
    def is_final(self) -> bool:
        return self.status in FINAL


class RunbookRunHost(Base):
    __tablename__ = "runbook_run_hosts"
    __table_args__ = (UniqueConstraint("run_id", "name", name="uq_runbook_run_hosts_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runbook_runs.id"), index=True)
    position: Mapped[int]  # the host's place in the plan
    name: Mapped[str] = mapped_column(String(128))
    address: Mapped[str] = mapped_column(String(255))
    port: Mapped[int]
    status: Mapped[str] = mapped_column(String(16))
    host_key_fingerprint: Mapped[str | None] = mapped_column(String(128))
    # [{"step", "exit_code", "duration", "timed_out", "outcome", "rollback"}], in order.
    steps: Mapped[list[Any]] = mapped_column(JSON, default=list)
    output: Mapped[str] = mapped_column(Text, default="")  # redacted, capped
    output_truncated: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class RunbookRunFact(Base):
    """One audited fact about a run (append-only): the runs' own timeline."""

    __tablename__ = "runbook_run_facts"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runbook_runs.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime]
    data: Mapped[dict[str, Any]]


append_only(RunbookRunFact)


def _step_json(step: PlannedStep) -> dict[str, Any]:
    return {
        "id": step.id,
        "argv": list(step.argv),
        "timeout": step.timeout,
        "ok_exit_codes": sorted(step.ok_exit_codes),
        "on_failure": step.on_failure,
    }


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """The whole plan as JSON: what the run shows, approves and executes."""
    return {
        "runbook_id": plan.runbook_id,
        "title": plan.title,
        "risk": plan.risk,
        "needs_approval": plan.needs_approval,
        "allowed_roles": list(plan.allowed_roles),
        "params": dict(plan.params),
        "hosts": [
            {
                "name": host.name,
                "address": host.address,
                "port": host.port,
                "user": host.user,
                "groups": list(host.groups),
            }
            for host in plan.hosts
        ],
        "steps": [_step_json(step) for step in plan.steps],
        "rollback": [_step_json(step) for step in plan.rollback],
        "concurrency": plan.concurrency,
        "max_failures": plan.max_failures,
        "max_output_bytes": plan.max_output_bytes,
        "redact": list(plan.redact),
    }


def _step(data: Mapping[str, Any]) -> PlannedStep:
    return PlannedStep(
        id=str(data["id"]),
        argv=tuple(str(arg) for arg in data["argv"]),
        timeout=float(data["timeout"]),
        ok_exit_codes=frozenset(int(code) for code in data["ok_exit_codes"]),
        on_failure=data["on_failure"],
    )


def plan_from_json(data: Mapping[str, Any]) -> Plan:
    """The `Plan` a run stored (`plan_to_json`'s inverse)."""
    return Plan(
        runbook_id=str(data["runbook_id"]),
        title=str(data["title"]),
        risk=data["risk"],
        needs_approval=bool(data["needs_approval"]),
        allowed_roles=tuple(data["allowed_roles"]),
        params=dict(data["params"]),
        hosts=tuple(
            Host(
                name=host["name"],
                address=host["address"],
                port=int(host["port"]),
                user=host["user"],
                groups=tuple(host["groups"]),
            )
            for host in data["hosts"]
        ),
        steps=tuple(_step(step) for step in data["steps"]),
        rollback=tuple(_step(step) for step in data["rollback"]),
        concurrency=int(data["concurrency"]),
        max_failures=int(data["max_failures"]),
        max_output_bytes=int(data["max_output_bytes"]),
        redact=tuple(data["redact"]),
    )
