"""The `runbooks:` section of firebreak.yaml: groups of people for `allowed_roles`, approvals.

    runbooks:
      groups:
        sre: [alice, bob]          # names from people:
      approval_expires: 15m        # how long a run waits for its approver
      interrupted_after: 60s       # a running run whose executor is silent this long died

A runbook's `allowed_roles` lists incident roles (`incidents.roles`) or these group names.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, field_validator

from bot.oncall.configuration import Duration
from bot.strict import IDENTIFIER, Section

MAX_APPROVAL_WAIT = timedelta(days=1)
# `interrupted_after` bounds: the executor beats every min(5 s, interrupted_after / 6), and a
# beat is one small UPDATE, so 6 s still leaves room for a slow database; an hour is plenty.
MIN_INTERRUPTED_AFTER = timedelta(seconds=6)
MAX_INTERRUPTED_AFTER = timedelta(hours=1)


class RunbooksSection(Section):
    groups: dict[str, frozenset[str]] = Field(default_factory=dict, max_length=200)
    approval_expires: Duration = timedelta(minutes=15)
    # How long a `running` run may go without its executor's heartbeat before the scheduler
    # leader marks it interrupted (its process died: a killed replica, a crashed terminal).
    interrupted_after: Duration = timedelta(seconds=60)

    @field_validator("groups")
    @classmethod
    def _group_names(cls, value: dict[str, frozenset[str]]) -> dict[str, frozenset[str]]:
        for name in value:
            if not IDENTIFIER.match(name):
                raise ValueError(
                    f"group {name!r} must be a lowercase word (a-z, 0-9, '-', '_'), like sre"
                )
        return value

    @field_validator("approval_expires")
    @classmethod
    def _bounded(cls, value: timedelta) -> timedelta:
        if value > MAX_APPROVAL_WAIT:
            raise ValueError("must be at most 1d: an approval is for the incident at hand")
        return value

    @field_validator("interrupted_after")
    @classmethod
    def _plausible(cls, value: timedelta) -> timedelta:
        if value < MIN_INTERRUPTED_AFTER:
            raise ValueError(
                "must be at least 6s: a live run beats every second at that setting, and a "
                "shorter one would mark runs interrupted during a database hiccup"
            )
        if value > MAX_INTERRUPTED_AFTER:
            raise ValueError("must be at most 1h: a dead run should not look alive for longer")
        return value

    def problems(
        self, people: set[str], roles: list[str]
    ) -> list[tuple[tuple[str | int, ...], str]]:
        """Group members who are not in `people:`, group names that are incident roles."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for name, members in self.groups.items():
            if name in roles:
                problems.append(
                    (
                        ("runbooks", "groups", name),
                        f"{name!r} is also an incident role; allowed_roles could mean either, "
                        "so rename the group",
                    )
                )
            for member in sorted(members - people):
                problems.append(
                    (
                        ("runbooks", "groups", name),
                        f"{member!r} is not in people: (groups list people by their name there)",
                    )
                )
        return problems
