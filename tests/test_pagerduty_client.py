"""PagerDuty's own Python client (`pagerduty.EventsApiV2Client`) pages through Firebreak.

The only change a user makes is the client's URL (and the routing key). The client accepts
only `https://` URLs, as a production Firebreak behind TLS has; here a TLS front on
127.0.0.1, with a certificate made for the test, forwards to a real `firebreak serve`
subprocess. Trigger, repeat, acknowledge and resolve each get the dedup key back, and the
page's state moves in the database.
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pagerduty
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.serving import make_server

from bot.alerts.records import AlertGroup, StoredAlert
from bot.incidents.models import Incident
from bot.oncall.models import Page
from bot.sandbox import SlackSandbox
from tests.test_alertmanager_e2e import ROUTING_KEY, Served, serving, wait_for
from tests.test_paging import dms

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class TlsFront:
    """What a load balancer does for Firebreak: TLS outside, plain HTTP to the server."""

    url: str
    trust: ssl.SSLContext
    user_agents: list[str] = field(default_factory=list)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "front.crt", directory / "front.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@contextmanager
def tls_front(upstream: str, directory: Path) -> Iterator[TlsFront]:
    cert, key = self_signed(directory)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    front = TlsFront("", ssl.create_default_context(cafile=str(cert)))

    def forward(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        front.user_agents.append(environ.get("HTTP_USER_AGENT", ""))
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else None
        request = urllib.request.Request(
            upstream + environ["PATH_INFO"],
            data=body,
            headers={"Content-Type": environ.get("CONTENT_TYPE", "application/json")},
            method=environ["REQUEST_METHOD"],
        )
        try:
            with OPENER.open(request, timeout=10) as response:
                status, reason, headers, data = (
                    response.status,
                    response.reason,
                    response.headers,
                    response.read(),
                )
        except urllib.error.HTTPError as error:
            status, reason, headers, data = error.code, error.reason, error.headers, error.read()
        start_response(
            f"{status} {reason}",
            [
                ("Content-Type", headers.get("Content-Type", "application/json")),
                ("Content-Length", str(len(data))),
            ],
        )
        return [data]

    server = make_server("127.0.0.1", 0, forward, threaded=True, ssl_context=server_context)
    front.url = f"https://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield front
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture
def served(
    sandbox: SlackSandbox, announce_channel: str, database_url: str, tmp_path: Path
) -> Iterator[Served]:
    with serving(sandbox, announce_channel, database_url, tmp_path) as running:
        yield running


@pytest.fixture
def front(served: Served, tmp_path: Path) -> Iterator[TlsFront]:
    with tls_front(served.url, tmp_path) as running:
        yield running


def client(front: TlsFront, routing_key: str = ROUTING_KEY) -> pagerduty.EventsApiV2Client:
    """The client as a user configures it for Firebreak: its URL and the routing key."""
    return pagerduty.EventsApiV2Client(routing_key, base_url=front.url, verify=front.trust)


def test_the_client_takes_only_https_urls() -> None:
    """Why the tests put TLS before Firebreak, as production does (README: Alerts)."""
    with pytest.raises(pagerduty.UrlError):
        pagerduty.EventsApiV2Client(ROUTING_KEY, base_url="http://127.0.0.1:3000")


def page_states(served: Served) -> list[tuple[str, str, str]]:
    """(dedup key, the alert group's state, its page's state) per alert group."""
    pages = {page.id: page.state for page in served.rows(Page)}
    return [
        (group.group_key, group.state, pages[group.page_id])
        for group in served.rows(AlertGroup)
        if group.page_id is not None
    ]


def test_trigger_repeat_acknowledge_and_resolve_get_the_dedup_key_back(
    served: Served, front: TlsFront, sandbox: SlackSandbox
) -> None:
    events = client(front)
    summary = "Checkout 5xx above 5%"

    key = events.trigger(
        summary,
        "lb-1.example.com",
        severity="critical",
        custom_details={"error_rate": "7.2%"},
        links=[{"href": "https://grafana.example.com/d/checkout", "text": "Checkout dashboard"}],
    )
    assert key, "a trigger without dedup_key gets one made and returned"
    wait_for(lambda: dms(sandbox, "U0ALICE"), "alice's page DM")
    assert page_states(served) == [(key, "open", "triggered")]
    [incident] = served.rows(Incident)  # the README's checkout-critical route opens one
    assert incident.severity == "sev2"
    assert summary in dms(sandbox, "U0ALICE")[0]

    # Repeats of a trigger are the same alert: the same key, no new page, nobody paged again.
    assert events.trigger(summary, "lb-1.example.com", dedup_key=key) == key
    assert events.trigger(summary, "lb-1.example.com", dedup_key=key) == key
    assert page_states(served) == [(key, "open", "triggered")]

    assert events.acknowledge(key) == key
    assert page_states(served) == [(key, "open", "acknowledged")]

    assert events.resolve(key) == key
    assert page_states(served) == [(key, "resolved", "resolved")]
    [page] = served.rows(Page)
    assert page.resolved_by == "pagerduty" and page.acknowledged_at is not None
    [alert] = served.rows(StoredAlert)
    assert (alert.fingerprint, alert.count, alert.status) == (key, 3, "resolved")
    assert len(served.rows(Incident)) == 1
    assert len(dms(sandbox, "U0ALICE")) == 1
    assert all(agent.startswith("python-pagerduty/") for agent in front.user_agents)
    metrics = served.metrics()
    for outcome, count in (("new", 1), ("repeat", 2), ("acknowledge", 1), ("resolved", 1)):
        line = (
            f'firebreak_alerts_received_total{{outcome="{outcome}",source="pagerduty"}} {count}.0'
        )
        assert line in metrics, metrics
    assert len(front.user_agents) == 5


def test_a_chosen_dedup_key_comes_back_as_sent_and_pages_again_after_resolve(
    served: Served, front: TlsFront, sandbox: SlackSandbox
) -> None:
    events = client(front)
    assert events.trigger("Disk full on db-1", "db-1", dedup_key="db-1/disk") == "db-1/disk"
    # The DM goes out after the answer; a page resolved before it is sent is never sent, so
    # wait for it (otherwise whether alice hears of the first page is a race).
    wait_for(lambda: len(dms(sandbox, "U0ALICE")) == 1, "alice paged for the first")
    assert events.resolve("db-1/disk") == "db-1/disk"
    # Once resolved, the same key is a new problem: a new page.
    assert events.trigger("Disk full on db-1", "db-1", dedup_key="db-1/disk") == "db-1/disk"
    assert page_states(served) == [
        ("db-1/disk", "resolved", "resolved"),
        ("db-1/disk", "open", "triggered"),
    ]
    wait_for(lambda: len(dms(sandbox, "U0ALICE")) == 2, "alice paged for each")


def test_an_unknown_routing_key_is_refused_as_pagerduty_refuses_it(
    served: Served, front: TlsFront
) -> None:
    with pytest.raises(pagerduty.HttpError) as refused:
        client(front, routing_key="0" * 32).trigger("x", "y")
    assert refused.value.response is not None
    assert refused.value.response.status_code == 400
    answer = refused.value.response.json()
    assert (answer["status"], answer["message"]) == ("invalid event", "Event object is invalid")
    assert any("routing_key" in error for error in answer["errors"])
    assert served.rows(Page) == []
