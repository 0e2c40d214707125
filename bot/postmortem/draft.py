"""One postmortem draft: an incident's context rendered with a named template."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.orm import Session

from bot.people import Person
from bot.postmortem import context
from bot.postmortem.config import PostmortemSection
from bot.postmortem.templates import Templates, UnknownTemplate


def render(
    session: Session,
    incident_id: int,
    *,
    templates: Templates,
    template: str,
    people: Mapping[str, Person],
    severities: Mapping[str, str],
    section: PostmortemSection,
    now: datetime,
) -> str:
    """The Markdown draft. Raises `context.UnknownIncident`, `templates.UnknownTemplate`
    (checked first, before any database work) or `templates.TemplateError`."""
    if template not in templates.files:
        raise UnknownTemplate(template, templates.names)
    data = context.build(
        session, incident_id, people=people, severities=severities, section=section, now=now
    )
    return templates.render(template, data.variables())
