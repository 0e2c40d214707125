"""Prometheus Alertmanager's webhook (`webhook_configs`, payload version 4) in, a `Batch` out.

Point a receiver at `POST /alerts/alertmanager`; each notification is one group of alerts
(`groupKey`), re-sent whole every `group_interval`. The payload is read strictly (see
`integrations._fields` for the rules) and every bad field is reported in one `Invalid`.
"""

from __future__ import annotations

from bot.alerts.model import Batch
from integrations._alertpayload import group_title, read_group
from integrations._fields import Problems


def parse(body: object) -> Batch:
    """The alerts of one Alertmanager notification (the JSON body, already decoded).

    Raises `Invalid` naming every bad field, and nothing else, whatever `body` is.
    """
    problems = Problems()
    group = read_group(body, problems)
    problems.raise_if_any()
    assert group is not None  # read_group records a problem whenever it gives None
    return Batch(
        source="alertmanager",
        group_key=group.key,
        title=group_title(group),
        alerts=group.alerts,
        truncated=group.truncated,
    )
