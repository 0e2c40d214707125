"""The two-replica deployment examples the README points at: the systemd units pass
`systemd-analyze verify` and their ExecStart is a command line `firebreak serve` accepts;
the HAProxy example passes `haproxy -c` and checks `/readyz` on the ports the template unit
serves. A tool that is not installed skips its check locally and fails it when CI or
FIREBREAK_REQUIRE_DEPLOYMENT_TOOLS=1 is set (`.ci/run` installs systemd and haproxy)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
INSTALLED = "/opt/firebreak/.venv/bin/firebreak"
FIREBREAK = str(Path(shutil.which("firebreak") or ROOT / ".venv" / "bin" / "firebreak"))
UNITS = ["firebreak.service", "firebreak@.service"]


def missing(tool: str) -> None:
    """Skip the check without `tool`, or fail it where every check must run."""
    message = f"{tool} is not installed (apt-get install {tool.split('-')[0]})"
    if os.environ.get("CI") or os.environ.get("FIREBREAK_REQUIRE_DEPLOYMENT_TOOLS") == "1":
        pytest.fail(f"{message} (required: CI or FIREBREAK_REQUIRE_DEPLOYMENT_TOOLS=1 is set)")
    pytest.skip(message)


def exec_start(unit: str, instance: str = "3001") -> list[str]:
    (line,) = [
        line for line in (EXAMPLES / unit).read_text().splitlines() if line.startswith("ExecStart=")
    ]
    return shlex.split(line.removeprefix("ExecStart=").replace("%i", instance))


@pytest.mark.parametrize("unit", UNITS)
def test_the_units_start_firebreak_serve_with_options_it_accepts(unit: str) -> None:
    argv = exec_start(unit)
    assert argv[:2] == [INSTALLED, "serve"]
    checked = subprocess.run(
        [FIREBREAK, *argv[1:], "--help"], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
    assert "--port" in checked.stdout


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_analyze_verify_finds_nothing_wrong_with_the_units(
    unit: str, tmp_path: Path
) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing("systemd-analyze")
    # The same unit, with the binary where this checkout has it (verify checks it exists).
    name = unit.replace("@.", "@3001.")
    (tmp_path / name).write_text((EXAMPLES / unit).read_text().replace(INSTALLED, FIREBREAK))
    verified = subprocess.run(
        [analyze, "verify", name], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    problems = [
        line
        for line in (verified.stdout + verified.stderr).splitlines()
        if name in line or "firebreak" in line.lower()
    ]
    assert verified.returncode == 0 and problems == [], verified.stdout + verified.stderr


def test_haproxy_accepts_the_example_and_checks_readyz_on_the_template_ports() -> None:
    config = (EXAMPLES / "haproxy.cfg").read_text()
    assert "http-check send meth GET uri /readyz" in config
    assert "http-check expect status 200" in config
    ports = re.findall(r"^\s*server \S+ 127\.0\.0\.1:(\d+) check", config, re.MULTILINE)
    assert ports == ["3001", "3002"]
    assert exec_start("firebreak@.service", ports[0])[-2:] == ["--port", ports[0]]
    haproxy = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if haproxy is None:
        missing("haproxy")
    checked = subprocess.run(
        [haproxy, "-c", "-f", str(EXAMPLES / "haproxy.cfg")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "[WARNING]" not in checked.stdout + checked.stderr
