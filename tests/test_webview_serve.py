"""The web view from the real commands: `firebreak serve --sandbox` prints its URL and lets
this machine in without signing in; `firebreak demo` ends with a sign-in link that works
while it waits on a terminal."""

from __future__ import annotations

import http.client
import os
import pty
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import pytest

from tests.test_cli import FIREBREAK, child_env

STARTUP_TIMEOUT = 60.0
DEMO_TIMEOUT = 240.0
WEB_VIEW = re.compile(
    r"^Web view: (http://127\.0\.0\.1:\d+)/ \(sandbox: no sign-in from this machine\)$"
)
DEMO_LINK = re.compile(r"^ +(http://127\.0\.0\.1:\d+/signin\?token=\S+)$")


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def read_until(
    lines: queue.Queue[str | None], pattern: re.Pattern[str], timeout: float
) -> tuple[re.Match[str], list[str]]:
    """The first line matching `pattern` (and every line before it)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            pytest.fail(f"no line matched {pattern.pattern} in time; output:\n" + "\n".join(seen))
        if line is None:
            pytest.fail(f"the process ended before {pattern.pattern}; output:\n" + "\n".join(seen))
        seen.append(line)
        if match := pattern.match(line):
            return match, seen


def get(url: str, cookie: str | None = None) -> http.client.HTTPResponse:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    connection.request("GET", path, headers={"Cookie": cookie} if cookie else {})
    response = connection.getresponse()
    response.read_body = response.read()  # type: ignore[attr-defined]
    connection.close()
    return response


@pytest.fixture
def serve_sandbox(tmp_path: Path, database_url: str) -> Iterator[tuple[str, list[str]]]:
    workdir = tmp_path / "serve"
    workdir.mkdir()
    env = child_env(DATABASE_URL=database_url)
    process = subprocess.Popen(
        [FIREBREAK, "serve", "--sandbox", "--port", "0"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
        match, seen = read_until(lines, WEB_VIEW, STARTUP_TIMEOUT)
        yield match.group(1), seen
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_serve_sandbox_prints_the_web_view_beside_slack_and_opens_it_to_this_machine(
    serve_sandbox: tuple[str, list[str]],
) -> None:
    url, printed = serve_sandbox
    assert any(line.startswith("Sandbox Slack: http://127.0.0.1:") for line in printed)
    assert f"Firebreak listening on {url}" in printed
    response = get(url + "/")
    assert response.status == 200
    page = response.read_body.decode()  # type: ignore[attr-defined]
    assert "Incidents" in page and "lets anyone on this machine (loopback) read this view" in page
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]


def test_demo_ends_with_a_sign_in_link_to_its_incident(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    workdir.mkdir()
    primary, secondary = pty.openpty()  # a terminal on stdin: the demo waits for Enter
    process = subprocess.Popen(
        [FIREBREAK, "demo", "--ssh-server", "paramiko"],
        cwd=workdir,
        env=child_env(TMPDIR=str(tmp_path)),
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    os.close(secondary)
    try:
        assert process.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
        match, seen = read_until(lines, DEMO_LINK, DEMO_TIMEOUT)
        assert "Web view of INC-1: sign in as alice with this link (10 minutes, once):" in seen
        read_until(lines, re.compile(r"^The web view stays up until you press Enter\.$"), 30)
        opened = get(match.group(1))
        assert opened.status == 303
        assert opened.headers["Location"] == "/incidents/INC-1"
        cookie = opened.headers["Set-Cookie"].split(";")[0]
        base = match.group(1).split("/signin")[0]
        page = get(base + "/incidents/INC-1", cookie=cookie)
        assert page.status == 200
        body = page.read_body.decode()  # type: ignore[attr-defined]
        assert "Checkout latency above 2s" in body and "resolved the incident" in body
        os.write(primary, b"\n")
        assert process.wait(timeout=30) == 0
    finally:
        os.close(primary)
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
