"""An incident's channel is set up once when its own setup and the reconcile pass race.

The race (seen in the alert storm under heavy load): the worker that declared an incident
queues its channel setup; when the setup has not finished SETUP_GRACE after the
declaration, the leader's reconcile pass finds the incident unfinished (`set_up_at` NULL)
and runs the setup too. Both runs take the incident's lock, so they never interleave, but
the second one used to start over after the first had finished: a second
`conversations.setTopic`, a `pins.add` answered `already_pinned`, a second invitation
answered `already_in_channel`.

Here the interleaving is forced over the real parts: the test holds the incident's lock
(`bot.locks.incident_lock`, a PostgreSQL advisory lock or SQLite's thread lock) while the
reconcile pass, on its own thread, picks the incident as unfinished, and the declaring
worker's setup, on another thread, asks for the lock; then it lets go and whichever gets
the lock first sets the channel up. Real database, the sandbox Slack over HTTP.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter

from sqlalchemy import select

from bot.app import Firebreak
from bot.incidents import service
from bot.locks import incident_lock
from bot.sandbox import SlackSandbox
from bot.slack.outbox import SETUP_GRACE, SlackOutbox
from bot.timeline import TimelineEvent
from tests.conftest import wait_for

INCIDENTS = 3


def declare_unset(app: Firebreak, title: str) -> int:
    """An incident whose setup has not run yet, declared longer than SETUP_GRACE ago (its
    declaring worker's setup is still queued), as the reconcile pass finds it."""
    with app.db.session_scope() as session:
        declaration = service.declare(
            session,
            title=title,
            declared_by="U0ALICE",
            declare_key=f"race-{uuid.uuid4().hex}",
            policy=app.settings.file.incidents,
            now=app.clock() - SETUP_GRACE * 2,
        )
        return declaration.incident.id


def picked(reconciler: SlackOutbox, incident_id: int) -> bool:
    """Whether the reconcile pass chose this incident for a setup run (it records the try
    just before it asks for the incident's lock)."""
    with reconciler._setup_lock:
        return incident_id in reconciler._setup_tries


def race(app: Firebreak, reconciler: SlackOutbox, incident_id: int) -> list[BaseException]:
    """The incident's setup and the reconcile pass, both past their look at `set_up_at`
    before either can set the channel up; returns what either thread raised."""
    errors: list[BaseException] = []

    def guarded(work: object) -> None:
        try:
            assert callable(work)
            work()
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.append(error)

    reconcile = threading.Thread(target=guarded, args=(reconciler.reconcile,), name="reconcile")
    setup = threading.Thread(
        target=guarded,
        args=(lambda: app.channels.open(incident_id, "U0ALICE"),),
        name="declaring-worker",
    )
    with incident_lock(app.db, incident_id):
        reconcile.start()
        wait_for(lambda: picked(reconciler, incident_id) or not reconcile.is_alive())
        setup.start()
    for thread in (reconcile, setup):
        thread.join(timeout=60)
        assert not thread.is_alive(), f"{thread.name} did not finish"
    return errors


def test_a_setup_racing_the_reconcile_pass_sets_the_channel_up_once(
    firebreak: Firebreak, sandbox: SlackSandbox, announce_channel: str
) -> None:
    reconciler = SlackOutbox(firebreak.db, firebreak.client, firebreak.channels, firebreak.clock)
    for number in range(1, INCIDENTS + 1):
        before = len(sandbox.calls)
        incident_id = declare_unset(firebreak, f"Race number {number}")
        errors = race(firebreak, reconciler, incident_id)
        assert not errors, errors
        assert picked(reconciler, incident_id), "the reconcile pass never chose the incident"

        with firebreak.db.session_scope() as session:
            incident = service.get(session, incident_id)
            assert incident.set_up_at is not None and incident.channel_id is not None
            channel_id, reference = incident.channel_id, incident.reference
            kinds = Counter(
                session.scalars(
                    select(TimelineEvent.kind).where(TimelineEvent.incident_id == incident_id)
                ).all()
            )
        calls = sandbox.calls[before:]
        methods = Counter(call.method for call in calls)
        refused = [(c.method, c.response.get("error")) for c in calls if not c.response.get("ok")]
        # One run of every step, and nothing Slack had to refuse as already done.
        assert methods["conversations.create"] == 1, methods
        assert methods["conversations.invite"] == 1, methods
        assert methods["conversations.setTopic"] == 1, methods
        assert methods["pins.add"] == 1, methods
        assert methods["chat.postMessage"] == 2, methods  # the summary and the announcement
        assert refused == [], refused
        summaries = [m for m in sandbox.messages(channel_id) if m.text.startswith(f"{reference} [")]
        assert len(summaries) == 1 and sandbox.pins(channel_id) == [summaries[0].ts]
        announced = [
            m for m in sandbox.messages(announce_channel) if m.text.startswith(f"{reference} [")
        ]
        assert len(announced) == 1
        for kind in ("channel_created", "topic_set", "summary_posted", "announced"):
            assert kinds[kind] == 1, kinds
        assert kinds["slack_error"] == 0, kinds
