"""The runbook catalogue: every `*.yaml`/`*.yml` in `FIREBREAK_RUNBOOKS` (default `runbooks/`).

Each file is one runbook, validated by the schema below (unknown keys are errors), then
checked for what the schema cannot see: placeholders naming undeclared parameters, a
placeholder handed to a shell, repeated step ids, ids repeated across files. Every problem
names the file, the line and the key, like the rest of the configuration:

    runbooks/restart.yaml:14: steps.1.argv: hands {{ service }} to a shell or interpreter ...

`Catalogue.problems_with` checks the catalogue against firebreak.yaml (inventory groups and
hosts, incident roles and `runbooks.groups`) for `firebreak check`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BeforeValidator,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from bot.config import ConfigError, FileConfig, _key_errors, _line_of, _located
from bot.oncall.timespec import format_duration, parse_duration
from bot.runbooks.argv import placeholders, shell_problem, stray_braces
from bot.runbooks.inventory import Inventory, Targets
from bot.runbooks.params import Param, bad_character, check_param_names
from bot.runbooks.plan import OnFailure, Risk
from bot.strict import Section

RUNBOOK_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
STEP_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
DEFAULT_TIMEOUT = timedelta(seconds=60)
MAX_TIMEOUT = timedelta(hours=1)
MAX_OUTPUT_BYTES = 10 * 1024 * 1024
MAX_FILES = 500
MAX_ARGV = 256
MAX_ARGV_CHARS = 64 * 1024


def _timeout(value: Any) -> timedelta:
    length = parse_duration(value)
    if length > MAX_TIMEOUT:
        raise ValueError(f"{value!r} is longer than the limit of {format_duration(MAX_TIMEOUT)}")
    return length


Timeout = Annotated[timedelta, BeforeValidator(_timeout)]


class Step(Section):
    id: str
    argv: list[str] = Field(min_length=1, max_length=MAX_ARGV)
    timeout: Timeout = DEFAULT_TIMEOUT
    ok_exit_codes: list[StrictInt] = Field(default_factory=lambda: [0], min_length=1)
    on_failure: OnFailure = "abort"

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not STEP_ID.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a step id; use lowercase letters, digits, '-' and '_' "
                "(up to 63, starting with a letter or digit)"
            )
        return value

    @field_validator("argv", mode="before")
    @classmethod
    def _texts(cls, value: Any) -> Any:
        if isinstance(value, list):
            for index, word in enumerate(value):
                if not isinstance(word, str):
                    shown = "a list" if isinstance(word, list) else "a mapping"
                    if isinstance(word, bool) or word is None:
                        shown = "true/false" if word is not None else "empty (null)"
                    elif isinstance(word, (int, float)):
                        shown = "a number"
                    elif not isinstance(word, (list, dict)):
                        shown = "not text"
                    raise ValueError(
                        f"element {index} is {shown}, not text; quote it ('{word}') "
                        "(argv is a list of strings)"
                    )
        return value

    @field_validator("argv")
    @classmethod
    def _words(cls, value: list[str]) -> list[str]:
        if sum(len(word) for word in value) > MAX_ARGV_CHARS:
            raise ValueError(f"is longer than {MAX_ARGV_CHARS:,} characters in all")
        for index, word in enumerate(value):
            bad = bad_character(word)
            if bad:
                raise ValueError(f"element {index} holds {bad}; remove it")
            if stray_braces(word):
                raise ValueError(
                    f"element {index} ({word!r}) has {{{{ or }}}} that is not a placeholder; "
                    "write placeholders as {{ name }} with a lowercase parameter name"
                )
        if not value[0] or placeholders(value[0]):
            raise ValueError(
                "the first element is the program and must be written out literally, "
                "not empty and not a placeholder"
            )
        return value

    @field_validator("ok_exit_codes")
    @classmethod
    def _codes(cls, value: list[int]) -> list[int]:
        if any(not 0 <= code <= 255 for code in value):
            raise ValueError("exit codes are 0..255")
        if len(set(value)) != len(value):
            raise ValueError("exit codes must not repeat")
        return value


def _pattern_list(value: list[str]) -> list[str]:
    for pattern in value:
        try:
            re.compile(pattern)
        except (re.error, RecursionError, OverflowError) as exc:
            raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
    return value


class Output(Section):
    max_bytes: int = Field(default=65536, ge=1, le=MAX_OUTPUT_BYTES)
    redact: list[Annotated[StrictStr, Field(max_length=1000)]] = Field(
        default_factory=list, max_length=50
    )

    @field_validator("redact")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        return _pattern_list(value)


class Runbook(Section):
    """One runbook file. `needs_approval`: `approval` if given, else risk high."""

    id: str
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    risk: Risk
    approval: bool | None = None
    allowed_roles: list[str] = Field(default_factory=list, max_length=50)
    params: dict[str, Param] = Field(default_factory=dict, max_length=50)
    targets: Targets
    concurrency: int = Field(default=5, ge=1, le=100)
    max_failures: int = Field(default=1, ge=1, le=10_000)
    steps: list[Step] = Field(min_length=1, max_length=50)
    rollback: list[Step] = Field(default_factory=list, max_length=50)
    output: Output = Field(default_factory=Output)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not RUNBOOK_ID.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a runbook id; use lowercase letters, digits and '-' "
                "(up to 63, starting with a letter or digit), like restart-service"
            )
        return value

    @field_validator("title")
    @classmethod
    def _one_line(cls, value: str) -> str:
        bad = bad_character(value)
        if bad:
            raise ValueError(f"holds {bad}; a title is one line")
        return value

    @field_validator("allowed_roles")
    @classmethod
    def _roles(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("roles must not repeat")
        return value

    @property
    def needs_approval(self) -> bool:
        return self.approval if self.approval is not None else self.risk == "high"

    def problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """What the schema cannot see, each with its key path."""
        problems: list[tuple[tuple[str | int, ...], str]] = list(check_param_names(self.params))
        seen: dict[str, str] = {}
        for section, steps in (("steps", self.steps), ("rollback", self.rollback)):
            for index, step in enumerate(steps):
                loc: tuple[str | int, ...] = (section, index)
                first = seen.setdefault(step.id, f"{section}.{index}")
                if first != f"{section}.{index}":
                    problems.append(
                        ((*loc, "id"), f"{step.id!r} is already the id of {first}; ids are unique")
                    )
                for position, word in enumerate(step.argv):
                    for name in placeholders(word):
                        if name not in self.params:
                            declared = ", ".join(self.params) or "none declared"
                            problems.append(
                                (
                                    (*loc, "argv", position),
                                    f"{{{{ {name} }}}} names no parameter (params: {declared}); "
                                    "declare it under params:",
                                )
                            )
                refusal = shell_problem(step.argv)
                if refusal:
                    problems.append(((*loc, "argv"), refusal))
                if section == "rollback" and step.on_failure == "rollback":
                    problems.append(
                        (
                            (*loc, "on_failure"),
                            "a rollback step cannot roll back; abort or continue",
                        )
                    )
                if step.on_failure == "rollback" and not self.rollback:
                    problems.append(
                        (
                            (*loc, "on_failure"),
                            "is rollback but the runbook has no `rollback:` steps; add them "
                            "or use abort",
                        )
                    )
        return problems


@dataclass(frozen=True)
class Catalogue:
    """The loaded runbooks, sorted by id. `found`: False when the directory does not exist."""

    directory: Path
    runbooks: tuple[Runbook, ...] = ()
    found: bool = True
    files: Mapping[str, Path] = field(default_factory=dict)  # runbook id -> its file
    _roots: Mapping[str, yaml.Node | None] = field(default_factory=dict, repr=False)

    def get(self, runbook_id: str) -> Runbook | None:
        return next((rb for rb in self.runbooks if rb.id == runbook_id), None)

    def problems_with(
        self,
        inventory: Inventory,
        roles: Iterable[str],
        groups: Iterable[str],
        *,
        targets: bool = True,
    ) -> list[str]:
        """Each runbook against firebreak.yaml: target groups no host has, unknown target
        hosts (unless not `targets`), allowed roles that are neither incident roles nor
        `runbooks.groups` names."""
        role_names = list(roles)
        known = role_names + [group for group in groups if group not in role_names]
        problems: list[str] = []
        for runbook in self.runbooks:
            found: list[tuple[tuple[Any, ...], str]] = (
                list(runbook.targets.problems(inventory)) if targets else []
            )
            for index, role in enumerate(runbook.allowed_roles):
                if role not in known:
                    found.append(
                        (
                            ("allowed_roles", index),
                            f"{role!r} is neither an incident role nor a runbooks.groups name "
                            f"in firebreak.yaml (known: {', '.join(known) or 'none'})",
                        )
                    )
            if found:
                problems.extend(_located(self.files[runbook.id], self._roots[runbook.id], found))
        return problems


def load_catalogue(directory: Path, *, required: bool = False) -> Catalogue:
    """Load and validate every runbook file in `directory`; raises ConfigError listing all.

    A missing directory is an empty catalogue (`found` False) unless `required` (the
    variable naming it was set explicitly).
    """
    catalogue, problems = _load(directory, required=required)
    if problems:
        raise ConfigError(problems)
    return catalogue


def _load(directory: Path, *, required: bool) -> tuple[Catalogue, list[str]]:
    """The runbooks that are valid, and every problem of the others."""
    from bot.config_file import paused_gc, read_yaml_file  # it imports bot.config

    if not directory.exists():
        if required:
            raise ConfigError(
                [
                    f"{directory}: no such directory; FIREBREAK_RUNBOOKS names it (create it "
                    "with runbook files, or unset the variable to use runbooks/)"
                ]
            )
        return Catalogue(directory=directory, found=False), []
    if not directory.is_dir():
        raise ConfigError([f"{directory}: is not a directory; FIREBREAK_RUNBOOKS names one"])
    try:
        paths = sorted(
            path
            for path in directory.iterdir()
            if path.suffix in (".yaml", ".yml") and not path.name.startswith(".")
        )
    except OSError as exc:
        raise ConfigError([f"{directory}: cannot be read: {exc.strerror or exc}"]) from None
    if len(paths) > MAX_FILES:
        raise ConfigError([f"{directory}: holds {len(paths)} runbook files; at most {MAX_FILES}"])
    problems: list[str] = []
    loaded: dict[str, tuple[Runbook, Path, yaml.Node | None]] = {}
    for path in paths:
        try:
            with paused_gc():
                document = read_yaml_file(path)
        except ConfigError as error:
            problems.extend(error.problems)
            continue
        if document is None:
            continue  # removed while we listed the directory
        runbook, found = _validated(path, document.root, document.data)
        problems.extend(found)
        if runbook is None:
            continue
        first = loaded.get(runbook.id)
        if first is not None:
            line = _line_of(document.root, ("id",))
            problems.append(
                f"{path}:{line}: id: {runbook.id!r} is already the id of {first[1]}; each runbook "
                "needs its own id"
            )
            continue
        loaded[runbook.id] = (runbook, path, document.root)
    ordered = sorted(loaded)
    catalogue = Catalogue(
        directory=directory,
        runbooks=tuple(loaded[key][0] for key in ordered),
        files={key: loaded[key][1] for key in ordered},
        _roots={key: loaded[key][2] for key in ordered},
    )
    return catalogue, problems


def _validated(path: Path, root: yaml.Node | None, data: Any) -> tuple[Runbook | None, list[str]]:
    if not isinstance(data, dict):
        line = root.start_mark.line + 1 if root is not None else 1
        shape = "empty" if data is None else ("a list" if isinstance(data, list) else "a value")
        return None, [
            f"{path}:{line}: (top level): the file is {shape}; a runbook is a mapping with "
            "id, title, risk, targets and steps (see runbooks/ for examples)"
        ]
    try:
        runbook = Runbook.model_validate(data)
    except ValidationError as exc:
        errors = _key_errors(
            exc,
            messages={
                "extra_forbidden": "unknown key; check the spelling against the runbooks in "
                "runbooks/",
                "missing": "is required",
            },
        )
        return None, _located(path, root, errors)
    found = runbook.problems()
    return (None, _located(path, root, found)) if found else (runbook, [])


def check_catalogue(
    config: FileConfig, directory: Path, *, explicit: bool
) -> tuple[list[str], list[str]]:
    """What `firebreak check` says about the catalogue: (errors, notes).

    `explicit`: FIREBREAK_RUNBOOKS was set, so a missing directory is an error, not a note.
    With no inventory hosts at all (a fresh setup) the targets are not checked, and a
    note says no runbook can run; once hosts are listed, a target group no host has and
    an unknown target host are errors.
    """
    try:
        catalogue, problems = _load(directory, required=explicit)
    except ConfigError as error:
        return error.problems, []
    if not catalogue.found:
        return [], [
            f"note: no runbook catalogue at {directory} (FIREBREAK_RUNBOOKS is unset), so "
            "there are no runbooks to run; see runbooks/ in the Firebreak repository"
        ]
    hosts = bool(config.inventory.hosts)
    problems.extend(
        catalogue.problems_with(
            config.inventory, config.incidents.roles, config.runbooks.groups, targets=hosts
        )
    )
    count = len(catalogue.runbooks)
    notes = [f"Runbooks OK ({directory}: {count} runbook{'s' if count != 1 else ''})."]
    if count and not hosts:
        notes.append(
            "note: inventory: no hosts are listed, so no runbook can run yet; add "
            "inventory.hosts to the configuration (see examples/firebreak.yaml)"
        )
    return problems, notes
