"""Settings from the environment plus the YAML file, validated once at start.

Every error names the file, the key (as a dotted path) and, where the YAML says it, the
line, so `firebreak check` and `firebreak serve` can print something a person can act on:

    firebreak.yaml:7: incidents.default_severity: 'sev9' is not a severity; choose one of sev1..sev5
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.alerts.routing import AlertRoute, AlertsSection
from bot.incidents.config import IncidentsSection
from bot.oncall.configuration import (
    ROUTING_KEY,
    EscalationPolicy,
    NotifiersSection,
    OncallConfig,
    PagingSection,
    Schedule,
    Service,
)
from bot.people import Person, name_by_slack_id
from bot.postmortem.config import PostmortemSection
from bot.runbooks.config import RunbooksSection
from bot.runbooks.inventory import Inventory
from bot.strict import CHANNEL_ID, Section


class ConfigError(Exception):
    """The configuration is unusable; `problems` lists every error, each ready to print."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class SlackSection(Section):
    announce_channel: str | None = Field(
        default=None, description="Channel ID where every new incident is announced"
    )
    mode: Literal["http", "socket"] = Field(
        default="http",
        description="How Slack reaches Firebreak: http (POST /slack/events, needs a public "
        "URL) or socket (Socket Mode: Firebreak opens a WebSocket; needs SLACK_APP_TOKEN)",
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


class FileConfig(Section):
    """The YAML configuration (`FIREBREAK_CONFIG`, default `firebreak.yaml`)."""

    slack: SlackSection = Field(default_factory=SlackSection)
    incidents: IncidentsSection = Field(default_factory=IncidentsSection)
    people: dict[str, Person] = Field(default_factory=dict)
    schedules: dict[str, Schedule] = Field(default_factory=dict)
    escalation_policies: dict[str, EscalationPolicy] = Field(default_factory=dict)
    services: dict[str, Service] = Field(default_factory=dict)
    notifiers: NotifiersSection = Field(default_factory=NotifiersSection)
    paging: PagingSection = Field(default_factory=PagingSection)
    alert_routes: list[AlertRoute] = Field(default_factory=list, max_length=1000)
    alerts: AlertsSection = Field(default_factory=AlertsSection)
    postmortem: PostmortemSection = Field(default_factory=PostmortemSection)
    inventory: Inventory = Field(default_factory=Inventory)
    runbooks: RunbooksSection = Field(default_factory=RunbooksSection)

    def person_by_slack_id(self, user_id: str) -> Person | None:
        name = self.name_by_slack_id(user_id)
        return self.people[name] if name else None

    def name_by_slack_id(self, user_id: str) -> str | None:
        return name_by_slack_id(self.people, user_id)

    @property
    def oncall(self) -> OncallConfig:
        """The sections the on-call domain reads, without the rest of the file."""
        return OncallConfig(
            people=self.people,
            schedules=self.schedules,
            escalation_policies=self.escalation_policies,
            services=self.services,
            paging=self.paging,
        )

    def broken_references(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Names one section uses that another does not define: (key path, problem)."""
        problems: list[tuple[tuple[str | int, ...], str]] = []

        def listed(names: list[str]) -> str:
            """Names for a message, the first ten: a list of thousands helps nobody."""
            more = f" and {len(names) - 10} more" if len(names) > 10 else ""
            return (", ".join(names[:10]) + more) or "none defined"

        people = listed(list(self.people))
        schedules = listed(list(self.schedules))
        policies = listed(list(self.escalation_policies))

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
                    loc = ("escalation_policies", policy_name, "steps", index, "targets", position)
                    if target.kind == "user":
                        person(loc, target.name)
                    elif target.name not in self.schedules:
                        problems.append(
                            (loc, f"{target.name!r} is not in schedules: ({schedules})")
                        )
        for service_name, service in self.services.items():
            if service.escalation_policy not in self.escalation_policies:
                problems.append(
                    (
                        ("services", service_name, "escalation_policy"),
                        f"{service.escalation_policy!r} is not in escalation_policies: "
                        f"({policies})",
                    )
                )
        problems.extend(self._broken_alert_references(listed))
        problems.extend(self.postmortem.broken_references(self.incidents.statuses))
        problems.extend(self.inventory.problems())
        problems.extend(self.runbooks.problems(set(self.people), self.incidents.roles))
        owners: dict[str, str] = {}
        for name, entry in self.people.items():
            first = owners.setdefault(entry.slack, name)
            if first != name:
                problems.append(
                    (
                        ("people", name, "slack"),
                        f"{entry.slack!r} is already the Slack ID of {first!r}; each person "
                        "needs their own (pages and /oncall find people by it)",
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

    def _broken_alert_references(
        self, listed: Callable[[list[str]], str]
    ) -> list[tuple[tuple[str | int, ...], str]]:
        """Routes naming unknown services or severities, repeated route names and routing keys."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        services = listed(list(self.services))
        severities = ", ".join(self.incidents.severities)
        named: dict[str, int] = {}
        for index, route in enumerate(self.alert_routes):
            if route.service not in self.services:
                problems.append(
                    (
                        ("alert_routes", index, "service"),
                        f"{route.service!r} is not in services: ({services})",
                    )
                )
            severity = route.incident.severity if route.incident is not None else None
            if severity is not None and severity not in self.incidents.severities:
                problems.append(
                    (
                        ("alert_routes", index, "incident", "severity"),
                        f"{severity!r} is not a severity; choose one of {severities}",
                    )
                )
            if route.name is not None:
                first = named.setdefault(route.name, index)
                if first != index:
                    problems.append(
                        (
                            ("alert_routes", index, "name"),
                            f"{route.name!r} already names route {first + 1}; each route "
                            "needs its own name (alerts and pages record their route by it)",
                        )
                    )
        keys: dict[str, str] = {}
        for name, service in self.services.items():
            if service.routing_key is None:
                continue
            first_service = keys.setdefault(service.routing_key, name)
            if first_service != name:
                problems.append(
                    (
                        ("services", name, "routing_key"),
                        f"is already the routing key of service {first_service!r}; each "
                        "service needs its own (PagerDuty events find their service by it)",
                    )
                )
        return problems

    def environment_problems(self, environ: Mapping[str, str]) -> list[str]:
        """Secrets the environment holds malformed or twice, and alert source tokens the file
        names that the environment lacks (`firebreak check` and `serve` refuse these; an
        unset routing key, SMTP password or webhook key is a warning: `environment_warnings`).

        Routing keys are never shown, only which variable or service is wrong.
        """
        problems: list[str] = []
        keys: dict[str, tuple[str, str | None]] = {}  # key -> (service, its variable)
        for name, service in self.services.items():
            variable = service.routing_key_env
            if variable is not None:
                value = environ.get(variable)
                if not value:
                    continue  # not set up yet: one of `environment_warnings`
                if not ROUTING_KEY.fullmatch(value):
                    problems.append(
                        f"environment: {variable} (services.{name}.routing_key_env) must hold "
                        "exactly 32 letters and digits (A-Z, a-z, 0-9), like a PagerDuty "
                        "integration key; the value is not shown because it is a secret"
                    )
                    continue
            key = service.routing_key_from(environ)
            if key is None:
                continue
            first, first_variable = keys.setdefault(key, (name, variable))
            if first == name or (variable is None and first_variable is None):
                continue  # two keys in the file are broken_references' to report
            given = [
                f"services.{service_name}.routing_key_env ({env})"
                if env
                else f"services.{service_name}.routing_key"
                for service_name, env in ((first, first_variable), (name, variable))
            ]
            problems.append(
                f"environment: {given[0]} and {given[1]} are the same routing key; each "
                "service needs its own (PagerDuty events find their service by it)"
            )
        for source, entry in self.alerts.sources.items():
            if not environ.get(entry.token_env):
                problems.append(
                    f"environment: {entry.token_env} is not set, but "
                    f"alerts.sources.{source}.token_env names it; /alerts/{source} would "
                    "accept only FIREBREAK_ALERT_TOKEN"
                )
        return problems

    def environment_warnings(self, environ: Mapping[str, str]) -> list[str]:
        """Secret variables the file names that are unset: the integration each one unlocks
        is off until it is set (pages by that channel fail and are recorded as failed; the
        service's PagerDuty events are refused). `check` warns and `serve` logs each one, so
        a copy of examples/firebreak.yaml works before every integration is set up."""
        warnings: list[str] = []
        email, webhook = self.notifiers.email, self.notifiers.webhook
        secrets: list[tuple[str, str, str | None]] = []
        if email is not None and email.username is not None:  # no login, no password
            secrets.append(("email", "notifiers.email.password_env", email.password_env))
        if webhook is not None:
            secrets.append(("webhook", "notifiers.webhook.secret_env", webhook.secret_env))
        for channel, key, variable in secrets:
            if variable is not None and not environ.get(variable):
                paged = [name for name, person in self.people.items() if channel in person.notify]
                who = f" (people paged by {channel}: {', '.join(paged)})" if paged else ""
                warnings.append(
                    f"environment: {variable} is not set, but {key} names it; pages by "
                    f"{channel} fail until it is set{who}"
                )
        for name, service in self.services.items():
            variable = service.routing_key_env
            if variable is not None and not environ.get(variable):
                warnings.append(
                    f"environment: {variable} is not set, but services.{name}.routing_key_env "
                    f"names it; PagerDuty events for {name} are refused until it is set"
                )
        return warnings

    def alert_warnings(self, *, default_token: bool, environ: Mapping[str, str]) -> list[str]:
        """What `firebreak check` warns about alerts: nothing is wrong, but alerts would be
        refused, or stored without paging anyone. `default_token`: FIREBREAK_ALERT_TOKEN is
        set."""
        warnings: list[str] = []
        routes = self.alert_routes
        catch_all = next((i for i, route in enumerate(routes) if route.catches_all), None)
        if routes and catch_all is None:
            warnings.append(
                "alert_routes: no default route, so alerts no route matches are stored but "
                "page nobody; add a default route last: `- match: {} service: <name>`"
            )
        if catch_all is not None and catch_all < len(routes) - 1:
            warnings.append(
                f"alert_routes: {routes[catch_all].label(catch_all)} matches every alert, so "
                f"the {len(routes) - 1 - catch_all} route(s) after it never match; move it last"
            )
        tokens = default_token or any(
            environ.get(entry.token_env) for entry in self.alerts.sources.values()
        )
        keys = any(service.routing_key_from(environ) for service in self.services.values())
        if not tokens:
            warnings.append(
                "alerts: FIREBREAK_ALERT_TOKEN is not set and no alerts.sources.*.token_env "
                "is configured, so /alerts/alertmanager and /alerts/grafana will refuse every "
                "request"
            )
        if not routes and (tokens or keys):
            warnings.append(
                "alert_routes: none are configured, so every alert is stored but pages "
                "nobody; add routes ending with a default one: `- match: {} service: <name>`"
            )
        return warnings


class EnvSettings(BaseSettings):
    """Settings from the environment; names are the user-facing contract in DESIGN.md."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str = Field(default="sqlite:///firebreak.db", alias="DATABASE_URL")
    slack_bot_token: SecretStr | None = Field(default=None, alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default="https://slack.com/api/", alias="SLACK_API_URL")
    config_path: Path = Field(default=Path("firebreak.yaml"), alias="FIREBREAK_CONFIG")
    runbooks_path: Path = Field(default=Path("runbooks"), alias="FIREBREAK_RUNBOOKS")
    alert_token: SecretStr | None = Field(default=None, alias="FIREBREAK_ALERT_TOKEN")
    ssh_key: Path | None = Field(default=None, alias="FIREBREAK_SSH_KEY")
    known_hosts: Path | None = Field(default=None, alias="FIREBREAK_KNOWN_HOSTS")
    # The web view's public address, for the sign-in links `/incident web` sends.
    base_url: str | None = Field(default=None, alias="FIREBREAK_BASE_URL")

    @field_validator("slack_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not re.match(r"^https?://", value):
            raise ValueError(f"{value!r} must be an http(s) URL like https://slack.com/api/")
        return value if value.endswith("/") else value + "/"

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
            raise ValueError(
                f"{value[:80]!r} must be the web view's public http(s) address, like "
                "https://firebreak.example.com"
            )
        return value.rstrip("/") if value else None

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb- (never a user token)")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError(
                "must be an app-level token starting with xapp- (Basic Information -> "
                "App-Level Tokens, scope connections:write)"
            )
        return value


@dataclass(frozen=True)
class Settings:
    env: EnvSettings
    file: FileConfig
    config_path: Path
    config_found: bool

    @property
    def socket_mode(self) -> bool:
        return self.file.slack.mode == "socket"

    def with_slack_mode(self, mode: Literal["http", "socket"]) -> Settings:
        """These settings with `slack.mode` set (`firebreak serve --socket-mode`)."""
        slack = self.file.slack.model_copy(update={"mode": mode})
        return dataclasses.replace(self, file=self.file.model_copy(update={"slack": slack}))

    def missing_slack_variables(self) -> list[str]:
        """The Slack variables this mode needs that are unset, each with where to find it:
        always SLACK_BOT_TOKEN; SLACK_SIGNING_SECRET over HTTP, SLACK_APP_TOKEN in Socket
        Mode (which needs no signing secret: nothing reaches /slack/events)."""
        env = self.env
        needed = [
            ("SLACK_BOT_TOKEN", env.slack_bot_token, "the xoxb- token from OAuth & Permissions")
        ]
        if self.socket_mode:
            needed.append(
                (
                    "SLACK_APP_TOKEN",
                    env.slack_app_token,
                    "slack.mode is socket: an xapp- app-level token with connections:write "
                    "(Basic Information -> App-Level Tokens)",
                )
            )
        else:
            needed.append(
                (
                    "SLACK_SIGNING_SECRET",
                    env.slack_signing_secret,
                    "from the app's Basic Information page (or set slack.mode: socket and "
                    "SLACK_APP_TOKEN to run without a public URL)",
                )
            )
        return [f"{name} is not set ({hint})" for name, value, hint in needed if value is None]


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
    """Read and validate the YAML file. A missing file means embedded defaults unless required.

    `bot.config_file` reads and parses it (size, encoding, duplicate keys, nesting, aliases);
    this validates the data and places each problem at the line of its key.
    """
    from bot.config_file import paused_gc, read_yaml_file  # here: it imports ConfigError

    with paused_gc():
        document = read_yaml_file(path)
    if document is None:
        if required:
            raise ConfigError(
                [
                    f"{path}: no such file; create it (see examples/firebreak.yaml) or unset "
                    "FIREBREAK_CONFIG to use the embedded defaults"
                ]
            )
        return FileConfig(), False
    root, data = document.root, document.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        line = root.start_mark.line + 1 if root is not None else 1
        shape = "a list" if isinstance(data, list) else "a single value"
        raise ConfigError(
            [
                f"{path}:{line}: (top level): must be a mapping of sections (slack:, "
                f"incidents:, people:, ...), not {shape}"
            ]
        )
    with paused_gc():
        try:
            config = FileConfig.model_validate(data)
        except ValidationError as exc:
            errors = _key_errors(
                exc,
                messages={
                    "extra_forbidden": "unknown key; check the spelling against "
                    "examples/firebreak.yaml"
                },
            )
            raise ConfigError(_located(path, root, errors)) from None
        broken = config.broken_references()
    if broken:
        raise ConfigError(_located(path, root, broken))
    return config, True


def _key_errors(
    exc: ValidationError, *, messages: Mapping[str, str]
) -> list[tuple[tuple[Any, ...], str]]:
    """Each of pydantic's errors as (key path, problem) for `_located`: validator functions
    left out of the key path, pydantic's "Value error, " prefix left out of the problem, and
    the problem replaced by `messages`[type] for the error types it names."""
    errors = []
    for error in exc.errors():
        loc = tuple(part for part in error["loc"] if not str(part).startswith("function-"))
        message = messages.get(error["type"], error["msg"].removeprefix("Value error, "))
        errors.append((loc, message))
    return errors


def _located(
    path: Path, root: yaml.Node | None, errors: list[tuple[tuple[Any, ...], str]]
) -> list[str]:
    """`file:line: dotted.key: problem` for each error, in the order of the file.

    At most 100 are listed (then a count of the rest): a file can hold thousands of mistakes.
    """
    shown = 100
    keys: dict[int, dict[str, tuple[yaml.Node, yaml.Node]]] = {}
    problems: list[tuple[int, str]] = []
    for loc, message in errors:
        line = _line_of(root, loc, keys)
        where = f"{path}:{line}" if line else str(path)
        problems.append((line or 0, f"{where}: {_loc(loc) or '(top level)'}: {message}"))
    located = [problem for _, problem in sorted(problems)]
    if len(located) > shown:
        rest = len(located) - shown
        located = [*located[:shown], f"{path}: ... and {rest} more problems; fix these first"]
    return located


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    source = dict(os.environ if environ is None else environ)
    env = load_env(source)
    file, found = load_file(env.config_path, required="FIREBREAK_CONFIG" in source)
    return Settings(env=env, file=file, config_path=env.config_path, config_found=found)


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _line_of(
    node: yaml.Node | None,
    loc: tuple[Any, ...],
    keys: dict[int, dict[str, tuple[yaml.Node, yaml.Node]]] | None = None,
) -> int | None:
    """The 1-based line of the deepest YAML node along `loc` (pydantic's error location).

    `keys` caches each mapping's keys between calls, so locating many errors stays linear.
    Where a key repeats (a `<<` merge puts the merged keys first) the last one is the one
    that counts, as in the data.
    """
    keys = {} if keys is None else keys
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            index = keys.get(id(node))
            if index is None:
                index = keys[id(node)] = {
                    str(k.value): (k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)
                }
            key, match = index.get(str(part), (None, None))
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
