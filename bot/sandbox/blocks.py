"""Block Kit limits the sandbox enforces, reported the way Slack does.

Slack answers a bad message with `invalid_blocks` (or `invalid_blocks_format` when `blocks` is not
a list) and a bad modal with `invalid_arguments`, each with `response_metadata.messages` such as
"[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]".
"""

from __future__ import annotations

from typing import Any

from bot.sandbox.state import SlackError

MAX_MESSAGE_BLOCKS = 50
MAX_MODAL_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_BLOCK_ID = 255
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_MODAL_TITLE = 24
MAX_PRIVATE_METADATA = 3000
_TEXT_TYPES = ("plain_text", "mrkdwn")


def _text_problems(obj: object, pointer: str, limit: int, *, plain_only: bool) -> list[str]:
    allowed = ("plain_text",) if plain_only else _TEXT_TYPES
    if not isinstance(obj, dict) or obj.get("type") not in allowed:
        return [f"[ERROR] failed to match all allowed schemas [json-pointer:{pointer}]"]
    text = obj.get("text")
    if not isinstance(text, str):
        return [f"[ERROR] must provide a string [json-pointer:{pointer}/text]"]
    if not text:
        return [f"[ERROR] must be more than 0 characters [json-pointer:{pointer}/text]"]
    if len(text) > limit:
        return [f"[ERROR] must be less than {limit + 1} characters [json-pointer:{pointer}/text]"]
    return []


def _block_problems(block: object, pointer: str) -> list[str]:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        return [f"[ERROR] missing required field: type [json-pointer:{pointer}]"]
    problems: list[str] = []
    block_id = block.get("block_id")
    if block_id is not None and (not isinstance(block_id, str) or len(block_id) > MAX_BLOCK_ID):
        problems.append(f"[ERROR] invalid block_id [json-pointer:{pointer}/block_id]")
    kind = block["type"]
    if kind == "section":
        if "text" not in block and "fields" not in block:
            problems.append(f"[ERROR] must provide text or fields [json-pointer:{pointer}]")
        if "text" in block:
            problems += _text_problems(
                block["text"], f"{pointer}/text", MAX_SECTION_TEXT, plain_only=False
            )
        fields = block.get("fields")
        if fields is not None:
            if not isinstance(fields, list) or len(fields) > MAX_SECTION_FIELDS:
                problems.append(
                    f"[ERROR] no more than {MAX_SECTION_FIELDS} items allowed "
                    f"[json-pointer:{pointer}/fields]"
                )
            else:
                for i, item in enumerate(fields):
                    problems += _text_problems(
                        item, f"{pointer}/fields/{i}", MAX_FIELD_TEXT, plain_only=False
                    )
    elif kind == "header":
        problems += _text_problems(
            block.get("text"), f"{pointer}/text", MAX_HEADER_TEXT, plain_only=True
        )
    elif kind in ("context", "actions"):
        limit = MAX_CONTEXT_ELEMENTS if kind == "context" else MAX_ACTIONS_ELEMENTS
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements or len(elements) > limit:
            problems.append(
                f"[ERROR] must have between 1 and {limit} items [json-pointer:{pointer}/elements]"
            )
    return problems


def block_problems(blocks: list[Any], limit: int, pointer: str = "/blocks") -> list[str]:
    """Every rule broken by `blocks`, as Slack's `[ERROR] ... [json-pointer:...]` lines."""
    if len(blocks) > limit:
        return [f"[ERROR] no more than {limit} items allowed [json-pointer:{pointer}]"]
    problems: list[str] = []
    seen_ids: set[str] = set()
    for i, block in enumerate(blocks):
        problems += _block_problems(block, f"{pointer}/{i}")
        block_id = block.get("block_id") if isinstance(block, dict) else None
        if isinstance(block_id, str):
            if block_id in seen_ids:
                problems.append(f"[ERROR] duplicate block_id [json-pointer:{pointer}/{i}/block_id]")
            seen_ids.add(block_id)
    return problems


def message_blocks(value: object) -> list[dict[str, Any]] | None:
    """The `blocks` argument of chat.* methods, validated; None when absent or empty."""
    if value is None or value == "":
        return None
    if not isinstance(value, list):
        raise SlackError("invalid_blocks_format")
    problems = block_problems(value, MAX_MESSAGE_BLOCKS)
    if problems:
        raise SlackError("invalid_blocks", problems)
    return value or None


def modal_view(value: object) -> dict[str, Any]:
    """The `view` argument of views.open/update/push, validated as a modal."""
    if not isinstance(value, dict):
        raise SlackError(
            "invalid_arguments", ["[ERROR] must provide an object [json-pointer:/view]"]
        )
    if value.get("type") != "modal":
        raise SlackError(
            "invalid_arguments", ["[ERROR] must be a valid enum value [json-pointer:/view/type]"]
        )
    if "title" not in value:
        raise SlackError(
            "invalid_arguments", ["[ERROR] missing required field: title [json-pointer:/view]"]
        )
    problems = _text_problems(value["title"], "/view/title", MAX_MODAL_TITLE, plain_only=True)
    for button in ("submit", "close"):
        if button in value:
            problems += _text_problems(
                value[button], f"/view/{button}", MAX_MODAL_TITLE, plain_only=True
            )
    blocks = value.get("blocks", [])
    if not isinstance(blocks, list):
        problems.append("[ERROR] must provide an array [json-pointer:/view/blocks]")
    else:
        problems += block_problems(blocks, MAX_MODAL_BLOCKS, "/view/blocks")
        has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
        if has_input and "submit" not in value:
            problems.append(
                "[ERROR] submit is required when an input block is present [json-pointer:/view]"
            )
    metadata = value.get("private_metadata", "")
    if not isinstance(metadata, str) or len(metadata) > MAX_PRIVATE_METADATA:
        problems.append(
            f"[ERROR] must be less than {MAX_PRIVATE_METADATA + 1} characters "
            "[json-pointer:/view/private_metadata]"
        )
    if problems:
        raise SlackError("invalid_arguments", problems)
    return value
