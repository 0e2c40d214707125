"""Alerts from monitoring: the normalised alert, routing, dedup, grouping and storm limits.

Parsers in `integrations/` turn a webhook into `bot.alerts.model.Batch` values; everything
after that (which route, which page, which incident) happens here, once, for every source.
This package knows nothing of HTTP or Slack.
"""
