"""The one error the on-call schedules raise for a request they cannot honour."""

from __future__ import annotations


class OncallError(Exception):
    """An unknown schedule or person, or an impossible override; shown to the user as is."""
