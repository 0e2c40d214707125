"""`firebreak postmortem INC-ID [--template NAME] [-o FILE]`: a postmortem draft in Markdown.

Registered on the `firebreak` group by `bot.cli`. Every problem (a bad or unknown incident,
an unknown or broken template, a bad configuration, an unwritable file) is one `error:`
line and exit status 2; a file given with `-o` is written whole or not at all.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from bot.cli_support import fail, settings_or_fail, upgraded_session


def write_whole(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same directory, then rename:
    readers see the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@click.command("postmortem")
@click.argument("incident", metavar="INC-ID")
@click.option(
    "--template",
    "template",
    default="default",
    show_default=True,
    metavar="NAME",
    help="Template name: default, executive, or one from postmortem.templates_dir.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the draft to FILE instead of standard output.",
)
def postmortem(incident: str, template: str, output: Path | None) -> None:
    """Render the postmortem draft of INC-ID (INC-7, inc-7 or 7) as Markdown."""
    from bot.clock import system_now
    from bot.postmortem.context import UnknownIncident, parse_reference
    from bot.postmortem.draft import render
    from bot.postmortem.templates import TemplateError, Templates, UnknownTemplate

    settings = settings_or_fail()
    incident_id = parse_reference(incident)
    if incident_id is None:
        fail(f"{incident[:40]!r} is not an incident; give its ID like INC-7, inc-7 or 7")
    section = settings.file.postmortem
    if section.templates_dir is not None and not section.templates_dir.is_dir():
        fail(
            f"postmortem.templates_dir: {section.templates_dir} is not a directory "
            f"(relative paths start at {Path.cwd()})"
        )
    templates = Templates.load(section.templates_dir)
    if template not in templates.files:
        fail(str(UnknownTemplate(template, templates.names)))
    try:
        with upgraded_session(settings) as session:
            text = render(
                session,
                incident_id,
                templates=templates,
                template=template,
                people=settings.file.people,
                severities=settings.file.incidents.severities,
                section=section,
                now=system_now(),
            )
    except UnknownIncident as error:
        fail(f"{error}; `/incident list` in Slack shows the open ones")
    except TemplateError as error:
        fail(str(error))
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        write_whole(output, text)
    except OSError as error:
        fail(f"cannot write {output}: {error.strerror or error}")
    click.echo(f"Wrote {output}", err=True)
