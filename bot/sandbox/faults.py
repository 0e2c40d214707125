"""Injected faults: Slack errors, HTTP failures, rate limits and slow answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class Fault:
    """Answers the next `times` calls of `method` ("*" for any) the broken way."""

    method: str
    error: str | None = None
    status: int | None = None
    retry_after: int | None = None
    delay: float = 0.0
    times: int = 1

    def __post_init__(self) -> None:
        if not self.method:
            raise ValueError("a fault needs a method name or '*'")
        if self.times < 1:
            raise ValueError("times must be at least 1")
        if self.delay < 0:
            raise ValueError("delay must not be negative")
        if self.status is not None and not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must not be negative")
        if not self.breaks_call and not self.delay:
            raise ValueError("a fault needs error, status, retry_after or delay")

    def matches(self, method: str) -> bool:
        return self.method in ("*", method)

    @property
    def breaks_call(self) -> bool:
        """False for a pure delay, after which the call proceeds normally."""
        return self.error is not None or self.status is not None or self.retry_after is not None

    def answer(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        """HTTP status, JSON body and extra headers of the faulted answer."""
        if self.retry_after is not None:
            body = {"ok": False, "error": "ratelimited"}
            return 429, body, {"Retry-After": str(self.retry_after)}
        if self.status is not None:
            return self.status, {"ok": False, "error": self.error or "internal_error"}, {}
        return 200, {"ok": False, "error": self.error or "fatal_error"}, {}

    @classmethod
    def from_json(cls, data: object) -> Fault:
        """A fault from the control endpoint's JSON; ValueError when malformed."""
        if not isinstance(data, dict) or not isinstance(data.get("method"), str):
            raise ValueError("expected an object with a string 'method'")
        try:
            return cls(
                method=data["method"],
                error=_optional(data, "error", str),
                status=_optional(data, "status", int),
                retry_after=_optional(data, "retry_after", int),
                delay=float(data.get("delay") or 0.0),
                times=int(data.get("times") or 1),
            )
        except TypeError as exc:
            raise ValueError(str(exc)) from None


def _optional(data: dict[str, Any], key: str, kind: type[T]) -> T | None:
    value = data.get(key)
    if value is None:
        return None
    if kind is int and isinstance(value, bool):
        raise ValueError(f"{key} must be an integer")
    if not isinstance(value, kind):
        raise ValueError(f"{key} must be {kind.__name__}")
    return value
