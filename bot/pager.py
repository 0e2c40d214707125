"""Paging as listeners and the CLI ask for it: one transaction in the domain, then the runner.

Each call runs the domain (`bot.oncall.paging`) in its own transaction and, after it
commits, hands the step it ran to the job runner (send its notifications, schedule the next
step). `within`, when given, runs in that same transaction with the result (a listener
enqueues the channel post that announces it, so the post commits with the change). Nothing
here knows Slack; the listeners render what comes back.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from sqlalchemy.orm import Session

from bot.clock import Clock
from bot.db import Database
from bot.jobs import JobRunner
from bot.oncall import paging
from bot.oncall.configuration import OncallConfig
from bot.oncall.models import Page
from bot.oncall.paging import Outcome, Triggered
from bot.oncall.targets import Target

Within = Callable[[Session, Outcome], object]


class Pager:
    def __init__(self, db: Database, config: OncallConfig, jobs: JobRunner, clock: Clock) -> None:
        self.db = db
        self.config = config
        self.jobs = jobs
        self.clock = clock

    def trigger(
        self,
        *,
        target: Target | str,
        message: str,
        created_by: str,
        incident_id: int | None = None,
        dedup_key: str | None = None,
        within: Callable[[Session, Triggered], object] | None = None,
    ) -> Triggered:
        """Trigger a page and run its first step (one transaction), then send it."""
        if isinstance(target, str):
            try:
                target = Target.parse(target)
            except ValueError as error:
                raise paging.PagingError(str(error)) from None
        with self.db.session_scope() as session:
            result = paging.trigger(
                session,
                self.config,
                target=target,
                message=message,
                created_by=created_by,
                now=self.clock(),
                incident_id=incident_id,
                dedup_key=dedup_key,
            )
            if within is not None:
                within(session, result)
            queued = self.jobs.effects(session, result.step)
        self.jobs.after_commit(result.step, queued)
        return result

    def page(
        self,
        *,
        target: Target | str,
        message: str,
        created_by: str,
        incident_id: int | None = None,
        dedup_key: str | None = None,
    ) -> Page:
        """`trigger`, returning the page as it is after its first step was sent."""
        result = self.trigger(
            target=target,
            message=message,
            created_by=created_by,
            incident_id=incident_id,
            dedup_key=dedup_key,
        )
        with self.db.session_scope() as session:
            return paging.get(session, result.page.id)

    def acknowledge(self, page_id: int, by: str, within: Within | None = None) -> Outcome:
        return self._act(paging.acknowledge, page_id, by, within)

    def resolve(self, page_id: int, by: str, within: Within | None = None) -> Outcome:
        return self._act(paging.resolve, page_id, by, within)

    def escalate_now(self, page_id: int, by: str, within: Within | None = None) -> Outcome:
        return self._act(partial(paging.escalate_now, config=self.config), page_id, by, within)

    def _act(
        self, change: Callable[..., Outcome], page_id: int, by: str, within: Within | None
    ) -> Outcome:
        """One change to a page in one transaction, then what its step (if any) needs."""
        with self.db.session_scope() as session:
            outcome = change(session, page_id=page_id, by=by, now=self.clock())
            if within is not None:
                within(session, outcome)
            queued = self.jobs.effects(session, outcome.step)
        self.jobs.after_commit(outcome.step, queued)
        return outcome
