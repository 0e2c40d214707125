"""The Slack app manifest: paste its YAML into api.slack.com -> Your apps -> Create from manifest."""

from __future__ import annotations

from typing import Any

import yaml

BOT_SCOPES = [
    "channels:history",  # read a message someone marked with :pushpin:
    "channels:manage",  # create incident channels, invite responders, set topics
    "channels:read",  # find a channel Firebreak created when Slack's answer was lost
    "chat:write",  # post summaries, updates, answers, pages and hand-offs (DMs too)
    "chat:write.public",  # announce in a channel without joining it first
    "commands",  # /incident, /oncall, /page, /runbook
    "files:write",  # upload postmortem drafts to the incident channel
    "pins:write",  # pin the incident summary
    "reactions:read",  # receive :pushpin: reactions
]
BOT_EVENTS = ["reaction_added"]
SLASH_COMMANDS = [
    {
        "command": "/incident",
        "description": "Declare and run incidents",
        "usage_hint": "declare [sevN] <title> | sev | status | role | note | resolve | timeline | alerts | action | actions | postmortem | report | list | help",
    },
    {
        "command": "/oncall",
        "description": "Who is on call now and next; overrides",
        "usage_hint": "[schedule] | override <schedule> <@person> <duration|until ...> | override cancel <id>",
    },
    {
        "command": "/page",
        "description": "Page a person, schedule or escalation policy",
        "usage_hint": "<@person|schedule:NAME|policy:NAME|service:NAME> <message> | ack <id>",
    },
    {
        "command": "/runbook",
        "description": "Run whitelisted runbooks on hosts over SSH",
        "usage_hint": "list | show <id> | run <id> key=value ... [hosts=...] | cancel R-<n> | help",
    },
]


def build_manifest(url: str, *, socket_mode: bool = False) -> dict[str, Any]:
    """The app's manifest; with `socket_mode`, Slack sends everything over the WebSocket
    Firebreak opens (`socket_mode_enabled: true`) and the manifest names no request URL."""
    if socket_mode:
        return _without_urls(build_manifest(url))
    events_url = url.rstrip("/") + "/slack/events"
    return {
        "display_information": {
            "name": "Firebreak",
            "description": "Incident channels, timelines, paging and runbooks",
            "background_color": "#8b1a1a",
        },
        "features": {
            "bot_user": {"display_name": "Firebreak", "always_online": True},
            "slash_commands": [
                {**command, "url": events_url, "should_escape": True} for command in SLASH_COMMANDS
            ],
        },
        "oauth_config": {"scopes": {"bot": BOT_SCOPES}},
        "settings": {
            "event_subscriptions": {"request_url": events_url, "bot_events": BOT_EVENTS},
            "interactivity": {"is_enabled": True, "request_url": events_url},
            "org_deploy_enabled": False,
            "socket_mode_enabled": False,
            "token_rotation_enabled": False,
        },
    }


def _without_urls(manifest: dict[str, Any]) -> dict[str, Any]:
    features, settings = manifest["features"], manifest["settings"]
    for command in features["slash_commands"]:
        del command["url"]
    del settings["event_subscriptions"]["request_url"]
    del settings["interactivity"]["request_url"]
    settings["socket_mode_enabled"] = True
    return manifest


def render_manifest(url: str, *, socket_mode: bool = False) -> str:
    header = "# Firebreak Slack app manifest"
    if socket_mode:
        header += " (Socket Mode: no public URL; create an app-level token with connections:write)"
    return f"{header}\n" + yaml.safe_dump(
        build_manifest(url, socket_mode=socket_mode), sort_keys=False, allow_unicode=True
    )
