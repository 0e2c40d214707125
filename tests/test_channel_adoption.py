"""A lost `conversations.create` answer, against a sandbox that holds the manifest's scopes.

Slack creates the channel but the answer never reaches Firebreak; the rerun finds the
channel with `conversations.list` and adopts it. Slack refuses that lookup without the
scope it needs (`missing_scope`), so the sandbox grants only what the manifest asks for.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from bot.app import Firebreak
from bot.incidents import service
from bot.incidents.models import Incident
from bot.manifest import BOT_SCOPES
from bot.sandbox import SlackSandbox
from tests.conftest import Slack, last_response_text, wait_for

TITLE = "Checkout down"
NAME = "inc-1-checkout-down"


def incident_channels(sandbox: SlackSandbox) -> list[str]:
    return [c["name"] for c in sandbox.snapshot()["channels"] if str(c["name"]).startswith("inc-")]


def timeline(app: Firebreak) -> list[tuple[str, dict[str, object]]]:
    with app.db.session_scope() as session:
        events = service.events(session, service.get(session, 1))
        return [(e.kind, dict(e.data)) for e in events]


def lose_the_create_answer(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> str:
    """Declare while Slack answers conversations.create after the client gave up on it."""
    firebreak.client.timeout = 1
    sandbox.inject_fault("conversations.create", delay=1.5)
    slack.run(f"declare {TITLE}", channel=general)
    assert "create channel failed" in last_response_text(sandbox)
    channel = wait_for(lambda: sandbox.channel_by_name(NAME))  # Slack did create it
    firebreak.client.timeout = 10
    return str(channel.id)


def assert_set_up_once_in(channel_id: str, sandbox: SlackSandbox, firebreak: Firebreak) -> None:
    assert incident_channels(sandbox) == [NAME], "no ghost channel, no -2"
    with firebreak.db.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Incident)) == 1
        assert service.get(session, 1).channel_id == channel_id
    events = timeline(firebreak)
    created = [data for kind, data in events if kind == "channel_created"]
    assert created == [{"channel": channel_id, "name": NAME, "adopted": True}]
    assert events[-1][0] == "announced"
    assert sandbox.pins(channel_id), "the summary is pinned"


def test_lost_create_answer_adopts_the_channel_with_the_manifest_scopes(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str
) -> None:
    assert sandbox.scopes == tuple(BOT_SCOPES)
    channel_id = lose_the_create_answer(slack, sandbox, firebreak, general)

    slack.run(f"declare {TITLE}", channel=general)

    assert "INC-1 was already declared" in last_response_text(sandbox)
    assert_set_up_once_in(channel_id, sandbox, firebreak)
    lookups = sandbox.calls_to("conversations.list")
    assert lookups and all(call.response["ok"] for call in lookups)
    assert {call.params["types"] for call in lookups} == {"public_channel"}
    assert not [c.method for c in sandbox.calls if c.response.get("error") == "missing_scope"]


@pytest.mark.parametrize("cause", ["slack error", "missing scope"])
def test_failed_channel_lookup_is_recorded_told_and_finished_by_rerunning(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, general: str, cause: str
) -> None:
    channel_id = lose_the_create_answer(slack, sandbox, firebreak, general)
    if cause == "slack error":
        sandbox.inject_fault("conversations.list", error="fatal_error")
        reason = "fatal_error"
    else:
        sandbox.scopes = [scope for scope in BOT_SCOPES if scope != "channels:read"]
        reason = "missing_scope"

    slack.run(f"declare {TITLE}", channel=general)

    told = last_response_text(sandbox)
    assert told.startswith(":warning: INC-1 is recorded, but setting it up in Slack stopped")
    assert f"find channel failed ({reason})" in told and "again" in told
    kind, data = timeline(firebreak)[-1]
    assert (kind, data) == ("slack_error", {"step": "find channel", "error": reason})
    assert incident_channels(sandbox) == [NAME]
    if cause == "missing scope":
        answer = sandbox.calls_to("conversations.list")[-1].response
        assert answer == {
            "ok": False,
            "error": "missing_scope",
            "needed": "channels:read",
            "provided": ",".join(sandbox.scopes),
        }

    sandbox.scopes = BOT_SCOPES
    slack.run(f"declare {TITLE}", channel=general)

    assert "INC-1 was already declared" in last_response_text(sandbox)
    assert_set_up_once_in(channel_id, sandbox, firebreak)
