"""User text: cleaned on the way in (`clean`), escaped on the way out (`escape`)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.slack.text import ID_MAX, ParseError, choices, clean, escape, number_id, plain, quote

# --- clean ----------------------------------------------------------------------------------


def test_a_nul_byte_is_refused_naming_the_field() -> None:
    with pytest.raises(ParseError, match=r"The title contains a NUL byte"):
        clean("API\x00down", what="title", limit=200)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bell\x07 and escape\x1b[31m", "bell and escape[31m"),
        ("delete\x7f and C1\x85\x9b", "delete and C1"),
        ("lone \ud800surrogate", "lone surrogate"),
        ("  line one\r\n\tline two  ", "line one\n\tline two"),
        ("unicode stays: é ü 日本 🔥", "unicode stays: é ü 日本 🔥"),
    ],
)
def test_control_characters_are_stripped_but_newline_and_tab(text: str, expected: str) -> None:
    assert clean(text, what="note", limit=3000) == expected


def test_a_title_is_one_line() -> None:
    assert clean(" API\n\n down\t on\u2028 eu-1 ", what="title", limit=200, one_line=True) == (
        "API down on eu-1"
    )


def test_the_limit_is_inclusive_and_the_message_gives_both_lengths() -> None:
    assert clean("x" * 200, what="title", limit=200) == "x" * 200
    with pytest.raises(ParseError) as error:
        clean("x" * 1201, what="title", limit=200, hint="Put the rest in a note.")
    assert str(error.value) == (
        "The title is 1,201 characters long; the limit is 200. Put the rest in a note."
    )


def test_the_length_counts_after_cleaning() -> None:
    assert clean("  " + "x" * 10 + "\x01" * 50 + "  ", what="note", limit=10) == "x" * 10


# --- escape ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # What Slack sends for @channel, @here, @everyone and a user group: made inert.
        ("<!channel> look", "&lt;!channel&gt; look"),
        ("<!here>", "&lt;!here&gt;"),
        ("<!everyone>", "&lt;!everyone&gt;"),
        ("<!subteam^S123>", "&lt;!subteam^S123&gt;"),
        ("<!subteam^S123|@oncall>", "&lt;!subteam^S123|@oncall&gt;"),
        ("<!date^1392734382^{date}|Feb 18>", "&lt;!date^1392734382^{date}|Feb 18&gt;"),
        # A link whose label hides its address.
        ("<https://evil.example|status page>", "&lt;https://evil.example|status page&gt;"),
        ("<http://evil.example|example.com>", "&lt;http://evil.example|example.com&gt;"),
        # Plain text (a modal value) with the special characters.
        ("a & b < c > d", "a &amp; b &lt; c &gt; d"),
        ("<script>", "&lt;script&gt;"),
        ("<@U123ABC", "&lt;@U123ABC"),
        ("<<@U123ABC>>", "&lt;<@U123ABC>&gt;"),
        ("&lt without semicolon", "&amp;lt without semicolon"),
        ("&quot; &#60; &nbsp;", "&amp;quot; &amp;#60; &amp;nbsp;"),
    ],
)
def test_what_could_notify_or_mislead_is_shown_as_text(text: str, expected: str) -> None:
    assert escape(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "<@U123ABC>",
        "<@U123ABC|alice> please look",
        "<@W0ENTERPRISE|bob>",
        "ask in <#C0123ABC|ops> or <#C0123ABC>",
        "<https://grafana.example/d/abc?orgId=1&amp;from=now-1h>",
        "<http://status.example.com|status.example.com>",
        "<mailto:sre@example.com|sre@example.com>",
    ],
)
def test_mentions_channels_and_honest_links_stay(text: str) -> None:
    assert escape(text) == text


def test_slack_escaped_text_is_not_escaped_twice() -> None:
    # What the user typed -> what Slack sends in a slash command -> what Firebreak reposts.
    typed_as_text = (
        "&lt;!channel&gt; &amp; &lt;https://x|y&gt;"  # typed: <!channel> & <https://x|y>
    )
    assert escape(typed_as_text) == typed_as_text
    assert escape("&amp;lt;") == "&amp;lt;"  # typed: &lt; (shown as "&lt;")
    assert escape("&amp;amp;") == "&amp;amp;"  # typed: &amp;
    assert escape("AT&amp;T") == "AT&amp;T"  # typed: AT&T
    assert escape("AT&T") == "AT&amp;T"  # a modal value: AT&T


def test_a_bare_ampersand_inside_a_kept_sequence_is_escaped() -> None:
    assert escape("<https://x.example/?a=1&b=2>") == "<https://x.example/?a=1&amp;b=2>"
    assert escape("<@U1|Tom & Jerry>") == "<@U1|Tom &amp; Jerry>"


def test_escape_is_idempotent_on_the_examples() -> None:
    for text in ("<!channel> & <@U1|a&b>", "<https://e|f> &amp;lt; <#C1>", "<<>>&&;"):
        once = escape(text)
        assert escape(once) == once


_KEPT = re.compile(
    r"<@[UW][A-Z0-9]+(?:\|[^<>|]*)?>|<#[CG][A-Z0-9]+(?:\|[^<>|]*)?>"
    r"|<(?P<url>(?:https?://|mailto:)[^<>|\s]+)(?:\|(?P<label>[^<>]*))?>"
)
_PIECES = [*"<>&|!@#^:/ ;abxUWC0123", "&amp;", "&lt;", "&gt;", "<!channel>", "<@U1>"]
_PIECES += ["<https://e|f>", "<http://e.io|e.io>", "<#C1|x>", "\x00", "é", "`"]
_SLACKISH = st.lists(st.sampled_from(_PIECES), max_size=60).map("".join) | st.text(max_size=200)


@given(_SLACKISH)
def test_escape_leaves_only_mentions_channels_and_honest_links(text: str) -> None:
    out = escape(text)
    assert escape(out) == out
    for match in _KEPT.finditer(out):
        url, label = match.group("url"), match.group("label")
        if url and label is not None:
            assert label in (url, url.split(":", 1)[1].removeprefix("//"))
    rest = _KEPT.sub("", out)
    assert "<" not in rest and ">" not in rest
    assert "&" not in re.sub(r"&(?:amp|lt|gt);", "", out)
    assert "<!" not in out


# --- plain ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("&lt;b&gt; &amp; &amp;lt;", "<b> & &lt;"),
        ("<@U1|alice> and <@U2>", "@alice and @U2"),
        ("in <#C1|ops>", "in #ops"),
        ("<!channel> <!subteam^S1|@sre>", "@channel @sre"),
        ("<https://e.example|fake>", "fake (https://e.example)"),
        ("<http://e.io|e.io> <https://a.io/x>", "e.io https://a.io/x"),
        ("<https://a.io/?x=1&amp;y=2>", "https://a.io/?x=1&y=2"),
    ],
)
def test_plain_is_what_a_person_reads(text: str, expected: str) -> None:
    assert plain(text) == expected


# --- quote, choices, ids --------------------------------------------------------------------


def test_quote_is_short_one_line_and_escaped() -> None:
    assert quote("x" * 100_000) == "x" * 40 + "…"
    assert quote("a`b\nc\x00d") == "a'b cd"
    assert quote("<!channel>") == "&lt;!channel&gt;"
    assert quote("&lt;!here&gt;") == "&lt;!here&gt;"
    assert quote("ab&amp;cd", limit=3) == "ab&amp;…"  # an entity is one piece, never cut
    assert quote("x <@U123ABC|alice>", limit=10) == "x …"  # nor a mention
    assert quote("<@U1|" + "a" * 90 + ">", limit=10) == "&lt;@U1|aaaaa…"


def test_choices_are_capped() -> None:
    assert choices([]) == "none configured"
    assert choices(["a", "b"]) == "`a`, `b`"
    assert choices(["a", "<b>"], code=False) == "a, &lt;b&gt;"
    assert choices([f"n{i}" for i in range(30)], limit=2) == "`n0`, `n1` and 28 more"


@pytest.mark.parametrize(
    ("value", "prefix", "expected"),
    [
        ("12", "", 12),
        ("P-12", "p-", 12),
        ("p-0012", "p-", 12),
        ("#7", "#", 7),
        (str(ID_MAX), "", ID_MAX),
        (str(ID_MAX + 1), "", None),
        ("99999999999999999999", "", None),
        ("0", "", None),
        ("-1", "", None),
        ("1e3", "", None),
        ("١٢", "", None),  # Arabic-Indic digits: int() would take them
        ("²", "", None),  # str.isdigit() would take it, int() would not
        ("P-12", "", None),
        ("#12", "p-", None),
        ("", "", None),
    ],
)
def test_ids_are_in_the_database_range(value: str, prefix: str, expected: int | None) -> None:
    assert number_id(value, prefix=prefix) == expected
