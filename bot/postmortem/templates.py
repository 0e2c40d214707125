"""Postmortem templates: where they come from, and rendering them safely.

Templates are Jinja2 files named `<name>.md.j2` (or `<name>.j2`). The built-in ones live in
`bot/postmortem/templates/` (`default`, `executive`); `postmortem.templates_dir` adds more
and overrides built-ins of the same name.

Safety: a `SandboxedEnvironment` (no `__class__`, `__globals__`, `mro()`... from a template;
an attempt is refused with an error naming the template and line), `StrictUndefined` (a
misspelt name is an error, not an empty string), and Markdown escaping: every `{{ value }}`
that is a plain `str` goes through `markdown.escape`; only values the context built as
Markdown (`Md`: sentences, links) pass as they are. There is no filter that unescapes:
`|safe` gives a Markup string, which is escaped like any other. User text is never
compiled, so `{{ 7*7 }}` in a note is shown as typed.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
)
from jinja2 import TemplateError as JinjaError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from bot.postmortem.markdown import Md, cell, escape

BUILTIN_DIR = Path(__file__).resolve().parent / "templates"
SUFFIXES = (".md.j2", ".j2")
DEFAULT = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_TEMPLATE_BYTES = 1_000_000


class TemplateError(Exception):
    """A template that cannot be used: names the template, its file, the line and the problem."""

    def __init__(
        self, template: str, problem: str, *, line: int | None = None, path: Path | None = None
    ) -> None:
        self.template, self.problem, self.line, self.path = template, problem, line, path
        where = f"template {template!r}"
        if path is not None:
            where += f" ({path}{f':{line}' if line else ''})"
        if line:
            where += f", line {line}"
        super().__init__(f"{where}: {problem}")


class UnknownTemplate(TemplateError):
    def __init__(self, template: str, available: list[str]) -> None:
        super().__init__(
            template,
            "no such template; available: " + (", ".join(available) or "none"),
        )
        self.available = available


def template_name(path: Path) -> str | None:
    for suffix in SUFFIXES:
        if path.name.endswith(suffix):
            name = path.name[: -len(suffix)]
            return name if _NAME.match(name) else None
    return None


def discover(templates_dir: Path | None) -> dict[str, Path]:
    """Template name -> file: the built-ins, then `templates_dir`'s (which win)."""
    found: dict[str, Path] = {}
    for directory in (BUILTIN_DIR, templates_dir):
        if directory is None or not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            name = template_name(path)
            if name is not None and path.is_file():
                found[name] = path
    return found


def _finalize(value: Any) -> str:
    """What `{{ value }}` shows: Markdown as it is, text escaped, None as `—`."""
    if isinstance(value, Md):
        return value
    if value is None:
        return "—"
    if isinstance(value, bool | int | float):
        return str(value)
    return escape(str(value))


class _Loader(BaseLoader):
    def __init__(self, files: Mapping[str, Path]) -> None:
        self.files = files

    def get_source(
        self, environment: Any, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        path = self.files.get(template)
        if path is None:
            raise TemplateNotFound(template)
        if path.stat().st_size > MAX_TEMPLATE_BYTES:
            raise TemplateSyntaxError(
                f"the file is over {MAX_TEMPLATE_BYTES:,} bytes", 1, template, str(path)
            )
        try:
            source = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise TemplateSyntaxError(
                f"not UTF-8 text ({error.reason} at byte {error.start})", 1, template, str(path)
            ) from None
        return source, str(path), lambda: False


@dataclass(frozen=True)
class Templates:
    """The templates of one configuration, ready to render."""

    files: Mapping[str, Path]
    environment: SandboxedEnvironment

    @classmethod
    def load(cls, templates_dir: Path | None = None) -> Templates:
        files = discover(templates_dir)
        environment = SandboxedEnvironment(
            loader=_Loader(files),
            undefined=StrictUndefined,
            autoescape=False,
            finalize=_finalize,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        environment.filters["cell"] = cell
        environment.filters["md"] = escape
        return cls(files, environment)

    @property
    def names(self) -> list[str]:
        return sorted(self.files)

    def render(self, name: str, variables: Mapping[str, Any]) -> str:
        """The rendered text; raises UnknownTemplate or TemplateError (never a traceback)."""
        if name not in self.files:
            raise UnknownTemplate(name, self.names)
        path = self.files[name]
        try:
            template = self.environment.get_template(name)
            return template.render(dict(variables))
        except TemplateError:
            raise
        except TemplateSyntaxError as error:
            raise _syntax(name, path, error) from None
        except Exception as error:
            raise _runtime(name, path, error) from None

    def check(self) -> list[TemplateError]:
        """Every template compiled; one error per template that does not."""
        problems = []
        for name in self.names:
            try:
                self.environment.get_template(name)
            except TemplateSyntaxError as error:
                problems.append(_syntax(name, self.files[name], error))
            except JinjaError as error:
                problems.append(TemplateError(name, str(error), path=self.files[name]))
        return problems


def _syntax(name: str, path: Path, error: TemplateSyntaxError) -> TemplateError:
    where = name
    if error.name and error.name != name:  # the problem is in an included template
        where = f"{name} (in {error.name})"
        path = Path(error.filename) if error.filename else path
    return TemplateError(where, error.message or "syntax error", line=error.lineno, path=path)


def _runtime(name: str, path: Path, error: Exception) -> TemplateError:
    message = str(error)
    if isinstance(error, SecurityError) or (
        isinstance(error, UndefinedError) and "unsafe" in message
    ):
        problem = f"refused by the sandbox: {message} (templates may only read the draft's data)"
    elif isinstance(error, UndefinedError):
        problem = f"{message} (see the README's list of template variables)"
    else:
        problem = f"{type(error).__name__}: {message}"
    line, file = _template_line(error)
    return TemplateError(name, problem, line=line, path=Path(file) if file else path)


def _template_line(error: Exception) -> tuple[int | None, str | None]:
    """The deepest traceback frame in a template file (Jinja rewrites frames to them)."""
    found: tuple[int | None, str | None] = (None, None)
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename.endswith(SUFFIXES):
            found = (frame.lineno, frame.filename)
    return found


def template_problems(templates_dir: Path | None) -> list[str]:
    """What `firebreak check` reports: a missing `templates_dir`, and every template that
    does not compile (`template 'x' (file:line), line N: problem`)."""
    problems = []
    if templates_dir is not None and not templates_dir.is_dir():
        problems.append(
            f"postmortem.templates_dir: {templates_dir} is not a directory (relative paths "
            "start at the working directory)"
        )
    problems.extend(f"postmortem: {error}" for error in Templates.load(templates_dir).check())
    return problems
