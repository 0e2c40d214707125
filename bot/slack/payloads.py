"""Reading what a listener needs from a Slack payload, and answering when it cannot.

`bot.slack.requests` checked the envelope before bolt routed the request: a signed body,
with the fields routing reads in their proper shapes. What a listener needs beyond that (a
button's value, a modal's state, its private_metadata, the ids it stores) it reads with the
functions here, before it acknowledges. A field that is missing or has the wrong shape
raises `Malformed`, which names the field and shows the value short and escaped.

`answered` wraps every listener, so that a listener never raises into bolt. Bolt's answer
to a listener that raises is a 500, or, when the listener had already acknowledged, no
answer at all for 3 seconds and then a 404 (it forgets the acknowledgement). Wrapped, a
listener that raises acknowledges with a short private error instead: in the slash
command's own answer, under the modal's field or in place of the modal, or through the
response_url of a button. A `Malformed` payload is logged as a one-line warning, and so is
the database failing under the listener (`bot.db.unavailable`: the requester is told what was
recorded, see `database_failed`); anything else is a bug of ours and is logged with its
traceback.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Collection
from typing import Any

from slack_bolt import BoltResponse
from slack_bolt.kwargs_injection.args import Args

from bot.db import Writes, describe, unavailable, watch_writes
from bot.slack.requests import MESSAGE_TS, SLACK_ID, TRIGGER_ID, kind_of
from bot.slack.text import choices, number_id, quote

log = logging.getLogger(__name__)

WENT_WRONG = "Something went wrong on Firebreak's side; it is logged. Try again."
# When the database failed (a connection terminated or refused, the server shutting down):
# what the requester is told depends on whether anything of the request was committed.
NOT_RECORDED = (
    "Firebreak's database did not answer, so nothing was recorded. Run the command again."
)
IN_DOUBT = (
    "Firebreak lost its database connection while saving this, so it may or may not be "
    "recorded. Check before running the command again."
)
RECORDED_UNFINISHED = (
    "This is recorded, but Firebreak lost its database connection before it finished; the "
    "posts, direct messages and channel setup it calls for are sent automatically. There is "
    "nothing to repeat."
)


def database_failed(writes: Writes) -> str:
    """What to tell the requester when the database failed under their request, given what
    the request had committed by then (`bot.db.watch_writes`)."""
    if writes.first == "in doubt":
        return IN_DOUBT
    return RECORDED_UNFINISHED if writes.first == "committed" else NOT_RECORDED


class Malformed(Exception):
    """A field of a Slack payload is missing or has the wrong shape.

    `block` names the modal input the problem belongs to, if any, so a modal can show it
    under that field; the message is shown to the requester as is.
    """

    def __init__(self, message: str, *, block: str | None = None) -> None:
        super().__init__(message)
        self.block = block


def field(data: Any, path: str) -> Any:
    """The value at `path` (dotted keys, like `state.values.note`) in `data`."""
    value = data
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise Malformed(f"`{path}` is missing.")
        value = value[key]
    return value


def string(data: Any, path: str, *, default: str | None = None, block: str | None = None) -> str:
    """The string at `path`; `default` when it is missing or null, if one is given."""
    try:
        value = field(data, path)
    except Malformed:
        if default is None:
            raise
        return default
    if value is None and default is not None:
        return default
    if not isinstance(value, str):
        raise Malformed(f"`{path}` should be text, not {kind_of(value)}.", block=block)
    return value


def slack_id(data: Any, path: str) -> str:
    """A Slack id (a user, channel or view: `U0123ABC`) at `path`."""
    value = string(data, path)
    if not SLACK_ID.fullmatch(value):
        raise Malformed(f"`{path}` is `{quote(value)}`, which is not a Slack id.")
    return value


def trigger_id(body: dict[str, Any]) -> str:
    value = string(body, "trigger_id")
    if not TRIGGER_ID.fullmatch(value):
        raise Malformed(f"`trigger_id` is `{quote(value)}`, which is not a trigger id.")
    return value


def response_url(body: dict[str, Any]) -> str:
    """Where to answer a button (the envelope checked that one present is an http(s) URL);
    a listener that answers through `respond` reads it first, so it is never without it."""
    return string(body, "response_url")


def message_ts(data: Any, path: str) -> str:
    value = string(data, path)
    if not MESSAGE_TS.fullmatch(value):
        raise Malformed(f"`{path}` is `{quote(value)}`, which is not a message timestamp.")
    return value


def number(data: Any, path: str, *, what: str, prefix: str = "") -> int:
    """An id like those the database stores (1..2147483647) at `path`; `what` names it."""
    value = string(data, path)
    found = number_id(value, prefix=prefix)
    if found is None:
        raise Malformed(f"`{path}` is `{quote(value)}`, which is not {what}.")
    return found


def choice(
    data: Any, path: str, names: Collection[str], *, what: str, block: str | None = None
) -> str:
    """One of the configured `names` (a severity, a status) at `path`."""
    value = string(data, path, block=block)
    if value not in names:
        raise Malformed(
            f"`{quote(value)}` is not a {what} here. Choose one of: {choices(names)}.",
            block=block,
        )
    return value


# -- answering ----------------------------------------------------------------------------


def answered(listener: Callable[..., None]) -> Callable[[Args], None]:
    """`listener`, made never to raise: see the module's docstring.

    Bolt passes a listener the arguments it names (`ack`, `body`, `action`, `respond`...);
    the wrapper takes them all (`args`) and passes on the ones `listener` names.
    """
    names = inspect.getfullargspec(listener).args

    def run(args: Args) -> None:
        with watch_writes() as writes:
            try:
                listener(**{name: getattr(args, name) for name in names})
            except Malformed as error:
                log.warning("%s: malformed Slack request: %s", listener.__name__, error)
                # Under a modal's field, the message is about what was typed; elsewhere it
                # is about what Slack sent.
                said = (
                    str(error)
                    if error.block
                    else f"Firebreak could not read this request from Slack: {error}"
                )
                _tell(args, said, error.block)
            except Exception as error:
                if unavailable(error):
                    log.warning("%s: the database failed: %s", listener.__name__, describe(error))
                    _tell(args, database_failed(writes), None)
                else:
                    log.exception("%s failed", listener.__name__)
                    _tell(args, WENT_WRONG, None)

    run.__name__, run.__qualname__ = listener.__name__, listener.__qualname__
    run.__doc__ = listener.__doc__
    run.answered = True  # type: ignore[attr-defined]
    return run


def _tell(args: Args, message: str, block: str | None) -> None:
    """Acknowledge, if the listener had not, with `message` for the requester only."""
    body, ack = args.body, args.ack
    kind = "command" if "command" in body else body.get("type")
    try:
        if ack.response is None:
            if kind == "command":
                ack(text=f":x: {message}", response_type="ephemeral")
                return
            if kind == "view_submission":
                if block is not None:
                    ack(response_action="errors", errors={block: message[:300]})
                else:
                    ack(response_action="update", view=_notice(message))
                return
            ack()
        if kind in ("command", "block_actions") and isinstance(body.get("response_url"), str):
            args.respond(text=f":x: {message}", response_type="ephemeral", replace_original=False)
    except Exception as error:  # the answer is a courtesy; the request is acknowledged
        log.warning("could not tell the requester (%s): %s", message, error)


def on_error(
    error: Exception, body: dict[str, Any], response: BoltResponse | None
) -> BoltResponse | None:
    """Bolt's global error handler, for what `answered` cannot catch: a failure in bolt or
    in a middleware (a bug: logged with its traceback). Slack gets a 200 with a private
    error rather than a 500, which would only make it retry or show a bare failure."""
    log.error("handling a Slack request failed", exc_info=error)
    if response is None:  # a listener's failure, after its acknowledgement
        return None
    if "command" in body:
        answer: dict[str, Any] | str = {"response_type": "ephemeral", "text": f":x: {WENT_WRONG}"}
    elif body.get("type") == "view_submission":
        answer = {"response_action": "update", "view": _notice(WENT_WRONG)}
    else:
        answer = ""
    return BoltResponse(status=200, body=answer)


def _notice(message: str) -> dict[str, Any]:
    """A modal that replaces one whose submission could not be read."""
    return {
        "type": "modal",
        "title": {"type": "plain_text", "text": "Firebreak"},
        "close": {"type": "plain_text", "text": "Close"},
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f":x: {message}"}}],
    }
