"""`firebreak runbook list|show|run`: the runbook catalogue and runs from the terminal.

`run` prints the plan (every host and the exact argv it receives), asks for confirmation
unless `--yes`, streams each host's output prefixed with the host name, and ends with a
summary table. Exit status: 0 every host succeeded, 1 a host failed, timed out, was refused
or the run was cancelled, 2 the request was refused before any connection was opened.

Every request is stored with requester `cli:<login>`, refused ones too (`--dry-run` is a
preview, not a request: it stores nothing, needs no database and no SSH configuration).

Approval: the terminal refuses runbooks that need approval (risk high, or `approval: true`).
An approval means a second person, with an allowed role, agreed; the terminal knows only one
login and cannot verify anyone else, so recording "approved by" from here would put an
unverifiable claim into the audit trail. Such runbooks are requested in Slack, where the
approver is a distinct authenticated Slack user. `allowed_roles` from the terminal: the login
counts as the `people:` entry of the same name, so `runbooks.groups` apply; incident roles are
held by Slack users, so a runbook limited to incident roles is for Slack only.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any, NoReturn

import click

from bot.config import ConfigError, Settings, load_settings
from bot.runbook_terminal import (
    catalogue_table,
    counts,
    exit_codes,
    plan_lines,
    runbook_details,
    summary_lines,
    visible,
)
from bot.runbooks.catalogue import Catalogue, Runbook
from bot.runbooks.executor import HostResult, RunSummary
from bot.runbooks.transport import Stream

REFUSED = 2
FAILED = 1


def _fail(*problems: str) -> NoReturn:
    for problem in problems:
        click.echo(f"error: {problem}", err=True)
    sys.exit(REFUSED)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as error:
        _fail(*error.problems)


def _catalogue(settings: Settings) -> Catalogue:
    from bot.runbooks.catalogue import load_catalogue

    try:
        return load_catalogue(
            settings.env.runbooks_path, required="FIREBREAK_RUNBOOKS" in os.environ
        )
    except ConfigError as error:
        _fail(*error.problems)


def _unknown(catalogue: Catalogue, runbook_id: str) -> str:
    known = ", ".join(runbook.id for runbook in catalogue.runbooks) or "none"
    return (
        f"there is no runbook {visible(runbook_id[:64])!r} in {catalogue.directory} "
        f"(runbooks: {known})"
    )


@click.group()
def runbook() -> None:
    """Runbooks: the whitelisted commands Firebreak may run on inventory hosts over SSH."""


@runbook.command("list")
def list_runbooks() -> None:
    """The runbooks in the catalogue (FIREBREAK_RUNBOOKS, default runbooks/)."""
    catalogue = _catalogue(_settings())
    if not catalogue.runbooks:
        where = "" if catalogue.found else " (the directory does not exist)"
        click.echo(f"No runbooks in {catalogue.directory}{where}.")
        return
    for line in catalogue_table(catalogue.runbooks):
        click.echo(line)


@runbook.command("show")
@click.argument("runbook_id", metavar="ID")
def show(runbook_id: str) -> None:
    """A runbook's parameters, targets, steps and rules."""
    catalogue = _catalogue(_settings())
    found = catalogue.get(runbook_id)
    if found is None:
        _fail(_unknown(catalogue, runbook_id))
    for line in runbook_details(found):
        click.echo(line)


class _Printer:
    """The executor's observer for a terminal: `host | line` as output arrives."""

    def host_started(self, host: str) -> None:
        click.echo(f"{host} | -- started")

    def output(self, host: str, stream: Stream, text: str) -> None:
        for line in text.rstrip("\n").split("\n"):
            click.echo(f"{host} | {visible(line)}", err=stream == "stderr")

    def host_finished(self, result: HostResult) -> None:
        detail = f" ({visible(result.error)})" if result.error else ""
        click.echo(
            f"{result.host} | -- {result.status} in {result.duration:.1f}s, exit codes "
            f"{exit_codes(result)}{detail}"
        )

    def run_finished(self, summary: RunSummary) -> None:
        pass


class _Request:
    """One `runbook run`: who asks, the database, and storing its refusals."""

    def __init__(self, settings: Settings, runbook_id: str, incident: int | None) -> None:
        from bot.db import Database
        from bot.migrations import upgrade
        from bot.runbooks.runs import heartbeat_every

        self.login = getpass.getuser()
        self.requester = f"cli:{self.login}"[:64]
        self.person = self.login if self.login in settings.file.people else None
        self.groups = settings.file.runbooks.groups
        self.heartbeat = heartbeat_every(settings.file.runbooks.interrupted_after)
        self.runbook_id = runbook_id
        self.incident = incident
        try:
            upgrade(settings.env.database_url)
        except ConfigError as error:
            _fail(*error.problems)
        self.db = Database(settings.env.database_url)

    def refuse(
        self, problems: Sequence[str], params: Mapping[str, Any], runbook: Runbook | None = None
    ) -> NoReturn:
        """Store the refusal (every request is audited), say why, exit 2."""
        from bot.clock import system_now
        from bot.runbooks import runs

        with self.db.session_scope() as session:
            incident = self.incident if self._incident_exists(session) else None
            run = runs.refuse(
                session,
                runbook_id=self.runbook_id,
                params=params,
                requester=self.requester,
                source="cli",
                incident_id=incident,
                reason="; ".join(problems),
                now=system_now(),
                title=runbook.title if runbook else "",
                risk=runbook.risk if runbook else "",
            )
            reference = run.reference
        self.db.dispose()
        _fail(*problems, f"refused and recorded as {reference}")

    def _incident_exists(self, session: Any) -> bool:
        from bot.incidents.models import Incident

        return self.incident is not None and session.get(Incident, self.incident) is not None


def _incident_number(text: str | None) -> int | None:
    from bot.slack.text import number_id

    if text is None:
        return None
    number = number_id(text, prefix="inc-")
    if number is None:
        _fail(f"--incident {visible(text[:40])!r} is not an incident; give it like 7 or INC-7")
    return number


@runbook.command("run")
@click.argument("runbook_id", metavar="ID")
@click.argument("words", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--hosts", metavar="NAME,NAME|GROUP", help="Narrow the runbook's targets.")
@click.option("--dry-run", is_flag=True, help="Print the plan; connect to nothing, store nothing.")
@click.option("--yes", "-y", is_flag=True, help="Run without asking for confirmation.")
@click.option("--incident", "incident_text", metavar="N", help="Link the run to incident N.")
def run(
    runbook_id: str,
    words: tuple[str, ...],
    hosts: str | None,
    dry_run: bool,
    yes: bool,
    incident_text: str | None,
) -> None:
    """Run runbook ID with KEY=VALUE parameters on its hosts (or --hosts of them)."""
    from bot.runbooks.params import RunRefused, parse_arguments
    from bot.runbooks.planning import make_plan

    settings = _settings()
    incident = _incident_number(incident_text)
    catalogue = _catalogue(settings)
    request = None if dry_run else _Request(settings, runbook_id, incident)

    def refused(
        problems: Sequence[str], params: Mapping[str, Any], found: Runbook | None = None
    ) -> NoReturn:
        if request is None:
            _fail(*problems)
        request.refuse(problems, params, found)

    raw = dict(word.partition("=")[::2] for word in words if "=" in word)
    found = catalogue.get(runbook_id)
    if found is None:
        refused([_unknown(catalogue, runbook_id)], raw)
    try:
        arguments = parse_arguments(words)
        if hosts is not None and arguments.hosts is not None:
            raise RunRefused(["hosts are given twice (--hosts and hosts=); give them once"])
        plan = make_plan(
            found,
            arguments.values,
            hosts if hosts is not None else arguments.hosts,
            settings.file.inventory,
        )
    except RunRefused as error:
        refused(error.problems, raw, found)
    for line in plan_lines(plan):
        click.echo(line)
    approval = (
        f"runbook {plan.runbook_id} needs approval by a second person (risk {plan.risk}); "
        "the terminal cannot verify one, so request it in Slack: /runbook run "
        f"{plan.runbook_id} ... (an approver with an allowed role presses Approve)"
    )
    if dry_run:
        click.echo("Dry run: nothing was connected to or recorded.")
        if plan.needs_approval:
            click.echo(f"note: a real run from here would be refused: {approval}")
        return
    assert request is not None
    params = dict(plan.params)
    if plan.needs_approval:
        refused([approval], params, found)
    from integrations.ssh import SshTransport

    try:
        transport = SshTransport.from_environment(os.environ)
    except ConfigError as error:
        refused(["SSH is not configured: " + problem for problem in error.problems], params, found)
    if not yes and not sys.stdin.isatty():
        refused(
            ["not confirmed: standard input is not a terminal, so nobody can be asked; pass --yes"],
            params,
            found,
        )
    _execute(request, plan, transport, yes=yes)


def _execute(request: _Request, plan: Any, transport: Any, *, yes: bool) -> NoReturn:
    from bot.clock import system_now
    from bot.runbooks import records, runs
    from bot.runbooks.executor import Executor

    db = request.db
    try:
        with db.session_scope() as session:
            stored = runs.request(
                session,
                plan,
                requester=request.requester,
                source="cli",
                incident_id=request.incident,
                now=system_now(),
                person_name=request.person,
                groups=request.groups,
            )
            run_id, reference, status, refusal = (
                stored.id,
                stored.reference,
                stored.status,
                stored.refusal,
            )
    except runs.RunError as error:
        db.dispose()
        _fail(str(error))
    if status == records.REFUSED:
        db.dispose()
        _fail(refusal or "refused", f"refused and recorded as {reference}")
    if not yes and not click.confirm(f"Run {reference} on {len(plan.hosts)} hosts?"):
        with db.session_scope() as session:
            runs.cancel(session, run_id, request.requester, system_now())
        db.dispose()
        _fail(f"not confirmed; {reference} is recorded as cancelled")
    with db.session_scope() as session:
        decision = runs.confirm(session, run_id, request.requester, system_now())
        confirmed = decision.run.status == records.APPROVED
        reason = decision.reason
    if not confirmed:
        db.dispose()
        _fail(reason or f"{reference} could not be confirmed")
    click.echo(f"Running {reference}.")
    workers = max(1, min(plan.concurrency, 50))
    executor = Executor(db, lambda: transport, max_workers=workers, heartbeat=request.heartbeat)
    future: Future[RunSummary] = executor.start(run_id, _Printer())
    try:
        try:
            summary = future.result()
        except KeyboardInterrupt:
            click.echo(f"Cancelling {reference}: no new steps, running ones killed.", err=True)
            with db.session_scope() as session:
                runs.cancel(session, run_id, request.requester, system_now())
            executor.cancel(run_id)
            summary = future.result()
    finally:
        executor.close()
        db.dispose()
    click.echo("")
    for line in summary_lines(summary):
        click.echo(line)
    click.echo(f"{reference} {summary.status}: {counts(summary)}.")
    sys.exit(0 if summary.status == records.SUCCEEDED else FAILED)
