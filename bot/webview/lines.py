"""The incident page's timeline as HTML lines, each made once and kept (issue #12's speed).

An incident of 10,000 events cost about 250 ms of CPU per view to read (10,000 JSON
documents), word (`bot.sentences`) and format; the page of a big incident is exactly the
one many people keep open. A line depends only on its event, the reader's time zone and
the names in `people:`, and none of them changes while the process runs: timeline events
are append-only (the ORM and database triggers refuse UPDATE and DELETE) and the
configuration is read once at start. So `TimelineLines` keeps each line by (zone, event
id), and a view reads only the incident's event ids in order, then the full rows of the
events it has no line for yet: the first view of an incident pays for every line, later
views (and each new event) only for what is new.

Bounded: at most `LIMIT` lines (least recently shown dropped first), about 500 bytes each,
so the process's memory stays flat however many incidents are viewed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from markupsafe import Markup
from sqlalchemy.orm import Session

from bot.sentences import Style
from bot.webview import queries
from bot.webview.render import Page, timeline_item

# Lines kept: a 10,000-event incident in four zones, about 20 MB (500 bytes a line).
LIMIT = 40_000


class TimelineLines:
    """Timeline lines as HTML by (zone, event id); shared by the requests of one process."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._lines: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._lines)

    def html(
        self, session: Session, incident_id: int, event_ids: Sequence[int], page: Page, style: Style
    ) -> Markup:
        """The `<li>` lines of these events of the incident, in this order, for `page`'s
        reader; lines not kept yet are made from the events' rows (read here) and kept."""
        zone = page.zone.key
        with self._lock:
            lines = [self._shown((zone, event_id)) for event_id in event_ids]
        missing = [event_id for event_id, line in zip(event_ids, lines, strict=True) if not line]
        if missing:
            made = {
                row.id: timeline_item(row)
                for row in page.timeline(queries.events_by_id(session, incident_id, missing), style)
            }
            lines = [
                line or made.get(event_id, "")
                for event_id, line in zip(event_ids, lines, strict=True)
            ]
            with self._lock:
                for event_id, line in made.items():
                    self._lines[(zone, event_id)] = line
                while len(self._lines) > self.limit:
                    self._lines.popitem(last=False)
        return Markup("\n".join(line for line in lines if line))  # noqa: S704 - see timeline_item

    def _shown(self, key: tuple[str, int]) -> str | None:
        line = self._lines.get(key)
        if line is not None:
            self._lines.move_to_end(key)
        return line
