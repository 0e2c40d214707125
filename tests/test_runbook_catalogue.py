"""The runbook catalogue: schema errors with file:line:key, ids, placeholders, shell refusal,
the checks against firebreak.yaml, the starter runbooks, and `firebreak check`."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from bot.config import ConfigError, load_file
from bot.runbooks.argv import shell_problem
from bot.runbooks.catalogue import Catalogue, load_catalogue
from bot.runbooks.inventory import Inventory
from bot.runbooks.planning import make_plan
from tests.test_cli import ALERT_SECRETS, EXAMPLE, NOTIFIER_SECRETS, TOKENS, invoke

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STARTERS = PROJECT_ROOT / "runbooks"

# The example of issue #9, verbatim.
ISSUE_EXAMPLE = """\
id: restart-service
title: Restart a systemd service
description: Restarts one service and checks it came back.
risk: high                        # low | medium | high; high needs approval by default
allowed_roles: [commander, ops]   # incident roles, or groups of people from the config
params:
  service: {type: enum, values: [nginx, php-fpm], required: true}
  lines:   {type: int, min: 1, max: 5000, default: 200}
  unit:    {type: string, pattern: "[a-z0-9@._-]{1,64}"}   # always a full match
targets: {group: web, max_hosts: 10}   # a run may narrow this, never widen it
concurrency: 5
max_failures: 1                   # stop starting new hosts after this many failures
steps:
  - id: status
    argv: [systemctl, status, "{{ service }}", --no-pager, "--lines={{ lines }}"]
    timeout: 30s
    ok_exit_codes: [0, 3]
  - id: restart
    argv: [sudo, -n, systemctl, restart, "{{ service }}"]
    timeout: 2m
    on_failure: rollback          # abort | continue | rollback
rollback:
  - id: start
    argv: [sudo, -n, systemctl, start, "{{ service }}"]
output: {max_bytes: 65536, redact: ["(?i)(password|token)=\\\\S+"]}
"""

MINIMAL = """\
id: {id}
title: Minimal
risk: low
targets: {{group: web}}
steps:
  - id: one
    argv: [uptime]
"""

INVENTORY = Inventory.model_validate(
    {
        "user": "deploy",
        "hosts": {
            "web-1": {"address": "10.0.0.5", "groups": ["web", "linux"]},
            "web-2": {"address": "10.0.0.6", "groups": ["web", "linux"]},
            "db-1": {"address": "db-1.internal", "user": "pg", "groups": ["db", "linux"]},
        },
    }
)


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_catalogue(directory)
    assert caught.value.problems
    return caught.value.problems


def runbook_text(steps: str, params: str = "  x: {type: string, pattern: '[a-z]+'}\n") -> str:
    return (
        "id: probe\ntitle: Probe\nrisk: low\ntargets: {group: web}\n"
        f"params:\n{params}steps:\n{steps}"
    )


# -- loading ------------------------------------------------------------------------------


def test_the_issue_example_loads_with_its_defaults(tmp_path: Path) -> None:
    write(tmp_path, "restart.yaml", ISSUE_EXAMPLE)
    catalogue = load_catalogue(tmp_path)

    runbook = catalogue.get("restart-service")
    assert runbook is not None
    assert catalogue.get("nope") is None
    assert runbook.needs_approval is True
    assert runbook.allowed_roles == ["commander", "ops"]
    assert runbook.targets.group == "web" and runbook.targets.max_hosts == 10
    assert [step.timeout for step in runbook.steps] == [timedelta(seconds=30), timedelta(minutes=2)]
    assert runbook.rollback[0].timeout == timedelta(seconds=60)  # the default
    assert runbook.steps[0].ok_exit_codes == [0, 3]
    assert runbook.steps[1].ok_exit_codes == [0]
    assert runbook.output.redact == [r"(?i)(password|token)=\S+"]
    assert catalogue.files["restart-service"] == tmp_path / "restart.yaml"


def test_runbooks_are_sorted_by_id_and_both_suffixes_load(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MINIMAL.format(id="zeta"))
    write(tmp_path, "b.yml", MINIMAL.format(id="alpha"))
    write(tmp_path, ".hidden.yaml", "not: [valid")  # editors' swap and hidden files
    write(tmp_path, "notes.txt", "not a runbook")
    catalogue = load_catalogue(tmp_path)
    assert [runbook.id for runbook in catalogue.runbooks] == ["alpha", "zeta"]


def test_a_missing_directory_is_empty_unless_required(tmp_path: Path) -> None:
    missing = tmp_path / "nothing"
    catalogue = load_catalogue(missing)
    assert catalogue.found is False and catalogue.runbooks == ()

    with pytest.raises(ConfigError) as caught:
        load_catalogue(missing, required=True)
    assert caught.value.problems == [
        f"{missing}: no such directory; FIREBREAK_RUNBOOKS names it (create it with runbook "
        "files, or unset the variable to use runbooks/)"
    ]
    afile = write(tmp_path, "file.yaml", MINIMAL.format(id="x"))
    with pytest.raises(ConfigError, match="is not a directory"):
        load_catalogue(afile)


def test_schema_errors_name_file_line_and_key_across_several_files(tmp_path: Path) -> None:
    first = write(
        tmp_path,
        "first.yaml",
        """\
        id: Bad_Id
        title: x
        risk: extreme
        colour: red
        targets: {group: web}
        steps:
          - id: one
            argv: [sleep, 1]
            timeout: 3h
        """,
    )
    second = write(
        tmp_path,
        "second.yaml",
        """\
        id: second
        title: x
        risk: low
        targets: {}
        params:
          n: {type: int, min: 5, max: 1}
          s: {type: string}
          e: {type: enum, values: [a, a]}
          d: {type: int, max: 10, default: 11}
          b: {type: bool, default: "yes"}
        steps:
          - id: one
            argv: [ls]
            on_failure: retry
            ok_exit_codes: [0, 300]
        output: {max_bytes: 0, redact: ["(unclosed"]}
        """,
    )
    problems = problems_of(tmp_path)
    assert problems == [
        f"{first}:1: id: 'Bad_Id' is not a runbook id; use lowercase letters, digits and '-' "
        "(up to 63, starting with a letter or digit), like restart-service",
        f"{first}:3: risk: Input should be 'low', 'medium' or 'high'",
        f"{first}:4: colour: unknown key; check the spelling against the runbooks in runbooks/",
        f"{first}:8: steps.0.argv: element 1 is a number, not text; quote it ('1') "
        "(argv is a list of strings)",
        f"{first}:9: steps.0.timeout: '3h' is longer than the limit of 1h",
        f"{second}:4: targets: give a `group` or a `hosts` list: the hosts this runbook may reach",
        f"{second}:6: params.n: min (5) is greater than max (1)",
        f"{second}:7: params.s: a string parameter needs a `pattern` that its values must match "
        'in full, like "[a-z0-9@._-]{1,64}"',
        f"{second}:8: params.e.values: values must not repeat",
        f"{second}:9: params.d: the default is not a valid value: 11 is above the maximum 10",
        f"{second}:10: params.b: the default 'yes' is not a bool; write true or false without "
        "quotes",
        f"{second}:14: steps.0.on_failure: Input should be 'abort', 'continue' or 'rollback'",
        f"{second}:15: steps.0.ok_exit_codes: exit codes are 0..255",
        f"{second}:16: output.max_bytes: Input should be greater than or equal to 1",
        f"{second}:16: output.redact: '(unclosed' is not a regular expression: missing ), "
        "unterminated subpattern at position 0",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ":1: (top level): the file is empty; a runbook is a mapping"),
        ("- a\n- b\n", ":1: (top level): the file is a list; a runbook is a mapping"),
        ("id: [unclosed\n", ": not valid YAML"),
        ("id: a\nid: b\n", ":2: id: given twice (first at line 1)"),
        (MINIMAL.format(id="x").replace("id: one", "id: One"), ":6: steps.0.id: 'One' is not"),
        (MINIMAL.format(id="x").replace("risk: low", "risk: low\nrisk: high"), "given twice"),
    ],
)
def test_broken_files_are_refused_with_their_place(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, "broken.yaml", text)
    problems = problems_of(tmp_path)
    assert any(problem.startswith(str(path)) and expected in problem for problem in problems), (
        problems
    )


def test_a_duplicate_id_names_both_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", MINIMAL.format(id="same"))
    second = write(tmp_path, "b.yaml", "# another\n" + MINIMAL.format(id="same"))
    assert problems_of(tmp_path) == [
        f"{second}:2: id: 'same' is already the id of {tmp_path / 'a.yaml'}; each runbook "
        "needs its own id"
    ]


def test_placeholders_must_name_declared_parameters(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        runbook_text(
            "  - id: one\n"
            '    argv: [ls, "{{ x }}", "--y={{y}}", "{{ z }}-suffix"]\n'
            "rollback:\n"
            "  - id: back\n"
            '    argv: [ls, "{{ w }}"]\n'
        ),
    )
    assert problems_of(tmp_path) == [
        f"{path}:9: steps.0.argv.2: {{{{ y }}}} names no parameter (params: x); declare it "
        "under params:",
        f"{path}:9: steps.0.argv.3: {{{{ z }}}} names no parameter (params: x); declare it "
        "under params:",
        f"{path}:12: rollback.0.argv.1: {{{{ w }}}} names no parameter (params: x); declare it "
        "under params:",
    ]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ('["{{ x }}", a]', "the first element is the program and must be written out literally"),
        ('["", a]', "the first element is the program"),
        ('[ls, "{{ X }}"]', "has {{ or }} that is not a placeholder"),
        ('[ls, "{{x"]', "has {{ or }} that is not a placeholder"),
        ('[ls, "a\\nb"]', "element 1 holds a newline; remove it"),
        ("[]", "List should have at least 1 item"),
    ],
)
def test_bad_argv_is_refused(tmp_path: Path, argv: str, expected: str) -> None:
    path = write(tmp_path, "a.yaml", runbook_text(f"  - id: one\n    argv: {argv}\n"))
    problems = problems_of(tmp_path)
    assert len(problems) == 1 and problems[0].startswith(f"{path}:9: steps.0.argv: ")
    assert expected in problems[0]


def test_step_ids_on_failure_and_rollback_rules(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "a.yaml",
        runbook_text(
            "  - id: one\n    argv: [ls]\n    on_failure: rollback\n  - id: one\n    argv: [ls]\n",
            params="  {}\n",
        ).replace("params:\n  {}\n", ""),
    )
    assert problems_of(tmp_path) == [
        f"{path}:8: steps.0.on_failure: is rollback but the runbook has no `rollback:` steps; "
        "add them or use abort",
        f"{path}:9: steps.1.id: 'one' is already the id of steps.0; ids are unique",
    ]


def test_parameter_names_and_keys_that_do_not_fit_their_type(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "a.yaml",
        runbook_text(
            "  - id: one\n    argv: [ls]\n",
            params=(
                "  hosts: {type: bool}\n"
                "  Bad: {type: bool}\n"
                "  i: {type: int, values: ['1']}\n"
                "  r: {type: enum, values: [a], required: true, default: a}\n"
            ),
        ),
    )
    assert problems_of(tmp_path) == [
        f"{path}:8: params.i: `values` does not apply to an int parameter; remove it",
        f"{path}:9: params.r: a required parameter takes no default; drop one of the two",
    ]
    path.write_text(
        runbook_text(
            "  - id: one\n    argv: [ls]\n",
            params="  hosts: {type: bool}\n  Bad: {type: bool}\n",
        ),
        encoding="utf-8",
    )
    assert problems_of(tmp_path) == [
        f"{path}:6: params.hosts: `hosts` is reserved for the host selection (hosts=...)",
        f"{path}:7: params.Bad: a parameter name is a lowercase word of up to 32 letters, "
        "digits and _",
    ]


# -- shells -------------------------------------------------------------------------------

REFUSED = [
    (["sh", "-c", "echo {{ x }}"], "sh -c runs its argument as shell code"),
    (["/bin/bash", "-c", "ls", "{{ x }}"], "bash -c"),
    (["bash", "-lc", "echo {{ x }}"], "bash -c"),
    (["dash", "-ec", "{{ x }}"], "dash -c"),
    (["zsh", "-c", "{{ x }}"], "zsh -c"),
    (["ksh", "-c", "{{ x }}"], "ksh -c"),
    (["fish", "-c", "{{ x }}"], "fish -c"),
    (["busybox", "sh", "-c", "{{ x }}"], "busybox -c"),
    (["eval", "{{ x }}"], "eval reads its arguments as shell code"),
    (["ssh", "other-host", "uptime", "{{ x }}"], "ssh hands its command"),
    (["su", "-", "root", "-c", "{{ x }}"], "su -c runs its argument through a shell"),
    (["su", "--command=ls {{ x }}"], "su -c"),
    (["python3", "-c", "print('{{ x }}')"], "python3 -c runs its argument as Python code"),
    (["python3.11", "-c", "{{ x }}"], "python3.11 -c"),
    (["perl", "-e", "{{ x }}"], "perl -e runs its argument as code"),
    (["ruby", "-e", "{{ x }}"], "ruby -e"),
    (["node", "-e", "{{ x }}"], "node -e"),
    (["xargs", "-n1", "echo", "{{ x }}"], "xargs builds commands"),
    (["sudo", "-n", "bash", "-c", "{{ x }}"], "(behind sudo): bash -c"),
    (["sudo", "-u", "www", "sh", "-c", "{{ x }}"], "(behind sudo): sh -c"),
    (["sudo", "-s", "ls {{ x }}"], "sudo -s/-i runs its command through the target user's shell"),
    (["sudo", "-i", "ls", "{{ x }}"], "sudo -s/-i"),
    (["env", "A=1", "sh", "-c", "{{ x }}"], "(behind env): sh -c"),
    (["env", "-S", "ls {{ x }}"], "env -S splits its argument like a shell"),
    (["nice", "-n", "10", "bash", "-c", "{{ x }}"], "(behind nice): bash -c"),
    (["nohup", "sh", "-c", "{{ x }}"], "(behind nohup)"),
    (["timeout", "-k", "5", "10s", "sh", "-c", "{{ x }}"], "(behind timeout): sh -c"),
    (["timeout", "--", "10s", "eval", "{{ x }}"], "(behind timeout): eval"),
    (["stdbuf", "-oL", "python", "-c", "{{ x }}"], "(behind stdbuf): python -c"),
    (["stdbuf", "-o", "L", "perl", "-e", "{{ x }}"], "(behind stdbuf): perl -e"),
    (["ionice", "-c", "3", "sh", "-c", "{{ x }}"], "(behind ionice): sh -c"),
    (["setsid", "-f", "ssh", "h", "{{ x }}"], "(behind setsid): ssh"),
    (["sudo", "env", "nice", "timeout", "5", "bash", "-c", "{{ x }}"], "behind sudo env nice"),
    (["sudo", "{{ x }}"], "the command behind sudo is a placeholder"),
    (["watch", "ls", "{{ x }}"], "watch runs its command through `sh -c`"),
    (["awk", "{{ x }}"], "awk reads its program argument as code"),
]


@pytest.mark.parametrize(("argv", "expected"), REFUSED)
def test_a_placeholder_handed_to_a_shell_or_interpreter_is_refused(
    argv: list[str], expected: str
) -> None:
    problem = shell_problem(argv)
    assert expected in problem
    if "is a placeholder" not in problem:
        assert problem.startswith("hands {{ x }} to a shell or interpreter")
        assert "run the program directly as an argv list" in problem


@pytest.mark.parametrize(
    "argv",
    [
        ["sh", "-c", "df -h | head -n 5"],  # literal: nothing can be injected
        ["bash", "/usr/local/bin/diagnose.sh", "{{ x }}"],
        ["sudo", "-n", "systemctl", "restart", "{{ x }}"],
        ["timeout", "5", "ls", "--", "{{ x }}"],
        ["env", "LC_ALL=C", "df", "-h", "{{ x }}"],
        ["python3", "/opt/tools/check.py", "--name={{ x }}"],
        ["journalctl", "-u", "{{ x }}", "-n", "10"],
        ["sudo", "-u", "{{ x }}", "id"],
    ],
)
def test_argv_that_reaches_no_shell_is_allowed(argv: list[str]) -> None:
    assert shell_problem(argv) == ""


def test_the_catalogue_refuses_a_shell_step_with_its_place(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "a.yaml",
        runbook_text('  - id: one\n    argv: [sudo, -n, bash, -c, "echo {{ x }}"]\n'),
    )
    assert problems_of(tmp_path) == [
        f"{path}:9: steps.0.argv: hands {{{{ x }}}} to a shell or interpreter (behind sudo): "
        "bash -c runs its argument as shell code; run the program directly as an argv list "
        '(e.g. [systemctl, restart, "{{ service }}"]), or install a script on the host and '
        "pass the value to it as an argument"
    ]


# -- against firebreak.yaml ---------------------------------------------------------------


def test_targets_and_roles_are_checked_against_the_configuration(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "a.yaml",
        """\
        id: cross
        title: Cross
        risk: low
        allowed_roles: [commander, sre, wizard]
        targets: {group: cache, hosts: [web-1, web-9]}
        steps:
          - id: one
            argv: [uptime]
        """,
    )
    catalogue = load_catalogue(tmp_path)
    problems = catalogue.problems_with(INVENTORY, ["commander", "ops"], ["sre"])
    assert problems == [
        f"{path}:4: allowed_roles.2: 'wizard' is neither an incident role nor a runbooks.groups "
        "name in firebreak.yaml (known: commander, ops, sre)",
        f"{path}:5: targets.group: no inventory host is in group 'cache' (groups: web, linux, "
        "db); add the group to hosts in firebreak.yaml's inventory or change the target",
        f"{path}:5: targets.hosts.1: 'web-9' is not in inventory.hosts of firebreak.yaml",
    ]


# -- the starter runbooks -----------------------------------------------------------------


def test_the_starter_runbooks_load_and_fit_the_example_configuration() -> None:
    catalogue = load_catalogue(STARTERS)
    ids = [runbook.id for runbook in catalogue.runbooks]
    assert ids == [
        "check-port",
        "disk-usage",
        "kernel-messages",
        "load-average",
        "restart-service",
        "service-log",
        "top-processes",
    ]
    config, _ = load_file(EXAMPLE, required=True)
    assert (
        catalogue.problems_with(config.inventory, config.incidents.roles, config.runbooks.groups)
        == []
    )
    for runbook in catalogue.runbooks:
        if runbook.id == "restart-service":
            assert runbook.risk == "high" and runbook.needs_approval
            assert runbook.rollback and runbook.allowed_roles
        else:
            assert runbook.risk == "low" and not runbook.needs_approval, runbook.id
            assert all("sudo" not in step.argv for step in runbook.steps), runbook.id


def _plan_argv(
    catalogue: Catalogue, runbook_id: str, values: dict[str, str]
) -> list[tuple[str, ...]]:
    config, _ = load_file(EXAMPLE, required=True)
    runbook = catalogue.get(runbook_id)
    assert runbook is not None
    plan = make_plan(runbook, values, None, config.inventory)
    return [step.argv for step in plan.steps]


def test_the_starter_runbooks_plan_bounded_argv() -> None:
    catalogue = load_catalogue(STARTERS)
    assert _plan_argv(catalogue, "service-log", {"unit": "nginx.service"}) == [
        (
            "journalctl",
            "--no-pager",
            "--output=short-iso",
            "-u",
            "nginx.service",
            "-n",
            "200",
        )
    ]
    assert _plan_argv(catalogue, "check-port", {"host": "db-1.internal", "port": "5432"}) == [
        ("nc", "-z", "-v", "-w", "3", "db-1.internal", "5432")
    ]
    assert _plan_argv(catalogue, "kernel-messages", {"lines": "20"}) == [
        ("journalctl", "-k", "--no-pager", "--output=short-iso", "--priority=warning", "-n", "20")
    ]
    assert _plan_argv(catalogue, "top-processes", {"by": "pmem"}) == [
        ("ps", "-eo", "pid,user,pcpu,pmem,rss,etime,comm", "--sort=-pmem")
    ]
    assert _plan_argv(catalogue, "disk-usage", {}) == [
        ("df", "-h", "-P", "--", "/"),
        ("df", "-i", "-P", "--", "/"),
    ]


# -- firebreak check ----------------------------------------------------------------------

GOOD_ENV = {**TOKENS, **NOTIFIER_SECRETS, **ALERT_SECRETS}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "work"
    directory.mkdir()
    monkeypatch.chdir(directory)
    return directory


def test_check_passes_with_the_starter_runbooks_and_the_example(workdir: Path) -> None:
    result = invoke(
        ["check"], FIREBREAK_CONFIG=str(EXAMPLE), FIREBREAK_RUNBOOKS=str(STARTERS), **GOOD_ENV
    )
    assert result.exit_code == 0, result.output
    assert f"Runbooks OK ({STARTERS}: 7 runbooks)." in result.stdout


def test_check_notes_a_missing_default_catalogue_but_refuses_a_missing_named_one(
    workdir: Path,
) -> None:
    result = invoke(["check"], FIREBREAK_CONFIG=str(EXAMPLE), **GOOD_ENV)
    assert result.exit_code == 0, result.output
    assert "note: no runbook catalogue at runbooks (FIREBREAK_RUNBOOKS is unset)" in result.stdout

    missing = workdir / "mine"
    result = invoke(
        ["check"], FIREBREAK_CONFIG=str(EXAMPLE), FIREBREAK_RUNBOOKS=str(missing), **GOOD_ENV
    )
    assert result.exit_code == 2
    assert f"error: {missing}: no such directory; FIREBREAK_RUNBOOKS names it" in result.stderr


def test_check_names_file_line_and_key_of_a_bad_catalogue(workdir: Path) -> None:
    catalogue = workdir / "runbooks"
    bad = write(catalogue, "bad.yaml", runbook_text('  - id: one\n    argv: [sh, -c, "{{ x }}"]\n'))
    cache = write(
        catalogue, "cache.yaml", MINIMAL.format(id="cache").replace("group: web", "group: cache")
    )
    result = invoke(["check"], FIREBREAK_CONFIG=str(EXAMPLE), **GOOD_ENV)  # default runbooks/
    assert result.exit_code == 2
    assert "Configuration OK" not in result.stdout
    errors = result.stderr.splitlines()
    assert errors[0].startswith(
        f"error: {bad.relative_to(workdir)}:9: steps.0.argv: hands {{{{ x }}}} to a shell"
    )
    assert errors[1].startswith(
        f"error: {cache.relative_to(workdir)}:4: targets.group: no inventory host is in group "
        "'cache'"
    )
    assert "Traceback" not in result.output


def test_check_notes_when_runbooks_have_no_inventory_yet(workdir: Path) -> None:
    config = write(workdir, "firebreak.yaml", "slack: {announce_channel: C0INC}\n")
    result = invoke(
        ["check"], FIREBREAK_CONFIG=str(config), FIREBREAK_RUNBOOKS=str(STARTERS), **TOKENS
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:3] == [
        f"Runbooks OK ({STARTERS}: 7 runbooks).",
        "note: inventory: no hosts are listed, so no runbook can run yet; add inventory.hosts "
        "to the configuration (see examples/firebreak.yaml)",
    ]


def test_check_refuses_inventory_and_group_mistakes_in_firebreak_yaml(workdir: Path) -> None:
    config = write(
        workdir,
        "firebreak.yaml",
        """\
        people:
          alice: {slack: U0ALICE}
        inventory:
          hosts:
            web-1: {address: 10.0.0.5, groups: [web]}
            web: {address: 10.0.0.6, user: deploy, groups: [web]}
            db-1: {address: "-oProxyCommand=x", user: deploy, port: 70000}
        runbooks:
          groups:
            ops: [alice]
            sre: [alice, mallory]
          approval_expires: 2d
        """,
    )
    result = invoke(["check"], FIREBREAK_CONFIG=str(config), **TOKENS)
    assert result.exit_code == 2
    errors = result.stderr.splitlines()
    assert errors == [
        f"error: {config}:7: inventory.hosts.db-1.address: '-oProxyCommand=x' is not a host "
        "name or IP address (letters, digits, '.', '-', '_'; not starting with '-')",
        f"error: {config}:7: inventory.hosts.db-1.port: Input should be less than or equal to "
        "65535",
        f"error: {config}:12: runbooks.approval_expires: must be at most 1d: an approval is for "
        "the incident at hand",
    ]
    config.write_text(
        config.read_text(encoding="utf-8")
        .replace('"-oProxyCommand=x"', "10.0.0.7")
        .replace("70000", "22")
        .replace("2d", "10m"),
        encoding="utf-8",
    )
    result = invoke(["check"], FIREBREAK_CONFIG=str(config), **TOKENS)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {config}:5: inventory.hosts.web-1: no `user`: give the host one, or set "
        "inventory.user for all hosts",
        f"error: {config}:6: inventory.hosts.web: 'web' is also a group name; hosts=... could "
        "mean either, so rename the host or the group",
        f"error: {config}:10: runbooks.groups.ops: 'ops' is also an incident role; "
        "allowed_roles could mean either, so rename the group",
        f"error: {config}:11: runbooks.groups.sre: 'mallory' is not in people: (groups list "
        "people by their name there)",
    ]
