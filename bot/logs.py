"""Logs: one line per record, the ids of the work bound to it, and no secret in any of them.

- `bind(...)` binds ids (`request_id`, `incident`, `page`, `alert`, `run`) for the duration
  of a block; every record logged inside it, on this thread, carries them. `add(...)` binds
  more for the rest of the current scope: the innermost `bind` block, the request, or the
  pool task. The ids live in a `contextvars.ContextVar`, so they follow work handed to a
  pool only where the hand-off copies the context (`bot.workers`, the runbook executor);
  each HTTP request runs in a fresh copy (`RequestIds`), so nothing leaks into the next.
- `JsonFormatter` writes one JSON object a line: `ts` (UTC, ISO 8601 with milliseconds),
  `level`, `logger`, `message`, the bound ids, any `extra=` fields, and `exc` (the
  traceback as one string) when there is one. `TextFormatter` is for a terminal: the same
  record on one line, bound ids appended as `key=value`.
- `Redactor` is the second line of defence (the first: never log a secret): a filter on the
  handler that replaces every configured secret value (`add_secrets`), and anything shaped
  like a Slack token (`xoxb-`, `xoxa-`, `xoxp-`, `xapp-`...), a `Bearer` credential, a
  URL's password or a `token=` query value, by `[redacted]` in the message, its arguments,
  the extra fields and the traceback.
- `RequestIds` is WSGI middleware: each request gets a request id (the caller's
  `X-Request-Id` when it is well-formed, else a new one), bound while it is handled and
  echoed in the response's `X-Request-Id`; it logs one access line per request.

Standard library only: domain code may import `bind` without pulling in any transport.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

REDACTED = "[redacted]"
FORMATS = ("json", "text")
# The ids a record can carry, in the order they are written.
FIELDS = ("request_id", "incident", "page", "alert", "run")
Id = int | str

_EMPTY: Mapping[str, Id] = MappingProxyType({})
_bound: contextvars.ContextVar[Mapping[str, Id]] = contextvars.ContextVar(
    "firebreak_log_ids", default=_EMPTY
)


def _merged(ids: Mapping[str, Id | None]) -> Mapping[str, Id]:
    current = dict(_bound.get())
    current.update({key: value for key, value in ids.items() if value is not None})
    return MappingProxyType(current)


@contextmanager
def bind(
    *,
    request_id: str | None = None,
    incident: Id | None = None,
    page: Id | None = None,
    alert: Id | None = None,
    run: Id | None = None,
) -> Iterator[None]:
    """Bind these ids (None: leave as it is) to every record logged inside the block.

    Leaving the block restores the ids as they were on entering it, undoing `add` calls
    made inside it too."""
    token = _bound.set(
        _merged(dict(request_id=request_id, incident=incident, page=page, alert=alert, run=run))
    )
    try:
        yield
    finally:
        _bound.reset(token)


def add(
    *,
    incident: Id | None = None,
    page: Id | None = None,
    alert: Id | None = None,
    run: Id | None = None,
) -> None:
    """Bind these ids for the rest of the current scope (the innermost `bind` block, the
    HTTP request or the pool task), once the code has learnt them."""
    _bound.set(_merged(dict(incident=incident, page=page, alert=alert, run=run)))


def bound() -> dict[str, Id]:
    """The ids bound here now."""
    return dict(_bound.get())


def in_context(work: Callable[..., Any]) -> Callable[..., Any]:
    """`work` to run on another thread with the ids (the whole context) bound here now."""
    context = contextvars.copy_context()

    def run(*args: Any, **kwargs: Any) -> Any:
        return context.copy().run(work, *args, **kwargs)

    return run


# -- redaction -----------------------------------------------------------------------------

# (what a line must contain, lowercased, for the pattern to be worth running: any of these
# words; pattern; replacement). Most lines contain none of them, and skip every regex.
_SHAPES = (
    # Slack tokens: bot, user, app-level, configuration and legacy workspace tokens.
    (("xox",), re.compile(r"\bxox[a-z]-[A-Za-z0-9-]+"), REDACTED),
    (("xapp-",), re.compile(r"\bxapp-[A-Za-z0-9-]+"), REDACTED),
    # An Authorization credential: 8+ characters with a digit or punctuation in them, so
    # that prose ("a wrong bearer token", "Basic Information page") stays readable.
    (
        ("bearer", "basic"),
        re.compile(r"\b(Bearer|Basic)\s+(?=[\w~+/=.-]*[\d~+/=.-])[\w~+/=.-]{8,}", re.IGNORECASE),
        r"\1 " + REDACTED,
    ),
    # A URL's password: scheme://user:password@host (SQLAlchemy's hidden *** stays)
    (
        ("://",),
        re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)(?!\*\*\*@)[^@\s/]+@", re.IGNORECASE),
        r"\1" + REDACTED + "@",
    ),
    # Tokens in a query string (calendar feeds, response URLs).
    (
        ("=",),
        re.compile(r"([?&](?:token|key|secret|password)=)[^&\s\"']+", re.IGNORECASE),
        r"\1" + REDACTED,
    ),
)
_NEEDLES = re.compile(
    "|".join(re.escape(needle) for needles, _, _ in _SHAPES for needle in needles), re.IGNORECASE
)
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)
# Secrets shorter than this are not matched by value (a one-letter "secret" would redact
# every occurrence of that letter); the shapes above still apply.
MIN_SECRET = 6


class Redactor(logging.Filter):
    """Replace secrets in every record that passes through the handler it is added to."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()

    def add_secrets(self, values: Iterable[str | None]) -> None:
        with self._lock:
            known = set(self._secrets)
            known.update(v for v in values if v and len(v) >= MIN_SECRET)
            # Longest first: a secret that contains another is replaced whole.
            self._secrets = tuple(sorted(known, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if not _NEEDLES.search(text):
            return text
        lowered = text.lower()
        for needles, pattern, replacement in _SHAPES:
            if any(needle in lowered for needle in needles):
                text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what can be shown
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _traceback(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        fields = record.__dict__
        for key in fields.keys() - _STANDARD:
            value = fields[key]
            if isinstance(value, str):
                fields[key] = self.redact(value)
        return True


def _traceback(exc_info: Any) -> str:
    return "".join(traceback.format_exception(*exc_info)).rstrip("\n")


# -- formatters ----------------------------------------------------------------------------


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    fields = record.__dict__  # in the order given (`extra=`), for a readable line
    return {
        key: value
        for key, value in fields.items()
        if key not in _STANDARD and key not in FIELDS and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """One JSON object a line (see the module docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, Any] = {
            "ts": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_ids(record))
        for key, value in _extras(record).items():
            line.setdefault(key, value)
        exc = record.exc_text or (_traceback(record.exc_info) if record.exc_info else None)
        if exc:
            line["exc"] = exc
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`2026-03-30 08:00:00,123 INFO bot.webhooks: message [request_id=... incident=3]`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        ids = _ids(record)
        if not ids:
            return text
        first, newline, rest = text.partition("\n")
        suffix = " [" + " ".join(f"{key}={value}" for key, value in ids.items()) + "]"
        return first + suffix + newline + rest


def _ids(record: logging.LogRecord) -> dict[str, Id]:
    """The ids bound when the record was made (`ContextFilter` stored them)."""
    ids: Mapping[str, Id] = getattr(record, "_ids", None) or _bound.get()
    return {key: ids[key] for key in FIELDS if key in ids}


class ContextFilter(logging.Filter):
    """Store the ids bound on the logging thread in the record, before any hand-off."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "_ids"):
            setattr(record, "_ids", _bound.get())  # noqa: B010 - not a LogRecord field
        return True


# -- configuration -------------------------------------------------------------------------

_redactor = Redactor()
NOISY = ("slack_bolt", "slack_sdk", "waitress.queue", "alembic", "apscheduler")


def redactor() -> Redactor:
    """The process's redaction filter (on the handler `configure` installs)."""
    return _redactor


def add_secrets(values: Iterable[str | None]) -> None:
    """Never show these values in a log line (in addition to the token shapes)."""
    _redactor.add_secrets(values)


def default_format(stream: Any = None) -> str:
    """`text` on a terminal, `json` otherwise (a service manager, a container, a file)."""
    stream = sys.stderr if stream is None else stream
    try:
        return "text" if stream.isatty() else "json"
    except (AttributeError, ValueError):
        return "json"


def configure(*, fmt: str = "text", verbose: bool = False, stream: Any = None) -> None:
    """Log to `stream` (stderr) in `fmt` ("json" or "text"), through the redaction filter.
    Uncaught exceptions in threads and Python warnings go through the same handler, so every
    stderr line has one format. A second call replaces the first one's handler; when the root
    logger has handlers someone else installed (a test runner, a program embedding the CLI),
    logging is theirs and nothing changes, as with `logging.basicConfig`."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: choose json or text")
    root = logging.getLogger()
    ours = [old for old in root.handlers if getattr(old, "firebreak", False)]
    if len(ours) != len(root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    handler.addFilter(_redactor)
    handler.firebreak = True  # type: ignore[attr-defined]
    for old in ours:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.captureWarnings(True)
    threading.excepthook = _thread_died
    sys.excepthook = _process_died


def _process_died(kind: type[BaseException], error: BaseException, tb: Any) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, error, tb)
        return
    logging.getLogger("firebreak").critical("uncaught exception", exc_info=(kind, error, tb))


def _thread_died(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "a thread"
    error = args.exc_value if args.exc_value is not None else args.exc_type()
    logging.getLogger("firebreak").error(
        "uncaught exception in %s", name, exc_info=(args.exc_type, error, args.exc_traceback)
    )


# -- requests ------------------------------------------------------------------------------

REQUEST_ID_HEADER = "X-Request-Id"
_GIVEN_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
# Polled every few seconds by load balancers and Prometheus: logged at debug only.
_QUIET = frozenset({"/healthz", "/readyz", "/metrics"})
access_log = logging.getLogger("firebreak.http")
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIds:
    """WSGI middleware: a request id bound while each request is handled, echoed in the
    response's `X-Request-Id`, and one access line (method, path, status, duration_ms)."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        # A fresh copy of the context per request: nothing bound here outlives it.
        return contextvars.copy_context().run(self._handle, environ, start_response)

    def _handle(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        given = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = given if _GIVEN_ID.match(given) else new_request_id()
        environ["firebreak.request_id"] = request_id
        started = time.perf_counter()
        status_code = [0]

        def start(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            status_code[0] = int(status.split(" ", 1)[0])
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status, headers, *exc_info)

        with bind(request_id=request_id):
            try:
                return self.app(environ, start)
            finally:
                path = environ.get("PATH_INFO", "")
                quiet = path in _QUIET and environ.get("REQUEST_METHOD") == "GET"
                access_log.log(
                    logging.DEBUG if quiet else logging.INFO,
                    "%s %s %s",
                    environ.get("REQUEST_METHOD"),
                    path,
                    status_code[0] or "failed",
                    extra={
                        "method": environ.get("REQUEST_METHOD"),
                        "path": path,
                        "status": status_code[0] or None,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    },
                )
