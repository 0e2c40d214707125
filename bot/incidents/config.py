"""The `incidents:` section of firebreak.yaml: channel prefix, severities, statuses, roles."""

from __future__ import annotations

import re

from pydantic import Field, ValidationInfo, field_validator

from bot.strict import IDENTIFIER, Section

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


class IncidentsSection(Section):
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
