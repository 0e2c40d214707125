"""What reaches bolt: a request Slack signed, whose body parses the way Slack sends it.

`check` runs before bolt sees a request at `/slack/events` and answers for it when it must
not go further:

- 401 when the signature or the timestamp is missing, malformed, stale or wrong. Bolt
  checks this too, but it calls `int()` on the timestamp header and crashes on one that is
  not a number; here the timestamp must be ASCII digits and the signature `v0=` and 64
  lowercase hex digits before anything is computed.
- 400 when the body cannot be read as Slack sends it: not UTF-8, JSON that does not parse or
  is not an object, a `payload` form field that is not a JSON object, or an envelope whose
  routing fields have the wrong shape (an `event` that is a list, `actions` that are empty,
  a `view` without its `callback_id`...). Those are the fields bolt reads to route a
  request, before any listener of ours runs; a wrong shape there would crash inside bolt.

What Slack sends:
- a slash command: a form with `command`, `text`, `user_id`, `channel_id`, `trigger_id`,
  `response_url` (every value a string);
- an interaction (button, modal, shortcut): a form whose `payload` field is a JSON object
  with a `type` and the `user` who acted;
- an Events API request: a JSON object with a `type` (`event_callback` carries an `event`
  object with its own `type`; `url_verification` carries a `challenge`).

The body is parsed the same way bolt parses it (JSON when the content type is
`application/json` or the body starts with `{`, a form otherwise), so what passes here
parses in bolt too. What the listeners need beyond the envelope (a button's value, a
modal's state) is checked by the listeners themselves (`bot.slack.payloads`), which answer
a malformed payload with a private error rather than a status.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from bot import json_body

MAX_SKEW = 5 * 60  # seconds between the request's timestamp and now, as bolt allows
# ASCII digits only: int() also takes ' 1', '1_0' and the digits of other scripts.
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")
# Slack's ids: U0123ABC (users), W… (enterprise users), C/G/D… (channels), T… (teams).
SLACK_ID = re.compile(r"[A-Z0-9][A-Z0-9_]{0,39}")
_URL = re.compile(r"https?://[^\s\x00-\x1f\x7f]{1,2000}")
# Slack's trigger ids look like 1234567890.1234567890.0123abcd; event ids like Ev0123ABC;
# message timestamps like 1732150000.000100; a view's hash like 1732150000.Ab12Cd34.
TRIGGER_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,99}")
EVENT_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]{0,99}")
MESSAGE_TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,9}")
_VIEW_HASH = re.compile(r"[0-9A-Za-z._-]{1,100}")
# Fields that name who or where: a string, or an object whose `id` is one.
_ID_FIELDS = ("user", "channel", "team", "enterprise")
# Objects bolt looks into for those fields (an event, the message of a button, ...).
_NESTED = ("event", "message", "previous_message", "item", "assistant_thread")


@dataclass(frozen=True)
class Refused:
    """The answer to a request that goes no further: its status and what was wrong."""

    status: int
    error: str  # a short code, like Slack's own: invalid_signature, invalid_body
    message: str

    def json(self) -> str:
        return json.dumps({"ok": False, "error": self.error, "message": self.message})


@dataclass(frozen=True)
class Accepted:
    """A signed request and its body, parsed as bolt parses it."""

    body: dict[str, Any]


def check(
    raw: bytes,
    *,
    timestamp: str | None,
    signature: str | None,
    content_type: str | None,
    signing_secret: str,
    now: float,
) -> Accepted | Refused:
    """Verify the signature of `raw` and parse it; see the module's docstring. The strings
    are the X-Slack-Request-Timestamp, X-Slack-Signature and Content-Type headers."""
    refused = verify(raw, timestamp, signature, signing_secret=signing_secret, now=now)
    if refused is not None:
        return refused
    return parse(raw, content_type)


def verify(
    raw: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    signing_secret: str,
    now: float,
) -> Refused | None:
    """None when Slack signed `raw` within the last five minutes, else a 401."""
    if not timestamp:
        return _unauthorised("The X-Slack-Request-Timestamp header is missing.")
    if not _TIMESTAMP.fullmatch(timestamp):
        return _unauthorised(
            "The X-Slack-Request-Timestamp header must be a Unix time in seconds "
            "(ASCII digits only)."
        )
    if abs(now - int(timestamp)) > MAX_SKEW:
        return _unauthorised(
            "The request timestamp is more than 5 minutes away from this server's clock; "
            "a replayed request, or a clock to fix."
        )
    if not signature:
        return _unauthorised("The X-Slack-Signature header is missing.")
    if not _SIGNATURE.fullmatch(signature):
        return _unauthorised("The X-Slack-Signature header must be v0= and 64 hex digits.")
    base = b"v0:" + timestamp.encode("ascii") + b":" + raw
    expected = "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        return _unauthorised("The signature does not match the body; check SLACK_SIGNING_SECRET.")
    return None


def parse(raw: bytes, content_type: str | None) -> Accepted | Refused:
    """The body as bolt will see it, or a 400 saying why it is not one Slack sends."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return _bad(f"The body is not UTF-8 (byte {error.start}).")
    if not text:
        return _bad("The body is empty.")
    # Bolt's rule for telling JSON from a form, kept so both parse the same way.
    media = (content_type or "").split(";")[0]
    if media == "application/json" or text.startswith("{"):
        body = _json_object(text, "The body")
        if isinstance(body, Refused):
            return body
        if "command" in body:
            return _bad("Slash commands come form-encoded, not as JSON.")
        return _envelope(body, what="body")
    fields = dict(parse_qsl(text, keep_blank_values=True))
    if "payload" in fields:
        payload = _json_object(fields["payload"], "The payload field")
        if isinstance(payload, Refused):
            return payload
        if "command" in payload:
            return _bad("An interaction payload cannot carry a slash command.")
        return _envelope(payload, what="payload")
    if fields.get("ssl_check") == "1":
        return Accepted(fields)
    return _slash_command(fields)


def _json_object(text: str, what: str) -> dict[str, Any] | Refused:
    try:
        value = json_body.load(text)
    except json_body.NotJSON as refused:
        return _bad(f"{what} {refused.problem}.")
    if not isinstance(value, dict):
        return _bad(f"{what} must be a JSON object, not {kind_of(value)}.")
    return value


def _slash_command(fields: dict[str, str]) -> Accepted | Refused:
    command = fields.get("command", "")
    if not command.startswith("/"):
        return _bad(
            "A form body must be a slash command (with `command`) or an interaction "
            "(with `payload`)."
        )
    for name in ("user_id", "channel_id"):
        if not SLACK_ID.fullmatch(fields.get(name, "")):
            return _bad(f"The slash command's `{name}` is missing or not a Slack id.")
    if not _URL.fullmatch(fields.get("response_url", "")):
        return _bad("The slash command's `response_url` is missing or not an http(s) URL.")
    if not TRIGGER_ID.fullmatch(fields.get("trigger_id", "")):
        return _bad("The slash command's `trigger_id` is missing or not a trigger id.")
    return Accepted(fields)


def _envelope(body: dict[str, Any], *, what: str) -> Accepted | Refused:
    kind = body.get("type")
    if not isinstance(kind, str) or not kind:
        return _bad(f"The {what} has no `type` string.")
    problem = _ids(body, what) or _routing(body, kind, what) or _identity(body, what)
    if problem:
        return _bad(problem)
    return Accepted(body)


def _routing(body: dict[str, Any], kind: str, what: str) -> str | None:
    """What bolt's routing would trip over in this body, if anything."""
    if "response_url" in body and not (
        isinstance(body["response_url"], str) and _URL.fullmatch(body["response_url"])
    ):
        return f"The {what}'s `response_url` is not an http(s) URL."
    urls = body.get("response_urls")
    if urls is not None and not (isinstance(urls, list) and all(isinstance(u, dict) for u in urls)):
        return f"The {what}'s `response_urls` must be a list of objects."
    authorizations = body.get("authorizations")
    if authorizations is not None and not (
        isinstance(authorizations, list) and all(isinstance(a, dict) for a in authorizations)
    ):
        return f"The {what}'s `authorizations` must be a list of objects."
    if "view" in body and not isinstance(body["view"], dict):
        return f"The {what}'s `view` must be an object, not {kind_of(body['view'])}."
    if "event" in body and not isinstance(body["event"], dict):
        return f"The {what}'s `event` must be an object, not {kind_of(body['event'])}."
    if kind == "event_callback":
        if "event" not in body:
            return "An event_callback has no `event`."
        if not isinstance(body["event"].get("type"), str):
            return "The event has no `type` string."
    if kind in ("block_actions", "interactive_message"):
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
            return f"A {kind} payload needs `actions`, a list of objects."
        if kind == "block_actions" and not isinstance(actions[0].get("action_id"), str):
            return "The action has no `action_id` string."
    if kind in ("view_submission", "view_closed"):
        view = body.get("view")
        if not isinstance(view, dict):
            return f"A {kind} payload needs its `view`."
        for name in ("callback_id", "type"):
            if not isinstance(view.get(name), str):
                return f"The view has no `{name}` string."
    if kind == "workflow_step_edit" and "workflow_step" not in body:
        return "A workflow_step_edit payload needs its `workflow_step`."
    if kind not in ("event_callback", "url_verification", "app_rate_limited") and not (
        isinstance(body.get("user"), dict) and isinstance(body["user"].get("id"), str)
    ):
        return f"The {what} has no `user` with an `id`."
    return None


def _identity(body: dict[str, Any], what: str) -> str | None:
    """The fields that identify a request (to act on it once) must have Slack's shapes."""
    if "trigger_id" in body and not _matches(TRIGGER_ID, body["trigger_id"]):
        return f"The {what}'s `trigger_id` is not a trigger id."
    if "event_id" in body and not _matches(EVENT_ID, body["event_id"]):
        return f"The {what}'s `event_id` is not an event id."
    user = body.get("user")
    if isinstance(user, dict) and "id" in user and not _matches(SLACK_ID, user["id"]):
        return f"The {what}'s `user.id` is not a Slack user id."
    container = body.get("container")
    if container is not None:
        if not isinstance(container, dict):
            return f"The {what}'s `container` must be an object."
        if container.get("message_ts") not in (None, "") and not _matches(
            MESSAGE_TS, container["message_ts"]
        ):
            return "The container's `message_ts` is not a message timestamp."
        if "view_id" in container and not _matches(SLACK_ID, container["view_id"]):
            return "The container's `view_id` is not a view id."
    actions = body.get("actions")
    if isinstance(actions, list):
        for action in actions:
            if not isinstance(action, dict):
                return f"The {what}'s `actions` must all be objects."
            if "action_ts" in action and not _matches(MESSAGE_TS, action["action_ts"]):
                return "An action's `action_ts` is not a timestamp."
    view = body.get("view")
    if isinstance(view, dict):
        if "id" in view and not _matches(SLACK_ID, view["id"]):
            return "The view's `id` is not a view id."
        if view.get("hash") is not None and not _matches(_VIEW_HASH, view["hash"]):
            return "The view's `hash` is not a view hash."
    return None


def _matches(pattern: re.Pattern[str], value: Any) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _ids(value: dict[str, Any], where: str) -> str | None:
    """Who and where fields must be strings or objects, here and in what bolt looks into."""
    for name in _ID_FIELDS:
        field = value.get(name)
        if field is not None and not isinstance(field, str | dict):
            return f"`{where}.{name}` must be a string or an object, not {kind_of(field)}."
    for name in _NESTED:
        nested = value.get(name)
        if isinstance(nested, dict):
            problem = _ids(nested, f"{where}.{name}")
            if problem:
                return problem
    authorizations = value.get("authorizations")
    if isinstance(authorizations, list) and authorizations:
        first = authorizations[0]
        if isinstance(first, dict):
            if "authorizations" in first:
                return f"`{where}.authorizations[0]` cannot hold authorizations of its own."
            return _ids(first, f"{where}.authorizations[0]")
    return None


def kind_of(value: Any) -> str:
    """What a JSON value is, for a message: "a list", "null", "a number"..."""
    if value is None:
        return "null"
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return names.get(type(value), "a number")


def _unauthorised(message: str) -> Refused:
    return Refused(401, "invalid_signature", message)


def _bad(message: str) -> Refused:
    return Refused(400, "invalid_body", message)
