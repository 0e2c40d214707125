"""Reading an untrusted JSON request body: one parse, bounded nesting, never a crash.

Shared by the Slack edge (`bot.slack.requests`) and the alert endpoints (`bot.webhooks`):
both refuse a body that is not JSON or nests deeper than `MAX_DEPTH` with a 400 that says
which, instead of a `RecursionError` or a 5xx.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64  # JSON nesting; Slack's deepest payloads (rich text in a modal) use ~15


class NotJSON(ValueError):
    """The body cannot be used; `problem` completes "The body ..." ("is not valid JSON ...")."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def load(raw: str | bytes) -> Any:
    """The JSON value of `raw`, or NotJSON when it is not JSON (or not UTF-8, or holds an
    integer of 4,300+ digits) or nests deeper than MAX_DEPTH."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise NotJSON(f"is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as error:
        raise NotJSON(f"is not valid JSON ({error})") from None
    if depth(value) > MAX_DEPTH:
        raise NotJSON(f"is nested more than {MAX_DEPTH} levels deep")
    return value


def depth(value: Any) -> int:
    """How deeply `value` nests, without recursion (its depth is what is being measured);
    counting stops once past MAX_DEPTH."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return deepest
