"""Reading untrusted JSON field by field, collecting every problem with where it is.

The inbound alert parsers get whatever `json.loads` produced. The readers here check one
value's type strictly (a boolean is not a number, a number is not a string) and its bounds.
On a problem they record a `FieldError` naming the path (`alerts[3].labels.severity`) and
return None, so a parser carries on and reports every bad field in one `Invalid`.

The same rules for text in every format:

- NUL (U+0000) is refused in every string a parser reads: PostgreSQL cannot store it, and
  quietly dropping characters would change what the monitoring system said.
- Lone surrogates (`json.loads` lets `"\\ud800"` through) are refused: they are not text
  and cannot be encoded as UTF-8.
- Names (label names, annotation names, detail keys) are non-empty and hold no control
  characters.
- Values kept as they came (labels, annotations, keys) are refused past their MAX_* bound;
  text Firebreak derives for a person (summaries, titles, link texts) is shortened instead.
- Links are extras: a URL that is not http(s), or longer than MAX_URL, is left out and never
  fails the request; only a wrong type does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import cast
from urllib.parse import urlsplit

from bot.alerts.model import (
    MAX_LABEL_NAME,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    MAX_LINKS,
    MAX_URL,
    FieldError,
    Invalid,
    Link,
)

# At most this many errors are listed in one answer; a hostile body with a million bad
# fields gets a short answer, not a megabyte one.
MAX_ERRORS = 50
# Counts such as `truncatedAlerts` must fit a PostgreSQL integer column.
MAX_COUNT = 2**31 - 1
# How much of a bad value an error message quotes.
_QUOTE = 40

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_URL_UNSAFE = re.compile(r"[\x00-\x20\x7f-\x9f]")
# RFC 3339 as Go's time.Time marshals it ("2024-05-01T12:00:00.123456789Z", "+02:00").
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})\Z"
)
# ISO 8601 as PagerDuty takes it: RFC 3339 plus "+0000" or "+00" offsets, or no offset (UTC).
_ISO8601 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?"
    r"([Zz]|[+-][0-9]{2}(:?[0-9]{2})?)?\Z"
)
# Go's zero time (at UTC): what Alertmanager and Grafana send for "not set".
_GO_ZERO = datetime(1, 1, 1)
_GO_ZERO_TEXT = "0001-01-01T00:00:00Z"


class Problems:
    """The field errors of one request, in the order they were found."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self.unlisted = 0

    def add(self, field: str, problem: str) -> None:
        """Record that `field` is bad because of `problem` (said so a sender can fix it)."""
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(FieldError(field, problem))
        else:
            self.unlisted += 1

    def __bool__(self) -> bool:
        return bool(self.errors)

    def __len__(self) -> int:
        """How many problems were found, listed or not."""
        return len(self.errors) + self.unlisted

    def raise_if_any(self) -> None:
        """Raise `Invalid` with every recorded error, if there is one."""
        if not self.errors:
            return
        errors = list(self.errors)
        if self.unlisted:
            errors.append(
                FieldError("body", f"{self.unlisted} more problems are not listed; fix these first")
            )
        raise Invalid(errors)


# -- paths and messages -------------------------------------------------------------------


def child(path: str, key: str) -> str:
    """The path of `key` inside `path`: `alerts[0].labels.severity`, or `labels["a.b"]`
    for a key that is not a short identifier (quoted as JSON, so control characters show,
    and cut, so a huge key does not make a huge message)."""
    if len(key) <= _QUOTE and _IDENTIFIER.match(key):
        return f"{path}.{key}" if path else key
    more = "…" if len(key) > _QUOTE else ""
    return f"{path}[{json.dumps(key[:_QUOTE])}{more}]"


def item(path: str, index: int) -> str:
    """The path of the `index`th element of the array at `path`."""
    return f"{path}[{index}]"


def json_type(value: object) -> str:
    """The JSON name of `value`'s type, with its article, for "got a number"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def quote(text: str) -> str:
    """`text` as a short JSON string literal for an error message."""
    more = "…" if len(text) > _QUOTE else ""
    return json.dumps(text[:_QUOTE]) + more


def shorten(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending in "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def first_line(text: str) -> str:
    """The first non-blank line of `text`, stripped ("" if there is none)."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


# -- text -----------------------------------------------------------------------------------


def _plain(value: object, limit: int | None) -> bool:
    """Whether `value` is a string that passes every check at once: ASCII without NUL and
    within `limit`. The readers take this fast path first (most of what monitoring sends is
    plain ASCII) and build an error path only for what fails it."""
    return (
        isinstance(value, str)
        and (limit is None or len(value) <= limit)
        and value.isascii()
        and "\x00" not in value
    )


def text_problem(text: str) -> str | None:
    """Why `text` cannot be kept as text (NUL, lone surrogate), or None if it can."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which cannot be stored; remove it"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "contains an unpaired UTF-16 surrogate (\\ud800-\\udfff), which is not text"
    return None


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a label, annotation or detail name, or None if it can."""
    if not name:
        return "has an empty name"
    if len(name) > MAX_LABEL_NAME:
        return f"name is {len(name)} characters long; at most {MAX_LABEL_NAME} are allowed"
    if _CONTROL.search(name):
        return "name contains a control character; names must be printable"
    return text_problem(name)


def check_string(
    value: object,
    where: str,
    problems: Problems,
    *,
    limit: int | None = None,
    empty_ok: bool = True,
) -> str | None:
    """`value` if it is a string that can be kept (within `limit`, not blank unless
    `empty_ok`), else None with the problem recorded at `where`."""
    if not isinstance(value, str):
        problems.add(where, f"must be a string; got {json_type(value)}")
        return None
    if not empty_ok and not value.strip():
        problems.add(where, "must not be empty")
        return None
    if limit is not None and len(value) > limit:
        problems.add(where, f"is {len(value)} characters long; at most {limit} are allowed")
        return None
    problem = text_problem(value)
    if problem:
        problems.add(where, problem)
        return None
    return value


def string_field(
    obj: Mapping[str, object],
    key: str,
    path: str,
    problems: Problems,
    *,
    required: bool = False,
    limit: int | None = None,
    empty_ok: bool = True,
) -> str | None:
    """The string at `obj[key]`; absent or null gives None (an error if `required`)."""
    value = obj.get(key)
    if value is None:
        if required:
            problems.add(child(path, key), "is required" + ("; got null" if key in obj else ""))
        return None
    if _plain(value, limit) and (empty_ok or cast(str, value).strip()):
        return cast(str, value)
    return check_string(value, child(path, key), problems, limit=limit, empty_ok=empty_ok)


def choice_field(
    obj: Mapping[str, object],
    key: str,
    path: str,
    problems: Problems,
    choices: Iterable[str],
    *,
    required: bool = False,
) -> str | None:
    """The string at `obj[key]` if it is one of `choices` (compared exactly)."""
    allowed = tuple(choices)
    value = obj.get(key)
    if isinstance(value, str) and value in allowed:
        return value
    options = ", ".join(allowed)
    where = child(path, key)
    if value is None:
        if required:
            problems.add(where, f"is required: one of {options}")
        return None
    text = check_string(value, where, problems)
    if text is None:
        return None
    if text not in allowed:
        problems.add(where, f"must be one of {options}; got {quote(text)}")
        return None
    return text


# -- structures ---------------------------------------------------------------------------


def as_object(
    value: object, where: str, problems: Problems, what: str = ""
) -> Mapping[str, object] | None:
    """`value` if it is a JSON object, else None with the problem recorded."""
    if isinstance(value, dict):
        return cast("Mapping[str, object]", value)
    problems.add(where, f"must be an object{what}; got {json_type(value)}")
    return None


def as_array(value: object, where: str, problems: Problems) -> list[object] | None:
    """`value` if it is a JSON array, else None with the problem recorded."""
    if isinstance(value, list):
        return cast("list[object]", value)
    problems.add(where, f"must be an array; got {json_type(value)}")
    return None


def string_map(
    value: object, where: str, problems: Problems, *, lenient: bool = False
) -> dict[str, str] | None:
    """Labels or annotations: an object of names to string values, at most MAX_LABELS of
    them, each name and value within bounds. None (with every problem recorded) if not.

    `lenient` (annotations: descriptive text, not identity) shortens an over-long value with
    "…" and keeps the first MAX_LABELS entries instead of refusing, so a long description
    never costs a page."""
    obj = as_object(value, where, problems, " of names to strings")
    if obj is None:
        return None
    if lenient and len(obj) > MAX_LABELS:
        obj = dict(list(obj.items())[:MAX_LABELS])
    if len(obj) > MAX_LABELS:
        problems.add(where, f"has {len(obj)} entries; at most {MAX_LABELS} are allowed")
        return None
    if _plain_map(obj):
        return cast("dict[str, str]", dict(obj))
    result: dict[str, str] = {}
    valid = True
    for name, raw in obj.items():
        if _plain(name, MAX_LABEL_NAME) and name and name.isprintable():
            if lenient and isinstance(raw, str):
                raw = shorten(raw, MAX_LABEL_VALUE)
            if _plain(raw, MAX_LABEL_VALUE):
                result[name] = cast(str, raw)
                continue
        if not isinstance(name, str):  # json.loads never does this; a caller might
            problems.add(where, f"has a name that is not a string ({json_type(name)})")
            valid = False
            continue
        problem = name_problem(name)
        if problem:
            problems.add(child(where, name), problem)
            valid = False
            continue
        if lenient and isinstance(raw, str):
            raw = shorten(raw, MAX_LABEL_VALUE)
        text = check_string(raw, child(where, name), problems, limit=MAX_LABEL_VALUE)
        if text is None:
            valid = False
        else:
            result[name] = text
    return result if valid else None


def _plain_map(obj: Mapping[str, object]) -> bool:
    """Whether every name and value of `obj` passes `string_map`'s checks as it is, tested
    across the whole map at once (one ASCII, NUL and printable test of the joined text):
    labels and annotations are most of a webhook's strings, and nearly all plain."""
    text_names, values = list(obj), list(obj.values())
    if not all(type(name) is str for name in text_names):  # json.loads gives only str
        return False
    if not all(type(value) is str for value in values):
        return False
    text_values = cast("list[str]", values)
    joined_names, joined_values = "".join(text_names), "".join(text_values)
    return (
        min(map(len, text_names), default=1) > 0
        and max(map(len, text_names), default=0) <= MAX_LABEL_NAME
        and max(map(len, text_values), default=0) <= MAX_LABEL_VALUE
        and joined_names.isascii()
        and joined_names.isprintable()  # no NUL either: it is not printable
        and joined_values.isascii()
        and "\x00" not in joined_values
    )


def string_map_field(
    obj: Mapping[str, object],
    key: str,
    path: str,
    problems: Problems,
    *,
    required: bool = False,
    lenient: bool = False,
) -> dict[str, str] | None:
    """The labels or annotations at `obj[key]`; absent or null is {} unless `required`."""
    value = obj.get(key)
    if value is None:
        if required:
            problems.add(child(path, key), "is required" + ("; got null" if key in obj else ""))
            return None
        return {}
    return string_map(value, child(path, key), problems, lenient=lenient)


def count_field(obj: Mapping[str, object], key: str, path: str, problems: Problems) -> int | None:
    """A count (0 to MAX_COUNT) at `obj[key]`; absent or null is 0."""
    value = obj.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(child(path, key), f"must be a whole number; got {json_type(value)}")
        return None
    if not 0 <= value <= MAX_COUNT:
        problems.add(child(path, key), f"must be between 0 and {MAX_COUNT}")
        return None
    return value


# -- times ----------------------------------------------------------------------------------


def time_field(
    obj: Mapping[str, object], key: str, path: str, problems: Problems, *, iso8601: bool = False
) -> datetime | None:
    """The time at `obj[key]` as an aware UTC datetime. RFC 3339 (ISO 8601 as PagerDuty
    takes it, if `iso8601`: "+0000" offsets, no offset meaning UTC). Absent, null and Go's
    zero time ("0001-01-01T00:00:00Z", Alertmanager's "not set") give None."""
    text = string_field(obj, key, path, problems)
    if text is None:
        return None
    pattern, example = (
        (_ISO8601, "2015-07-17T08:42:58.315+0000")
        if iso8601
        else (_RFC3339, "2024-05-01T12:00:00Z")
    )
    if text == _GO_ZERO_TEXT:  # Alertmanager's "not set", in every resolved-less alert
        return None
    where = child(path, key)
    if not pattern.match(text):
        problems.add(where, f"must be a time like {example}; got {quote(text)}")
        return None
    try:
        parsed = datetime.fromisoformat(text.upper())
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        if parsed.replace(tzinfo=None) == _GO_ZERO and not parsed.utcoffset():
            return None
        return parsed.astimezone(UTC)
    except ValueError:
        problems.add(where, f"is not a valid time (no such date or hour); got {quote(text)}")
    except OverflowError:
        problems.add(where, f"is out of the range of times that can be kept; got {quote(text)}")
    return None


# -- links ------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def web_link(text: str, url: str | None) -> Link | None:
    """A link to `url` if it is an http(s) URL Firebreak can keep, else None. (Cached: a
    storm's alerts share their runbook and dashboard links; `Link` is immutable.)"""
    if not url or len(url) > MAX_URL or _URL_UNSAFE.search(url) or text_problem(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return Link(text=text, url=url)


def bounded_links(links: Iterable[Link | None]) -> tuple[Link, ...]:
    """The links that exist, each URL once, at most MAX_LINKS of them, in order."""
    kept: list[Link] = []
    seen: set[str] = set()
    for link in links:
        if link is None or link.url in seen:
            continue
        seen.add(link.url)
        kept.append(link)
        if len(kept) == MAX_LINKS:
            break
    return tuple(kept)
