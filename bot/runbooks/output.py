"""A host's output on its way to storage and to the screen: decoded, redacted, capped.

Bytes arrive in chunks from two streams. Each stream is decoded incrementally (UTF-8, bad
bytes replaced) and cut into lines; every complete line is redacted with the runbook's
`output.redact` patterns before anything else sees it, then stored (up to the plan's
`max_output_bytes` per host; the rest is dropped and the host marked truncated) and handed
to the observer. A partial last line waits for its newline, or for `flush` at the end of a
step. Redaction works line by line, so a secret split across lines is not recognised.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Sequence

from bot.runbooks.transport import Stream

REDACTED = "[REDACTED]"
Emit = Callable[[Stream, str], None]


def compile_redactions(patterns: Sequence[str]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(pattern) for pattern in patterns)


def redact(text: str, patterns: Sequence[re.Pattern[str]]) -> str:
    for pattern in patterns:
        text = pattern.sub(REDACTED, text)
    return text


class HostOutput:
    """One host's output across all its steps. Not thread-safe: one host, one thread."""

    def __init__(self, patterns: Sequence[re.Pattern[str]], max_bytes: int, emit: Emit) -> None:
        self._patterns = tuple(patterns)
        self._max_bytes = max_bytes
        self._emit = emit
        self._decoders = {
            stream: codecs.getincrementaldecoder("utf-8")(errors="replace")
            for stream in ("stdout", "stderr")
        }
        self._pending: dict[str, str] = {"stdout": "", "stderr": ""}
        self._stored: list[str] = []
        self._size = 0
        self.truncated = False

    @property
    def text(self) -> str:
        """What is stored: redacted, at most `max_bytes` of UTF-8."""
        return "".join(self._stored)

    def feed(self, stream: Stream, data: bytes) -> None:
        pending = self._pending[stream] + self._decoders[stream].decode(data)
        *lines, rest = pending.split("\n")
        self._pending[stream] = rest
        for line in lines:
            self._line(stream, line + "\n")

    def flush(self) -> None:
        """End of a step: the streams' last partial lines go out as they are."""
        for stream in ("stdout", "stderr"):
            rest = self._pending[stream] + self._decoders[stream].decode(b"", final=True)
            self._pending[stream] = ""
            self._decoders[stream].reset()
            if rest:
                self._line(stream, rest)

    def _line(self, stream: Stream, line: str) -> None:
        clean = redact(line, self._patterns)
        self._store(clean)
        self._emit(stream, clean)

    def _store(self, text: str) -> None:
        room = self._max_bytes - self._size
        data = text.encode("utf-8")
        if len(data) > room:
            self.truncated = True
            data = data[: max(room, 0)]
            text = data.decode("utf-8", errors="ignore")
            data = text.encode("utf-8")
        if text:
            self._stored.append(text)
            self._size += len(data)
