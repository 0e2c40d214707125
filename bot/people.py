"""People Firebreak can reach: who they are in Slack, how to page them, their time zone."""

from __future__ import annotations

import re
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from bot.strict import USER_ID, Section

NotifyChannel = Literal["slack", "email", "webhook"]


def check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"{value!r} is not an IANA time zone (like Europe/Berlin or America/New_York)"
        ) from None
    return value


def _slack_only() -> list[NotifyChannel]:
    return ["slack"]


class Person(Section):
    slack: str
    email: str | None = None
    timezone: str = "UTC"
    notify: list[NotifyChannel] = Field(default_factory=_slack_only, min_length=1)

    @field_validator("slack")
    @classmethod
    def _user_id(cls, value: str) -> str:
        if not USER_ID.match(value):
            raise ValueError(f"{value!r} is not a Slack user ID (like U0123ABCD)")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
            raise ValueError(f"{value!r} is not an email address")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)


def name_by_slack_id(people: dict[str, Person], user_id: str) -> str | None:
    """The `people:` name of the person with this Slack user id, if listed."""
    for name, person in people.items():
        if person.slack == user_id:
            return name
    return None
