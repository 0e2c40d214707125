"""The sandbox Slack, exercised over real HTTP with slack_sdk's WebClient."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.manifest import BOT_SCOPES
from bot.sandbox import SlackError, SlackSandbox
from bot.sandbox.scopes import ALL_SCOPES

TOKEN = "xoxb-test-secret-token"
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackSandbox]:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    with SlackSandbox(scopes=ALL_SCOPES) as running:  # every method here, whatever Firebreak uses
        running.add_user("UALICE", "alice", email="alice@example.com", tz="Europe/Berlin")
        running.add_user("UBOB", "bob", email="bob@example.com")
        yield running


@pytest.fixture
def client(sandbox: SlackSandbox) -> WebClient:
    return WebClient(token=TOKEN, base_url=sandbox.api_url, retry_handlers=[])


def slack_error(call: Any) -> str:
    with pytest.raises(SlackApiError) as caught:
        call()
    error: str = caught.value.response["error"]
    return error


def http(
    sandbox: SlackSandbox, verb: str, path: str, body: Any = None
) -> tuple[int, Any, dict[str, str]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        sandbox.base_url + path,
        data=data,
        method=verb,
        headers={"Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), dict(err.headers)


# auth ---------------------------------------------------------------------------------
def test_auth_test_and_bad_tokens(sandbox: SlackSandbox, client: WebClient) -> None:
    me = client.auth_test()
    assert me["user_id"] == "UFIREBREAK" and me["team_id"] == "T0SANDBOX"
    assert me["bot_id"]
    assert slack_error(WebClient(token="xoxp-user", base_url=sandbox.api_url).auth_test) == (
        "invalid_auth"
    )
    status, body, headers = http(sandbox, "POST", "/api/auth.test", {})
    assert (status, body["error"]) == (200, "not_authed")
    assert headers["Content-Type"] == "application/json; charset=utf-8"


def test_unknown_method_answers_unknown_method(client: WebClient) -> None:
    assert slack_error(lambda: client.api_call("no.suchMethod")) == "unknown_method"


def test_configured_bot_token_is_the_only_valid_one(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    with SlackSandbox(bot_token="xoxb-right") as sandbox:
        assert WebClient(token="xoxb-right", base_url=sandbox.api_url).auth_test()["ok"]
        wrong = WebClient(token="xoxb-wrong", base_url=sandbox.api_url)
        assert slack_error(wrong.auth_test) == "invalid_auth"


# scopes -------------------------------------------------------------------------------
def test_the_token_holds_the_manifest_scopes_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    with SlackSandbox() as sandbox:
        assert sandbox.scopes == tuple(BOT_SCOPES)
        client = WebClient(token=TOKEN, base_url=sandbox.api_url, retry_handlers=[])
        with pytest.raises(SlackApiError) as caught:
            client.users_info(user="UFIREBREAK")
    assert caught.value.response.status_code == 200
    assert caught.value.response.data == {
        "ok": False,
        "error": "missing_scope",
        "needed": "users:read",
        "provided": ",".join(BOT_SCOPES),
    }


def test_missing_scope_is_answered_before_anything_changes(
    sandbox: SlackSandbox, client: WebClient
) -> None:
    sandbox.scopes = [scope for scope in ALL_SCOPES if scope != "channels:manage"]
    assert slack_error(lambda: client.conversations_create(name="inc-1")) == "missing_scope"
    assert slack_error(lambda: client.conversations_create(name="")) == "missing_scope"
    assert sandbox.snapshot()["channels"] == []
    assert sandbox.calls[-1].response["needed"] == "channels:manage"
    sandbox.scopes = ALL_SCOPES
    assert client.conversations_create(name="inc-1")["ok"]


@pytest.mark.parametrize(
    ("scope", "types", "needed"),
    [
        ("channels:read", "public_channel", "channels:read"),
        ("groups:read", "public_channel,private_channel", "groups:read"),
        ("channels:read", None, "channels:read"),  # Slack's default: public channels
        ("im:read", "im", "im:read"),
    ],
)
def test_conversations_list_needs_the_scope_of_each_type(
    sandbox: SlackSandbox, client: WebClient, scope: str, types: str | None, needed: str
) -> None:
    sandbox.scopes = [s for s in ALL_SCOPES if s != scope]
    assert slack_error(lambda: client.conversations_list(types=types)) == "missing_scope"
    assert sandbox.calls[-1].response["needed"] == needed
    sandbox.scopes = [s for s in ALL_SCOPES if s.endswith(":read") and s != "groups:read"]
    assert client.conversations_list(types="public_channel,im")["ok"]


def test_conversation_methods_need_the_scope_of_the_channel_type(
    sandbox: SlackSandbox, client: WebClient
) -> None:
    public = sandbox.add_channel("public")
    private = sandbox.add_channel("private", is_private=True)
    sandbox.scopes = ["channels:manage", "channels:history"]
    assert client.conversations_setTopic(channel=public, topic="t")["ok"]
    assert client.conversations_history(channel=public)["ok"]
    assert client.conversations_create(name="inc-2")["ok"]
    for call, needed in [
        (lambda: client.conversations_setTopic(channel=private, topic="t"), "groups:write"),
        (lambda: client.conversations_invite(channel=private, users="UALICE"), "groups:write"),
        (lambda: client.conversations_history(channel=private), "groups:history"),
        (lambda: client.conversations_create(name="inc-3", is_private=True), "groups:write"),
        (lambda: client.chat_postMessage(channel=public, text="x"), "chat:write"),
        (lambda: client.pins_add(channel=public, timestamp="1.2"), "pins:write"),
    ]:
        assert slack_error(call) == "missing_scope"
        assert sandbox.calls[-1].response["needed"] == needed


def test_views_and_auth_need_no_scope(sandbox: SlackSandbox, client: WebClient) -> None:
    sandbox.scopes = []
    assert client.auth_test()["ok"]
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Note"}, "blocks": []}
    assert client.views_open(trigger_id="1.2.3", view=view)["ok"]
    assert sandbox.calls[-1].response["ok"]


def test_posting_into_a_channel_not_joined_needs_chat_write_public(
    sandbox: SlackSandbox, client: WebClient
) -> None:
    public = sandbox.add_channel("announcements", creator="UALICE")
    sandbox.scopes = ["chat:write"]
    assert slack_error(lambda: client.chat_postMessage(channel=public, text="x")) == (
        "not_in_channel"
    )
    assert client.chat_postMessage(channel="UALICE", text="a DM needs chat:write only")["ok"]
    sandbox.scopes = ["chat:write", "chat:write.public"]
    assert client.chat_postMessage(channel=public, text="x")["ok"]


# conversations ------------------------------------------------------------------------
def test_create_channel_shape_and_membership(sandbox: SlackSandbox, client: WebClient) -> None:
    channel = client.conversations_create(name="inc-42-db-down", is_private=True)["channel"]
    assert channel["id"].startswith("C") and channel["name"] == "inc-42-db-down"
    assert channel["is_private"] is True and channel["creator"] == "UFIREBREAK"
    assert channel["topic"] == {"value": "", "creator": "", "last_set": 0}
    stored = sandbox.channel(channel["id"])
    assert stored.members == ["UFIREBREAK"] and stored.is_private
    assert sandbox.channel_by_name("inc-42-db-down") == stored


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", "invalid_name_required"),
        ("x" * 81, "invalid_name_maxlength"),
        ("inc 42", "invalid_name_specials"),
        ("inc.42", "invalid_name_specials"),
        ("Inc-42", "invalid_name_specials"),
    ],
)
def test_create_channel_name_rules(
    sandbox: SlackSandbox, client: WebClient, name: str, error: str
) -> None:
    assert slack_error(lambda: client.conversations_create(name=name)) == error
    assert sandbox.snapshot()["channels"] == []


def test_name_taken_includes_archived_channels(sandbox: SlackSandbox, client: WebClient) -> None:
    assert client.conversations_create(name="x" * 80)["ok"]
    channel_id = client.conversations_create(name="inc-1")["channel"]["id"]
    assert slack_error(lambda: client.conversations_create(name="inc-1")) == "name_taken"
    client.conversations_archive(channel=channel_id)
    assert sandbox.channel(channel_id).is_archived
    assert slack_error(lambda: client.conversations_archive(channel=channel_id)) == (
        "already_archived"
    )
    assert slack_error(lambda: client.conversations_create(name="inc-1")) == "name_taken"
    with pytest.raises(SlackError, match="name_taken"):
        sandbox.add_channel("inc-1")


def test_invite_rules(sandbox: SlackSandbox, client: WebClient) -> None:
    channel_id = client.conversations_create(name="inc-2")["channel"]["id"]
    invited = client.conversations_invite(channel=channel_id, users=["UALICE"])
    assert invited["channel"]["id"] == channel_id
    assert slack_error(lambda: client.conversations_invite(channel=channel_id, users="UALICE")) == (
        "already_in_channel"
    )
    client.conversations_invite(channel=channel_id, users=["UALICE", "UBOB"])
    assert sandbox.channel(channel_id).members == ["UFIREBREAK", "UALICE", "UBOB"]
    assert slack_error(
        lambda: client.conversations_invite(channel=channel_id, users="UFIREBREAK")
    ) == ("cant_invite_self")
    assert slack_error(
        lambda: client.conversations_invite(channel=channel_id, users="UNOBODY")
    ) == ("user_not_found")
    assert slack_error(lambda: client.conversations_invite(channel="C999", users="UBOB")) == (
        "channel_not_found"
    )
    foreign = sandbox.add_channel("alice-only", creator="UALICE")
    assert slack_error(lambda: client.conversations_invite(channel=foreign, users="UBOB")) == (
        "not_in_channel"
    )


def test_topic_and_purpose(sandbox: SlackSandbox, client: WebClient) -> None:
    channel_id = client.conversations_create(name="inc-3")["channel"]["id"]
    answer = client.conversations_setTopic(channel=channel_id, topic="SEV1 | DB down")
    assert answer["channel"]["topic"]["value"] == "SEV1 | DB down"
    client.conversations_setPurpose(channel=channel_id, purpose="Fix the DB")
    assert slack_error(
        lambda: client.conversations_setTopic(channel=channel_id, topic="t" * 251)
    ) == ("too_long")
    stored = sandbox.channel(channel_id)
    assert (stored.topic, stored.purpose) == ("SEV1 | DB down", "Fix the DB")
    assert sandbox.messages(channel_id) == []


def test_info_members_and_list_pagination(sandbox: SlackSandbox, client: WebClient) -> None:
    ids = [client.conversations_create(name=f"inc-{n}")["channel"]["id"] for n in range(5)]
    sandbox.add_channel("secret", is_private=True, creator="UALICE")
    assert client.conversations_info(channel=ids[0])["channel"]["name"] == "inc-0"
    assert client.conversations_members(channel=ids[0])["members"] == ["UFIREBREAK"]
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        page = client.conversations_list(limit=2, cursor=cursor or None)
        seen += [c["id"] for c in page["channels"]]
        pages += 1
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break
    assert seen == ids and pages == 3
    client.conversations_archive(channel=ids[1])
    active = client.conversations_list(exclude_archived=True, types="public_channel")
    assert [c["id"] for c in active["channels"]] == [ids[0], *ids[2:]]
    assert slack_error(lambda: client.conversations_list(cursor="bogus!")) == "invalid_cursor"


# chat ---------------------------------------------------------------------------------
def test_post_update_and_pin(sandbox: SlackSandbox, client: WebClient) -> None:
    channel_id = client.conversations_create(name="inc-4")["channel"]["id"]
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Status*: open"}}]
    posted = client.chat_postMessage(channel=channel_id, text="status", blocks=blocks)
    assert posted["channel"] == channel_id and posted["message"]["text"] == "status"
    second = client.chat_postMessage(channel=channel_id, text="reply", thread_ts=posted["ts"])
    assert float(second["ts"]) > float(posted["ts"])
    assert len(posted["ts"].split(".")[1]) == 6
    client.chat_update(channel=channel_id, ts=posted["ts"], text="status: resolved")
    message = sandbox.message(channel_id, posted["ts"])
    assert message.edited and message.text == "status: resolved" and message.blocks == blocks
    assert sandbox.messages(channel_id)[1].thread_ts == posted["ts"]
    client.pins_add(channel=channel_id, timestamp=posted["ts"])
    assert sandbox.pins(channel_id) == [posted["ts"]]
    assert slack_error(lambda: client.pins_add(channel=channel_id, timestamp=posted["ts"])) == (
        "already_pinned"
    )
    assert slack_error(lambda: client.pins_add(channel=channel_id, timestamp="1.000001")) == (
        "message_not_found"
    )
    assert client.pins_list(channel=channel_id)["items"][0]["message"]["ts"] == posted["ts"]
    assert slack_error(lambda: client.chat_update(channel=channel_id, ts="1.2", text="x")) == (
        "message_not_found"
    )


@pytest.mark.filterwarnings("ignore:The top-level `text` argument:UserWarning")
def test_post_message_errors(sandbox: SlackSandbox, client: WebClient) -> None:
    channel_id = client.conversations_create(name="inc-5")["channel"]["id"]
    assert slack_error(lambda: client.chat_postMessage(channel="C404", text="x")) == (
        "channel_not_found"
    )
    assert slack_error(lambda: client.chat_postMessage(channel=channel_id, text="")) == "no_text"
    assert slack_error(lambda: client.chat_postMessage(channel=channel_id, text="x" * 40_001)) == (
        "msg_too_long"
    )
    private = sandbox.add_channel("private", is_private=True, creator="UALICE")
    assert slack_error(lambda: client.chat_postMessage(channel=private, text="x")) == (
        "not_in_channel"
    )
    public = sandbox.add_channel("public", creator="UALICE")
    assert client.chat_postMessage(channel=public, text="chat:write.public")["ok"]
    client.conversations_archive(channel=channel_id)
    assert slack_error(lambda: client.chat_postMessage(channel=channel_id, text="x")) == (
        "is_archived"
    )


def test_post_message_to_user_opens_dm(sandbox: SlackSandbox, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="UALICE", text="you are on call")
    assert posted["channel"].startswith("D")
    dm = sandbox.channel(posted["channel"])
    assert dm.is_im and dm.members == ["UFIREBREAK", "UALICE"]
    again = client.chat_postMessage(channel="UALICE", text="still on call")
    assert again["channel"] == posted["channel"]


def test_concurrent_posts_get_unique_ordered_ts(sandbox: SlackSandbox, client: WebClient) -> None:
    channel_id = client.conversations_create(name="inc-busy")["channel"]["id"]

    def post(n: int) -> str:
        ts: str = client.chat_postMessage(channel=channel_id, text=str(n))["ts"]
        return ts

    with ThreadPoolExecutor(max_workers=8) as pool:
        stamps = list(pool.map(post, range(24)))
    assert len(set(stamps)) == 24
    stored = [m.ts for m in sandbox.messages(channel_id)]
    assert sorted(stamps, key=float) == stored


def test_history_replies_and_join(sandbox: SlackSandbox, client: WebClient) -> None:
    channel_id = sandbox.add_channel("general", creator="UALICE")
    assert client.conversations_join(channel=channel_id)["channel"]["is_member"] is True
    parent = client.chat_postMessage(channel=channel_id, text="parent")["ts"]
    client.chat_postMessage(channel=channel_id, text="in thread", thread_ts=parent)
    client.chat_postMessage(channel=channel_id, text="latest")
    history = client.conversations_history(channel=channel_id)["messages"]
    assert [m["text"] for m in history] == ["latest", "parent"]
    replies = client.conversations_replies(channel=channel_id, ts=parent)["messages"]
    assert [m["text"] for m in replies] == ["parent", "in thread"]


def test_cant_update_a_human_message(sandbox: SlackSandbox, client: WebClient) -> None:
    channel_id = sandbox.add_channel("inc-6", members=["UALICE"])
    ts = sandbox.post_user_message(channel_id, "UALICE", "the DB is down")
    assert sandbox.message(channel_id, ts).user == "UALICE"
    assert slack_error(lambda: client.chat_update(channel=channel_id, ts=ts, text="x")) == (
        "cant_update_message"
    )


def test_ephemeral_to_member_and_non_member(sandbox: SlackSandbox, client: WebClient) -> None:
    channel_id = sandbox.add_channel("inc-7", members=["UALICE"])
    answer = client.chat_postEphemeral(channel=channel_id, user="UALICE", text="only you")
    assert answer["message_ts"]
    assert slack_error(
        lambda: client.chat_postEphemeral(channel=channel_id, user="UBOB", text="x")
    ) == ("user_not_in_channel")
    assert [(e.user, e.text) for e in sandbox.ephemerals(channel_id)] == [("UALICE", "only you")]
    assert sandbox.ephemerals(user="UBOB") == []
    assert sandbox.messages(channel_id) == []


@pytest.mark.filterwarnings("ignore:The top-level `text` argument:UserWarning")
def test_block_limits(sandbox: SlackSandbox, client: WebClient) -> None:
    channel_id = client.conversations_create(name="inc-8")["channel"]["id"]
    divider = {"type": "divider"}
    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(channel=channel_id, text="x", blocks=[divider] * 51)
    assert caught.value.response["error"] == "invalid_blocks"
    assert caught.value.response["response_metadata"]["messages"]
    assert client.chat_postMessage(channel=channel_id, text="x", blocks=[divider] * 50)["ok"]
    long_section = {"type": "section", "text": {"type": "mrkdwn", "text": "a" * 3001}}
    assert slack_error(
        lambda: client.chat_postMessage(channel=channel_id, text="x", blocks=[long_section])
    ) == ("invalid_blocks")
    header = {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}
    assert slack_error(
        lambda: client.chat_postMessage(channel=channel_id, text="x", blocks=[header])
    ) == ("invalid_blocks")
    assert slack_error(
        lambda: client.chat_postMessage(channel=channel_id, text="x", blocks=[{"text": "no type"}])
    ) == ("invalid_blocks")
    assert slack_error(lambda: client.chat_postMessage(channel=channel_id, blocks="nope")) == (
        "invalid_blocks_format"
    )
    assert len(sandbox.messages(channel_id)) == 1


def test_bookmarks_and_reactions(sandbox: SlackSandbox, client: WebClient) -> None:
    channel_id = client.conversations_create(name="inc-9")["channel"]["id"]
    bookmark = client.bookmarks_add(
        channel_id=channel_id, title="Runbook", type="link", link="https://runbooks/db"
    )["bookmark"]
    assert bookmark["title"] == "Runbook" and bookmark["channel_id"] == channel_id
    assert sandbox.bookmarks(channel_id)[0]["link"] == "https://runbooks/db"
    assert slack_error(
        lambda: client.bookmarks_add(channel_id=channel_id, title="x", type="link", link="nope")
    ) == ("invalid_link")
    ts = client.chat_postMessage(channel=channel_id, text="hi")["ts"]
    client.reactions_add(channel=channel_id, name="eyes", timestamp=ts)
    assert slack_error(
        lambda: client.reactions_add(channel=channel_id, name="eyes", timestamp=ts)
    ) == ("already_reacted")
    assert sandbox.message(channel_id, ts).reactions == {"eyes": ["UFIREBREAK"]}


# users --------------------------------------------------------------------------------
def test_users_info_and_lookup(client: WebClient) -> None:
    alice = client.users_info(user="UALICE")["user"]
    assert alice["name"] == "alice" and alice["tz"] == "Europe/Berlin"
    assert alice["profile"]["email"] == "alice@example.com" and alice["is_bot"] is False
    assert client.users_lookupByEmail(email="BOB@example.com")["user"]["id"] == "UBOB"
    assert slack_error(lambda: client.users_info(user="UNOBODY")) == "user_not_found"
    assert slack_error(lambda: client.users_lookupByEmail(email="x@y.z")) == "users_not_found"


# views --------------------------------------------------------------------------------
def modal(title: str = "Declare incident", blocks: int = 1) -> dict[str, Any]:
    section = {"type": "section", "text": {"type": "plain_text", "text": "Hello"}}
    return {
        "type": "modal",
        "callback_id": "declare",
        "title": {"type": "plain_text", "text": title},
        "blocks": [section] * blocks,
    }


def test_views_open_update_and_hash_conflict(sandbox: SlackSandbox, client: WebClient) -> None:
    opened = client.views_open(trigger_id="123.456.abc", view=modal())["view"]
    assert opened["id"].startswith("V") and opened["state"] == {"values": {}}
    assert opened["callback_id"] == "declare"
    updated = client.views_update(view_id=opened["id"], view=modal("Updated"), hash=opened["hash"])
    assert updated["view"]["hash"] != opened["hash"]
    assert updated["view"]["title"]["text"] == "Updated"
    assert slack_error(
        lambda: client.views_update(view_id=opened["id"], view=modal(), hash=opened["hash"])
    ) == ("hash_conflict")
    assert slack_error(lambda: client.views_update(view_id="V404", view=modal())) == "not_found"
    (stored,) = sandbox.views()
    assert stored.trigger_id == "123.456.abc" and stored.view["title"]["text"] == "Updated"


def test_views_open_validation(client: WebClient) -> None:
    assert slack_error(lambda: client.views_open(trigger_id="", view=modal())) == (
        "invalid_arguments"
    )
    no_title = {"type": "modal", "blocks": []}
    assert slack_error(lambda: client.views_open(trigger_id="t", view=no_title)) == (
        "invalid_arguments"
    )
    assert slack_error(lambda: client.views_open(trigger_id="t", view=modal(blocks=101))) == (
        "invalid_arguments"
    )
    assert slack_error(lambda: client.views_open(trigger_id="t", view=modal("x" * 25))) == (
        "invalid_arguments"
    )
    assert client.views_open(trigger_id="t", view=modal(blocks=100))["ok"]


# response_url -------------------------------------------------------------------------
def test_response_url_in_channel_and_ephemeral(sandbox: SlackSandbox) -> None:
    channel_id = sandbox.add_channel("inc-10", members=["UALICE"])
    url = sandbox.new_response_url(channel_id, "UALICE")
    assert url.startswith(sandbox.base_url + "/_sandbox/response/")
    path = url.removeprefix(sandbox.base_url)
    status, body, _ = http(
        sandbox, "POST", path, {"text": "Declared", "response_type": "in_channel"}
    )
    assert (status, body) == (200, {"ok": True})
    assert [m.text for m in sandbox.messages(channel_id)] == ["Declared"]
    assert http(sandbox, "POST", path, {"text": "just you"})[0] == 200
    assert [e.text for e in sandbox.ephemerals(channel_id, "UALICE")] == ["just you"]
    assert [r.payload["text"] for r in sandbox.responses()] == ["Declared", "just you"]
    assert http(sandbox, "POST", "/_sandbox/response/R404", {"text": "x"})[0] == 404


def test_response_url_replace_original(sandbox: SlackSandbox, client: WebClient) -> None:
    channel_id = client.conversations_create(name="inc-11")["channel"]["id"]
    ts = client.chat_postMessage(channel=channel_id, text="Ack?")["ts"]
    url = sandbox.new_response_url(channel_id, "UALICE", message_ts=ts)
    payload = {"text": "Acked by alice", "replace_original": True}
    assert http(sandbox, "POST", url.removeprefix(sandbox.base_url), payload)[0] == 200
    assert sandbox.message(channel_id, ts).text == "Acked by alice"


# faults -------------------------------------------------------------------------------
def test_fault_error_changes_nothing(sandbox: SlackSandbox, client: WebClient) -> None:
    sandbox.inject_fault("conversations.create", error="name_taken")
    assert slack_error(lambda: client.conversations_create(name="inc-12")) == "name_taken"
    assert sandbox.channel_by_name("inc-12") is None
    assert client.conversations_create(name="inc-12")["ok"]
    assert [c.response["ok"] for c in sandbox.calls_to("conversations.create")] == [False, True]


def test_fault_status_500(sandbox: SlackSandbox, client: WebClient) -> None:
    sandbox.inject_fault("*", status=500, times=2)
    with pytest.raises(SlackApiError) as caught:
        client.auth_test()
    assert caught.value.response.status_code == 500
    with pytest.raises(SlackApiError):
        client.users_info(user="UALICE")
    assert client.auth_test()["ok"]
    assert [c.status for c in sandbox.calls] == [500, 500, 200]


def test_fault_retry_after(sandbox: SlackSandbox, client: WebClient) -> None:
    sandbox.inject_fault("chat.postMessage", retry_after=7)
    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(channel="UALICE", text="x")
    response = caught.value.response
    assert response.status_code == 429 and response["error"] == "ratelimited"
    assert response.headers["Retry-After"] == "7"
    assert client.chat_postMessage(channel="UALICE", text="x")["ok"]


def test_fault_delay_then_proceeds(sandbox: SlackSandbox, client: WebClient) -> None:
    sandbox.inject_fault("auth.test", delay=0.3)
    started = time.monotonic()
    assert client.auth_test()["ok"]
    assert time.monotonic() - started >= 0.3
    sandbox.inject_fault("auth.test", delay=1.0)
    impatient = WebClient(
        token=TOKEN,
        base_url=sandbox.api_url,
        timeout=0.2,  # type: ignore[arg-type]  # typed int, passed on to urllib as is
        retry_handlers=[],
    )
    with pytest.raises(TimeoutError):
        impatient.auth_test()


def test_clear_faults(sandbox: SlackSandbox, client: WebClient) -> None:
    sandbox.inject_fault("auth.test", error="fatal_error", times=5)
    sandbox.clear_faults()
    assert client.auth_test()["ok"]


# call log and control endpoints -------------------------------------------------------
def test_token_never_in_call_log(sandbox: SlackSandbox, client: WebClient) -> None:
    client.auth_test()
    client.api_call("auth.test", params={"token": TOKEN})
    http(sandbox, "POST", f"/api/auth.test?token={TOKEN}")
    assert len(sandbox.calls) == 3
    assert all("token" not in call.params for call in sandbox.calls)
    assert TOKEN not in json.dumps(http(sandbox, "GET", "/_sandbox/calls")[1])
    assert TOKEN not in json.dumps(sandbox.snapshot())


def test_form_encoded_json_values_are_parsed(sandbox: SlackSandbox, client: WebClient) -> None:
    channel_id = client.conversations_create(name="inc-13")["channel"]["id"]
    blocks = [{"type": "divider"}]
    client.api_call(
        "chat.postMessage",
        data={"channel": channel_id, "text": "x", "blocks": json.dumps(blocks)},
    )
    assert sandbox.messages(channel_id)[0].blocks == blocks
    assert sandbox.calls_to("chat.postMessage")[0].params["blocks"] == blocks


def test_control_endpoints(sandbox: SlackSandbox, client: WebClient) -> None:
    status, body, _ = http(sandbox, "POST", "/_sandbox/users", {"id": "UCAROL", "name": "carol"})
    assert status == 200 and body["ok"]
    assert client.users_info(user="UCAROL")["user"]["name"] == "carol"
    fault = {"method": "conversations.create", "error": "restricted_action", "times": 1}
    assert http(sandbox, "POST", "/_sandbox/faults", fault)[0] == 200
    assert slack_error(lambda: client.conversations_create(name="inc-14")) == "restricted_action"
    http(sandbox, "POST", "/_sandbox/faults", {"method": "*", "error": "fatal_error", "times": 9})
    assert http(sandbox, "DELETE", "/_sandbox/faults")[0] == 200
    channel_id = client.conversations_create(name="inc-14")["channel"]["id"]
    client.chat_postMessage(channel=channel_id, text="hello")
    status, state, _ = http(sandbox, "GET", "/_sandbox/state")
    assert status == 200
    (channel,) = state["channels"]
    assert channel["name"] == "inc-14" and channel["messages"][0]["text"] == "hello"
    assert {u["id"] for u in state["users"]} >= {"UALICE", "UCAROL", "UFIREBREAK"}
    status, calls, _ = http(sandbox, "GET", "/_sandbox/calls")
    assert [c["method"] for c in calls][-2:] == ["conversations.create", "chat.postMessage"]
    assert http(sandbox, "POST", "/_sandbox/faults", {"error": "x"})[0] == 400
    assert http(sandbox, "GET", "/_sandbox/nothing")[0] == 404


def test_stop_is_idempotent() -> None:
    sandbox = SlackSandbox().start()
    api_url = sandbox.api_url
    assert api_url.endswith("/api/")
    sandbox.stop()
    sandbox.stop()
    with pytest.raises(RuntimeError):
        _ = sandbox.base_url
