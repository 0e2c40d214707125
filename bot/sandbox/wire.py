"""Decoding Web API parameters from the query string and a form, multipart or JSON body."""

from __future__ import annotations

import contextlib
import json
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from bot.sandbox.state import SlackError

JSON_VALUED = ("blocks", "view", "attachments")


def _form(text: str) -> dict[str, Any]:
    return dict(parse_qsl(text, keep_blank_values=True))


def _multipart(content_type: str, body: bytes) -> dict[str, Any]:
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    params: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                params[name] = payload.decode("utf-8", "replace")
    return params


def decode_body(content_type: str, body: bytes) -> dict[str, Any]:
    """The parameters in a request body; SlackError("invalid_json") for a bad JSON body."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if not body:
        return {}
    if kind == "application/json":
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise SlackError("invalid_json") from None
        if not isinstance(data, dict):
            raise SlackError("invalid_json")
        return data
    if kind == "multipart/form-data":
        return _multipart(content_type, body)
    return _form(body.decode("utf-8", "replace"))


def decode_params(query: str, content_type: str, body: bytes) -> dict[str, Any]:
    """Query and body parameters merged (body wins), JSON-valued form fields parsed."""
    params = _form(query)
    params.update(decode_body(content_type, body))
    for name in JSON_VALUED:
        value = params.get(name)
        if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
            with contextlib.suppress(ValueError):
                params[name] = json.loads(value)
    return params


def bearer_token(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip() or None
    return None
