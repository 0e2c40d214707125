"""From a runbook, the request's `key=value` values and host selection to a `Plan`.

Everything is checked before anything is planned, and every problem is reported at once
(`RunRefused.problems`): the values against their declarations, the hosts against the
runbook's targets. Only then is each step's argv substituted, once and literally
(`bot.runbooks.argv.substitute`), so the plan shows exactly the argv each host receives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bot.runbooks.argv import placeholders, substitute
from bot.runbooks.catalogue import Runbook, Step
from bot.runbooks.inventory import Inventory, select_hosts
from bot.runbooks.params import RunRefused, check_values, rendered
from bot.runbooks.plan import Plan, PlannedStep

__all__ = ["RunRefused", "make_plan"]


def make_plan(
    runbook: Runbook, values: Mapping[str, str], hosts: str | None, inventory: Inventory
) -> Plan:
    """The plan of one run, or RunRefused listing every reason it cannot run."""
    typed, problems = check_values(runbook.params, values)
    unset = _unset_placeholders(runbook, typed)
    problems.extend(
        f"{name}: has no value and step {step} uses it; give {name}=VALUE"
        for name, step in unset.items()
        if not any(problem.startswith(f"{name}:") for problem in problems)
    )
    chosen, host_problems = select_hosts(runbook.targets, hosts, inventory)
    problems.extend(host_problems)
    if problems:
        raise RunRefused(problems)
    words = {name: rendered(value) for name, value in typed.items()}
    return Plan(
        runbook_id=runbook.id,
        title=runbook.title,
        risk=runbook.risk,
        needs_approval=runbook.needs_approval,
        allowed_roles=tuple(runbook.allowed_roles),
        params=typed,
        hosts=chosen,
        steps=_planned(runbook.steps, words),
        rollback=_planned(runbook.rollback, words),
        concurrency=runbook.concurrency,
        max_failures=runbook.max_failures,
        max_output_bytes=runbook.output.max_bytes,
        redact=tuple(runbook.output.redact),
    )


def _unset_placeholders(runbook: Runbook, typed: Mapping[str, object]) -> dict[str, str]:
    """Optional parameters without a default that a step uses but the request left out."""
    unset: dict[str, str] = {}
    for step in (*runbook.steps, *runbook.rollback):
        for word in step.argv:
            for name in placeholders(word):
                if name not in typed:
                    unset.setdefault(name, step.id)
    return unset


def _planned(steps: Sequence[Step], words: Mapping[str, str]) -> tuple[PlannedStep, ...]:
    return tuple(
        PlannedStep(
            id=step.id,
            argv=tuple(substitute(word, words) for word in step.argv),
            timeout=step.timeout.total_seconds(),
            ok_exit_codes=frozenset(step.ok_exit_codes),
            on_failure=step.on_failure,
        )
        for step in steps
    )
