"""On-call: schedules (rotation maths), overrides, escalation policies and pages."""

from bot.oncall.errors import OncallError

__all__ = ["OncallError"]
