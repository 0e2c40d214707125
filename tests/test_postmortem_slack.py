"""`/incident postmortem` and the resolve message's button, through signed requests into the
real app and the sandbox Slack over HTTP: the draft is rendered, saved whole, uploaded with
files.getUploadURLExternal + the upload URL + files.completeUploadExternal, and recorded;
an upload that fails is retried by the outbox and the requester is told the truth."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.app import Firebreak
from bot.config import FileConfig
from bot.config import SlackSection as SlackSection
from bot.incidents import service
from bot.postmortem.config import PostmortemSection
from bot.sandbox import SlackSandbox
from tests.conftest import PEOPLE, TOKEN, Slack, last_response_text


@pytest.fixture
def drafts(tmp_path: Path) -> Path:
    return tmp_path / "drafts"


@pytest.fixture
def file_config(announce_channel: str, drafts: Path) -> FileConfig:
    return FileConfig(
        slack=SlackSection(announce_channel=announce_channel),
        people=PEOPLE,
        postmortem=PostmortemSection(directory=drafts, timezone="Europe/Berlin"),
    )


@pytest.fixture
def incident_channel(slack: Slack, sandbox: SlackSandbox, general: str) -> str:
    slack.run("declare sev2 Checkout latency above 2s", channel=general)
    channel = sandbox.channel_by_name("inc-1-checkout-latency-above-2s")
    assert channel is not None
    return channel.id


def kinds(app: Firebreak) -> list[tuple[str, dict[str, Any]]]:
    with app.db.session_scope() as session:
        return [(e.kind, e.data) for e in service.events(session, service.get(session, 1))]


def test_postmortem_uploads_saves_and_records(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, incident_channel: str, drafts: Path
) -> None:
    slack.run("note Rolled back deploy 42", channel=incident_channel)
    slack.run("action Alert on queue depth <@U0BOB|bob> due 2026-12-01", channel=incident_channel)
    slack.run("postmortem", channel=incident_channel, user="U0CAROL")

    methods = [c.method for c in sandbox.calls]
    start = methods.index("files.getUploadURLExternal")
    assert methods[start : start + 3] == [
        "files.getUploadURLExternal",
        "upload",
        "files.completeUploadExternal",
    ]
    saved = drafts / "INC-1.md"
    text = saved.read_text(encoding="utf-8")
    assert text.startswith("# INC-1")
    assert "- [ ] Alert on queue depth (owner: bob), due 2026-12-01" in text
    assert "Rolled back deploy 42" in text
    assert not [p for p in drafts.iterdir() if p.name.startswith(".")], "no temporary left"
    [file] = sandbox.files(incident_channel)
    assert file.name == "INC-1.md" and file.content == text.encode("utf-8")
    shared = sandbox.messages(incident_channel)[-1]
    assert shared.files == [file.id] and "Postmortem draft of INC-1" in shared.text
    assert kinds(firebreak)[-1] == (
        "postmortem_drafted",
        {"template": "default", "path": str(saved), "file": file.id},
    )
    told = last_response_text(sandbox)
    assert "is uploaded here and saved as" in told and "INC-1.md" in told


def test_template_by_name_and_unknown_template(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, incident_channel: str, drafts: Path
) -> None:
    slack.run("postmortem template:nope", channel=incident_channel)
    assert "nope" in last_response_text(sandbox) and "default, executive" in last_response_text(
        sandbox
    )
    assert not sandbox.files() and not drafts.exists()
    slack.run("postmortem template:executive", channel=incident_channel)
    assert kinds(firebreak)[-1][1]["template"] == "executive"
    assert sandbox.files(incident_channel)[0].content is not None


def test_a_failed_upload_is_retried_and_the_user_told(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, incident_channel: str, drafts: Path
) -> None:
    sandbox.inject_fault("upload", status=500)
    slack.run("postmortem", channel=incident_channel)

    told = last_response_text(sandbox)
    assert "did not go through yet" in told and "retried by itself" in told, told
    assert (drafts / "INC-1.md").exists(), "saved even though the upload failed"
    assert "postmortem_drafted" not in [k for k, _ in kinds(firebreak)]
    assert not sandbox.files(incident_channel)

    later = firebreak.clock() + timedelta(minutes=1)
    firebreak.clock.use(lambda: later)
    firebreak.jobs.reconcile()  # the leader's pass sends what is due
    [file] = sandbox.files(incident_channel)
    drafted = [d for k, d in kinds(firebreak) if k == "postmortem_drafted"]
    assert drafted == [{"template": "default", "path": str(drafts / "INC-1.md"), "file": file.id}]
    firebreak.jobs.reconcile()
    assert len(sandbox.files(incident_channel)) == 1, "uploaded once"


def test_an_upload_slack_refuses_is_reported_and_recorded(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, incident_channel: str
) -> None:
    sandbox.inject_fault("files.completeUploadExternal", error="not_in_channel")
    slack.run("postmortem", channel=incident_channel)
    told = last_response_text(sandbox)
    assert "Slack refused the upload: not_in_channel" in told, told
    assert kinds(firebreak)[-1] == (
        "slack_error",
        {"step": "upload the postmortem draft", "error": "not_in_channel"},
    )


def test_the_resolve_message_has_a_draft_button_that_works(
    slack: Slack, sandbox: SlackSandbox, firebreak: Firebreak, incident_channel: str
) -> None:
    slack.run("resolve Rolled back", channel=incident_channel)
    message = sandbox.messages(incident_channel)[-1]
    assert message.text.endswith("resolved the incident: Rolled back")
    assert message.blocks is not None
    button = message.blocks[-1]["elements"][0]
    assert button["action_id"] == "postmortem_draft"
    slack.block_action(
        "postmortem_draft",
        user="U0BOB",
        channel=incident_channel,
        message_ts=message.ts,
        value=button["value"],
    )
    slack.settle()
    assert len(sandbox.files(incident_channel)) == 1
    assert kinds(firebreak)[-1][0] == "postmortem_drafted"


def test_postmortem_outside_an_incident_channel_is_refused(
    slack: Slack, sandbox: SlackSandbox, general: str
) -> None:
    slack.run("postmortem", channel=general)
    assert "only in an incident channel" in last_response_text(sandbox)
    assert not sandbox.files()


def test_sandbox_upload_errors_are_slacks(sandbox: SlackSandbox, general: str) -> None:
    client = WebClient(token=TOKEN, base_url=sandbox.api_url)
    with pytest.raises(SlackApiError) as error:
        client.files_getUploadURLExternal(filename="x.md", length=0)
    assert error.value.response["error"] == "invalid_arguments"
    with pytest.raises(SlackApiError) as error:
        client.files_completeUploadExternal(files=[{"id": "F404"}], channel_id=general)
    assert error.value.response["error"] == "file_not_found"
    private = sandbox.add_channel("secret", is_private=True, creator="U0ALICE")
    with pytest.raises(SlackApiError) as error:
        client.files_upload_v2(channel=private, content="x", filename="x.md")
    assert error.value.response["error"] == "not_in_channel"
    sandbox.upload_url_ttl = 0  # an expired upload URL: the upload service answers 404
    with pytest.raises(OSError, match="404"):
        client.files_upload_v2(channel=general, content="x", filename="x.md")
