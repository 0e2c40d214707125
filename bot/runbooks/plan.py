"""What a validated run request becomes: the exact argv of every step, for every host.

A `Plan` is built only from a runbook that passed its schema and parameters that passed
validation (`bot.runbooks.params`); everything downstream (the confirmation message, the
approval, the executor, the audit) reads this one value, so what was shown is what runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

OnFailure = Literal["abort", "continue", "rollback"]
Risk = Literal["low", "medium", "high"]
ParamValue = str | int | bool


@dataclass(frozen=True)
class Host:
    """One inventory host: `inventory.hosts.<name>` in firebreak.yaml."""

    name: str
    address: str
    port: int = 22
    user: str = "root"
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlannedStep:
    """A step with its placeholders replaced: `argv` is exactly what the host receives."""

    id: str
    argv: tuple[str, ...]
    timeout: float  # seconds; the remote `timeout` kills the command at this deadline
    ok_exit_codes: frozenset[int] = frozenset({0})
    on_failure: OnFailure = "abort"


@dataclass(frozen=True)
class Plan:
    runbook_id: str
    title: str
    risk: Risk
    needs_approval: bool  # risk high (unless `approval: false`) or `approval: true`
    allowed_roles: tuple[str, ...]  # incident roles or `runbooks.groups` names; () = anyone
    params: Mapping[str, ParamValue]
    hosts: tuple[Host, ...]
    steps: tuple[PlannedStep, ...]
    rollback: tuple[PlannedStep, ...] = ()
    concurrency: int = 5
    max_failures: int = 1
    max_output_bytes: int = 65536
    redact: tuple[str, ...] = field(default=())
