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
from typing import Any, Literal

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

from bot.oncall.configuration import (
    EscalationPolicy,
    NotifiersSection,
    PagingSection,
    Schedule,
    Service,
    check_zone,
)

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


NotifyChannel = Literal["slack", "email", "webhook"]


def _slack_only() -> list[NotifyChannel]:
    return ["slack"]


class Person(_Strict):
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


class FileConfig(_Strict):
    """The YAML configuration (`FIREBREAK_CONFIG`, default `firebreak.yaml`)."""

    slack: SlackSection = Field(default_factory=SlackSection)
    incidents: IncidentsSection = Field(default_factory=IncidentsSection)
    people: dict[str, Person] = Field(default_factory=dict)
    schedules: dict[str, Schedule] = Field(default_factory=dict)
    escalation_policies: dict[str, EscalationPolicy] = Field(default_factory=dict)
    services: dict[str, Service] = Field(default_factory=dict)
    notifiers: NotifiersSection = Field(default_factory=NotifiersSection)
    paging: PagingSection = Field(default_factory=PagingSection)

    def person_by_slack_id(self, user_id: str) -> Person | None:
        name = self.name_by_slack_id(user_id)
        return self.people[name] if name else None

    def name_by_slack_id(self, user_id: str) -> str | None:
        for name, person in self.people.items():
            if person.slack == user_id:
                return name
        return None

    def broken_references(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Names one section uses that another does not define: (key path, problem)."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        people = ", ".join(self.people) or "none defined"

        def person(loc: tuple[str | int, ...], name: str) -> None:
            if name not in self.people:
                problems.append((loc, f"{name!r} is not in people: ({people})"))

        for schedule_name, schedule in self.schedules.items():
            for index, layer in enumerate(schedule.layers):
                for position, user in enumerate(layer.users):
                    person(("schedules", schedule_name, "layers", index, "users", position), user)
            for index, override in enumerate(schedule.overrides):
                person(("schedules", schedule_name, "overrides", index, "user"), override.user)
        for policy_name, policy in self.escalation_policies.items():
            for index, step in enumerate(policy.steps):
                for position, target in enumerate(step.targets):
                    kind, _, name = target.partition(":")
                    loc = ("escalation_policies", policy_name, "steps", index, "targets", position)
                    if kind == "user":
                        person(loc, name)
                    elif name not in self.schedules:
                        known = ", ".join(self.schedules) or "none defined"
                        problems.append((loc, f"{name!r} is not in schedules: ({known})"))
        for service_name, service in self.services.items():
            if service.escalation_policy not in self.escalation_policies:
                known = ", ".join(self.escalation_policies) or "none defined"
                problems.append(
                    (
                        ("services", service_name, "escalation_policy"),
                        f"{service.escalation_policy!r} is not in escalation_policies: ({known})",
                    )
                )
        for name, entry in self.people.items():
            for channel in entry.notify:
                if channel == "email" and entry.email is None:
                    problems.append(
                        (("people", name, "notify"), "email is listed but the person has no email")
                    )
                if channel in ("email", "webhook") and getattr(self.notifiers, channel) is None:
                    problems.append(
                        (
                            ("people", name, "notify"),
                            f"{channel} is listed but notifiers.{channel} is not configured",
                        )
                    )
        return problems


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
        config = FileConfig.model_validate(data)
    except ValidationError as exc:
        errors = []
        for error in exc.errors():
            loc = tuple(part for part in error["loc"] if not str(part).startswith("function-"))
            message = error["msg"].removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key; check the spelling against examples/firebreak.yaml"
            errors.append((loc, message))
        raise ConfigError(_located(path, root, errors)) from None
    broken = config.broken_references()
    if broken:
        raise ConfigError(_located(path, root, broken))
    return config, True


def _located(
    path: Path, root: yaml.Node | None, errors: list[tuple[tuple[Any, ...], str]]
) -> list[str]:
    """`file:line: dotted.key: problem` for each error, in the order of the file."""
    problems: list[tuple[int, str]] = []
    for loc, message in errors:
        line = _line_of(root, loc)
        where = f"{path}:{line}" if line else str(path)
        problems.append((line or 0, f"{where}: {_loc(loc) or '(top level)'}: {message}"))
    return [problem for _, problem in sorted(problems)]


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
