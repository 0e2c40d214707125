"""The `postmortem:` section of firebreak.yaml.

    postmortem:
      templates_dir: postmortem-templates   # adds or overrides templates (name = file stem)
      timezone: Europe/Berlin               # the team's clock in drafts (IANA; default UTC)
      mitigated_statuses: [identified, monitoring]
      directory: postmortems                # where drafts are saved (the Slack half)
      due_after: 5 working days             # when the review is due after resolution

Relative paths are relative to the working directory of `firebreak`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator

from bot.people import check_zone
from bot.strict import Section

DEFAULT_MITIGATED = ("identified", "monitoring")
_DUE = re.compile(r"^\s*(\d{1,3})\s+(working\s+days?|days?|hours?)\s*$", re.IGNORECASE)

Unit = Literal["working_days", "days", "hours"]


@dataclass(frozen=True)
class DueAfter:
    """How long after resolution a postmortem is due: `amount` of `unit`."""

    amount: int
    unit: Unit

    def __str__(self) -> str:
        words = {"working_days": "working day", "days": "day", "hours": "hour"}
        return f"{self.amount} {words[self.unit]}{'' if self.amount == 1 else 's'}"


def parse_due_after(text: str) -> DueAfter:
    """`5 working days`, `3 days` or `48 hours` (1-999); raises ValueError naming the forms."""
    match = _DUE.match(text)
    if not match or int(match.group(1)) < 1:
        raise ValueError(
            f"{text!r} is not a delay; write it like '5 working days', '3 days' or '48 hours' "
            "(1-999)"
        )
    word = match.group(2).lower()
    unit: Unit = (
        "working_days"
        if word.startswith("working")
        else ("days" if word.startswith("day") else "hours")
    )
    return DueAfter(int(match.group(1)), unit)


class PostmortemSection(Section):
    templates_dir: Path | None = None
    timezone: str = "UTC"
    mitigated_statuses: list[str] = Field(
        default_factory=lambda: list(DEFAULT_MITIGATED), min_length=1
    )
    directory: Path = Path("postmortems")
    due_after: str = "5 working days"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)

    @field_validator("due_after")
    @classmethod
    def _due(cls, value: str) -> str:
        parse_due_after(value)
        return value

    @field_validator("mitigated_statuses")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("statuses must not repeat")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def due(self) -> DueAfter:
        return parse_due_after(self.due_after)

    def broken_references(self, statuses: list[str]) -> list[tuple[tuple[str | int, ...], str]]:
        """Mitigated statuses that `incidents.statuses` does not define (or that is `resolved`)."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        known = ", ".join(status for status in statuses if status != "resolved")
        for index, status in enumerate(self.mitigated_statuses):
            if status == "resolved":
                problems.append(
                    (
                        ("postmortem", "mitigated_statuses", index),
                        "'resolved' cannot count as mitigated (time to resolve measures it); "
                        f"choose from {known}",
                    )
                )
            elif status not in statuses:
                problems.append(
                    (
                        ("postmortem", "mitigated_statuses", index),
                        f"{status!r} is not in incidents.statuses ({known})",
                    )
                )
        return problems
