"""A Slack outage: every Web API method answers 500, then 429 with Retry-After, for a minute.

Responders keep working through it. Afterwards every post, topic, summary and announcement
is right and none is doubled, an incident declared during the outage is set up without
anyone running a command again, the page's DMs arrive, and nobody was told to retry
something that had succeeded.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from bot.app import Firebreak
from bot.incidents import service
from bot.outbox import OutboxItem
from bot.sandbox import SlackSandbox
from tests.conftest import Slack, wait_for
from tests.test_paging import dms

OUTAGE_500 = 30.0  # seconds of HTTP 500 from every method
OUTAGE_429 = 30.0  # then seconds of 429 with Retry-After: 2


@pytest.fixture
def leader(firebreak: Firebreak) -> Iterator[Firebreak]:
    """The app with its scheduler running (the leader's reconcile sends what waits)."""
    firebreak.jobs.start()
    try:
        yield firebreak
    finally:
        firebreak.jobs.stop()


def waiting_items(app: Firebreak) -> int:
    with app.db.session_scope() as session:
        rows = session.scalars(
            select(OutboxItem).where(OutboxItem.status.in_(("pending", "retry", "sending")))
        )
        return len(rows.all())


def set_up(app: Firebreak, incident_id: int) -> bool:
    """Whether the incident's setup finished. A transaction per look: on SQLite one held
    open across the wait would hold the write lock the reconcile pass needs to finish it."""
    with app.db.session_scope() as session:
        return service.get(session, incident_id).set_up_at is not None


# The outage itself lasts a minute; afterwards the outbox's backoff (at most 30 s) and the
# setup retry of the incident declared during it (every 30 s) take up to about as long again.
@pytest.mark.timeout(180)
def test_an_outage_delays_posts_but_loses_none_doubles_none_and_never_asks_for_a_retry(
    leader: Firebreak, slack: Slack, sandbox: SlackSandbox, general: str, announce_channel: str
) -> None:
    slack.run("declare sev3 Checkout latency", channel=general)
    first = sandbox.channel_by_name("inc-1-checkout-latency")
    assert first is not None

    started = time.monotonic()
    sandbox.inject_fault("*", status=500, times=1_000_000)
    slack.run("note rolled back 42", user="U0BOB", channel=first.id)
    slack.run("sev sev1", user="U0BOB", channel=first.id)
    slack.run("status monitoring", user="U0ALICE", channel=first.id)
    slack.command("@carol db at 100%", user="U0BOB", channel=first.id, command="/page")
    slack.settle()
    slack.run("declare sev2 Search down", channel=general)  # set up after the outage
    time.sleep(max(0.0, OUTAGE_500 - (time.monotonic() - started)))
    sandbox.clear_faults()
    sandbox.inject_fault("*", retry_after=2, times=1_000_000)
    slack.run("note traffic back", user="U0CAROL", channel=first.id)
    time.sleep(max(0.0, OUTAGE_500 + OUTAGE_429 - (time.monotonic() - started)))
    sandbox.clear_faults()
    outage = time.monotonic() - started

    wait_for(lambda: waiting_items(leader) == 0, timeout=60)
    second = wait_for(lambda: sandbox.channel_by_name("inc-2-search-down"), timeout=60)
    wait_for(lambda: dms(sandbox, "U0CAROL"), timeout=30)
    wait_for(lambda: set_up(leader, 2), timeout=60)
    recovered = time.monotonic() - started - outage
    slack.settle()

    posted = [m.text for m in sandbox.messages(first.id)]
    for expected in (
        ":memo: <@U0BOB> added a note: rolled back 42",
        ":rotating_light: <@U0BOB> changed severity sev3 → sev1",
        ":arrows_counterclockwise: <@U0ALICE> changed status investigating → monitoring",
        ":memo: <@U0CAROL> added a note: traffic back",
    ):
        assert posted.count(expected) == 1, (expected, posted)
    assert sum(":pager: <@U0BOB> paged user:carol" in text for text in posted) == 1
    # Posts kept their order.
    order = [posted.index(text) for text in posted if text.startswith(":memo:")]
    assert order == sorted(order)
    # Topic, pinned summary and announcement show the final state.
    assert sandbox.channel(first.id).topic.startswith("SEV1 · monitoring")
    summary = sandbox.message(first.id, sandbox.pins(first.id)[0])
    assert "SEV1 · monitoring" in summary.text
    announced = [m for m in sandbox.messages(announce_channel) if "INC-1" in m.text]
    assert len(announced) == 1 and "SEV1 · monitoring" in announced[0].text
    # The incident declared during the outage was set up once, by reconcile.
    assert second is not None and len(sandbox.pins(second.id)) == 1
    assert sum("INC-2" in m.text for m in sandbox.messages(announce_channel)) == 1
    assert len(dms(sandbox, "U0CAROL")) == 1
    # Nobody was asked to repeat what had worked.
    told = [str(r.payload.get("text", "")) for r in sandbox.responses()]
    assert not [t for t in told if "Try again" in t or "Something went wrong" in t], told
    print(
        f"outage {outage:.0f} s (500 then 429); {len(sandbox.calls)} Web API calls; "
        f"everything delivered {recovered:.0f} s after it ended; {len(told)} answers to users"
    )
