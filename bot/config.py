"""Settings from the environment plus the YAML file, validated once at start.

Every error names the file, the key (as a dotted path) and, where the YAML says it, the
line, so `firebreak check` and `firebreak serve` can print something a person can act on:

    firebreak.yaml:7: incidents.default_severity: 'sev9' is not a severity; choose one of sev1..sev5
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{2,}$")
USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")

DEFAULT_SEVERITIES: dict[str, str] = {
    "sev1": "Critical: customers cannot use a core product; all hands",
    "sev2": "Major: a core product is degraded for many customers",
    "sev3": "Minor: a feature is degraded or a few customers are affected",
    "sev4": "Low: no customer impact yet; needs attention today",
    "sev5": "Informational: tracking only",
}
DEFAULT_STATUSES = ["investigating", "identified", "monitoring", "resolved"]
DEFAULT_ROLES = ["commander", "comms", "scribe", "ops"]
RESOLVED = "resolved"


class ConfigError(Exception):
    """The configuration is unusable; `problems` lists every error, each ready to print."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlackSection(_Strict):
    announce_channel: str | None = Field(
        default=None, description="Channel ID where every new incident is announced"
    )

    @field_validator("announce_channel")
    @classmethod
    def _channel_id(cls, value: str | None) -> str | None:
        if value is not None and not CHANNEL_ID.match(value):
            raise ValueError(
                f"{value!r} is not a Slack channel ID; use the ID (like C0123ABCD) from the "
                "channel's details, not its name"
            )
        return value


class IncidentsSection(_Strict):
    channel_prefix: str = "inc"
    severities: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_SEVERITIES))
    default_severity: str = Field(default="sev3", validate_default=True)
    statuses: list[str] = Field(default_factory=lambda: list(DEFAULT_STATUSES))
    roles: list[str] = Field(default_factory=lambda: list(DEFAULT_ROLES))

    @field_validator("channel_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,19}", value):
            raise ValueError(
                f"{value!r} cannot start a Slack channel name; use 1-20 lowercase letters, "
                "digits, '-' or '_'"
            )
        return value

    @field_validator("severities")
    @classmethod
    def _severities(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("list at least one severity, e.g. sev1: Critical")
        for name in value:
            if not IDENTIFIER.match(name):
                raise ValueError(f"severity {name!r} must be a lowercase word like sev1")
        return value

    @field_validator("statuses", "roles")
    @classmethod
    def _names(cls, value: list[str], info: ValidationInfo) -> list[str]:
        for name in value:
            if not IDENTIFIER.match(name):
                raise ValueError(f"{name!r} must be a lowercase word (a-z, 0-9, '-', '_')")
        if len(set(value)) != len(value):
            raise ValueError("names must not repeat")
        if info.field_name == "statuses" and (RESOLVED not in value or value[0] == RESOLVED):
            raise ValueError(
                "must include 'resolved', and not first (the first is the initial status)"
            )
        if info.field_name == "roles" and "commander" not in value:
            raise ValueError("must include 'commander' (the declarer holds it at first)")
        return value

    @field_validator("default_severity")
    @classmethod
    def _default_severity(cls, value: str, info: ValidationInfo) -> str:
        severities = info.data.get("severities")
        if severities is not None and value not in severities:
            raise ValueError(f"{value!r} is not a severity; choose one of " + ", ".join(severities))
        return value

    @property
    def initial_status(self) -> str:
        return self.statuses[0]


class Person(_Strict):
    slack: str
    email: str | None = None
    timezone: str = "UTC"

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
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not an IANA time zone (like Europe/Berlin or America/New_York)"
            ) from None
        return value


class FileConfig(_Strict):
    """The YAML configuration (`FIREBREAK_CONFIG`, default `firebreak.yaml`)."""

    slack: SlackSection = Field(default_factory=SlackSection)
    incidents: IncidentsSection = Field(default_factory=IncidentsSection)
    people: dict[str, Person] = Field(default_factory=dict)

    def person_by_slack_id(self, user_id: str) -> Person | None:
        for person in self.people.values():
            if person.slack == user_id:
                return person
        return None


class EnvSettings(BaseSettings):
    """Settings from the environment; names are the user-facing contract in DESIGN.md."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str = Field(default="sqlite:///firebreak.db", alias="DATABASE_URL")
    slack_bot_token: SecretStr | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_api_url: str = Field(default="https://slack.com/api/", alias="SLACK_API_URL")
    config_path: Path = Field(default=Path("firebreak.yaml"), alias="FIREBREAK_CONFIG")
    runbooks_path: Path = Field(default=Path("runbooks"), alias="FIREBREAK_RUNBOOKS")
    alert_token: SecretStr | None = Field(default=None, alias="FIREBREAK_ALERT_TOKEN")
    ssh_key: Path | None = Field(default=None, alias="FIREBREAK_SSH_KEY")
    known_hosts: Path | None = Field(default=None, alias="FIREBREAK_KNOWN_HOSTS")

    @field_validator("slack_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not re.match(r"^https?://", value):
            raise ValueError(f"{value!r} must be an http(s) URL like https://slack.com/api/")
        return value if value.endswith("/") else value + "/"

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb- (never a user token)")
        return value


@dataclass(frozen=True)
class Settings:
    env: EnvSettings
    file: FileConfig
    config_path: Path
    config_found: bool


def load_env(environ: dict[str, str] | None = None) -> EnvSettings:
    source = dict(os.environ if environ is None else environ)
    try:
        return EnvSettings.model_validate(
            {key: value for key, value in source.items() if key in _ENV_NAMES}
        )
    except ValidationError as exc:
        raise ConfigError(
            [f"environment: {_loc(error['loc'])}: {error['msg']}" for error in exc.errors()]
        ) from None


_ENV_NAMES = {field.alias for field in EnvSettings.model_fields.values() if field.alias is not None}


def load_file(path: Path, *, required: bool) -> tuple[FileConfig, bool]:
    """Read and validate the YAML file. A missing file means embedded defaults unless required."""
    if not path.exists():
        if required:
            raise ConfigError(
                [
                    f"{path}: no such file; create it (see examples/firebreak.yaml) or unset "
                    "FIREBREAK_CONFIG to use the embedded defaults"
                ]
            )
        return FileConfig(), False
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: not valid YAML: {problem}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of sections (slack:, ...)"])
    try:
        return FileConfig.model_validate(data), True
    except ValidationError as exc:
        problems: list[tuple[int, str]] = []
        for error in exc.errors():
            loc = tuple(part for part in error["loc"] if not str(part).startswith("function-"))
            line = _line_of(root, loc)
            where = f"{path}:{line}" if line else str(path)
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key; check the spelling against examples/firebreak.yaml"
            problems.append((line or 0, f"{where}: {_loc(loc) or '(top level)'}: {message}"))
        raise ConfigError([problem for _, problem in sorted(problems)]) from None


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    source = dict(os.environ if environ is None else environ)
    env = load_env(source)
    file, found = load_file(env.config_path, required="FIREBREAK_CONFIG" in source)
    return Settings(env=env, file=file, config_path=env.config_path, config_found=found)


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the deepest YAML node along `loc` (pydantic's error location)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(part)), None)
            key = next((k for k, _ in node.value if k.value == str(part)), None)
            if key is not None:
                line = key.start_mark.line + 1
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            node = node.value[part] if part < len(node.value) else None
            if node is not None:
                line = node.start_mark.line + 1
        else:
            break
    return line
