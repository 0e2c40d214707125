"""The on-call sections of firebreak.yaml: schedules, escalation policies, services, notifiers.

Field formats are checked here; references between sections (a layer naming a person who
is not in `people:`, a step naming an unknown schedule) are checked by `FileConfig`, which
sees every section.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

from bot.oncall.timespec import (
    Handoff,
    Rotation,
    Window,
    parse_duration,
    parse_handoff,
    parse_rotation,
    parse_window,
)

CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{2,}$")
TARGET = re.compile(r"^(user|schedule):([A-Za-z0-9_.-]+)$")
NOTIFY_CHANNELS = ("slack", "email", "webhook")

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{value!r} is not an IANA time zone (like Europe/Berlin or America/New_York)"
        ) from None
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class Layer(_Strict):
    name: str
    users: list[str] = Field(min_length=1)
    rotation: Annotated[Rotation, BeforeValidator(parse_rotation)]
    handoff: Handoff
    start: date
    restrict: list[Annotated[Window, BeforeValidator(parse_window)]] = Field(default_factory=list)

    @field_validator("users", mode="before")
    @classmethod
    def _users(cls, value: Any) -> Any:
        if value in (None, []):
            raise ValueError("a layer needs at least one person in users")
        return value

    @field_validator("handoff", mode="before")
    @classmethod
    def _handoff(cls, value: Any, info: ValidationInfo) -> Handoff:
        if isinstance(value, Handoff):
            return value
        return parse_handoff(value, info.data.get("rotation"))


class ConfigOverride(_Strict):
    """A planned override; times without a zone are in the schedule's zone."""

    user: str
    start: datetime
    end: datetime

    @field_validator("end")
    @classmethod
    def _ends_after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is not None and (start.tzinfo is None) != (value.tzinfo is None):
            raise ValueError("give both start and end a zone offset, or neither")
        if start is not None and value <= start:
            raise ValueError(f"ends at {value} but starts at {start}; the end must come later")
        return value


class Schedule(_Strict):
    timezone: str
    layers: list[Layer] = Field(min_length=1)
    handoff_channel: str | None = None
    overrides: list[ConfigOverride] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_zone(value)

    @field_validator("handoff_channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not CHANNEL_ID.match(value):
            raise ValueError(f"{value!r} is not a Slack channel ID (like C0123ABCD)")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class EscalationStep(_Strict):
    targets: list[str] = Field(min_length=1)
    wait: Duration

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: list[str]) -> list[str]:
        for target in value:
            if not TARGET.match(target):
                raise ValueError(f"{target!r} is not a target; write user:NAME or schedule:NAME")
        return value


class EscalationPolicy(_Strict):
    steps: list[EscalationStep] = Field(min_length=1)
    repeat: int = Field(default=0, ge=0, le=10)


class Service(_Strict):
    escalation_policy: str


class EmailNotifier(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    sender: str = "firebreak@localhost"
    starttls: bool = False
    username: str | None = None
    password_env: str | None = Field(
        default=None, description="Name of the environment variable that holds the password"
    )
    timeout: Duration = timedelta(seconds=10)


class WebhookNotifier(_Strict):
    url: str
    secret_env: str = Field(
        default="FIREBREAK_WEBHOOK_SECRET",
        description="Name of the environment variable holding the HMAC-SHA256 key",
    )
    timeout: Duration = timedelta(seconds=5)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://", value):
            raise ValueError(f"{value!r} must be an http(s) URL")
        return value


class NotifiersSection(_Strict):
    email: EmailNotifier | None = None
    webhook: WebhookNotifier | None = None


class PagingSection(_Strict):
    """How pages to a person or schedule (not a policy) escalate: re-notify, then give up."""

    wait: Duration = timedelta(minutes=5)
    repeat: int = Field(default=2, ge=0, le=10)
    max_attempts: int = Field(default=5, ge=1, le=20, description="tries per notification")
