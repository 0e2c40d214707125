"""A runbook catalogue and inventory for the CLI and Slack runbook tests, against real sshd.

`write_setup(directory, fleet)` writes `runbooks/` (the runbooks below) and `firebreak.yaml`
(an inventory of the fleet's servers in group `sshd`, plus `extra` config) and returns their
paths; the servers' login is whoever runs the tests.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.sshd import Fleet

RUNBOOKS: dict[str, dict[str, Any]] = {
    # Prints each parameter as one line: proves what the host received, argument by argument.
    "echo-args": {
        "id": "echo-args",
        "title": "Echo the words",
        "description": "Prints its parameters, one per line.",
        "risk": "low",
        "params": {
            "word": {"type": "string", "pattern": ".{1,200}", "required": True},
            "count": {"type": "int", "min": 1, "max": 3, "default": 1},
        },
        "targets": {"group": "sshd", "max_hosts": 5},
        "steps": [
            {"id": "say", "argv": ["printf", "[%s]\\n", "{{ word }}", "{{ count }}"]},
            {"id": "host", "argv": ["echo", "done"], "timeout": "10s"},
        ],
        "output": {"redact": ["(?i)token=\\S+"]},
    },
    "fail-step": {
        "id": "fail-step",
        "title": "A step that fails",
        "risk": "low",
        "targets": {"group": "sshd"},
        "max_failures": 5,
        "steps": [{"id": "boom", "argv": ["false"]}],
    },
    # Sleeps long enough to be cancelled mid-step.
    "slow": {
        "id": "slow",
        "title": "Sleep a while",
        "risk": "low",
        "params": {"seconds": {"type": "int", "min": 1, "max": 120, "default": 60}},
        "targets": {"group": "sshd"},
        "steps": [
            {"id": "begin", "argv": ["echo", "sleeping"]},
            {"id": "sleep", "argv": ["sleep", "{{ seconds }}"], "timeout": "2m"},
            {"id": "after", "argv": ["echo", "never"]},
        ],
    },
    "restart-thing": {
        "id": "restart-thing",
        "title": "Restart the thing",
        "risk": "high",
        "allowed_roles": ["ops"],
        "params": {"thing": {"type": "enum", "values": ["nginx", "cron"], "required": True}},
        "targets": {"group": "sshd"},
        "steps": [{"id": "restart", "argv": ["echo", "restarted", "{{ thing }}"]}],
    },
}


@dataclass(frozen=True)
class Setup:
    config: Path
    runbooks: Path
    login: str


def inventory(fleet: Fleet) -> dict[str, Any]:
    return {
        "hosts": {
            server.name: {
                "address": server.address,
                "port": server.port,
                "user": server.user,
                "groups": ["sshd"],
            }
            for server in fleet
        }
    }


def write_setup(directory: Path, fleet: Fleet, extra: dict[str, Any] | None = None) -> Setup:
    runbooks = directory / "runbooks"
    runbooks.mkdir(parents=True, exist_ok=True)
    for name, data in RUNBOOKS.items():
        (runbooks / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    config = directory / "firebreak.yaml"
    data = {"inventory": inventory(fleet), **(extra or {})}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return Setup(config=config, runbooks=runbooks, login=getpass.getuser())
