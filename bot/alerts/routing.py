"""Where alerts go: the `alert_routes:` and `alerts:` sections of firebreak.yaml.

A route matches an alert by its labels (`match`: equality, `match_re`: a regular expression
that must match the whole value) and names the service whose escalation policy pages for
it; it may also open an incident, resolve that incident when the alerts resolve, and
limit how many pages it starts in a window (storm control). Routes are tried in order and
the first match wins, so a last route with no conditions (`match: {}`) catches the rest.

Label semantics follow Alertmanager's matchers: a label the alert lacks counts as the
empty string, so `match: {env: ""}` and `match_re: {env: ".*"}` match an alert without
`env`, while `match: {env: prod}` never does.

Field formats are checked here; references to other sections (the service, the incident
severity) are checked by `bot.config.FileConfig`, which sees every section. No HTTP, no
Slack.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from bot.alerts.model import MAX_LABEL_NAME, MAX_LABEL_VALUE, Source
from bot.oncall.configuration import Duration, check_env_name
from bot.strict import IDENTIFIER, Section

MAX_REGEX = 1000  # characters in one match_re pattern
MAX_MATCHERS = 64  # labels in one match or match_re (an alert carries at most 64 labels)


def _storm_window(value: timedelta) -> timedelta:
    if not timedelta(seconds=1) <= value <= timedelta(days=1):
        raise ValueError("must be from 1s to 1d")
    return value


class StormLimit(Section):
    """At most `max_pages` new pages per `per` from one route; past that, alerts are still
    stored and grouped, and one storm notice goes to the announcement channel instead."""

    max_pages: int = Field(default=20, ge=1, le=100_000)
    per: Annotated[Duration, AfterValidator(_storm_window)] = timedelta(minutes=5)


class IncidentSpec(Section):
    """Whether a route's alerts also declare an incident, and at which severity."""

    open: bool = True
    severity: str | None = Field(
        default=None, description="A name from incidents.severities; None: the default one"
    )


def _label_name(name: Any) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_LABEL_NAME:
        raise ValueError(f"label names are 1 to {MAX_LABEL_NAME} characters of text")
    return name


def _label_value(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("write the label value as text, in quotes if it looks like a number")
    if len(value) > MAX_LABEL_VALUE:
        raise ValueError(f"is longer than {MAX_LABEL_VALUE} characters, the longest label value")
    return value


def _pattern(value: Any) -> re.Pattern[str]:
    """A label regex, compiled; the error names what is wrong without a traceback."""
    if isinstance(value, re.Pattern):
        return value
    if not isinstance(value, str):
        raise ValueError("write the regular expression as text, in quotes")
    if len(value) > MAX_REGEX:
        raise ValueError(f"is {len(value)} characters; a label regex may have {MAX_REGEX}")
    shown = repr(value) if len(value) <= 60 else repr(value[:57]) + "..."
    try:
        return re.compile(value)
    except re.error as error:
        raise ValueError(f"{shown} is not a regular expression: {error}") from None
    except OverflowError as error:  # `a{99999999999}`
        raise ValueError(f"{shown} is not a usable regular expression: {error}") from None
    except RecursionError:
        raise ValueError(f"{shown} nests its groups too deeply") from None


LabelName = Annotated[str, BeforeValidator(_label_name)]
LabelValue = Annotated[str, BeforeValidator(_label_value)]
LabelPattern = Annotated[re.Pattern[str], BeforeValidator(_pattern)]


class AlertRoute(Section):
    """One entry of `alert_routes:`.

    A route is recorded with each alert and page it routes by its *label*: its `name`, or
    `route N` (its 1-based position) when it has none. A position changes when a route is
    inserted above, so give routes that matter a name.
    """

    name: str | None = None
    match: dict[LabelName, LabelValue] = Field(default_factory=dict, max_length=MAX_MATCHERS)
    match_re: dict[LabelName, LabelPattern] = Field(default_factory=dict, max_length=MAX_MATCHERS)
    service: str
    incident: IncidentSpec | None = None
    auto_resolve: bool = False
    storm: StormLimit = Field(default_factory=StormLimit)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not IDENTIFIER.match(value):
            raise ValueError(
                f"{value!r} must be a lowercase word of up to 32 characters (a-z, 0-9, '-', "
                "'_'), like checkout-critical"
            )
        return value

    def label(self, index: int) -> str:
        """How this route, at `index` (0-based) in `alert_routes`, is named in the database,
        logs and messages: its name, else `route <index + 1>`."""
        return self.name if self.name is not None else f"route {index + 1}"

    @property
    def catches_all(self) -> bool:
        """A default route: no conditions, so every alert that reaches it matches."""
        return not self.match and not self.match_re

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Every `match` label equal and every `match_re` regex matching the whole value; a
        missing label is the empty string (Alertmanager's rule)."""
        for name, value in self.match.items():
            if labels.get(name, "") != value:
                return False
        return all(
            pattern.fullmatch(labels.get(name, "")) is not None
            for name, pattern in self.match_re.items()
        )


def route_for(
    routes: Sequence[AlertRoute], labels: Mapping[str, str]
) -> tuple[int, AlertRoute] | None:
    """The first route that matches, with its index; None when none does (the alert is
    stored and counted, and pages nobody)."""
    for index, route in enumerate(routes):
        if route.matches(labels):
            return index, route
    return None


class AlertSource(Section):
    """Per-source settings of `alerts.sources`."""

    token_env: str = Field(
        description="Name of the environment variable holding this source's bearer token"
    )

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        return check_env_name(value, "token")


class AlertsSection(Section):
    """The `alerts:` section: how each source authenticates.

    `/alerts/alertmanager` and `/alerts/grafana` take `Authorization: Bearer <token>` with
    `FIREBREAK_ALERT_TOKEN` or their own `sources.<source>.token_env`; `/v2/enqueue`
    (PagerDuty) authenticates by the routing key of a service instead.
    """

    sources: dict[Source, AlertSource] = Field(default_factory=dict)

    @field_validator("sources", mode="before")
    @classmethod
    def _no_pagerduty_token(cls, value: Any) -> Any:
        if isinstance(value, Mapping) and "pagerduty" in value:
            # Raised as a ValidationError so the problem is placed at `sources.pagerduty`.
            raise ValidationError.from_exception_data(
                "AlertsSection",
                [
                    InitErrorDetails(
                        type=PydanticCustomError(
                            "value_error",
                            "PagerDuty events authenticate by routing key, not a bearer token; "
                            "set services.<name>.routing_key_env (or routing_key) for each "
                            "service instead",
                        ),
                        loc=("pagerduty",),
                        input=None,
                    )
                ],
            )
        return value

    def token_env(self, source: str) -> str | None:
        """The variable holding `source`'s own token, if the source has one."""
        for name, entry in self.sources.items():
            if name == source:
                return entry.token_env
        return None
