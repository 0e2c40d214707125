"""Typed access to Web API arguments, which arrive as form strings or as JSON values."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any, TypeVar

from bot.sandbox.state import SlackError

T = TypeVar("T")
_TRUE = ("true", "1", "yes")


class Args:
    """The parameters of one API call (token already removed)."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def raw(self, name: str) -> Any:
        return self.params.get(name)

    def text(self, name: str) -> str | None:
        value = self.params.get(name)
        if value is None:
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if isinstance(value, str) else str(value)

    def required(self, name: str, code: str = "invalid_arguments") -> str:
        value = self.text(name)
        if not value:
            raise SlackError(code)
        return value

    def flag(self, name: str) -> bool:
        value = self.params.get(name)
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in _TRUE if value is not None else False

    def integer(self, name: str, default: int) -> int:
        value = self.params.get(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SlackError("invalid_arguments") from None

    def id_list(self, name: str) -> list[str]:
        value = self.params.get(name)
        if isinstance(value, list):
            return [str(item).strip() for item in value if str(item).strip()]
        if value is None:
            return []
        return [item.strip() for item in str(value).split(",") if item.strip()]


def paginate(items: Sequence[T], args: Args, default_limit: int) -> tuple[list[T], str]:
    """One page of `items` for `limit`/`cursor`, and the `next_cursor` ("" at the end)."""
    limit = args.integer("limit", default_limit)
    if limit <= 0:
        limit = default_limit
    cursor = args.text("cursor") or ""
    start = 0
    if cursor:
        try:
            decoded = base64.b64decode(cursor, validate=True).decode()
            start = int(decoded.removeprefix("offset:"))
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise SlackError("invalid_cursor") from None
    end = start + limit
    next_cursor = base64.b64encode(f"offset:{end}".encode()).decode() if end < len(items) else ""
    return list(items[start:end]), next_cursor
