"""The manifest asks for exactly the scopes the code needs: no fewer, and no more.

The needed scopes are computed from the source at run time: every Web API call in `bot/`
and `integrations/` (a slack_sdk `WebClient` method, or `api_call("method")`), mapped to
its scope through the sandbox's table, plus `commands` for the slash commands and the
scopes of the subscribed events. A call acts on a public channel unless it says otherwise
(`types=...`, `is_private=True`): incident channels are public. `bot/sandbox/` is left out:
it answers Web API calls, it does not make them.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import slack_sdk.web.client

from bot.manifest import BOT_EVENTS, BOT_SCOPES, SLASH_COMMANDS, build_manifest
from bot.sandbox.methods import METHODS
from bot.sandbox.scopes import (
    COMPANIONS,
    EVENT_SCOPES,
    METHOD_SCOPES,
    PRIVATE,
    PUBLIC,
    WIDENING,
    scope_for,
)

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("bot", "integrations")
NOT_SCANNED = ROOT / "bot" / "sandbox"


@dataclass(frozen=True)
class ApiCall:
    where: str
    method: str
    kinds: tuple[str, ...]


@functools.cache
def web_client_methods() -> dict[str, str]:
    """WebClient method name -> Web API method, read from slack_sdk's own source."""
    tree = ast.parse(Path(slack_sdk.web.client.__file__).read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "WebClient":
            for function in node.body:
                if isinstance(function, ast.FunctionDef):
                    for call in ast.walk(function):
                        method = _api_call_target(call) if isinstance(call, ast.Call) else None
                        if method is not None:
                            found[function.name] = method
                            break
    return found


def _api_call_target(call: ast.Call) -> str | None:
    """The method of `<anything>.api_call("chat.postMessage", ...)`, else None."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name != "api_call":
        return None
    argument = call.args[0] if call.args else None
    for keyword in call.keywords:
        if keyword.arg == "api_method":
            argument = keyword.value
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
        return argument.value
    return None


def _kinds(call: ast.Call | None) -> tuple[str, ...]:
    """The conversation types a call acts on, from its literal `types` or `is_private`."""
    for keyword in call.keywords if call is not None else ():
        value = keyword.value
        if keyword.arg == "types" and isinstance(value, ast.Constant):
            return tuple(t.strip() for t in str(value.value).split(",") if t.strip())
        if keyword.arg == "is_private" and isinstance(value, ast.Constant) and value.value:
            return (PRIVATE,)
    return (PUBLIC,)


def api_calls(source: str, filename: str) -> list[ApiCall]:
    """Every Web API call in `source`: calls, `partial(client.x, ...)` and bare references."""
    names = web_client_methods()
    tree = ast.parse(source, filename)
    found: list[tuple[int, ApiCall]] = []
    seen: set[int] = set()

    def add(line: int, method: str, kinds: tuple[str, ...]) -> None:
        found.append((line, ApiCall(f"{filename}:{line}", method, kinds)))

    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        target = _api_call_target(node)
        if target is not None:
            add(node.lineno, target, _kinds(node))
        for part in (node.func, *node.args):
            if isinstance(part, ast.Attribute) and part.attr in names:
                add(node.lineno, names[part.attr], _kinds(node))
                seen.add(id(part))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in names and id(node) not in seen:
            add(node.lineno, names[node.attr], (PUBLIC,))
    return [call for _, call in sorted(found, key=lambda item: item[0])]


def code_calls() -> list[ApiCall]:
    found: list[ApiCall] = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if NOT_SCANNED not in path.parents:
                relative = str(path.relative_to(ROOT))
                found += api_calls(path.read_text(encoding="utf-8"), relative)
    return found


def needed_scopes() -> dict[str, list[str]]:
    """Each needed scope -> what needs it (`file:line method`, a command, an event)."""
    needed: dict[str, list[str]] = {}
    for call in code_calls():
        assert call.method in METHOD_SCOPES, (
            f"{call.where} calls {call.method}, which the sandbox does not emulate: add it to "
            "bot/sandbox/methods.py and its scope to METHOD_SCOPES in bot/sandbox/scopes.py"
        )
        scopes = [scope_for(call.method, kind) for kind in call.kinds]
        for scope in [*scopes, *WIDENING.get(call.method, ())]:
            if scope is not None:
                needed.setdefault(scope, []).append(f"{call.where} {call.method}")
    if SLASH_COMMANDS:
        needed.setdefault("commands", []).append("the slash commands in the manifest")
    for event in BOT_EVENTS:
        assert event in EVENT_SCOPES, f"add the scope of event {event} to EVENT_SCOPES"
        scope = EVENT_SCOPES[event]
        if scope is not None:
            needed.setdefault(scope, []).append(f"the {event} event subscription")
    for scope, companion in COMPANIONS.items():
        if scope in needed:
            needed.setdefault(companion, []).append(f"{scope}, which Slack grants only with it")
    return needed


def test_every_needed_scope_is_in_the_manifest() -> None:
    missing = [
        f"{scope} (needed by {', '.join(users)})"
        for scope, users in sorted(needed_scopes().items())
        if scope not in BOT_SCOPES
    ]
    assert not missing, "add to BOT_SCOPES in bot/manifest.py: " + "; ".join(missing)


def test_every_manifest_scope_is_needed_by_the_code() -> None:
    needed = needed_scopes()
    unused = [scope for scope in BOT_SCOPES if scope not in needed]
    assert not unused, (
        f"no Web API call, command or event in bot/ or integrations/ needs {unused}: "
        "remove from BOT_SCOPES in bot/manifest.py"
    )


def test_manifest_lists_each_scope_once_and_builds_with_them() -> None:
    assert len(set(BOT_SCOPES)) == len(BOT_SCOPES)
    manifest = build_manifest("https://firebreak.example.com")
    assert manifest["oauth_config"]["scopes"]["bot"] == BOT_SCOPES


def test_the_scan_finds_what_the_bot_calls() -> None:
    calls = {(c.method, c.kinds) for c in code_calls()}
    assert ("conversations.list", (PUBLIC,)) in calls  # the lost-answer adoption
    assert ("conversations.invite", (PUBLIC,)) in calls  # through functools.partial
    assert ("chat.postMessage", (PUBLIC,)) in calls


def test_the_scan_reads_call_forms_and_channel_types() -> None:
    source = "\n".join(
        [
            "client.users_info(user=user)",
            "invite = partial(self.client.conversations_invite, channel=c, users=u)",
            'client.api_call("pins.list", params={"channel": c})',
            'client.api_call(api_method="bookmarks.add")',
            'client.conversations_list(types="public_channel,private_channel")',
            "client.conversations_create(name=n, is_private=True)",
            "post = client.chat_postEphemeral",
            "client.token",
        ]
    )
    assert [(c.where, c.method, c.kinds) for c in api_calls(source, "x.py")] == [
        ("x.py:1", "users.info", (PUBLIC,)),
        ("x.py:2", "conversations.invite", (PUBLIC,)),
        ("x.py:3", "pins.list", (PUBLIC,)),
        ("x.py:4", "bookmarks.add", (PUBLIC,)),
        ("x.py:5", "conversations.list", (PUBLIC, PRIVATE)),
        ("x.py:6", "conversations.create", (PRIVATE,)),
        ("x.py:7", "chat.postEphemeral", (PUBLIC,)),
    ]
    assert scope_for("conversations.list", PRIVATE) == "groups:read"
    assert scope_for("conversations.create", PRIVATE) == "groups:write"


def test_the_sandbox_knows_the_scope_of_every_method_it_emulates() -> None:
    assert set(METHODS) == set(METHOD_SCOPES)
    assert set(WIDENING) <= set(METHOD_SCOPES)


def test_every_slash_command_the_app_listens_to_is_in_the_manifest() -> None:
    """A command missing from the manifest never reaches Firebreak; one listed but not
    listened to would answer nothing."""
    listened = set()
    for path in sorted((ROOT / "bot" / "slack").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "command"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                listened.add(node.args[0].value)
    manifest = build_manifest("https://firebreak.example.com")
    listed = {command["command"] for command in manifest["features"]["slash_commands"]}
    assert listened == listed == {"/incident", "/oncall", "/page", "/runbook"}
    (runbook,) = [command for command in SLASH_COMMANDS if command["command"] == "/runbook"]
    assert "run <id> key=value" in runbook["usage_hint"]
