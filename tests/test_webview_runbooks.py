"""A runbook run on the incident page: each host's output, escaped, under the run's outcome.
Real OpenSSH sshd hosts (tests/sshd.py), the run started through Slack as in
tests/test_runbook_slack.py."""

from __future__ import annotations

from werkzeug.test import Client

from bot.app import Firebreak
from bot.sandbox import SlackSandbox
from bot.slack import runbook_blocks
from tests.conftest import Slack
from tests.sshd import Fleet
from tests.test_runbook_slack import (  # noqa: F401  (fixtures: sshd fleet, catalogue, app)
    finished,
    firebreak,
    fleet,
    incident_channel,
    plan_message,
    press,
    runbook,
    setup,
)
from tests.test_webview import BASE, path_of


def test_the_incident_page_shows_each_hosts_output(
    slack: Slack,
    sandbox: SlackSandbox,
    firebreak: Firebreak,  # noqa: F811
    incident_channel: str,  # noqa: F811
    fleet: Fleet,  # noqa: F811
) -> None:
    channel = incident_channel
    runbook(slack, 'run echo-args word="<b>bold</b> & more" count=2', channel=channel)
    message = plan_message(sandbox, channel, "R-1")
    press(slack, runbook_blocks.ACTION_RUN, 1, user="U0ALICE", channel=channel, ts=message.ts)
    finished(sandbox, channel, "R-1")

    firebreak.web_access.base_url = BASE
    web = Client(firebreak.web)
    web.get(path_of(firebreak.web_access.link("U0ALICE", "alice")))
    page = web.get("/incidents/INC-1").get_data(as_text=True)
    runs = page[page.index('id="runbooks"') : page.index('id="actions"')]
    assert "R-1 echo-args: Echo the words" in runs
    assert "succeeded · risk low" in runs and "by alice" in runs
    assert "<b>" not in runs
    for server in fleet:
        assert f"{server.name} (127.0.0.1) · succeeded" in runs
    outputs = runs.split('<pre class="output">')[1:]
    assert len(outputs) == len(fleet)
    for output in outputs:
        assert "[&lt;b&gt;bold&lt;/b&gt; &amp; more]\n[2]" in output
