"""What a page is sent to, and the escalation a page follows, as typed values.

A `Target` is parsed once, where text comes in (config, `/page`, the CLI), and travels as a
value from then on. An `EscalationSnapshot` is the policy copied onto the page when it is
triggered, so a configuration change never alters a running escalation (the page row keeps
its JSON form, `to_json()`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

TargetKind = Literal["user", "schedule", "policy", "service"]
KINDS: tuple[TargetKind, ...] = ("user", "schedule", "policy", "service")
# Targets a single escalation step may name: people and schedules (policies and services
# are what a page *starts* from, and expand into steps).
STEP_KINDS: tuple[TargetKind, ...] = ("user", "schedule")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True, order=True)
class Target:
    kind: TargetKind
    name: str

    @classmethod
    def parse(cls, text: str, *, kinds: tuple[TargetKind, ...] = KINDS) -> Target:
        """`kind:name` -> Target; ValueError saying what is accepted otherwise."""
        kind, colon, name = str(text).partition(":")
        allowed = ", ".join(f"{k}:NAME" for k in kinds)
        if not colon or kind not in kinds or not _NAME.match(name):
            raise ValueError(f"{str(text)[:80]!r} is not a target; write one of {allowed}")
        return cls(kind, name)

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class SnapshotStep:
    targets: tuple[Target, ...]
    wait: timedelta


@dataclass(frozen=True)
class EscalationSnapshot:
    """The steps a page escalates through, then `repeat` more passes, then it is exhausted."""

    steps: tuple[SnapshotStep, ...]
    repeat: int

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": [
                {"targets": [str(t) for t in step.targets], "wait": step.wait.total_seconds()}
                for step in self.steps
            ],
            "repeat": self.repeat,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EscalationSnapshot:
        steps = tuple(
            SnapshotStep(
                tuple(Target.parse(t, kinds=STEP_KINDS) for t in step["targets"]),
                timedelta(seconds=float(step["wait"])),
            )
            for step in data["steps"]
        )
        return cls(steps, int(data.get("repeat", 0)))
