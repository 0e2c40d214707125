"""Step argv: `{{ name }}` placeholders, their one literal substitution, and shell refusal.

A placeholder is `{{ name }}` (spaces optional) anywhere inside an argv string, so
`--lines={{ lines }}` works. Substitution is one `re.sub` pass over the string as written in
the runbook with a function as replacement: a value is inserted as it is, never read as a
template and never scanned again, so a value holding `{{ other }}` or `\\1` stays literal.

`shell_problem` refuses a step that would hand a placeholder's value to something that reads
it as code (a shell with `-c`, `eval`, `ssh`, an interpreter's `-c`/`-e`, `xargs`, ...), also
behind prefixes such as `sudo`, `env` or `timeout`: argv keeps values out of the remote
shell only if nothing on the host feeds them to another one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
PLACEHOLDER = re.compile(r"\{\{\s*([a-z][a-z0-9_]{0,31})\s*\}\}")
_BRACES = re.compile(r"\{\{|\}\}")


def placeholders(text: str) -> list[str]:
    """The parameter names `text` refers to, in order (repeats included)."""
    return PLACEHOLDER.findall(text)


def stray_braces(text: str) -> bool:
    """True when `{{` or `}}` appear outside a well-formed placeholder (`{{ Bad }}`, `{{x`)."""
    return _BRACES.search(PLACEHOLDER.sub("", text)) is not None


def substitute(text: str, values: Mapping[str, str]) -> str:
    """`text` with each placeholder replaced by its value: once, literally, in one pass."""
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def _basename(word: str) -> str:
    return word.rsplit("/", 1)[-1]


# Prefixes that run the rest of argv as a command, with the options that take a value (so
# the value is skipped, not taken for the command).
_VALUE_OPTIONS: dict[str, frozenset[str]] = {
    "sudo": frozenset({"-u", "-g", "-h", "-p", "-C", "-D", "-r", "-t", "-T", "-U", "-R"}),
    "doas": frozenset({"-u", "-C"}),
    "env": frozenset({"-u", "-C", "--unset", "--chdir"}),
    "nice": frozenset({"-n", "--adjustment"}),
    "nohup": frozenset(),
    "timeout": frozenset({"-s", "-k", "--signal", "--kill-after"}),
    "stdbuf": frozenset({"-i", "-o", "-e", "--input", "--output", "--error"}),
    "ionice": frozenset({"-c", "-n", "-p", "-P", "-u", "--class", "--classdata"}),
    "setsid": frozenset(),
    "chrt": frozenset(),
    "taskset": frozenset(),
    "time": frozenset({"-f", "-o", "--format", "--output"}),
    "command": frozenset(),
    "exec": frozenset(),
}
# Prefix options that make the prefix itself run its arguments through a shell.
_SHELL_OPTIONS = {
    "sudo": frozenset({"-s", "--shell", "-i", "--login"}),
    "env": frozenset({"-S", "--split-string"}),
}
_SHELL_OPTION_REASONS = {
    "sudo": "sudo -s/-i runs its command through the target user's shell",
    "env": "env -S splits its argument like a shell",
}
_SHELLS = frozenset(
    {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh", "busybox", "rbash"}
)
_CODE_FLAGS = {  # interpreter -> the options whose argument is a program
    "perl": "-e -E",
    "ruby": "-e",
    "node": "-e -p --eval --print",
    "nodejs": "-e -p --eval --print",
    "php": "-r",
    "lua": "-e",
    "osascript": "-e",
}
_PYTHON = re.compile(r"python[0-9.]*")
_ALWAYS = {  # commands that read their arguments as a command line or as code
    "eval": "eval reads its arguments as shell code",
    "ssh": "ssh hands its command to the remote host's shell",
    "xargs": "xargs builds commands from its input and arguments",
    "watch": "watch runs its command through `sh -c`",
    "awk": "awk reads its program argument as code",
    "gawk": "awk reads its program argument as code",
    "mawk": "awk reads its program argument as code",
    "nawk": "awk reads its program argument as code",
    "sed": "sed scripts can run commands (the `e` command)",
}
_INSTEAD = (
    'run the program directly as an argv list (e.g. [systemctl, restart, "{{ service }}"]), '
    "or install a script on the host and pass the value to it as an argument"
)


def _has_flag(words: Sequence[str], flags: frozenset[str]) -> bool:
    """True when one of the short `flags` (like -c) is given, also bundled (`-ec`, `-lc`)."""
    short = {flag[1] for flag in flags if len(flag) == 2}
    for word in words:
        if word in flags:
            return True
        if word.startswith("-") and not word.startswith("--") and short & set(word[1:]):
            return True
        if word.split("=", 1)[0] in flags:
            return True
    return False


def _command_after_prefix(prefix: str, rest: Sequence[str]) -> int | None:
    """The index in `rest` where the prefix's command starts (None: no command follows)."""
    takes_value = _VALUE_OPTIONS[prefix]
    index = 0
    positional = {"timeout": 1, "nice": 0, "chrt": 1, "taskset": 1}.get(prefix, 0)
    while index < len(rest):
        word = rest[index]
        if word == "--":
            index += 1
            break
        if word.startswith("-") and len(word) > 1:
            index += 2 if word in takes_value else 1
            continue
        if prefix in ("env", "sudo") and "=" in word and not word.startswith("="):
            index += 1  # NAME=value assignments
            continue
        if positional:
            positional -= 1
            index += 1
            continue
        break
    while positional and index < len(rest):  # `timeout -- 5s cmd`
        positional -= 1
        index += 1
    return index if index < len(rest) else None


def shell_problem(argv: Sequence[str], names: Callable[[str], list[str]] = placeholders) -> str:
    """Why this argv would hand a placeholder to a shell or interpreter, or "" if it does not.

    Refused only when a placeholder appears somewhere in the step: a literal `sh -c 'df -h |
    head'` cannot be injected into.
    """
    used = [name for word in argv for name in names(word)]
    if not used:
        return ""
    shown = "{{ " + used[0] + " }}"
    words = list(argv)
    through: list[str] = []
    while words:
        command = _basename(words[0])
        rest = words[1:]
        if names(words[0]):
            behind = f" behind {' '.join(through)}" if through else ""
            return (
                f"the command{behind} is a placeholder; the program a step runs must be "
                "written in the runbook"
            )
        if command in _SHELL_OPTIONS and _has_flag(
            rest[: _command_after_prefix(command, rest)], _SHELL_OPTIONS[command]
        ):
            return _refusal(shown, through, _SHELL_OPTION_REASONS[command])
        if command in _VALUE_OPTIONS:
            start = _command_after_prefix(command, rest)
            if start is None:
                return ""
            through.append(command)
            words = rest[start:]
            continue
        reason = _code_reason(command, rest)
        return _refusal(shown, through, reason) if reason else ""
    return ""


def _code_reason(command: str, rest: Sequence[str]) -> str:
    if command in _SHELLS:
        if _has_flag(rest, frozenset({"-c"})):
            return f"{command} -c runs its argument as shell code"
        return ""
    if command in ("su", "runuser", "flock", "script") and _has_flag(
        rest, frozenset({"-c", "--command"})
    ):
        return f"{command} -c runs its argument through a shell"
    if command in _ALWAYS:
        return _ALWAYS[command]
    if _PYTHON.fullmatch(command) and _has_flag(rest, frozenset({"-c"})):
        return f"{command} -c runs its argument as Python code"
    flags = _CODE_FLAGS.get(command)
    if flags is not None and _has_flag(rest, frozenset(flags.split())):
        return f"{command} {flags.split()[0]} runs its argument as code"
    return ""


def _refusal(shown: str, through: list[str], reason: str) -> str:
    behind = f" (behind {' '.join(through)})" if through else ""
    return f"hands {shown} to a shell or interpreter{behind}: {reason}; {_INSTEAD}"
