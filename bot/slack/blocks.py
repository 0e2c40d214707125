"""Block Kit builders: the pinned summary, the announcement, timeline, list and modals.

Slack's limits shape these: at most 50 blocks a message, 3,000 characters a section, 150 a
header, 250 a topic. Times are rendered with `<!date^...>` so each reader sees their own zone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from bot.incidents.config import RESOLVED, IncidentsSection
from bot.incidents.models import Incident
from bot.slack import timeline as timeline_text
from bot.slack.text import escape
from bot.slack.when import when
from bot.timeline import TimelineEvent

Block = dict[str, Any]
MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_TOPIC = 250

ACTION_SEVERITY = "incident_severity"
ACTION_STATUS = "incident_status"
ACTION_NOTE = "incident_note"
ACTION_RESOLVE = "incident_resolve"
ACTION_PAGE_ACK = "page_ack"
ACTION_PAGE_ESCALATE = "page_escalate"
ACTION_PAGE_RESOLVE = "page_resolve"
VIEW_DECLARE = "incident_declare"
VIEW_NOTE = "incident_note_view"


def _text(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text[:MAX_SECTION]}


def plain_text(text: str, limit: int = 75) -> dict[str, Any]:
    """A plain_text object, cut to Slack's `limit` with an ellipsis."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return {"type": "plain_text", "text": text, "emoji": True}


_plain = plain_text


def topic(incident: Incident, commander: str | None) -> str:
    lead = f"Commander: {timeline_text.actor(commander)}" if commander else "Commander: unassigned"
    text = f"{incident.severity.upper()} · {incident.status} · {lead} · {incident.reference}: {escape(incident.title)}"
    return text if len(text) <= MAX_TOPIC else text[: MAX_TOPIC - 1] + "…"


def _options(names: Sequence[str], descriptions: dict[str, str] | None = None) -> list[Block]:
    options = []
    for name in names:
        option: Block = {"text": _plain(name), "value": name}
        if descriptions and descriptions.get(name):
            option["description"] = _plain(descriptions[name])
        options.append(option)
    return options


def summary(incident: Incident, roles: dict[str, str], policy: IncidentsSection) -> list[Block]:
    role_text = (
        ", ".join(f"{role}: {timeline_text.actor(user)}" for role, user in sorted(roles.items()))
        or "none"
    )
    fields = [
        _text(f"*Severity*\n{incident.severity.upper()}"),
        _text(f"*Status*\n{incident.status}"),
        _text(
            f"*Declared*\n{when(incident.declared_at)} by {timeline_text.actor(incident.declared_by)}"
        ),
        _text(f"*Roles*\n{role_text}"),
    ]
    blocks: list[Block] = [
        {"type": "header", "text": _plain(f"{incident.reference}: {incident.title}", 150)},
        {"type": "section", "fields": fields},
    ]
    if incident.description:
        blocks.append({"type": "section", "text": _text(escape(incident.description))})
    if incident.is_resolved and incident.resolved_at is not None:
        resolution = f": {escape(incident.resolution)}" if incident.resolution else ""
        blocks.append(
            {
                "type": "section",
                "text": _text(
                    f":white_check_mark: Resolved {when(incident.resolved_at)}{resolution}"
                ),
            }
        )
        return blocks
    value = str(incident.id)
    severities = list(policy.severities)
    open_statuses = [s for s in policy.statuses if s != RESOLVED]
    blocks.append(
        {
            "type": "actions",
            "block_id": f"incident_actions_{incident.id}",
            "elements": [
                {
                    "type": "static_select",
                    "action_id": ACTION_SEVERITY,
                    "placeholder": _plain("Severity"),
                    "options": _options(severities, policy.severities),
                    "initial_option": _options([incident.severity], policy.severities)[0],
                },
                {
                    "type": "static_select",
                    "action_id": ACTION_STATUS,
                    "placeholder": _plain("Status"),
                    "options": _options(open_statuses),
                    **(
                        {"initial_option": _options([incident.status])[0]}
                        if incident.status in open_statuses
                        else {}
                    ),
                },
                {
                    "type": "button",
                    "action_id": ACTION_NOTE,
                    "text": _plain("Add note"),
                    "value": value,
                },
                {
                    "type": "button",
                    "action_id": ACTION_RESOLVE,
                    "text": _plain("Resolve"),
                    "style": "primary",
                    "value": value,
                    "confirm": {
                        "title": _plain("Resolve this incident?"),
                        "text": _plain(f"{incident.reference} will be marked resolved.", 300),
                        "confirm": _plain("Resolve"),
                        "deny": _plain("Cancel"),
                    },
                },
            ],
        }
    )
    return blocks


def summary_text(incident: Incident) -> str:
    return f"{incident.reference} [{incident.severity.upper()} · {incident.status}] {escape(incident.title)}"


def announcement(incident: Incident) -> list[Block]:
    channel = f"<#{incident.channel_id}>" if incident.channel_id else "(channel pending)"
    state = "resolved" if incident.is_resolved else incident.status
    return [
        {
            "type": "section",
            "text": _text(
                f":rotating_light: *{incident.reference}* {incident.severity.upper()} · {state}\n"
                f"*{escape(incident.title)}*\nDeclared by {timeline_text.actor(incident.declared_by)} {when(incident.declared_at)}"
                f" · join {channel}"
            ),
        }
    ]


def timeline(incident: Incident, events: Sequence[TimelineEvent]) -> list[Block]:
    """Newest last; when it does not fit one message, the oldest are left out and counted."""
    header: Block = {"type": "header", "text": _plain(f"Timeline of {incident.reference}", 150)}
    sections: list[str] = []
    current = ""
    for line in (timeline_text.line(event) for event in events):
        line = line[: MAX_SECTION - 1]
        if current and len(current) + 1 + len(line) > MAX_SECTION:
            sections.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        sections.append(current)
    room = MAX_BLOCKS - 2
    kept = sections[-room:]
    blocks = [header]
    if len(sections) > room:
        left_out = sum(section.count("\n") + 1 for section in sections[:-room])
        blocks.append(
            {
                "type": "context",
                "elements": [
                    _text(f"{left_out} earlier events are not shown here; the newest are below.")
                ],
            }
        )
    blocks.extend({"type": "section", "text": _text(section)} for section in kept)
    if not events:
        blocks.append({"type": "section", "text": _text("No events yet.")})
    return blocks


def open_list(incidents: Sequence[Incident]) -> str:
    if not incidents:
        return "No open incidents. :relieved:"
    lines = [
        f"• *{i.reference}* {i.severity.upper()} · {i.status} · "
        + (f"<#{i.channel_id}>" if i.channel_id else "(no channel yet)")
        + f" · {escape(i.title)}"
        for i in incidents
    ]
    return f"*Open incidents ({len(incidents)})*\n" + "\n".join(lines)


def declare_modal(policy: IncidentsSection, channel_id: str) -> Block:
    return {
        "type": "modal",
        "callback_id": VIEW_DECLARE,
        "private_metadata": channel_id,
        "title": _plain("Declare an incident", 24),
        "submit": _plain("Declare"),
        "close": _plain("Cancel"),
        "blocks": [
            {
                "type": "input",
                "block_id": "title",
                "label": _plain("Title"),
                "element": {"type": "plain_text_input", "action_id": "value", "max_length": 200},
            },
            {
                "type": "input",
                "block_id": "severity",
                "label": _plain("Severity"),
                "element": {
                    "type": "static_select",
                    "action_id": "value",
                    "options": _options(list(policy.severities), policy.severities),
                    "initial_option": _options([policy.default_severity], policy.severities)[0],
                },
            },
            {
                "type": "input",
                "block_id": "description",
                "optional": True,
                "label": _plain("Description"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": "value",
                    "multiline": True,
                    "max_length": 3000,
                },
            },
        ],
    }


def note_modal(incident: Incident) -> Block:
    return {
        "type": "modal",
        "callback_id": VIEW_NOTE,
        "private_metadata": str(incident.id),
        "title": _plain("Add a note", 24),
        "submit": _plain("Add"),
        "close": _plain("Cancel"),
        "blocks": [
            {
                "type": "input",
                "block_id": "note",
                "label": _plain(f"Note for {incident.reference}"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": "value",
                    "multiline": True,
                    "max_length": 3000,
                },
            }
        ],
    }


def label_text(labels: Iterable[tuple[str, str]]) -> str:
    """An alert's labels as `name=value` code spans, every value escaped."""
    return " ".join(f"`{escape(name)}={escape(value)}`" for name, value in labels)


def links_text(links: Iterable[tuple[str, str]]) -> str:
    """(text, url) pairs as Slack links, joined by " · ". A URL Slack could misread (not
    http(s), or holding `|`, `<`, `>` or a space) is left out rather than mangled."""
    return " · ".join(
        f"<{escape(url)}|{escape(text)}>"
        for text, url in links
        if url.startswith(("https://", "http://")) and not any(c in url for c in "|<> ")
    )
