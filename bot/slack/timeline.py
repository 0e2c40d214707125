"""Timeline events as Slack mrkdwn: the one place facts become Slack text.

`sentence(event)` says what happened ("<@U1> changed severity sev2 → sev1"); `line(event)`
adds the time, for `/incident timeline`; `post(event)` is what the incident channel is told
when a responder changes something. User text (titles, notes, page messages, errors) goes
through `escape`, so `<!channel>` in a note never pings anyone.
"""

from __future__ import annotations

from bot import sentences
from bot.sentences import Style
from bot.slack.text import escape
from bot.slack.when import when
from bot.strict import USER_ID
from bot.timeline import BOT, TimelineEvent


def actor(who: str | None) -> str:
    """A Slack user id as a mention, the bot as "Firebreak", a terminal user by login."""
    if not who:
        return "someone"
    if who == BOT:
        return "Firebreak"
    if USER_ID.fullmatch(who):
        return f"<@{who}>"
    if who.startswith("cli:"):
        return f"{escape(who.removeprefix('cli:'))} (terminal)"
    return escape(who)


STYLE = Style(text=escape, actor=actor, channel=lambda data: f"<#{data.get('channel')}>")


_EMOJI = {
    "severity_changed": ":rotating_light:",
    "status_changed": ":arrows_counterclockwise:",
    "reopened": ":arrows_counterclockwise:",
    "role_assigned": ":bust_in_silhouette:",
    "note_added": ":memo:",
    "resolved": ":white_check_mark:",
    "page_triggered": ":pager:",
    "page_acknowledged": ":white_check_mark:",
    "page_resolved": ":white_check_mark:",
    "page_escalated": ":arrow_double_up:",
    "page_exhausted": ":rotating_light:",
    "alert_fired": ":fire:",
    "alert_resolved": ":large_green_circle:",
    "runbook_requested": ":clipboard:",
    "runbook_refused": ":no_entry:",
    "runbook_approved": ":white_check_mark:",
    "runbook_approval_refused": ":no_entry:",
    "runbook_cancelled": ":octagonal_sign:",
    "runbook_started": ":arrow_forward:",
    "runbook_host_key_rejected": ":rotating_light:",
    "runbook_finished": ":checkered_flag:",
    "runbook_interrupted": ":warning:",
    "action_added": ":ballot_box_with_check:",
    "action_done": ":white_check_mark:",
    "postmortem_drafted": ":page_facing_up:",
    "postmortem_done": ":tada:",
}


def sentence(event: TimelineEvent) -> str:
    """What happened, as one line of mrkdwn."""
    return sentences.sentence(event, STYLE)


def post(event: TimelineEvent) -> str:
    """The message an incident channel gets for a change someone made."""
    emoji = _EMOJI.get(event.kind)
    return f"{emoji} {sentence(event)}" if emoji else sentence(event)


def line(event: TimelineEvent) -> str:
    """One timeline line: the time (in the reader's zone), then what happened."""
    return f"{when(event.occurred_at, '{time_secs}')} · {sentence(event)}"
