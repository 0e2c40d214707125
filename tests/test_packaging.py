"""The wheel: built, installed into a new venv, it migrates and serves outside the source tree.

`pip install .` must give a `firebreak` that can `db upgrade` and `serve` from any directory,
so the migrations (env.py, versions/, script.py.mako) have to ship inside the package. The
project's dependencies come from the test's own environment through a `.pth` file, so
nothing is downloaded; the editable install of `bot` there must not shadow the wheel's.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import tomllib
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from bot.db import normalise_url
from bot.migrations import current_revision, head_revision
from tests.conftest import PROXY_VARIABLES

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "bot", "integrations")
LISTENING = re.compile(r"^Firebreak listening on (http://127\.0\.0\.1:\d+)$")
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def run(*argv: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(arg) for arg in argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **kwargs,
    )
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done


def copy_sources(destination: Path) -> Path:
    """The project as `pip install .` sees it, copied so no build output lands in the tree."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    destination.mkdir()
    for name in SOURCES:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        else:
            shutil.copy2(source, destination / name)
    return destination


def bdist_wheel_available() -> bool:
    """setuptools builds wheels itself from 70.1; before that it needs the `wheel` package."""
    return bool(
        importlib.util.find_spec("wheel")
        or importlib.util.find_spec("setuptools.command.bdist_wheel")
    )


def build_wheel(source: Path, out: Path) -> Path:
    if bdist_wheel_available():
        run(
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
            *("--no-index", "--wheel-dir", out, source),
        )
    else:
        assemble_wheel(source, out)
    (wheel,) = out.glob("firebreak-*.whl")
    return wheel


def assemble_wheel(source: Path, out: Path) -> None:
    """What bdist_wheel does for a pure-Python project, for a setuptools without it.

    setuptools' own egg_info and build_py choose the files (package discovery and
    package-data from pyproject.toml, exactly as for a real wheel); this only zips them
    with the metadata a wheel carries.
    """
    egg, lib = out / "egg", out / "lib"
    egg.mkdir()
    run(
        *(sys.executable, "-W", "ignore", "-c", "import setuptools; setuptools.setup()", "-q"),
        *("egg_info", "--egg-base", egg, "build_py", "--build-lib", lib),
        cwd=source,
    )
    (info,) = egg.glob("*.egg-info")
    metadata = (info / "PKG-INFO").read_text(encoding="utf-8")
    name = re.search(r"^Name: (.+)$", metadata, re.M)
    version = re.search(r"^Version: (.+)$", metadata, re.M)
    assert name and version
    dist_info = f"{name.group(1)}-{version.group(1)}.dist-info"
    files = {
        path.relative_to(lib).as_posix(): path.read_bytes()
        for path in sorted(lib.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }
    files[f"{dist_info}/METADATA"] = metadata.encode()
    files[f"{dist_info}/entry_points.txt"] = (info / "entry_points.txt").read_bytes()
    files[f"{dist_info}/top_level.txt"] = (info / "top_level.txt").read_bytes()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: tests/test_packaging.py\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        writer.writerow([path, f"sha256={digest}", len(data)])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    files[f"{dist_info}/RECORD"] = record.getvalue().encode()
    wheel = out / f"{name.group(1)}-{version.group(1)}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(path, data)


def dependency_directories() -> list[str]:
    """Where this environment has the project's dependencies installed."""
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    directories = [sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]
    for requirement in pyproject["project"]["dependencies"]:
        name = re.match(r"[A-Za-z0-9._-]+", requirement)
        assert name, requirement
        directories.append(str(importlib.metadata.distribution(name.group()).locate_file("")))
    return list(dict.fromkeys(directories))


def install_into_new_venv(wheel: Path, venv: Path) -> Path:
    """A venv with only the wheel installed; the dependencies come from ours via a .pth."""
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run(
        *(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index"),
        *("--no-compile", "--disable-pip-version-check", wheel),
    )
    site_packages = run(
        python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"
    ).stdout.strip()
    # A path a .pth file adds is not a site directory: the editable install's own .pth
    # (which maps `bot` to the checkout) is not run there, so the wheel's `bot` wins.
    (Path(site_packages) / "firebreak-test-dependencies.pth").write_text(
        "".join(f"{path}\n" for path in dependency_directories()), encoding="utf-8"
    )
    return python


def child_env(database_url: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in PROXY_VARIABLES
        and key
        not in (
            "FIREBREAK_CONFIG",
            "SLACK_BOT_TOKEN",
            "SLACK_SIGNING_SECRET",
            "SLACK_API_URL",
            "PYTHONPATH",
            "VIRTUAL_ENV",
        )
    }
    env.update(NO_PROXY="127.0.0.1,localhost", DATABASE_URL=database_url)
    return env


def _pump(stream: io.TextIOBase, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Started `firebreak serve` processes, each stopped with SIGTERM at the end."""
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def wait_until_listening(process: subprocess.Popen[str], stderr: Path) -> str:
    assert process.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
    deadline = time.monotonic() + 30
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            pytest.fail(f"firebreak serve did not start in time:\n{stderr.read_text()}")
        if line is None:
            pytest.fail(f"firebreak serve exited early:\n{stderr.read_text()}")
        if match := LISTENING.match(line):
            return match.group(1)


def get(url: str) -> tuple[int, str]:
    try:
        with OPENER.open(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_installed_wheel_migrates_and_serves_outside_the_source_tree(
    empty_database_url: str, tmp_path: Path, serve: list[subprocess.Popen[str]]
) -> None:
    wheel_dir = tmp_path / "wheel"
    wheel_dir.mkdir()
    wheel = build_wheel(copy_sources(tmp_path / "src"), wheel_dir)
    shipped = set(zipfile.ZipFile(wheel).namelist())
    versions = sorted(
        f"bot/migrations/versions/{path.name}"
        for path in (PROJECT_ROOT / "bot" / "migrations" / "versions").glob("*.py")
    )
    assert versions, "no migrations found in the source tree"
    expected = {"bot/migrations/env.py", "bot/migrations/script.py.mako", *versions}
    assert expected <= shipped, f"missing from the wheel: {sorted(expected - shipped)}"

    venv = tmp_path / "venv"
    python = install_into_new_venv(wheel, venv)
    firebreak = venv / "bin" / "firebreak"
    elsewhere = tmp_path / "elsewhere"  # an empty directory outside the source tree
    elsewhere.mkdir()
    env = child_env(empty_database_url)

    where = run(python, "-c", "import bot; print(bot.__file__)", cwd=elsewhere, env=env)
    assert Path(where.stdout.strip()).resolve().is_relative_to(venv.resolve()), where.stdout

    upgraded = run(firebreak, "db", "upgrade", cwd=elsewhere, env=env)
    assert "Traceback" not in upgraded.stderr, upgraded.stderr
    head = head_revision(empty_database_url)
    engine = create_engine(normalise_url(empty_database_url))
    try:
        with engine.connect() as connection:
            assert current_revision(connection) == head
    finally:
        engine.dispose()

    stderr = tmp_path / "serve.stderr"
    with stderr.open("w") as stderr_file:
        serve.append(
            subprocess.Popen(
                [str(firebreak), "serve", "--sandbox", "--port", "0"],
                cwd=elsewhere,
                env=env,
                stdout=subprocess.PIPE,
                stderr=stderr_file,
                text=True,
            )
        )
    url = wait_until_listening(serve[0], stderr)
    status, body = get(url + "/readyz")
    assert status == 200, body
    ready = json.loads(body)
    assert (ready["status"], ready["schema"]) == ("ready", head), ready

    process = serve[0]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0, stderr.read_text()
    assert "Traceback" not in stderr.read_text(), stderr.read_text()


def test_building_the_wheel_prints_no_deprecation_warning(tmp_path: Path) -> None:
    """`pip install .` shows what setuptools warns while it builds: the license is an SPDX
    string (PEP 639), not the `{text = ...}` table setuptools 77 deprecated."""
    setuptools_version = importlib.metadata.version("setuptools")
    assert int(setuptools_version.split(".")[0]) >= 77, (
        f"setuptools {setuptools_version} cannot read an SPDX license; reinstall the dev "
        "extras (`pip install -e '.[dev]'`), which ask for setuptools>=77"
    )
    source = copy_sources(tmp_path / "src")
    out = tmp_path / "wheel"
    built = run(
        *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
        *("--no-index", "--verbose", "--wheel-dir", out, source),
    )
    output = built.stdout + built.stderr
    assert "Building wheel for firebreak" in output  # the build's own output is shown
    warnings = [line for line in output.splitlines() if re.search("deprecat", line, re.I)]
    assert warnings == [], "\n".join(warnings)
    (wheel,) = out.glob("firebreak-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(name).decode()
    assert "License-Expression: Apache-2.0\n" in metadata
    assert "\nLicense: " not in metadata  # the old free-text field is gone
