"""Incident channel names: `<prefix>-<number>-<slug of title>`.

Slack allows lowercase a-z, 0-9, '-' and '_', at most 80 characters. Titles are folded to
ASCII where possible ("Café Zürich" -> "cafe-zurich"); anything else becomes a hyphen.
"""

from __future__ import annotations

import re

from anyascii import anyascii

MAX_LENGTH = 80
_NOT_ALLOWED = re.compile(r"[^a-z0-9_-]+")
_HYPHENS = re.compile(r"-{2,}")


def slugify(title: str) -> str:
    folded = anyascii(title).lower()
    slug = _NOT_ALLOWED.sub("-", folded)
    return _HYPHENS.sub("-", slug).strip("-_")


def channel_name(prefix: str, number: int, title: str, attempt: int = 1) -> str:
    """The name to try on the `attempt`-th try; later attempts end in `-2`, `-3`, ..."""
    head = f"{prefix}-{number}"
    tail = f"-{attempt}" if attempt > 1 else ""
    room = MAX_LENGTH - len(head) - len(tail) - 1
    slug = slugify(title)[: max(room, 0)].rstrip("-_")
    name = f"{head}-{slug}" if slug else head
    return f"{name}{tail}"
