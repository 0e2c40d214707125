"""Who may send alerts: a bearer token at `/alerts/<source>`, a routing key at `/v2/enqueue`.

Pure functions over the configuration and an environment mapping the caller passes (they
never read `os.environ`), so the web layer decides where secrets come from and tests need no
patching. Secrets are compared with `hmac.compare_digest`, and every configured secret is
compared on every request, so the time taken says nothing about which one matched.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.alerts.model import Source
    from bot.alerts.routing import AlertsSection
    from bot.oncall.configuration import Service

# The sources whose endpoints take `Authorization: Bearer <token>`. PagerDuty events carry a
# routing key instead (`services.<name>.routing_key`): see `service_for_routing_key`.
BEARER_SOURCES: tuple[Source, ...] = ("alertmanager", "grafana")


def _secret(text: str) -> bytes:
    # surrogatepass: any str (a WSGI header, an environment value) encodes, and distinct
    # strings stay distinct.
    return text.encode("utf-8", "surrogatepass")


def presented_bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme in any case), or None
    for a missing header, another scheme or an empty token."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def bearer_ok(
    header: str | None,
    source: Source,
    *,
    alerts: AlertsSection,
    default_token: str | None,
    environ: Mapping[str, str],
) -> bool:
    """Whether `header` (the Authorization header, or None) may post alerts from `source`.

    Accepted tokens: `default_token` (FIREBREAK_ALERT_TOKEN) and the source's own token (the
    value of `alerts.sources.<source>.token_env` in `environ`). Unset or empty tokens accept
    nothing, so with no token configured every request is refused; so is every request for a
    source that is not in `BEARER_SOURCES` (PagerDuty, or a name that is no source at all).
    """
    token = presented_bearer(header)
    if token is None or source not in BEARER_SOURCES:
        return False
    variable = alerts.token_env(source)
    candidates = [default_token, environ.get(variable) if variable is not None else None]
    presented = _secret(token)
    accepted = False
    for candidate in candidates:
        if candidate:  # compare against all of them: no early exit on a match
            accepted |= hmac.compare_digest(presented, _secret(candidate))
    return accepted


def service_for_routing_key(
    key: str, services: Mapping[str, Service], environ: Mapping[str, str]
) -> str | None:
    """The service whose routing key (`routing_key`, or `routing_key_env` read from
    `environ`) is `key`, or None. Every configured key is compared, whichever matches."""
    if not key:
        return None
    presented = _secret(key)
    found: str | None = None
    for name, service in services.items():
        candidate = service.routing_key_from(environ)
        if candidate is None:
            continue
        matched = hmac.compare_digest(presented, _secret(candidate))
        if matched and found is None:
            found = name
    return found
