"""The on-call sections of firebreak.yaml: schedules, escalation policies, services, notifiers.

Field formats are checked here; references between sections (a layer naming a person who
is not in `people:`, a step naming an unknown schedule) are checked by `FileConfig`, which
sees every section.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator

from bot.oncall.targets import STEP_KINDS, EscalationSnapshot, SnapshotStep, Target
from bot.oncall.timespec import (
    Handoff,
    Rotation,
    Window,
    parse_duration,
    parse_handoff,
    parse_rotation,
    parse_window,
)
from bot.people import Person, check_zone
from bot.strict import CHANNEL_ID, Section

NOTIFY_CHANNELS = ("slack", "email", "webhook")

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class Layer(Section):
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

    @field_validator("start")
    @classmethod
    def _start_in_range(cls, value: date) -> date:
        _check_date_range(value)
        return value


FIRST_DATE = date(2000, 1, 1)
END_DATE = date(2100, 1, 1)


def _check_date_range(value: date) -> None:
    """Dates from 2000 to 2099 only, so rotation and override arithmetic never overflows."""
    day = value.date() if isinstance(value, datetime) else value
    if not FIRST_DATE <= day < END_DATE:
        raise ValueError(
            f"{value} is out of range; use a date from {FIRST_DATE} to "
            f"{END_DATE - timedelta(days=1)}"
        )


class ConfigOverride(Section):
    """A planned override; times without a zone are in the schedule's zone."""

    user: str
    start: datetime
    end: datetime

    @field_validator("start", "end")
    @classmethod
    def _in_range(cls, value: datetime) -> datetime:
        _check_date_range(value)
        return value

    @field_validator("end")
    @classmethod
    def _ends_after_start(cls, value: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is not None and (start.tzinfo is None) != (value.tzinfo is None):
            raise ValueError("give both start and end a zone offset, or neither")
        if start is not None and value <= start:
            raise ValueError(f"ends at {value} but starts at {start}; the end must come later")
        return value


class Schedule(Section):
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


def _step_target(value: Any) -> Target:
    if isinstance(value, Target):
        return value
    return Target.parse(str(value), kinds=STEP_KINDS)


class EscalationStep(Section):
    targets: list[Annotated[Target, BeforeValidator(_step_target)]] = Field(min_length=1)
    wait: Duration


class EscalationPolicy(Section):
    steps: list[EscalationStep] = Field(min_length=1)
    repeat: int = Field(default=0, ge=0, le=10)

    def snapshot(self) -> EscalationSnapshot:
        return EscalationSnapshot(
            tuple(SnapshotStep(tuple(step.targets), step.wait) for step in self.steps),
            self.repeat,
        )


ROUTING_KEY = re.compile(r"[A-Za-z0-9]{32}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def check_env_name(value: str, what: str) -> str:
    """`value` must name an environment variable (the one holding `what`), not be a secret."""
    if not ENV_NAME.fullmatch(value):
        raise ValueError(
            f"is not an environment variable name (letters, digits, '_'); name the variable "
            f"that holds the {what}, never the {what} itself"
        )
    return value


class Service(Section):
    """A service pages through its escalation policy (`/page service:NAME`, alert routes).

    `routing_key` (or, better, `routing_key_env`: the name of an environment variable that
    holds it) is what PagerDuty Events v2 senders put in `routing_key` to reach this service
    at `/v2/enqueue`: 32 letters and digits, like PagerDuty's integration keys. It is a
    secret: it is kept out of `repr` and no error message ever shows it.
    """

    escalation_policy: str
    routing_key: str | None = Field(default=None, repr=False)
    routing_key_env: str | None = None

    @field_validator("routing_key", mode="before")
    @classmethod
    def _routing_key(cls, value: Any) -> Any:
        if value is None:
            return value
        if not isinstance(value, str) or not ROUTING_KEY.fullmatch(value):
            # Never echo the value: it is, or is close to, a secret.
            raise ValueError(
                "must be exactly 32 letters and digits (A-Z, a-z, 0-9), like a PagerDuty "
                "integration key, as text; the value is not shown here because it is a secret"
            )
        return value

    @field_validator("routing_key_env")
    @classmethod
    def _routing_key_env(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        if info.data.get("routing_key") is not None:
            raise ValueError(
                "give routing_key or routing_key_env, not both (routing_key_env is better: "
                "the key then stays out of the file)"
            )
        return check_env_name(value, "routing key")

    def routing_key_from(self, environ: Mapping[str, str]) -> str | None:
        """The routing key: the literal one, or the value of `routing_key_env` (None when
        unset or empty)."""
        if self.routing_key is not None:
            return self.routing_key
        if self.routing_key_env is not None:
            return environ.get(self.routing_key_env) or None
        return None


class EmailNotifier(Section):
    """SMTP for page emails. A `username` (and so a password) needs `starttls: true`, or
    `allow_plaintext_auth: true` where the link to `host` is trusted: without TLS the
    password crosses the network in clear text."""

    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    sender: str = "firebreak@localhost"
    starttls: bool = False
    allow_plaintext_auth: bool = Field(
        default=False, description="Log in without STARTTLS (a relay on a trusted link only)"
    )
    username: str | None = None
    password_env: str | None = Field(
        default=None,
        validate_default=True,  # so a username without it is reported
        description="Name of the environment variable that holds the password",
    )
    timeout: Duration = timedelta(seconds=10)

    @field_validator("username")
    @classmethod
    def _no_password_in_clear_text(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A starttls or allow_plaintext_auth that is itself invalid is reported on its own.
        plaintext = info.data.get("starttls", True) is False
        if value is not None and plaintext and info.data.get("allow_plaintext_auth") is False:
            host = info.data.get("host", "the server")
            raise ValueError(
                f"logging in to {host} without starttls sends the password in clear text; "
                "set `starttls: true` (the server must offer STARTTLS, usually on port 587), "
                "or `allow_plaintext_auth: true` if the link to it is trusted (a relay on "
                "this host or a private network)"
            )
        return value

    @field_validator("password_env")
    @classmethod
    def _password_variable(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("username") is not None:
                raise ValueError(
                    "is needed with a username: name the environment variable that holds "
                    "the SMTP password (like FIREBREAK_SMTP_PASSWORD)"
                )
            return value
        return check_env_name(value, "SMTP password")


class WebhookNotifier(Section):
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


class NotifiersSection(Section):
    email: EmailNotifier | None = None
    webhook: WebhookNotifier | None = None


class PagingSection(Section):
    """How pages to a person or schedule (not a policy) escalate: re-notify, then give up."""

    wait: Duration = timedelta(minutes=5)
    repeat: int = Field(default=2, ge=0, le=10)
    max_attempts: int = Field(default=5, ge=1, le=20, description="tries per notification")


@dataclass(frozen=True)
class OncallConfig:
    """The sections the on-call domain reads (composed by `bot.config.FileConfig.oncall`)."""

    people: dict[str, Person]
    schedules: dict[str, Schedule]
    escalation_policies: dict[str, EscalationPolicy]
    services: dict[str, Service]
    paging: PagingSection
