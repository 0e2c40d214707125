"""Reading a YAML configuration file safely: every problem is a `ConfigError`, never a crash.

`read_yaml_file` checks the path is a regular file of at most `MAX_BYTES` (before reading
it), decodes it as UTF-8 and parses it once, composing the node tree itself from the
parser's events, so that it can refuse, with file, line and dotted key:

- a key given twice in one mapping (YAML would silently keep the last);
- a key that is not text (`1:`, `yes:`, `null:`, a list or a mapping as a key);
- nesting deeper than `MAX_DEPTH` (checked while composing: a 10,000-deep document is refused
  at level 33 without recursion);
- more than `MAX_NODES` values or `MAX_BYTES` of text once aliases are expanded (a "billion
  laughs" document), an alias to a value that contains it, more than one document;
- a scalar that cannot be read as what YAML says it is (`2024-13-01`, `!!int x`, `!custom`).

The caller gets the node tree (for the line of each key) and the Python data constructed
from that same tree.
"""

from __future__ import annotations

import codecs
import gc
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from bot.config import ConfigError

MAX_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 32
MAX_NODES = 200_000
MAX_PROBLEMS = 100

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_VALUE = "tag:yaml.org,2002:value"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_NON_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)
_KINDS = {
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "true/false",
    "tag:yaml.org,2002:null": "null (empty)",
    _TIMESTAMP: "a date",
}


@dataclass(frozen=True)
class YamlDocument:
    """The composed node tree (None for an empty file) and the data constructed from it."""

    root: yaml.Node | None
    data: Any


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection inside: building a big tree of small objects otherwise
    runs collections over the growing tree again and again (3x slower on a 5 MB file)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_yaml_file(path: Path) -> YamlDocument | None:
    """Read, decode and parse `path`; None if there is no such file. Raises ConfigError."""
    raw = _read_bytes(path)
    if raw is None:
        return None
    text = _decode(path, raw)
    return parse_yaml(path, text)


def parse_yaml(path: Path, text: str) -> YamlDocument:
    """Compose and construct one YAML document from `text`; `path` names it in errors."""
    bad = _NON_PRINTABLE.search(text)
    if bad is not None:
        character = bad.group()
        hint = " (NUL bytes: is it UTF-16 or a binary file?)" if character == "\0" else ""
        raise ConfigError(
            [
                _where_in_text(path, text, bad.start())
                + f"character U+{ord(character):04X} is not allowed in YAML{hint}; remove it"
            ]
        )
    try:
        with paused_gc():
            loader = _Loader(text)
            try:
                root = _Composer(path, loader).compose()
                data = _constructed(path, loader, root)
            finally:
                loader.dispose()
    except ConfigError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = exc.problem or exc.context or "cannot be parsed"
        if mark is not None and "\t" in _line_text(text, mark.line):
            problem += " (a tab: YAML indents with spaces only)"
        raise ConfigError([f"{where}: not valid YAML: {problem}"]) from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise ConfigError([f"{path}: not valid YAML: {_short(str(exc))}"]) from None
    return YamlDocument(root, data)


def _constructed(path: Path, loader: Any, root: yaml.Node | None) -> Any:
    """The Python data of the composed tree (scalars were already constructed and checked)."""
    if root is None:
        return None
    try:
        return loader.construct_document(root)
    except yaml.MarkedYAMLError:
        raise
    except Exception as exc:  # the composer checked every value; this is a last resort
        raise ConfigError([f"{path}: cannot be read: {_short(str(exc))}"]) from None


def _read_bytes(path: Path) -> bytes | None:
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise ConfigError(
                [f"{path}: is a directory; point FIREBREAK_CONFIG at the YAML file itself"]
            )
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError([f"{path}: is not a regular file (a device, pipe or socket)"])
        _check_size(path, info.st_size)
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        descriptor = os.open(path, flags)
        with os.fdopen(descriptor, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ConfigError([f"{path}: is not a regular file (a device, pipe or socket)"])
            _check_size(path, info.st_size)
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot be read: {exc.strerror or exc}"]) from None
    except ValueError as exc:  # a NUL character in the path
        raise ConfigError([f"{path!r}: not a usable file name: {exc}"]) from None
    _check_size(path, len(raw))
    return raw


def _check_size(path: Path, size: int) -> None:
    if size > MAX_BYTES:
        raise ConfigError(
            [
                f"{path}: is {size:,} bytes; a configuration may be at most "
                f"{MAX_BYTES // (1024 * 1024)} MiB ({MAX_BYTES:,} bytes)"
            ]
        )


def _decode(path: Path, raw: bytes) -> str:
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ConfigError(
            [
                f"{path}:1: the file is UTF-16 (it starts with a UTF-16 byte-order mark); "
                "save it as UTF-8"
            ]
        )
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    raw = raw[bom:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start
        text = raw.decode("utf-8", errors="replace")
        position = len(raw[:offset].decode("utf-8"))
        raise ConfigError(
            [
                _where_in_text(path, text, position)
                + f"byte 0x{raw[offset]:02x} at offset {bom + offset} is not UTF-8; "
                "save the file as UTF-8"
            ]
        ) from None


def _where_in_text(path: Path, text: str, position: int) -> str:
    """`file:line: key: ` for a bad character at `position`, the key found best-effort."""
    line = text.count("\n", 0, position)
    column = position - (text.rfind("\n", 0, position) + 1)
    cleaned = _NON_PRINTABLE.sub("\ufffd", text)
    try:
        with paused_gc():
            loader = _Loader(cleaned)
            try:
                root = _Composer(path, loader).compose()
            finally:
                loader.dispose()
    except (ConfigError, yaml.YAMLError, ValueError, TypeError, RecursionError):
        root = None
    key = _key_at(root, (line, column))
    return f"{path}:{line + 1}: " + (f"{key}: " if key else "")


def _key_at(root: yaml.Node | None, position: tuple[int, int]) -> str:
    """The dotted key of the deepest value that spans `position` (line, column), 0-based."""

    def start(node: yaml.Node) -> tuple[int, int]:
        return (node.start_mark.line, node.start_mark.column)

    def spans(node: yaml.Node) -> bool:
        return start(node) <= position <= (node.end_mark.line, node.end_mark.column)

    parts: list[str] = []
    node = root
    while isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
        if isinstance(node, yaml.MappingNode):
            before = [(key, value) for key, value in node.value if start(key) <= position]
            if not before or not isinstance(before[-1][0], yaml.ScalarNode):
                break
            key, value = before[-1]
            if not (spans(key) or spans(value)):
                break
            parts.append(_shown(key.value))
            node = value
        else:
            index = next((i for i, item in enumerate(node.value) if spans(item)), None)
            if index is None:
                break
            parts.append(str(index))
            node = node.value[index]
    return ".".join(parts)


def _line_text(text: str, line: int) -> str:
    """The 0-based `line` of `text`, or "" past its end."""
    lines = text.split("\n", line + 1)
    return lines[line] if line < len(lines) else ""


def _shown(key: str) -> str:
    return key if len(key) <= 60 else key[:57] + "..."


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


# What a value adds up to once aliases are expanded: (nodes, characters, height).
_Size = tuple[int, int, int]


@dataclass(slots=True)
class _Open:
    """A collection being composed: its node and what its children add up to."""

    node: yaml.MappingNode | yaml.SequenceNode
    anchor: str | None
    key: yaml.Node | None = None  # a mapping's key waiting for its value
    seen: dict[str, yaml.Node] = field(default_factory=dict)
    nodes: int = 1
    chars: int = 0
    height: int = 1


class _Composer:
    """Builds the node tree from parser events, iteratively, checking as it goes."""

    def __init__(self, path: Path, loader: Any) -> None:
        self.path = path
        self.loader = loader
        self.stack: list[_Open] = []
        self.anchors: dict[str, tuple[yaml.Node, _Size]] = {}
        self.nodes = 0
        self.chars = 0
        self.problems: list[str] = []

    def compose(self) -> yaml.Node | None:
        loader = self.loader
        loader.get_event()  # stream start
        if loader.check_event(yaml.StreamEndEvent):
            return None
        loader.get_event()  # document start
        handlers = {
            yaml.ScalarEvent: self._scalar,
            yaml.MappingStartEvent: self._open,
            yaml.SequenceStartEvent: self._open,
            yaml.MappingEndEvent: self._close,
            yaml.SequenceEndEvent: self._close,
            yaml.AliasEvent: self._alias,
        }
        get_event = loader.get_event
        root: yaml.Node | None = None
        while root is None:
            event = get_event()
            handler = handlers.get(type(event))
            if handler is None:
                raise ConfigError([f"{self.path}: not valid YAML: unexpected {event}"])
            root = handler(event)
        loader.get_event()  # document end
        if not loader.check_event(yaml.StreamEndEvent):
            line = loader.peek_event().start_mark.line + 1
            self.problems.append(
                f"{self.path}:{line}: a second YAML document (after ---); keep only one"
            )
        if self.problems:
            raise ConfigError(self._capped(self.problems))
        return root

    def _scalar(self, event: Any) -> yaml.Node | None:
        value = event.value
        tag = event.tag
        if tag is None or tag == "!":
            tag = (
                _STR
                if not event.implicit[0]
                else self.loader.resolve(yaml.ScalarNode, value, event.implicit)
            )
        node = yaml.ScalarNode(tag, value, event.start_mark, event.end_mark, event.style)
        size = (1, len(value), 0)
        self.nodes += 1
        self.chars += size[1]
        if self.nodes > MAX_NODES or self.chars > MAX_BYTES:
            self._too_big(event)
        if tag is not _STR and tag != _STR and tag != _MERGE:
            self._construct_scalar(node)
        if event.anchor is not None:
            self.anchors[event.anchor] = (node, size)
        return self._attach(node, size)

    def _construct_scalar(self, node: yaml.ScalarNode) -> None:
        """Construct now (the loader caches it) so a bad value is reported at its key."""
        try:
            self.loader.construct_object(node)
        except Exception as exc:  # each constructor fails its own way (!!bool x: KeyError)
            shown = _short(repr(node.value))
            if node.tag == _VALUE and node.value == "=":
                self._problem(node, f"{shown}: a lone = is special in YAML; quote it ('=')")
                return
            kind = _KINDS.get(node.tag)
            what = f"is not {kind}" if kind else f"cannot be read as {node.tag}"
            detail = ""
            if "Exceeds the limit" in str(exc):
                detail = ": it has too many digits"
            elif node.tag == _TIMESTAMP and isinstance(exc, ValueError):
                detail = f": {_short(str(exc))}"  # month must be in 1..12, ...
            elif not kind:
                detail = f": {_short(str(getattr(exc, 'problem', None) or exc))}"
            self._problem(node, f"{shown} {what}{detail}")

    def _open(self, event: Any) -> None:
        if len(self.stack) >= MAX_DEPTH:
            self._fatal(event, f"nested deeper than {MAX_DEPTH} levels; flatten it")
        node: yaml.MappingNode | yaml.SequenceNode
        mark: Any = event.start_mark
        if isinstance(event, yaml.MappingStartEvent):
            tag = self._collection_tag(event, yaml.MappingNode, _MAP)
            node = yaml.MappingNode(tag, [], mark, None, event.flow_style)
        else:
            tag = self._collection_tag(event, yaml.SequenceNode, _SEQ)
            node = yaml.SequenceNode(tag, [], mark, None, event.flow_style)
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self._too_big(event)
        self.stack.append(_Open(node, event.anchor))

    def _collection_tag(self, event: Any, kind: type, default: str) -> str:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(kind, None, event.implicit)
        if tag != default:
            self._fatal(event, f"the tag {tag} is not supported here; remove it")
        return str(tag)

    def _close(self, event: Any) -> yaml.Node | None:
        done = self.stack.pop()
        done.node.end_mark = event.end_mark
        size = (done.nodes, done.chars, done.height)
        if done.anchor is not None:
            self.anchors[done.anchor] = (done.node, size)
        return self._attach(done.node, size)

    def _alias(self, event: Any) -> yaml.Node | None:
        anchor = event.anchor
        if anchor not in self.anchors:
            if any(frame.anchor == anchor for frame in self.stack):
                self._fatal(event, f"the alias *{anchor} refers to a value that contains it")
            self._fatal(event, f"the alias *{anchor} refers to no anchor (&{anchor})")
        node, size = self.anchors[anchor]
        self.nodes += size[0]
        self.chars += size[1]
        if self.nodes > MAX_NODES or self.chars > MAX_BYTES:
            self._too_big(event)
        if len(self.stack) + size[2] > MAX_DEPTH:
            self._fatal(event, f"nested deeper than {MAX_DEPTH} levels once *{anchor} is expanded")
        return self._attach(node, size)

    def _too_big(self, event: Any) -> NoReturn:
        if self.nodes > MAX_NODES:
            self._fatal(
                event,
                f"more than {MAX_NODES:,} values (counting every alias expansion); "
                "a configuration needs far fewer",
            )
        self._fatal(event, f"more than {MAX_BYTES:,} characters of text once aliases are expanded")

    def _attach(self, node: yaml.Node, size: _Size) -> yaml.Node | None:
        if not self.stack:
            return node
        parent = self.stack[-1]
        parent.nodes += size[0]
        parent.chars += size[1]
        if size[2] >= parent.height:
            parent.height = size[2] + 1
        if parent.node.__class__ is yaml.SequenceNode:
            parent.node.value.append(node)
        elif parent.key is None:
            self._key(parent, node)
        else:
            if parent.key.tag == _MERGE and not _mergeable(node):
                self._problem(node, "<< (merge) needs a mapping or a list of mappings")
            parent.node.value.append((parent.key, node))
            parent.key = None
        return None

    def _key(self, parent: _Open, key: yaml.Node) -> None:
        parent.key = key
        if not isinstance(key, yaml.ScalarNode):
            shape = "a mapping" if isinstance(key, yaml.MappingNode) else "a list"
            self._problem(key, f"a key must be a name, not {shape}")
            parent.key = yaml.ScalarNode(_STR, f"({shape})", key.start_mark, key.end_mark)
            return
        if key.tag not in (_STR, _MERGE):
            kind = _KINDS.get(key.tag, key.tag)
            self._problem(
                key,
                f"the key {_short(key.value)!r} is read as {kind}, not a name; "
                f"quote it ('{_short(key.value)}') if you mean the text",
            )
        first = parent.seen.get(key.value)
        if first is not None:
            self._problem(
                key,
                f"given twice (first at line {first.start_mark.line + 1}); YAML would "
                "silently keep only the last, so keep one",
            )
        else:
            parent.seen[key.value] = key

    def _path(self, node: yaml.Node | None = None) -> str:
        """The dotted key of the place being composed; `node` may be a key being read."""
        parts: list[str] = []
        for frame in self.stack:
            if isinstance(frame.node, yaml.SequenceNode):
                parts.append(str(len(frame.node.value)))
            elif isinstance(frame.key, yaml.ScalarNode):
                parts.append(_shown(frame.key.value))
            elif frame is self.stack[-1] and isinstance(node, yaml.ScalarNode):
                parts.append(_shown(node.value))
        return ".".join(parts) or "(top level)"

    def _problem(self, node: yaml.Node, problem: str) -> None:
        if len(self.problems) <= MAX_PROBLEMS:
            line = node.start_mark.line + 1
            self.problems.append(f"{self.path}:{line}: {self._path(node)}: {problem}")

    def _fatal(self, event: Any, problem: str) -> NoReturn:
        line = event.start_mark.line + 1
        self.problems.append(f"{self.path}:{line}: {self._path()}: {problem}")
        raise ConfigError(self._capped(self.problems))

    def _capped(self, problems: list[str]) -> list[str]:
        if len(problems) <= MAX_PROBLEMS:
            return problems
        return [*problems[:MAX_PROBLEMS], f"{self.path}: ... and more problems not shown"]


def _mergeable(node: yaml.Node) -> bool:
    if isinstance(node, yaml.MappingNode):
        return True
    return isinstance(node, yaml.SequenceNode) and all(
        isinstance(item, yaml.MappingNode) for item in node.value
    )
