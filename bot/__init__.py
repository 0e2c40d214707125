"""Firebreak: incident response in Slack, with a timeline, paging and runbooks."""

__version__ = "0.1.0"
