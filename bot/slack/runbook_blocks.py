"""Runbooks and runs as Slack messages: the catalogue, a runbook, the plan message with its
buttons, and the progress reply in its thread.

Everything a user or a host controls (parameter values, argv, output, errors) is shown in
code spans or blocks with `&`, `<` and `>` escaped, so it can neither mention nor link, and
a run of backticks in it cannot close the block early.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from bot.runbooks import records
from bot.runbooks.catalogue import Runbook
from bot.runbooks.command import seconds
from bot.runbooks.params import rendered
from bot.runbooks.plan import Plan, PlannedStep
from bot.runbooks.records import RunbookRun, RunbookRunHost
from bot.slack.text import escape
from bot.slack.timeline import actor
from bot.slack.when import when

ACTION_RUN = "runbook_run"
ACTION_CANCEL = "runbook_cancel"
ACTION_APPROVE = "runbook_approve"
ACTION_DENY = "runbook_deny"
MAX_SECTION = 3000
MAX_HOSTS_SHOWN = 30
Block = dict[str, Any]

_OUTCOME_EMOJI = {
    records.SUCCEEDED: ":white_check_mark:",
    records.FAILED: ":x:",
    records.CANCELLED: ":octagonal_sign:",
    records.REFUSED: ":no_entry:",
    records.EXPIRED: ":hourglass:",
    records.INTERRUPTED: ":warning:",
}
_HOST_EMOJI = {
    records.PENDING: ":white_circle:",
    records.HOST_RUNNING: ":arrow_forward:",
    records.HOST_SUCCEEDED: ":white_check_mark:",
    records.HOST_FAILED: ":x:",
    records.TIMED_OUT: ":alarm_clock:",
    records.HOST_KEY: ":rotating_light:",
    records.UNREACHABLE: ":electric_plug:",
    records.AUTH: ":lock:",
    records.HOST_CANCELLED: ":octagonal_sign:",
    records.SKIPPED: ":fast_forward:",
    records.HOST_INTERRUPTED: ":warning:",
}


def code_text(text: str) -> str:
    """Text for inside a code span or block: escaped, its backtick runs broken up."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return escaped.replace("```", "`\u200b``")


def code_block(text: str, limit: int = MAX_SECTION - 20) -> str:
    body = code_text(text)
    if len(body) > limit:
        body = "…" + body[-(limit - 1) :]
    return f"```{body}```"


def _section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:MAX_SECTION]}}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:MAX_SECTION]}]}


def _button(text: str, action_id: str, run_id: int, style: str | None = None) -> Block:
    button: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": str(run_id),
    }
    if style:
        button["style"] = style
    return button


# -- the catalogue ------------------------------------------------------------------------


def listing(runbooks: Sequence[Runbook]) -> str:
    if not runbooks:
        return "There are no runbooks in Firebreak's catalogue yet."
    lines = ["*Runbooks* (`/runbook show <id>` for details)"]
    for runbook in runbooks:
        approval = ", needs approval" if runbook.needs_approval else ""
        lines.append(
            f"• `{runbook.id}` {escape(runbook.title)} (risk {runbook.risk}{approval}; "
            f"{escape(runbook.targets.described())})"
        )
    return "\n".join(lines)[: MAX_SECTION * 3]


def details(runbook: Runbook) -> str:
    lines = [f"*`{runbook.id}`* {escape(runbook.title)}"]
    if runbook.description:
        lines.append(escape(runbook.description))
    lines.append(
        f"Risk *{runbook.risk}*"
        + (" (needs approval)" if runbook.needs_approval else "")
        + f" · allowed: {escape(', '.join(runbook.allowed_roles) or 'anyone')}"
        + f" · targets: {escape(runbook.targets.described())}, at most "
        f"{runbook.targets.max_hosts} hosts"
    )
    if runbook.params:
        lines.append("*Parameters*")
        for name, param in runbook.params.items():
            facts: list[str] = [param.type]
            if param.values:
                facts.append("one of " + ", ".join(param.values))
            if param.min is not None or param.max is not None:
                facts.append(
                    f"{'' if param.min is None else param.min}..{'' if param.max is None else param.max}"
                )
            if param.pattern is not None:
                facts.append(f"pattern {param.pattern}")
            if param.required:
                facts.append("required")
            elif param.default is not None:
                facts.append(f"default {rendered(param.default)}")
            lines.append(f"• `{name}`: `{code_text('; '.join(facts))}`")
    steps = "\n".join(f"{step.id}: {shlex.join(step.argv)}" for step in runbook.steps)
    lines.append("*Steps*\n" + code_block(steps, 1500))
    return "\n".join(lines)


# -- the plan message -----------------------------------------------------------------------


def _argv(step: PlannedStep) -> str:
    codes = ",".join(str(code) for code in sorted(step.ok_exit_codes))
    return (
        f"{step.id}: {shlex.join(step.argv)}    "
        f"# timeout {seconds(step.timeout)}, ok {codes}, on failure {step.on_failure}"
    )


def _hosts(hosts: Sequence[RunbookRunHost]) -> str:
    shown = [
        f"{_HOST_EMOJI.get(host.status, '')} `{code_text(host.name)}`"
        for host in hosts[:MAX_HOSTS_SHOWN]
    ]
    more = len(hosts) - MAX_HOSTS_SHOWN
    return "  ".join(shown) + (f" and {more} more" if more > 0 else "")


def status_line(run: RunbookRun, plan: Plan, hosts: Sequence[RunbookRunHost]) -> str:
    requester = actor(run.requester)
    roles = ", ".join(plan.allowed_roles) or "anyone"
    match run.status:
        case records.AWAITING_CONFIRMATION:
            return f":hourglass_flowing_sand: Waiting for {requester} to press *Run*."
        case records.AWAITING_APPROVAL:
            until = f" until {when(run.expires_at)}" if run.expires_at else ""
            return (
                f":lock: *Awaiting approval*{until} by someone allowed ({escape(roles)}) "
                f"other than {requester}."
            )
        case records.APPROVED:
            by = f" by {actor(run.approver)}" if run.approver else ""
            return f":white_check_mark: Approved{by}; starting."
        case records.RUNNING:
            stopping = " Cancel requested; stopping." if run.cancel_requested_at else ""
            return f":arrow_forward: *Running*: output in the thread.{stopping}"
    emoji = _OUTCOME_EMOJI.get(run.status, "")
    counts: dict[str, int] = {}
    for host in hosts:
        counts[host.status] = counts.get(host.status, 0) + 1
    tally = ", ".join(f"{number} {status}" for status, number in counts.items())
    said = {
        records.CANCELLED: _cancelled(run, plan),
        records.EXPIRED: "expired: nobody approved it in time",
        records.REFUSED: "refused",
    }.get(run.status, run.status)
    return f"{emoji} *Finished: {said}*" + (f" ({tally})" if tally and run.started_at else "")


def _cancelled(run: RunbookRun, plan: Plan) -> str:
    by = run.cancel_requested_by
    if (
        by is not None
        and by != run.requester
        and plan.needs_approval
        and run.confirmed_at is not None
        and run.approved_at is None
    ):
        return f"denied by {actor(by)}"
    return f"cancelled by {actor(by)}" if by else "cancelled"


def plan_message(
    run: RunbookRun, plan: Plan, hosts: Sequence[RunbookRunHost]
) -> tuple[str, list[Block]]:
    """The plan message of a run in its present state: what will run, where, and the
    buttons the state allows."""
    params = " ".join(f"{key}={shlex.quote(rendered(value))}" for key, value in plan.params.items())
    approval = "needs approval" if plan.needs_approval else "no approval needed"
    head = (
        f"*{run.reference}* · runbook `{plan.runbook_id}` {escape(plan.title)}\n"
        f"Requested by {actor(run.requester)} · risk *{plan.risk}* · {approval}"
    )
    steps = "\n".join(_argv(step) for step in plan.steps)
    if plan.rollback:
        steps += "\n# rollback\n" + "\n".join(_argv(step) for step in plan.rollback)
    blocks: list[Block] = [
        _section(head),
        _section(f"*Parameters* `{code_text(params)}`" if params else "*Parameters* none"),
        _section(f"*Hosts* ({len(hosts)}, {plan.concurrency} at a time)\n{_hosts(hosts)}"),
        _section("*Exact argv, the same on every host*\n" + code_block(steps)),
        _context(status_line(run, plan, hosts)),
    ]
    buttons: list[Block] = []
    if run.status == records.AWAITING_CONFIRMATION:
        buttons = [
            _button("Run", ACTION_RUN, run.id, "primary"),
            _button("Cancel", ACTION_CANCEL, run.id),
        ]
    elif run.status == records.AWAITING_APPROVAL:
        buttons = [
            _button("Approve", ACTION_APPROVE, run.id, "primary"),
            _button("Deny", ACTION_DENY, run.id, "danger"),
        ]
    elif run.status in (records.APPROVED, records.RUNNING) and run.cancel_requested_at is None:
        buttons = [_button("Cancel", ACTION_CANCEL, run.id, "danger")]
    if buttons:
        blocks.append({"type": "actions", "block_id": f"runbook-{run.id}", "elements": buttons})
    text = f"{run.reference}: runbook {plan.runbook_id} on {len(hosts)} hosts ({run.status})"
    return text, blocks


# -- the thread reply -----------------------------------------------------------------------


def progress_text(
    reference: str,
    states: Sequence[tuple[str, str, str]],
    output: str,
    *,
    trimmed: bool,
    final: str | None,
) -> str:
    """The one thread reply: each host's state, then the latest output (`host | line`).

    `states`: (host, status, detail) in plan order; `final`: the outcome once finished.
    """
    head = f"*{reference}* " + (f"finished: *{final}*" if final else "running")
    lines = [head]
    for host, status, detail in states[:MAX_HOSTS_SHOWN]:
        extra = f" {code_text(detail)}" if detail else ""
        lines.append(f"{_HOST_EMOJI.get(status, '')} `{code_text(host)}` {status}{extra}")
    if len(states) > MAX_HOSTS_SHOWN:
        lines.append(f"… and {len(states) - MAX_HOSTS_SHOWN} more hosts")
    if output:
        note = "_(earlier output is not shown here; the run stores it)_\n" if trimmed else ""
        lines.append(note + code_block(output))
    return "\n".join(lines)
