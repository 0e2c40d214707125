"""The Slack outbox sends an incident's items in order, one out at a time, and the sender
that finishes one goes on with what queued behind it (docs/architecture.md, "The outbox")."""

from __future__ import annotations

from sqlalchemy import select

from bot import outbox
from bot.app import Firebreak
from bot.sandbox import SlackSandbox
from bot.slack.outbox import SlackOutbox
from tests.test_incident_commands import incident_channel  # noqa: F401 (fixture)


def _enqueue(app: Firebreak, channel: str, texts: list[str]) -> list[int]:
    with app.db.session_scope() as session:
        return [
            outbox.enqueue(
                session,
                outbox.POST,
                {"channel": channel, "text": text},
                now=app.clock(),
                incident_id=1,
            )
            for text in texts
        ]


def _statuses(app: Firebreak, ids: list[int]) -> list[str]:
    with app.db.session_scope() as session:
        rows = session.execute(
            select(outbox.OutboxItem.id, outbox.OutboxItem.status).where(
                outbox.OutboxItem.id.in_(ids)
            )
        ).all()
    return [status for _, status in sorted(rows)]


def test_an_item_behind_another_waits_and_the_sender_ahead_sends_it_in_order(
    firebreak: Firebreak,
    sandbox: SlackSandbox,
    incident_channel: str,  # noqa: F811
) -> None:
    sender = SlackOutbox(firebreak.db, firebreak.client, firebreak.channels, firebreak.clock)
    before = len(sandbox.messages(incident_channel))
    first, second, third = _enqueue(firebreak, incident_channel, ["one", "two", "three"])

    # The third's maker tries first: two items of its incident are ahead, so nothing goes.
    assert sender.deliver([third]).sent == 0
    assert _statuses(firebreak, [first, second, third]) == ["pending"] * 3

    # The first's maker sends its own, then what became due behind it, in order.
    delivery = sender.deliver([first])
    assert delivery.sent == 3 and delivery.waiting == 0
    assert _statuses(firebreak, [first, second, third]) == ["sent"] * 3
    posted = [message.text for message in sandbox.messages(incident_channel)[before:]]
    assert posted == ["one", "two", "three"]


def test_a_claim_leases_only_the_first_waiting_item_of_an_incident(
    firebreak: Firebreak,
    incident_channel: str,  # noqa: F811
) -> None:
    ids = _enqueue(firebreak, incident_channel, ["a", "b", "c"])
    with firebreak.db.session_scope() as session:
        claimed = outbox.claim(session, firebreak.clock(), incidents=[1])
    assert [item.id for item in claimed] == ids[:1]
    with firebreak.db.session_scope() as session:  # the first is out: nothing else may go
        assert outbox.claim(session, firebreak.clock(), incidents=[1]) == []
        assert outbox.claim(session, firebreak.clock(), ids[1:]) == []
