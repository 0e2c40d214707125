"""Grafana Alerting's webhook contact point in, a `Batch` out.

Grafana sends Alertmanager's webhook shape (its alerting is built on Alertmanager) plus
`orgId`, `title`, `state` and `message`, and per alert `dashboardURL`, `panelURL`,
`silenceURL`, `imageURL`, `values` and `valueString`. The shared shape is read by
`integrations._alertpayload`; this module reads Grafana's own fields.
"""

from __future__ import annotations

from collections.abc import Mapping

from bot.alerts.model import MAX_LABEL_VALUE, MAX_SUMMARY, Batch
from integrations._alertpayload import Extras, group_title, read_group, without_status_prefix
from integrations._fields import (
    Problems,
    as_object,
    child,
    json_type,
    shorten,
    string_field,
    web_link,
)

# Grafana's per-alert URLs and the link text each becomes.
_ALERT_LINKS = (
    ("dashboardURL", "Dashboard"),
    ("panelURL", "Panel"),
    ("silenceURL", "Silence"),
    ("imageURL", "Image"),
)


def parse(body: object) -> Batch:
    """The alerts of one Grafana webhook notification (the JSON body, already decoded).

    Raises `Invalid` naming every bad field, and nothing else, whatever `body` is.
    """
    problems = Problems()
    group = read_group(body, problems, alert_extras)
    title = envelope_title(body, problems)
    problems.raise_if_any()
    assert group is not None  # read_group records a problem whenever it gives None
    return Batch(
        source="grafana",
        group_key=group.key,
        title=title or group_title(group),
        alerts=group.alerts,
        truncated=group.truncated,
    )


def envelope_title(body: object, problems: Problems) -> str | None:
    """Grafana's `title` without its "[FIRING:2] " count (so a repeat keeps the title),
    or None if there is none; checks `orgId`, `state` and `message` on the way."""
    if not isinstance(body, dict):
        return None  # read_group has said so
    orgid = body.get("orgId")
    if orgid is not None and (isinstance(orgid, bool) or not isinstance(orgid, int)):
        problems.add("orgId", f"must be a whole number; got {json_type(orgid)}")
    string_field(body, "state", "", problems)
    string_field(body, "message", "", problems)
    title = string_field(body, "title", "", problems)
    return shorten(without_status_prefix(title), MAX_SUMMARY) if title else None


def alert_extras(alert: Mapping[str, object], path: str, problems: Problems) -> Extras:
    """Grafana's own fields of one alert: its links, and `valueString` as the `value`
    annotation. `values` is checked (an object of numbers) but not kept."""
    links = tuple(
        web_link(text, string_field(alert, key, path, problems)) for key, text in _ALERT_LINKS
    )
    check_values(alert, path, problems)
    value = string_field(alert, "valueString", path, problems, limit=MAX_LABEL_VALUE)
    return Extras(links=links, annotations={"value": value} if value else {})


def check_values(alert: Mapping[str, object], path: str, problems: Problems) -> None:
    """`values`: absent, null, or an object of query names to numbers."""
    raw = alert.get("values")
    if raw is None:
        return
    values = as_object(raw, child(path, "values"), problems, " of names to numbers")
    for name, value in (values or {}).items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.add(
                child(child(path, "values"), str(name)),
                f"must be a number; got {json_type(value)}",
            )
