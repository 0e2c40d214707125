"""The hosts runbooks may reach (`inventory:` in firebreak.yaml), and choosing them for a run.

    inventory:
      user: deploy                      # optional: the login of hosts that name none
      hosts:
        web-1: {address: 10.0.0.5, port: 22, user: deploy, groups: [web, linux]}

Every host needs a login: its own `user`, else `inventory.user`; there is no silent
default (`check` names each host without one). A runbook's `targets` (a group, a list of
hosts, or both) bound every run of it: a run may narrow them with `hosts=NAME,NAME` or a
group name, never widen them, and selects at most `max_hosts`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, StringConstraints, field_validator, model_validator

from bot.runbooks.plan import Host
from bot.strict import Section

HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_ADDRESS = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}")  # a host name or IPv4
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
MAX_HOSTS = 1000

Login = Annotated[str, StringConstraints(max_length=64)]


def _user(value: str | None) -> str | None:
    if value is not None and not _USER.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a login name; use letters, digits, '_', '.', '-' "
            "(not starting with '-' or '.')"
        )
    return value


class InventoryHost(Section):
    address: str = Field(max_length=255)
    port: int = Field(default=22, ge=1, le=65535)
    user: Login | None = None
    groups: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            pass
        else:
            return value
        if not _ADDRESS.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a host name or IP address (letters, digits, '.', '-', '_'; "
                "not starting with '-')"
            )
        return value

    @field_validator("user")
    @classmethod
    def _login(cls, value: str | None) -> str | None:
        return _user(value)

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        for name in value:
            if not GROUP_NAME.fullmatch(name):
                raise ValueError(
                    f"{name!r} is not a group name; use letters, digits, '.', '_', '-'"
                )
        if len(set(value)) != len(value):
            raise ValueError("groups must not repeat")
        return value


class Inventory(Section):
    """`inventory:`: the hosts by name, and the default login."""

    user: Login | None = None
    hosts: dict[str, InventoryHost] = Field(default_factory=dict, max_length=MAX_HOSTS)

    @field_validator("user")
    @classmethod
    def _login(cls, value: str | None) -> str | None:
        return _user(value)

    @field_validator("hosts", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        for name in value if isinstance(value, dict) else ():
            if isinstance(name, str) and not HOST_NAME.fullmatch(name):
                raise ValueError(
                    f"{name!r} is not a host name; use letters, digits, '.', '_', '-' "
                    "(up to 63, starting with a letter or digit)"
                )
        return value

    @property
    def groups(self) -> dict[str, list[str]]:
        """Each group name with its hosts' names, in inventory order."""
        found: dict[str, list[str]] = {}
        for name, entry in self.hosts.items():
            for group in entry.groups:
                found.setdefault(group, []).append(name)
        return found

    def host(self, name: str) -> Host:
        entry = self.hosts[name]
        return Host(
            name=name,
            address=entry.address,
            port=entry.port,
            user=entry.user or self.user or "",
            groups=tuple(entry.groups),
        )

    def problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """What the schema cannot see: hosts without a login, host names that are groups."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        groups = self.groups
        for name, entry in self.hosts.items():
            if entry.user is None and self.user is None:
                problems.append(
                    (
                        ("inventory", "hosts", name),
                        "no `user`: give the host one, or set inventory.user for all hosts",
                    )
                )
            if name in groups:
                problems.append(
                    (
                        ("inventory", "hosts", name),
                        f"{name!r} is also a group name; hosts=... could mean either, so "
                        "rename the host or the group",
                    )
                )
        return problems


class Targets(Section):
    """`targets:` of a runbook: the most any run of it may reach."""

    group: str | None = None
    hosts: list[str] = Field(default_factory=list, max_length=MAX_HOSTS)
    max_hosts: int = Field(default=10, ge=1, le=MAX_HOSTS)

    @field_validator("group")
    @classmethod
    def _group(cls, value: str | None) -> str | None:
        if value is not None and not GROUP_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a group name; use letters, digits, '.', '_', '-'")
        return value

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for name in value:
            if not HOST_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a host name")
        if len(set(value)) != len(value):
            raise ValueError("hosts must not repeat")
        return value

    @model_validator(mode="after")
    def _something(self) -> Targets:
        if self.group is None and not self.hosts:
            raise ValueError("give a `group` or a `hosts` list: the hosts this runbook may reach")
        return self

    def names(self, inventory: Inventory) -> list[str]:
        """The inventory hosts these targets allow, in inventory order."""
        listed = set(self.hosts)
        return [
            name
            for name, entry in inventory.hosts.items()
            if name in listed or (self.group is not None and self.group in entry.groups)
        ]

    def described(self) -> str:
        parts = [f"group {self.group}"] if self.group else []
        if self.hosts:
            parts.append("hosts " + ", ".join(self.hosts))
        return " and ".join(parts)

    def problems(self, inventory: Inventory) -> list[tuple[tuple[str | int, ...], str]]:
        """Targets the inventory cannot satisfy: a group no host has, an unknown host."""
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if self.group is not None and self.group not in inventory.groups:
            known = ", ".join(inventory.groups) or "none: inventory.hosts lists no groups"
            problems.append(
                (
                    (
                        "targets",
                        "group",
                    ),
                    f"no inventory host is in group {self.group!r} (groups: {known}); add "
                    "the group to hosts in firebreak.yaml's inventory or change the target",
                )
            )
        for index, name in enumerate(self.hosts):
            if name not in inventory.hosts:
                problems.append(
                    (
                        ("targets", "hosts", index),
                        f"{name!r} is not in inventory.hosts of firebreak.yaml",
                    )
                )
        return problems


def select_hosts(
    targets: Targets, selection: str | None, inventory: Inventory
) -> tuple[tuple[Host, ...], list[str]]:
    """The hosts of a run and every problem with the selection.

    `selection` None means all the runbook's targets; otherwise comma-separated host and
    group names, each host inside the targets.
    """
    allowed = targets.names(inventory)
    problems: list[str] = []
    if selection is None:
        chosen = allowed
        if not chosen:
            problems.append(
                f"no inventory host is in this runbook's targets ({targets.described()}); "
                "add hosts to firebreak.yaml's inventory"
            )
    else:
        chosen, problems = _selected(selection, inventory)
        outside = [name for name in chosen if name not in allowed]
        if outside:
            problems.append(
                f"{', '.join(outside)} {'is' if len(outside) == 1 else 'are'} outside this "
                f"runbook's targets ({targets.described()}); a run may narrow its targets, "
                "never widen them"
            )
    if len(chosen) > targets.max_hosts:
        problems.append(
            f"{len(chosen)} hosts selected; this runbook runs on at most {targets.max_hosts} "
            "at once: narrow the run with hosts=NAME,NAME or a smaller group"
        )
    if problems:
        return (), problems
    return tuple(inventory.host(name) for name in chosen), []


def _selected(selection: str, inventory: Inventory) -> tuple[list[str], list[str]]:
    groups: Mapping[str, list[str]] = inventory.groups
    chosen: list[str] = []
    problems: list[str] = []
    items = [item.strip() for item in selection.split(",")]
    if not any(items):
        return [], ["hosts= is empty; give host names or a group, like hosts=web-1,web-2"]
    for item in items:
        if not item:
            problems.append("hosts= has an empty name between commas; remove the extra comma")
            continue
        if item in inventory.hosts:
            names = [item]
        elif item in groups:
            names = groups[item]
        else:
            shown = item if len(item) <= 60 else item[:57] + "..."
            problems.append(f"{shown!r} is neither an inventory host nor a group")
            continue
        chosen.extend(name for name in names if name not in chosen)
    return chosen, problems
