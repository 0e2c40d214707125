"""Runbooks, plans and runs as plain text for the terminal (`firebreak runbook ...`).

Remote output is untrusted: a host could print terminal escape sequences that rewrite the
operator's screen (hide a line, fake a prompt). Every control character except a tab is
shown as a visible `\\xNN` escape before anything reaches the terminal.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence

from bot.runbooks.catalogue import Runbook, Step
from bot.runbooks.command import seconds
from bot.runbooks.executor import HostResult, RunSummary
from bot.runbooks.params import Param, rendered
from bot.runbooks.plan import Plan, PlannedStep

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """`text` with every control character (but tab) shown as an escape, never obeyed."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group(0)):02x}", text)


def approval(runbook: Runbook | Plan) -> str:
    return "needs approval" if runbook.needs_approval else "no approval needed"


def catalogue_table(runbooks: Sequence[Runbook]) -> list[str]:
    rows = [("ID", "RISK", "APPROVAL", "TARGETS", "TITLE")]
    for runbook in runbooks:
        rows.append(
            (
                runbook.id,
                runbook.risk,
                "yes" if runbook.needs_approval else "no",
                runbook.targets.described(),
                runbook.title,
            )
        )
    return table(rows)


def table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart; the last column is not padded."""
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    return [
        "  ".join(
            cell if index == len(row) - 1 else cell.ljust(widths[index])
            for index, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]


def _param(name: str, param: Param) -> str:
    parts: list[str] = [param.type]
    if param.values:
        parts.append("one of " + ", ".join(param.values))
    if param.min is not None or param.max is not None:
        low = "" if param.min is None else str(param.min)
        high = "" if param.max is None else str(param.max)
        parts.append(f"{low}..{high}")
    if param.pattern is not None:
        parts.append(f"matching {param.pattern} (in full, at most {param.limit} characters)")
    if param.required:
        parts.append("required")
    elif param.default is not None:
        parts.append(f"default {rendered(param.default)}")
    else:
        parts.append("optional")
    line = f"  {name}: {'; '.join(parts)}"
    return line + (f"\n      {param.description}" if param.description else "")


def _step_template(step: Step) -> str:
    codes = ", ".join(str(code) for code in step.ok_exit_codes)
    return (
        f"  {step.id}: {shlex.join(step.argv)}\n"
        f"      timeout {seconds(step.timeout.total_seconds())}, ok exit codes {codes}, "
        f"on failure {step.on_failure}"
    )


def runbook_details(runbook: Runbook) -> list[str]:
    lines = [f"{runbook.id}: {runbook.title}"]
    if runbook.description:
        lines.append(f"  {runbook.description}")
    roles = ", ".join(runbook.allowed_roles) or "anyone"
    lines += [
        f"Risk: {runbook.risk} ({approval(runbook)})",
        f"Allowed roles: {roles}",
        f"Targets: {runbook.targets.described()}, at most {runbook.targets.max_hosts} hosts; "
        f"{runbook.concurrency} at a time; stops starting hosts after "
        f"{runbook.max_failures} failed",
        "Parameters:" if runbook.params else "Parameters: none",
        *(_param(name, param) for name, param in runbook.params.items()),
        "Steps ({{ name }} is replaced by the parameter's value, as one argument):",
        *(_step_template(step) for step in runbook.steps),
    ]
    if runbook.rollback:
        lines.append("Rollback (after a step whose on_failure is rollback):")
        lines += [_step_template(step) for step in runbook.rollback]
    redact = len(runbook.output.redact)
    lines.append(
        f"Output: at most {runbook.output.max_bytes:,} bytes stored per host"
        + (f", {redact} redaction pattern{'s' if redact != 1 else ''}" if redact else "")
    )
    return lines


def _planned(step: PlannedStep) -> str:
    codes = ", ".join(str(code) for code in sorted(step.ok_exit_codes))
    return (
        f"  {step.id}: {visible(shlex.join(step.argv))}\n"
        f"      timeout {seconds(step.timeout)}, ok exit codes {codes}, "
        f"on failure {step.on_failure}"
    )


def plan_lines(plan: Plan) -> list[str]:
    """The plan as the operator confirms it: every host, and the exact argv each receives
    (shell-quoted for reading; the host gets exactly these arguments)."""
    params = " ".join(f"{key}={shlex.quote(rendered(value))}" for key, value in plan.params.items())
    lines = [
        f"Runbook {plan.runbook_id}: {plan.title}",
        f"Risk: {plan.risk} ({approval(plan)})",
        f"Parameters: {visible(params) or 'none'}",
        f"Hosts ({len(plan.hosts)}, {plan.concurrency} at a time, stop after "
        f"{plan.max_failures} failed):",
    ]
    lines += [f"  {host.name}  {host.user}@{host.address}:{host.port}" for host in plan.hosts]
    lines.append("Steps, in order, with the same argv on every host above:")
    lines += [_planned(step) for step in plan.steps]
    if plan.rollback:
        lines.append("Rollback steps:")
        lines += [_planned(step) for step in plan.rollback]
    return lines


def exit_codes(result: HostResult) -> str:
    shown = [
        f"{'rollback:' if step.rollback else ''}{step.step}="
        + ("timeout" if step.timed_out else "-" if step.exit_code is None else str(step.exit_code))
        for step in result.steps
    ]
    return " ".join(shown) or "-"


def summary_lines(summary: RunSummary) -> list[str]:
    rows = [("HOST", "OUTCOME", "EXIT CODES", "DURATION", "HOST KEY")]
    for host in summary.hosts:
        rows.append(
            (
                host.host,
                host.status,
                exit_codes(host),
                f"{host.duration:.1f}s",
                host.fingerprint or "-",
            )
        )
    lines = table(rows)
    lines += [
        f"{host.host}: {visible(host.error)}" for host in summary.hosts if host.error is not None
    ]
    return lines


def counts(summary: RunSummary) -> str:
    parts: Iterable[str] = (f"{number} {status}" for status, number in summary.counts.items())
    return ", ".join(parts)
