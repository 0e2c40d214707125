"""Slack's external file upload, emulated: files.getUploadURLExternal, the upload URL, and
files.completeUploadExternal (what slack_sdk's `files_upload_v2` calls, in that order).

1. `files.getUploadURLExternal(filename, length)` -> `{"upload_url", "file_id"}`; a missing
   filename or a length that is not a positive integer is `invalid_arguments`.
2. POST the bytes (raw, or multipart form with a `file`/`filename` part) to the upload URL
   -> HTTP 200 `OK - <length>`. The URL is good for `Workspace.upload_url_ttl` seconds
   and once; an unknown, used or expired URL is HTTP 404 (the upload service is no Web API
   method: its answers are plain text, not JSON). Faults for it use the method name `upload`.
3. `files.completeUploadExternal(files=[{"id", "title"}], channel_id, initial_comment)`
   -> `{"files": [file]}`, and a message in the channel that shares the file. Errors:
   `invalid_arguments` (no or malformed `files`), `file_not_found` (an unknown id, or one
   whose bytes never arrived, or one already completed: it can be completed once),
   `channel_not_found`, `is_archived`, `not_in_channel` (the bot must be a member).
"""

from __future__ import annotations

import json
import time
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from bot.sandbox.args import Args
from bot.sandbox.state import File, SlackError, Workspace

UPLOAD = "upload"  # the method name faults use for the upload URL
UPLOAD_PATH = "/upload/v1/"

Body = dict[str, Any]


def file_json(file: File, ws: Workspace) -> Body:
    """The file object Slack returns (the fields callers read)."""
    base = ws.upload_base or "https://files.slack.com"
    return {
        "id": file.id,
        "created": file.created,
        "timestamp": file.created,
        "name": file.name,
        "title": file.title or file.name,
        "mimetype": "text/markdown" if file.name.endswith(".md") else "text/plain",
        "filetype": "markdown" if file.name.endswith(".md") else "text",
        "pretty_type": "Markdown" if file.name.endswith(".md") else "Plain Text",
        "user": file.user,
        "user_team": ws.team_id,
        "editable": False,
        "size": len(file.content or b""),
        "mode": "hosted",
        "is_external": False,
        "external_type": "",
        "is_public": bool(file.channels),
        "public_url_shared": False,
        "display_as_bot": False,
        "url_private": f"{base}/files-pri/{ws.team_id}-{file.id}/{file.name}",
        "permalink": f"https://firebreak-sandbox.slack.com/files/{file.user}/{file.id}/{file.name}",
        "channels": [c for c in file.channels if c.startswith("C")],
        "groups": [c for c in file.channels if c.startswith("G")],
        "ims": [c for c in file.channels if c.startswith("D")],
        "comments_count": 0,
    }


def get_upload_url_external(ws: Workspace, args: Args) -> Body:
    name = args.required("filename")
    try:
        length = int(args.required("length"))
    except ValueError:
        raise SlackError("invalid_arguments") from None
    if length <= 0:
        raise SlackError("invalid_arguments")
    file = File(
        id=ws.new_id("F"),
        name=name,
        length=length,
        upload_token=ws.new_id("u") + f"{int(time.time() * 1000) % 100_000:05d}",
        url_expires=time.time() + ws.upload_url_ttl,
        created=int(time.time()),
        user=ws.bot_user_id,
        snippet_type=args.text("snippet_type"),
    )
    ws.files[file.id] = file
    base = ws.upload_base or "https://files.slack.com"
    return {"upload_url": f"{base}{UPLOAD_PATH}{file.upload_token}", "file_id": file.id}


def receive_upload(ws: Workspace, token: str, content_type: str, body: bytes) -> tuple[int, str]:
    """The upload URL: (HTTP status, plain-text answer)."""
    file = next((f for f in ws.files.values() if f.upload_token == token), None)
    if file is None or file.content is not None or time.time() > file.url_expires:
        return 404, "Not Found"
    content = _multipart_file(content_type, body) if "multipart/" in content_type else body
    if content is None:
        return 400, "Bad Request: no file in the form"
    file.content = content
    return 200, f"OK - {len(content)}"


def _multipart_file(content_type: str, body: bytes) -> bytes | None:
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") in ("file", "filename"):
            payload = part.get_payload(decode=True)
            return payload if isinstance(payload, bytes) else None
    return None


def complete_upload_external(ws: Workspace, args: Args) -> Body:
    raw = args.raw("files")
    try:
        entries = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise SlackError("invalid_arguments") from None
    if not isinstance(entries, list) or not entries:
        raise SlackError("invalid_arguments")
    files: list[File] = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise SlackError("invalid_arguments")
        file = ws.files.get(entry["id"])
        if file is None or file.content is None or file.completed:
            raise SlackError("file_not_found")
        files.append(file)
    channel_id = args.text("channel_id") or ""
    channel = None
    if channel_id:
        channel = ws.resolve(channel_id)
        if channel.is_archived:
            raise SlackError("is_archived")
        if ws.bot_user_id not in channel.members:
            raise SlackError("not_in_channel")
    for file, entry in zip(files, entries, strict=True):
        file.completed = True
        file.title = str(entry.get("title") or file.name)
        if channel is not None:
            file.channels.append(channel.id)
    if channel is not None:
        post = ws.add_post(
            channel,
            ws.bot_user_id,
            args.text("initial_comment") or "",
            None,
            args.text("thread_ts") or None,
        )
        post.files = [file.id for file in files]
    return {"files": [file_json(file, ws) for file in files]}
