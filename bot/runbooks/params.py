"""Runbook parameters: their declaration in YAML, and the `key=value` words of a run request.

    params:
      service: {type: enum, values: [nginx, php-fpm], required: true}
      lines:   {type: int, min: 1, max: 5000, default: 200}
      unit:    {type: string, pattern: "[a-z0-9@._-]{1,64}"}   # always a full match
      follow:  {type: bool, default: false}

Every value arrives as text (from Slack or the terminal) and is checked against its
declaration before anything is planned: a value with a newline or another control character
is refused whatever the pattern says, a string is at most `max_length` characters and must
match its pattern in full (`re.fullmatch`). Every problem is collected, not just the first.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr, field_validator, model_validator

from bot.runbooks.argv import NAME
from bot.runbooks.plan import ParamValue
from bot.strict import Section

ParamType = Literal["enum", "int", "string", "bool"]
HOSTS = "hosts"  # the run's host selection, never a parameter
MAX_LENGTH = 256
MAX_LENGTH_LIMIT = 4096
MAX_WORDS = 100
_INT = re.compile(r"[+-]?[0-9]{1,18}")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class RunRefused(Exception):
    """A run request that cannot be planned; `problems` says every reason, ready to show."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def bad_character(value: str) -> str | None:
    """A description of the first character no value may hold, or None.

    Control characters (newlines, tabs, NUL, escape), line and paragraph separators,
    bidirectional overrides (they make shown text differ from what runs) and lone surrogates.
    """
    for character in value:
        category = unicodedata.category(character)
        if category in ("Cc", "Zl", "Zp", "Cs") or character in _BIDI:
            name = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab"}.get(character)
            return name or f"the control character U+{ord(character):04X}"
    return None


class Param(Section):
    """One declared parameter; which keys apply depends on `type`."""

    type: ParamType
    description: str = Field(default="", max_length=500)
    required: bool = False
    default: StrictStr | StrictInt | StrictBool | None = None
    values: list[StrictStr] | None = Field(default=None, max_length=200)
    min: StrictInt | None = None
    max: StrictInt | None = None
    pattern: StrictStr | None = Field(default=None, max_length=1000)
    max_length: StrictInt | None = Field(default=None, ge=1, le=MAX_LENGTH_LIMIT)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except (re.error, RecursionError, OverflowError) as exc:
                raise ValueError(f"{value!r} is not a regular expression: {exc}") from None
        return value

    @field_validator("values")
    @classmethod
    def _values(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if not value:
            raise ValueError("list at least one value")
        for item in value:
            if not item:
                raise ValueError("an empty value cannot be given as key=value; remove it")
            bad = bad_character(item)
            if bad:
                raise ValueError(f"{item!r} cannot be a value: it holds {bad}")
        if len(set(value)) != len(value):
            raise ValueError("values must not repeat")
        return value

    @model_validator(mode="after")
    def _keys_fit_the_type(self) -> Param:
        allowed = {
            "enum": {"values"},
            "int": {"min", "max"},
            "string": {"pattern", "max_length"},
            "bool": set(),
        }[self.type]
        for key in ("values", "min", "max", "pattern", "max_length"):
            if getattr(self, key) is not None and key not in allowed:
                raise ValueError(
                    f"`{key}` does not apply to {_ARTICLE[self.type]} parameter; remove it"
                )
        if self.type == "enum" and self.values is None:
            raise ValueError("an enum parameter needs `values`: the list of allowed values")
        if self.type == "string" and self.pattern is None:
            raise ValueError(
                "a string parameter needs a `pattern` that its values must match in full, "
                'like "[a-z0-9@._-]{1,64}"'
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.required and self.default is not None:
            raise ValueError("a required parameter takes no default; drop one of the two")
        if self.default is not None:
            if _kind(self.default) != _KINDS[self.type]:
                raise ValueError(
                    f"the default {self.default!r} is not a {self.type}; "
                    + _DEFAULT_HINTS[self.type]
                )
            problem = self.problem(rendered(self.default))
            if problem:
                raise ValueError(f"the default is not a valid value: {problem}")
        return self

    @property
    def limit(self) -> int:
        return self.max_length or MAX_LENGTH

    def parse(self, text: str) -> tuple[ParamValue | None, str]:
        """The typed value of `text`, or (None, what is wrong with it)."""
        bad = bad_character(text)
        if bad:
            return None, f"holds {bad}; values are one line of printable text"
        if self.type == "int":
            if not _INT.fullmatch(text):
                return None, f"{_quoted(text)} is not a whole number"
            number = int(text)
            if self.min is not None and number < self.min:
                return None, f"{number} is below the minimum {self.min}"
            if self.max is not None and number > self.max:
                return None, f"{number} is above the maximum {self.max}"
            return number, ""
        if self.type == "bool":
            if text.lower() in _TRUE:
                return True, ""
            if text.lower() in _FALSE:
                return False, ""
            return None, f"{_quoted(text)} is not true or false"
        if self.type == "enum":
            assert self.values is not None
            if text not in self.values:
                return None, f"{_quoted(text)} is not one of: {', '.join(self.values)}"
            return text, ""
        if len(text) > self.limit:
            return None, f"is {len(text)} characters long; at most {self.limit} are allowed"
        assert self.pattern is not None
        if re.fullmatch(self.pattern, text) is None:
            return None, f"{_quoted(text)} does not match the pattern {self.pattern}"
        return text, ""

    def problem(self, text: str) -> str:
        return self.parse(text)[1]


_ARTICLE = {"enum": "an enum", "int": "an int", "string": "a string", "bool": "a bool"}
_KINDS = {"enum": "text", "string": "text", "int": "number", "bool": "bool"}
_DEFAULT_HINTS = {
    "enum": "quote it if it looks like a number or true/false",
    "string": "quote it if it looks like a number or true/false",
    "int": "write a whole number without quotes",
    "bool": "write true or false without quotes",
}


def _kind(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, int) else "text"


def rendered(value: ParamValue) -> str:
    """A typed value as it goes into argv: `true`/`false`, decimal digits, or the text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _quoted(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def check_param_names(params: Mapping[str, Param]) -> list[tuple[tuple[str, ...], str]]:
    """Parameter names that cannot be used: not a lowercase word, or the reserved `hosts`."""
    problems: list[tuple[tuple[str, ...], str]] = []
    for name in params:
        if name == HOSTS:
            problems.append(
                (("params", name), "`hosts` is reserved for the host selection (hosts=...)")
            )
        elif not NAME.fullmatch(name):
            problems.append(
                (
                    ("params", name),
                    "a parameter name is a lowercase word of up to 32 letters, digits and _",
                )
            )
    return problems


@dataclass(frozen=True)
class Arguments:
    """The words of a run request: parameter values as text, and the host selection."""

    values: dict[str, str]
    hosts: str | None = None


def parse_arguments(words: Sequence[str]) -> Arguments:
    """`key=value ...` words into `Arguments`; raises RunRefused listing every bad word.

    `hosts=NAME,NAME` (or a group name) is the host selection. A word without `=`, an empty
    key, or a key given twice is refused.
    """
    problems: list[str] = []
    values: dict[str, str] = {}
    hosts: str | None = None
    if len(words) > MAX_WORDS:
        raise RunRefused([f"{len(words)} words given; a run takes at most {MAX_WORDS}"])
    for word in words:
        key, equals, value = word.partition("=")
        if not equals or not key:
            problems.append(
                f"{_quoted(word)} is not key=value; give parameters as name=value "
                "(and hosts as hosts=NAME,NAME or hosts=GROUP)"
            )
            continue
        if key == HOSTS:
            if hosts is not None:
                problems.append("hosts= is given twice; give it once")
            hosts = value
            continue
        if key in values:
            problems.append(f"{_quoted(key)} is given twice; give each parameter once")
            continue
        values[key] = value
    if problems:
        raise RunRefused(problems)
    return Arguments(values=values, hosts=hosts)


def check_values(
    params: Mapping[str, Param], given: Mapping[str, str]
) -> tuple[dict[str, ParamValue], list[str]]:
    """Typed values for every parameter that has one (given, else its default), and every
    problem: undeclared, missing required, wrong type, out of range, pattern, enum, newline."""
    problems: list[str] = []
    values: dict[str, ParamValue] = {}
    declared = ", ".join(params) or "none"
    for key, text in given.items():
        param = params.get(key)
        if param is None:
            problems.append(
                f"{_quoted(key)} is not a parameter of this runbook (parameters: {declared})"
            )
            continue
        value, problem = param.parse(text)
        if problem:
            problems.append(f"{key}: {problem}")
        elif value is not None:
            values[key] = value
    for name, param in params.items():
        if name in given:
            continue
        if param.default is not None:
            values[name] = param.default
        elif param.required:
            hint = f" (one of: {', '.join(param.values)})" if param.values else ""
            problems.append(f"{name}: is required; give {name}=VALUE{hint}")
    return values, problems
