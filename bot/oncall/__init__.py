"""On-call: schedules (rotation maths), overrides, escalation policies and pages."""
