"""Text people type into Slack: cleaned on the way in, escaped on the way out.

What is stored
    Free text (titles, notes, summaries, page messages) is stored exactly as Slack delivered
    it, after `clean`: in Slack's wire form. Slack escapes `&`, `<` and `>` in slash-command
    text as `&amp;`, `&lt;` and `&gt;`, and writes what it recognised as control sequences:
    `<@U123|alice>` for a mention, `<#C123|general>` for a channel, `<!channel>` for
    @channel, `<https://example.com>` for a pasted link. So a stored `<` always starts
    a sequence Slack itself wrote, and a `<` the user typed is stored as `&lt;`.

    Modal inputs arrive as plain text (Slack does not escape them). They may be stored as
    they are: `escape` is safe for both forms. The one ambiguity is a plain text that
    contains the entity `&amp;`, `&lt;` or `&gt;` literally; it renders as the character.

What is reposted
    Everything Firebreak reposts in Slack goes through `escape` (mrkdwn text). Surfaces that
    are not Slack (Markdown, HTML, the terminal) use `plain`, then their own escaping.

Checking input
    `clean` refuses a NUL byte, strips other control characters and enforces a length
    (measured on the stored form, so it is what the database column holds). `quote` is how
    an error message shows a piece of what the user typed: short, one line, escaped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

ID_MAX = 2_147_483_647  # ids are PostgreSQL integers (and SQLite agrees)
# A whole word that is a user mention as Slack writes it: `<@U123>` or `<@U123|name>`.
MENTION = re.compile(r"^<@([UW][A-Z0-9]+)(?:\|[^>]*)?>$")

# C0 controls but tab and newline, DEL, C1 controls, and lone surrogates (not UTF-8).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_ENTITY = r"&(?:amp|lt|gt);"
# Sequences Slack writes for what it recognised, and that are safe to repost as they are:
# user mentions (`<@U123>`, `<@U123|name>`) and channel links (`<#C123>`, `<#C123|name>`).
_KEEP = r"<@[UW][A-Z0-9]{1,30}(?:\|[^<>|]{0,100})?>|<\#[CG][A-Z0-9]{1,30}(?:\|[^<>|]{0,100})?>"
# A link is kept only when it shows its own address (a bare link, or a label Slack made
# from the address itself); a link whose label says something else is a disguise.
_LINK = r"<(?P<url>(?:https?://|mailto:)[^<>|\s]{1,2000})(?:\|(?P<label>[^<>]{0,2000}))?>"
_TOKEN = re.compile(rf"(?P<entity>{_ENTITY})|(?P<keep>{_KEEP})|(?P<link>{_LINK})|(?P<char>[&<>])")
_UNIT = re.compile(rf"(?P<entity>{_ENTITY})|(?P<keep>{_KEEP})|(?P<link>{_LINK})|.", re.DOTALL)
_PLAIN = re.compile(
    rf"(?P<entity>{_ENTITY})"
    r"|<@(?P<user>[UW][A-Z0-9]+)(?:\|(?P<user_name>[^<>|]*))?>"
    r"|<\#(?P<channel>[CG][A-Z0-9]+)(?:\|(?P<channel_name>[^<>|]*))?>"
    r"|<!(?P<special>[a-z]+)(?:\^[^<>|]*)?(?:\|(?P<special_label>[^<>]*))?>"
    r"|<(?P<url>[a-z][a-z0-9+.-]*:[^<>|\s]+)(?:\|(?P<label>[^<>]*))?>"
)
_ENTITIES = {"&amp;": "&", "&lt;": "<", "&gt;": ">"}
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_RAW = re.compile(rf"{_ENTITY}|[&<>]")
_BARE_AMPERSAND = re.compile(r"&(?!(?:amp|lt|gt);)")


class ParseError(Exception):
    """What was wrong with the command, with the valid choices; shown to the user as is."""


def clean(text: str, *, what: str, limit: int, one_line: bool = False, hint: str = "") -> str:
    """`text` as it may be stored: no control characters, trimmed, at most `limit` long.

    A NUL byte is refused (PostgreSQL cannot store it, and it is never typed on purpose);
    other control characters (C0 but tab and newline, DEL, C1) and lone surrogates are
    dropped. `one_line` (titles) collapses every run of whitespace, newlines included, to
    one space. `what` names the field in messages ("title", "note"); `hint` is added to the
    message about the length. Raises ParseError.
    """
    if "\x00" in text:
        raise ParseError(
            f"The {what} contains a NUL byte (\\0), which cannot be stored. Remove it and "
            "send it again."
        )
    text = _CONTROL.sub("", text)
    text = " ".join(text.split()) if one_line else text.strip()
    if len(text) > limit:
        message = f"The {what} is {len(text):,} characters long; the limit is {limit:,}."
        raise ParseError(f"{message} {hint}" if hint else message)
    return text


def escape(text: str) -> str:
    """`text` made safe to post as Slack mrkdwn, following Slack's formatting rules.

    Use it on every piece of user text Firebreak reposts (titles, notes, summaries, page
    messages, names), whether stored from a slash command (Slack's escaped form) or a modal
    (plain text):

    - `&`, `<` and `>` become `&amp;`, `&lt;` and `&gt;`, so `<!channel>`, `<!here>`,
      `<!everyone>`, `<!subteam^S123>` and `<https://evil|fake>` show as text and notify
      or mislead no one;
    - the entities `&amp;`, `&lt;` and `&gt;` are already escaped and stay as they are (Slack
      sends a typed `<` as `&lt;`; escaping it again would show `&lt;` to the reader);
    - mentions Slack wrote, `<@U123>`, `<@U123|name>`, and channel links, `<#C123|name>`,
      stay mentions and links;
    - a link that shows its own address stays a link (`<https://x.io/a>`, or
      `<http://x.io|x.io>` as Slack writes a typed `x.io`); one whose label says
      something else is shown as text.

    Idempotent: `escape(escape(t)) == escape(t)`, so escaping twice does no harm. It does not
    touch `*`, `_`, `~` or backticks: those only format, they cannot notify or link.
    """
    return _TOKEN.sub(_escape_token, text)


def _escape_token(match: re.Match[str]) -> str:
    token = match.group(0)
    if match.group("entity"):
        return token
    if match.group("keep"):
        return _BARE_AMPERSAND.sub("&amp;", token)
    if match.group("link"):
        url, label = match.group("url"), match.group("label")
        if label is None or label in (url, url.split(":", 1)[1].removeprefix("//")):
            return _BARE_AMPERSAND.sub("&amp;", token)
        return _escape_raw(token)
    return _ESCAPES[token]


def _escape_raw(text: str) -> str:
    """Every `&`, `<`, `>` escaped but the entities already there; no sequence is kept."""
    return _RAW.sub(lambda m: _ESCAPES.get(m.group(0), m.group(0)), text)


def plain(text: str) -> str:
    """Stored Slack text as a person reads it, for surfaces that are not Slack.

    `&lt;` becomes `<`, `<@U123|alice>` becomes `@alice` (`@U123` without a name),
    `<#C123|general>` becomes `#general`, `<!channel>` becomes `@channel`, a link
    `<https://x|label>` becomes `label (https://x)` and `<http://x.io|x.io>` becomes `x.io`.
    The result is plain text: escape it for the surface that shows it (HTML, Markdown).
    """
    return _PLAIN.sub(_plain_token, text)


def _plain_token(match: re.Match[str]) -> str:
    if match.group("entity"):
        return _ENTITIES[match.group("entity")]
    if match.group("user"):
        return "@" + (match.group("user_name") or match.group("user"))
    if match.group("channel"):
        return "#" + (match.group("channel_name") or match.group("channel"))
    if match.group("special"):
        label = match.group("special_label")
        return label if label else "@" + match.group("special")
    url, label = match.group("url"), match.group("label")
    url = _PLAIN.sub(_plain_token, url)
    if not label:
        return url
    label = _PLAIN.sub(_plain_token, label)
    if label == url.split(":", 1)[1].removeprefix("//"):
        return label
    return label if label == url else f"{label} ({url})"


def quote(text: str, limit: int = 40) -> str:
    """A piece of user input to show inside an error message (in backticks).

    One line, no control characters, backticks replaced by `'`, at most about `limit`
    characters (an entity or a mention counts as one piece and is never cut), then escaped.
    """
    text = " ".join(_CONTROL.sub("", text[: limit * 4 + 250]).split()).replace("`", "'")
    pieces: list[str] = []
    size = 0
    cut = False
    for match in _UNIT.finditer(text):
        piece = match.group(0)
        length = 1 if match.group("entity") else len(piece)
        if size + length > limit:
            cut = True
            break
        pieces.append(piece)
        size += length
    if cut and not pieces:  # one long piece: show its start, escaped as text
        return _escape_raw(text[:limit]) + "…"
    return escape("".join(pieces)) + ("…" if cut else "")


def choices(
    names: Iterable[str], *, limit: int = 25, empty: str = "none configured", code: bool = True
) -> str:
    """`names` as a short list for a message: `a`, `b`, `c` and 4 more (`code`: backticks)."""
    names = list(names)
    if not names:
        return empty
    mark = "`" if code else ""
    shown = ", ".join(f"{mark}{quote(name, 40)}{mark}" for name in names[:limit])
    more = len(names) - limit
    return shown + (f" and {more} more" if more > 0 else "")


def number_id(value: str, *, prefix: str = "") -> int | None:
    """The id in `value` (`12`, or `P-12` with `prefix="p-"`), or None if it is not one.

    Only ASCII digits count, and only 1..2147483647, the range the database stores.
    """
    match = re.fullmatch(rf"(?:{re.escape(prefix)})?0*([0-9]{{1,10}})", value, re.IGNORECASE)
    if not match:
        return None
    number = int(match.group(1))
    return number if 1 <= number <= ID_MAX else None
