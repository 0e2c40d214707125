"""The web view through the real WSGI app: sign-in rules, sessions, headers, escaping, filters.

Incidents and notes come in as signed Slack requests (`tests.conftest.Slack`); pages are
read with werkzeug's client over the same WSGI app `firebreak serve` runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from werkzeug.test import Client, TestResponse

from bot.app import Firebreak
from bot.sentences import IMPERSONAL
from bot.timeline import KINDS
from bot.webview.auth import COOKIE, WebAccess
from bot.webview.render import Names, event_text, text_style
from tests.conftest import PEOPLE, SECRET, Slack, last_response_text
from tests.test_cli import TOKENS, invoke
from tests.test_timeline_render import NOT_SHOWN
from tests.test_timeline_render import event as sample_event

BASE = "http://firebreak.test"
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
LINK = re.compile(r"(https?://\S+/signin\?token=[A-Za-z0-9_.%-]+)")


def slack_escaped(text: str) -> str:
    """Text as Slack delivers it in a slash command: &, < and > escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@pytest.fixture
def web(firebreak: Firebreak) -> Client:
    firebreak.web_access.base_url = BASE
    return Client(firebreak.web)


def path_of(link: str) -> str:
    return link.removeprefix(BASE)


def signed_in(firebreak: Firebreak, web: Client, user: str = "U0ALICE") -> Client:
    link = firebreak.web_access.link(user, "alice")
    response = web.get(path_of(link))
    assert response.status_code == 303, response.get_data(as_text=True)
    return web


def declare(slack: Slack, general: str, text: str) -> None:
    slack.run(f"declare sev2 {text}", channel=general)


def incident_channel(firebreak: Firebreak, number: int = 1) -> str:
    from bot.incidents.models import Incident

    with firebreak.db.session_scope() as session:
        incident = session.get(Incident, number)
        assert incident is not None and incident.channel_id is not None
        return incident.channel_id


# -- signing in ---------------------------------------------------------------------------


def test_without_a_session_every_page_says_how_to_sign_in(web: Client) -> None:
    for path in ("/", "/incidents/INC-1", "/incidents/INC-1/postmortem.md", "/?severity=sev1"):
        response = web.get(path)
        assert response.status_code == 401, path
        page = response.get_data(as_text=True)
        assert "/incident web" in page and "firebreak web-link NAME" in page, path
    events = web.get("/incidents/INC-1/events?after=0")
    assert events.status_code == 401
    assert "sign-in link" in events.get_json()["error"]


def test_incident_web_answers_privately_with_a_link_that_works_once(
    firebreak: Firebreak, slack: Slack, general: str, sandbox: object, web: Client
) -> None:
    reply = slack.run("web", user="U0BOB", channel=general)
    assert reply.status == 200
    text = last_response_text(slack.sandbox)
    answer = slack.sandbox.responses()[-1].payload
    assert answer.get("response_type") == "ephemeral"
    assert "valid 10 minutes, works once" in text
    link = LINK.search(text)
    assert link is not None, text
    opened = web.get(path_of(link.group(1)))
    assert opened.status_code == 303
    assert opened.headers["Location"] == "/"
    cookie = opened.headers["Set-Cookie"]
    assert f"{COOKIE}=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain http here; see the HTTPS test
    assert "Max-Age=43200" in cookie  # 12 hours
    page = web.get("/")
    assert page.status_code == 200
    assert "bob · America/New_York" in page.get_data(as_text=True)
    again = Client(firebreak.web).get(path_of(link.group(1)))
    assert again.status_code == 403
    assert "already used" in again.get_data(as_text=True)


def test_a_member_not_in_people_can_sign_in_from_slack(
    firebreak: Firebreak, slack: Slack, general: str, sandbox: object, web: Client
) -> None:
    slack.sandbox.add_user("U0DAVE", "dave")
    slack.run("web", user="U0DAVE", channel=general)
    link = LINK.search(last_response_text(slack.sandbox))
    assert link is not None
    assert web.get(path_of(link.group(1))).status_code == 303
    assert "U0DAVE · UTC" in web.get("/").get_data(as_text=True)


def test_an_expired_link_is_refused_with_a_clear_page(firebreak: Firebreak, web: Client) -> None:
    start = firebreak.clock()
    link = firebreak.web_access.link("U0ALICE", "alice")
    firebreak.clock.use(lambda: start + timedelta(minutes=10, seconds=1))
    response = web.get(path_of(link))
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "This sign-in link has expired: links work for 10 minutes." in page
    assert "/incident web" in page
    assert COOKIE not in response.headers.get("Set-Cookie", "")


def test_a_changed_or_cut_link_is_refused(firebreak: Firebreak, web: Client) -> None:
    link = path_of(firebreak.web_access.link("U0ALICE", "alice"))
    payload, signature = link.split("token=")[1].split(".")
    other = WebAccess(firebreak.db, "another secret", firebreak.clock, BASE)
    forged = path_of(other.link("U0ALICE", "alice"))
    for bad in (
        f"/signin?token={payload}.{signature[:-2]}",
        f"/signin?token={payload[:-4]}.{signature}",
        forged,
        "/signin?token=",
        "/signin?token=" + "x" * 5000,
    ):
        response = web.get(bad)
        assert response.status_code in (400, 403), bad
        assert "Set-Cookie" not in response.headers
    assert "not valid" in web.get(forged).get_data(as_text=True)
    assert web.get(link).status_code == 303  # the real one still works


def test_the_cookie_is_secure_behind_a_proxy_that_says_https(
    firebreak: Firebreak, web: Client
) -> None:
    link = path_of(firebreak.web_access.link("U0ALICE", "alice"))
    response = web.get(link, headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in response.headers["Set-Cookie"]


def test_the_cookie_is_secure_when_the_public_address_is_https(
    firebreak: Firebreak, web: Client
) -> None:
    firebreak.web_access.base_url = "https://firebreak.test"
    link = firebreak.web_access.link("U0ALICE", "alice").removeprefix("https://firebreak.test")
    assert "Secure" in web.get(link).headers["Set-Cookie"]


def test_the_link_goes_to_a_page_on_this_site_only(firebreak: Firebreak, web: Client) -> None:
    link = path_of(firebreak.web_access.link("U0ALICE", "alice", next_path="//evil.example/x"))
    assert web.get(link).headers["Location"] == "/"
    link = path_of(firebreak.web_access.link("U0ALICE", "alice", next_path="/incidents/INC-3"))
    assert web.get(link).headers["Location"] == "/incidents/INC-3"


def test_without_a_public_address_incident_web_says_what_to_set(
    firebreak: Firebreak, slack: Slack, general: str
) -> None:
    firebreak.web_access.base_url = None
    slack.run("web", channel=general)
    text = last_response_text(slack.sandbox)
    assert "FIREBREAK_BASE_URL" in text and "signin" not in text


def test_sessions_end_after_12_hours(firebreak: Firebreak, web: Client) -> None:
    start = firebreak.clock()
    signed_in(firebreak, web)
    firebreak.clock.use(lambda: start + timedelta(hours=11, minutes=59))
    assert web.get("/").status_code == 200
    firebreak.clock.use(lambda: start + timedelta(hours=12, seconds=1))
    assert web.get("/").status_code == 401


# -- the terminal -------------------------------------------------------------------------


@pytest.fixture
def cli_env(firebreak: Firebreak, tmp_path: Path, database_url: str) -> dict[str, str]:
    config = tmp_path / "firebreak.yaml"
    config.write_text(
        "people:\n  alice: {slack: U0ALICE, timezone: Europe/Berlin}\n  bob: {slack: U0BOB}\n"
    )
    return {
        "DATABASE_URL": database_url,
        "FIREBREAK_CONFIG": str(config),
        "FIREBREAK_BASE_URL": BASE,
        "SLACK_BOT_TOKEN": TOKENS["SLACK_BOT_TOKEN"],
        "SLACK_SIGNING_SECRET": SECRET,
    }


def test_web_link_prints_a_link_and_web_logout_ends_the_sessions(
    firebreak: Firebreak, web: Client, cli_env: dict[str, str]
) -> None:
    printed = invoke(["web-link", "alice", "--incident", "INC-4"], **cli_env)
    assert printed.exit_code == 0, printed.output
    link = printed.output.strip()
    assert link.startswith(f"{BASE}/signin?token=")
    opened = web.get(path_of(link))
    assert opened.status_code == 303 and opened.headers["Location"] == "/incidents/INC-4"
    assert web.get("/").status_code == 200
    second = Client(firebreak.web)
    assert second.get(path_of(invoke(["web-link", "alice"], **cli_env).output.strip()))
    unused = invoke(["web-link", "alice"], **cli_env).output.strip()
    bob = Client(firebreak.web)
    bob.get(path_of(invoke(["web-link", "bob"], **cli_env).output.strip()))

    out = invoke(["web-logout", "alice"], **cli_env)
    assert out.exit_code == 0, out.output
    assert "Signed alice out of the web view: 2 session(s) ended." in out.output
    assert web.get("/").status_code == 401
    assert second.get("/").status_code == 401
    assert Client(firebreak.web).get(path_of(unused)).status_code == 403  # voided
    assert bob.get("/").status_code == 200  # only alice's sessions


def test_web_link_refuses_people_not_listed_and_says_who_is(cli_env: dict[str, str]) -> None:
    result = invoke(["web-link", "mallory"], **cli_env)
    assert result.exit_code == 2
    assert "'mallory' is not in people: (alice, bob)" in result.output
    missing = invoke(["web-link", "alice"], **{**cli_env, "FIREBREAK_BASE_URL": None})
    assert missing.exit_code == 2
    assert "FIREBREAK_BASE_URL" in missing.output and "--base-url" in missing.output
    given = invoke(["web-link", "alice", "--base-url", "https://fb.example.com/"], **cli_env)
    assert given.output.startswith("https://fb.example.com/signin?token=")


# -- headers and escaping -----------------------------------------------------------------


def assert_secure_headers(response: TestResponse) -> None:
    csp = response.headers["Content-Security-Policy"]
    for directive in (
        "default-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ):
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_every_answer_carries_the_security_headers(
    firebreak: Firebreak, slack: Slack, general: str, web: Client
) -> None:
    declare(slack, general, "Checkout down")
    anonymous = Client(firebreak.web)
    for response in (anonymous.get("/"), anonymous.get("/signin?token=x.y")):
        assert_secure_headers(response)
        assert response.headers["Cache-Control"] == "no-store"
    signed_in(firebreak, web)
    for path in (
        "/",
        "/incidents/INC-1",
        "/incidents/INC-9",
        "/incidents/INC-1/events",
        "/incidents/INC-1/postmortem",
    ):
        assert_secure_headers(web.get(path))
    script = web.get("/assets/timeline.js")
    assert script.status_code == 200 and "javascript" in script.headers["Content-Type"]
    assert_secure_headers(script)
    assert "text/css" in web.get("/assets/style.css").headers["Content-Type"]


def test_only_get_reaches_the_view(firebreak: Firebreak, web: Client) -> None:
    signed_in(firebreak, web)
    for path in ("/", "/incidents/INC-1", "/signin"):
        assert web.post(path).status_code == 405


def test_titles_and_notes_are_escaped_everywhere(
    firebreak: Firebreak, slack: Slack, general: str, web: Client
) -> None:
    declare(slack, general, slack_escaped(f"{SCRIPT} checkout"))
    channel = incident_channel(firebreak)
    slack.run(f"note {slack_escaped(IMG)}", channel=channel)
    slack.run(f"note {IMG}", channel=channel)  # unescaped, as no real Slack would send it
    signed_in(firebreak, web)
    for path in ("/", "/incidents/INC-1"):
        page = web.get(path).get_data(as_text=True)
        assert "<script>alert" not in page and "<img" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt; checkout" in page
    page = web.get("/incidents/INC-1").get_data(as_text=True)
    assert "added a note: &#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    events = web.get("/incidents/INC-1/events?after=0").get_json()
    notes = [event["text"] for event in events["events"] if event["kind"] == "note_added"]
    assert notes[0] == f"alice added a note: {IMG}"
    draft_page = web.get("/incidents/INC-1/postmortem").get_data(as_text=True)
    assert "<script>alert" not in draft_page and "<img" not in draft_page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; checkout" in draft_page
    assert "<table>" in draft_page  # the draft's Markdown tables, as HTML
    draft = web.get("/incidents/INC-1/postmortem.md")
    assert draft.status_code == 200
    assert draft.headers["Content-Disposition"] == 'attachment; filename="INC-1-postmortem.md"'
    assert "checkout" in draft.get_data(as_text=True)


def test_the_events_endpoint_returns_what_came_after(
    firebreak: Firebreak, slack: Slack, general: str, web: Client
) -> None:
    declare(slack, general, "Payments slow")
    signed_in(firebreak, web)
    first = web.get("/incidents/INC-1/events?after=0").get_json()
    assert first["open"] is True and first["events"]
    last = first["events"][-1]["id"]
    assert web.get(f"/incidents/INC-1/events?after={last}").get_json()["events"] == []
    slack.run("note looking at the database", channel=incident_channel(firebreak))
    later = web.get(f"/incidents/INC-1/events?after={last}").get_json()["events"]
    assert [event["text"] for event in later] == ["alice added a note: looking at the database"]
    assert web.get("/incidents/INC-1/events?after=x").status_code == 400
    for digits in ("%C2%B2", "%EF%BC%93", "%00", "9" * 19):  # ², a fullwidth 3, NUL, too long
        assert web.get(f"/incidents/INC-1/events?after={digits}").status_code == 400
    assert web.get("/incidents/INC-77/events").status_code == 404


# -- the list -----------------------------------------------------------------------------


def test_the_list_shows_open_first_and_filters(
    firebreak: Firebreak, slack: Slack, general: str, web: Client
) -> None:
    declare(slack, general, "Checkout errors")
    declare(slack, general, "Search latency")
    slack.run("declare sev1 Database failover", channel=general)
    slack.run("resolve fixed", channel=incident_channel(firebreak, 2))
    signed_in(firebreak, web)
    page = web.get("/").get_data(as_text=True)
    order = [page.index(f">INC-{n}<") for n in (3, 1, 2)]
    assert order == sorted(order), "open incidents first, newest first"
    assert "3 incidents" in page
    assert "alice" in page  # the commander
    only = web.get("/?severity=sev1").get_data(as_text=True)
    assert "INC-3" in only and "INC-1<" not in only
    found = web.get("/?q=LATENCY").get_data(as_text=True)
    assert "Search latency" in found and "Checkout errors" not in found
    resolved = web.get("/?status=resolved").get_data(as_text=True)
    assert "Search latency" in resolved and "Database failover" not in resolved
    today = firebreak.clock().date()
    later = web.get(f"/?from={today + timedelta(days=2)}").get_data(as_text=True)
    assert "No incidents match." in later
    wildcard = web.get("/?q=%25").get_data(as_text=True)
    assert "No incidents match." in wildcard  # % is searched for, not a wildcard


def test_bad_filters_are_explained(firebreak: Firebreak, web: Client) -> None:
    signed_in(firebreak, web)
    response = web.get("/?severity=sev9&from=yesterday&page=0&status=sleeping")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "severity &#39;sev9&#39; is not one of: sev1" in page
    assert "from &#39;yesterday&#39; is not a date; give it like 2026-11-21" in page
    assert "page &#39;0&#39; is not a page number from 1 to 200" in page
    assert "status &#39;sleeping&#39; is not one of: open, resolved" in page
    # Digits other than ASCII's (int("²") fails; a fullwidth 3 is not a page number either)
    for digits in ("%C2%B2", "%EF%BC%93", "%00", "9" * 400):
        response = web.get(f"/?page={digits}")
        assert response.status_code == 400
        assert "is not a page number from 1 to 200" in response.get_data(as_text=True)


def test_an_unknown_incident_is_a_clear_404(firebreak: Firebreak, web: Client) -> None:
    signed_in(firebreak, web)
    for reference in ("INC-404", "nonsense"):
        for path in (f"/incidents/{reference}", f"/incidents/{reference}/postmortem"):
            response = web.get(path)
            assert response.status_code == 404
            assert "There is no incident" in response.get_data(as_text=True)
        download = web.get(f"/incidents/{reference}/postmortem.md")
        assert download.status_code == 404
        assert "incident" in download.get_data(as_text=True)


# -- the sandbox --------------------------------------------------------------------------


@pytest.fixture
def sandbox_open(firebreak: Firebreak) -> Iterator[Firebreak]:
    firebreak.web_access.open_on_loopback = True
    yield firebreak


def test_the_sandbox_lets_loopback_in_and_says_so(sandbox_open: Firebreak) -> None:
    local = Client(sandbox_open.web)
    page = local.get("/", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert page.status_code == 200
    assert "lets anyone on this machine (loopback) read this view" in page.get_data(as_text=True)
    remote = local.get("/", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert remote.status_code == 401
    assert "lets anyone on this machine" in remote.get_data(as_text=True)


# -- timeline facts in the web view ---------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_of_fact_reads_as_a_sentence_in_the_web_view(kind: str) -> None:
    """The web view's style says what the terminal says, with people by their names; its
    templates escape the text (checked above), so the sentence itself is plain."""
    fact = sample_event(kind)
    names = Names(PEOPLE)
    text = event_text(fact, text_style(names))
    assert text and "recorded" not in text
    for key in KINDS[kind]:
        value = fact.data[key]
        if (kind, key) in NOT_SHOWN or not isinstance(value, str):
            continue
        if key in ("user", "previous", "author", "owner", "requester", "approver"):
            assert names(value) in text, (kind, key, text)
        elif key != "ts":
            shown = value if key != "severity" else value.upper()
            assert shown in text, (kind, key, text)
    if fact.kind not in IMPERSONAL:
        assert text.startswith("alice ")
