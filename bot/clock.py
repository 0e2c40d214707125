"""The one clock every domain write reads: the app holds one, tests may point it elsewhere."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime


def system_now() -> datetime:
    return datetime.now(UTC)


class Clock:
    """`clock()` is now, in UTC. Shared by every component the app builds, so a test that
    freezes or advances it moves incidents, paging and jobs together."""

    def __init__(self, source: Callable[[], datetime] = system_now) -> None:
        self._source = source

    def __call__(self) -> datetime:
        return self._source()

    def use(self, source: Callable[[], datetime]) -> None:
        self._source = source
