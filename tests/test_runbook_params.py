"""Run requests: `key=value` words, parameter validation, literal substitution, host selection,
and the `Plan` they become."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.config import ConfigError, load_file
from bot.runbooks.argv import substitute
from bot.runbooks.catalogue import Runbook
from bot.runbooks.inventory import Inventory
from bot.runbooks.params import Arguments, RunRefused, bad_character, parse_arguments
from bot.runbooks.plan import Host
from bot.runbooks.planning import make_plan

INVENTORY = Inventory.model_validate(
    {
        "user": "deploy",
        "hosts": {
            "web-1": {"address": "10.0.0.5", "groups": ["web", "linux"]},
            "web-2": {"address": "10.0.0.6", "port": 2222, "groups": ["web", "linux"]},
            "web-3": {"address": "10.0.0.7", "groups": ["web", "linux"]},
            "db-1": {"address": "db-1.internal", "user": "pg", "groups": ["db", "linux"]},
        },
    }
)


def runbook(**changes: object) -> Runbook:
    data: dict[str, object] = {
        "id": "probe",
        "title": "Probe",
        "risk": "low",
        "params": {
            "service": {"type": "enum", "values": ["nginx", "php-fpm"], "required": True},
            "lines": {"type": "int", "min": 1, "max": 5000, "default": 200},
            "unit": {"type": "string", "pattern": "[a-z0-9@._-]{1,64}"},
            "follow": {"type": "bool", "default": False},
        },
        "targets": {"group": "web", "max_hosts": 2},
        "steps": [
            {
                "id": "status",
                "argv": ["systemctl", "status", "{{ service }}", "--lines={{lines}}"],
                "timeout": "30s",
                "ok_exit_codes": [0, 3],
            },
            {"id": "flag", "argv": ["echo", "follow={{ follow }}"], "on_failure": "continue"},
        ],
    }
    data.update(changes)
    return Runbook.model_validate(data)


def refused(call: object) -> list[str]:
    assert callable(call)
    with pytest.raises(RunRefused) as caught:
        call()
    assert str(caught.value) == "; ".join(caught.value.problems)
    return caught.value.problems


# -- key=value words ----------------------------------------------------------------------


def test_words_become_values_and_the_host_selection() -> None:
    arguments = parse_arguments(["service=nginx", "lines=10", "hosts=web-1,web-2", "empty="])
    assert arguments == Arguments(
        values={"service": "nginx", "lines": "10", "empty": ""}, hosts="web-1,web-2"
    )
    assert parse_arguments(["a=b=c"]).values == {"a": "b=c"}  # the first = splits
    assert parse_arguments([]) == Arguments(values={}, hosts=None)


def test_bad_words_are_all_refused_at_once() -> None:
    problems = refused(
        lambda: parse_arguments(["service", "=x", "lines=1", "lines=2", "hosts=a", "hosts=b"])
    )
    assert problems == [
        "'service' is not key=value; give parameters as name=value (and hosts as "
        "hosts=NAME,NAME or hosts=GROUP)",
        "'=x' is not key=value; give parameters as name=value (and hosts as hosts=NAME,NAME "
        "or hosts=GROUP)",
        "'lines' is given twice; give each parameter once",
        "hosts= is given twice; give it once",
    ]


# -- values -------------------------------------------------------------------------------


def test_every_kind_of_bad_value_is_reported_together() -> None:
    book = runbook(
        params={
            "service": {"type": "enum", "values": ["nginx", "php-fpm"], "required": True},
            "lines": {"type": "int", "min": 1, "max": 5000, "default": 200},
            "count": {"type": "int", "min": 1, "max": 9, "default": 1},
            "unit": {"type": "string", "pattern": "[a-z0-9@._-]{1,64}"},
            "name": {"type": "string", "pattern": ".*", "max_length": 5},
            "note": {"type": "string", "pattern": "(?s).*"},
            "follow": {"type": "bool", "default": False},
            "token": {"type": "string", "pattern": "[a-z]+", "required": True},
        },
        steps=[{"id": "one", "argv": ["true"]}],
    )
    problems = refused(
        lambda: make_plan(
            book,
            {
                "service": "apache",
                "lines": "ten",
                "count": "0",
                "unit": "nginx;reboot",
                "name": "toolong",
                "note": "line one\nline two",
                "follow": "maybe",
                "colour": "red",
            },
            None,
            INVENTORY,
        )
    )
    assert problems == [
        "service: 'apache' is not one of: nginx, php-fpm",
        "lines: 'ten' is not a whole number",
        "count: 0 is below the minimum 1",
        "unit: 'nginx;reboot' does not match the pattern [a-z0-9@._-]{1,64}",
        "name: is 7 characters long; at most 5 are allowed",
        "note: holds a newline; values are one line of printable text",
        "follow: 'maybe' is not true or false",
        "'colour' is not a parameter of this runbook (parameters: service, lines, count, unit, "
        "name, note, follow, token)",
        "token: is required; give token=VALUE",
        "3 hosts selected; this runbook runs on at most 2 at once: narrow the run with "
        "hosts=NAME,NAME or a smaller group",
    ]


def test_a_missing_required_enum_lists_its_values_and_ranges_are_inclusive() -> None:
    assert refused(lambda: make_plan(runbook(), {"lines": "5001"}, "web-1", INVENTORY)) == [
        "lines: 5001 is above the maximum 5000",
        "service: is required; give service=VALUE (one of: nginx, php-fpm)",
    ]
    plan = make_plan(runbook(), {"service": "nginx", "lines": "5000"}, "web-1", INVENTORY)
    assert plan.params == {"service": "nginx", "lines": 5000, "follow": False}


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("a\nb", "a newline"),
        ("a\rb", "a carriage return"),
        ("a\tb", "a tab"),
        ("a\x00b", "the control character U+0000"),
        ("a\x1bb", "the control character U+001B"),
        ("a\x7fb", "the control character U+007F"),
        ("a\u0085b", "the control character U+0085"),
        ("a\u2028b", "the control character U+2028"),
        ("a\u202eb", "the control character U+202E"),
        ("a\ud800b", "the control character U+D800"),
    ],
)
def test_control_characters_are_refused_whatever_the_pattern(value: str, shown: str) -> None:
    book = runbook(
        params={"text": {"type": "string", "pattern": "(?s).*", "required": True}},
        steps=[{"id": "one", "argv": ["echo", "{{ text }}"]}],
    )
    assert bad_character(value) == shown
    assert refused(lambda: make_plan(book, {"text": value}, "web-1", INVENTORY)) == [
        f"text: holds {shown}; values are one line of printable text"
    ]


def test_bools_and_ints_are_planned_in_one_canonical_spelling() -> None:
    plan = make_plan(
        runbook(), {"service": "nginx", "lines": "+007", "follow": "YES"}, "web-1", INVENTORY
    )
    assert [step.argv for step in plan.steps] == [
        ("systemctl", "status", "nginx", "--lines=7"),
        ("echo", "follow=true"),
    ]


def test_an_optional_parameter_without_a_value_is_refused_only_where_a_step_uses_it() -> None:
    book = runbook(
        steps=[{"id": "status", "argv": ["systemctl", "status", "{{ unit }}"]}],
        rollback=[],
    )
    assert refused(lambda: make_plan(book, {"service": "nginx"}, "web-1", INVENTORY)) == [
        "unit: has no value and step status uses it; give unit=VALUE"
    ]
    plan = make_plan(book, {"service": "nginx", "unit": "cron.service"}, "web-1", INVENTORY)
    assert plan.steps[0].argv == ("systemctl", "status", "cron.service")


# -- substitution -------------------------------------------------------------------------

INJECTIONS = [
    "$(reboot)",
    "`reboot`",
    "a;reboot",
    "a|reboot",
    "a&&reboot",
    "it's",
    'say "hi"',
    "${IFS}reboot",
    "a>/etc/passwd",
    "*",
    "/etc/*.conf",
    "-rf",
    "--help",
    "ünïcödé ✓ 漢字 🔥",
    "{{ service }}",
    "{{service}}",
    "\\1 \\g<0> $1",
    "  spaced  ",
    "",
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_values_reach_argv_literally_as_one_element(value: str) -> None:
    book = runbook(
        params={
            "text": {"type": "string", "pattern": "(?s).*", "required": True},
            "service": {"type": "enum", "values": ["nginx"], "default": "nginx"},
        },
        steps=[
            {"id": "one", "argv": ["printf", "%s\\n", "{{ text }}", "--x={{ text }}!"]},
            {"id": "two", "argv": ["echo", "{{ service }}"]},
        ],
    )
    plan = make_plan(book, {"text": value}, "web-1", INVENTORY)
    assert plan.steps[0].argv == ("printf", "%s\\n", value, f"--x={value}!")
    assert plan.steps[1].argv == ("echo", "nginx")
    assert plan.params["text"] == value


def test_substitution_is_one_pass_over_the_original() -> None:
    values = {"a": "{{ b }}", "b": "B", "c": "\\g<1>"}
    assert substitute("{{ a }}-{{b}}-{{  c  }}", values) == "{{ b }}-B-\\g<1>"
    assert substitute("no placeholders {here}", values) == "no placeholders {here}"


@settings(max_examples=300, deadline=None)
@given(value=st.text(max_size=300), prefix=st.sampled_from(["", "--v=", "x"]))
def test_any_value_that_passes_is_substituted_verbatim_as_one_element(
    value: str, prefix: str
) -> None:
    pattern = r"[^\x00-\x1f\x7f]{0,256}"
    book = runbook(
        params={"text": {"type": "string", "pattern": pattern, "required": True}},
        steps=[{"id": "one", "argv": ["printf", "%s", prefix + "{{ text }}"]}],
    )
    try:
        plan = make_plan(book, {"text": value}, "web-1", INVENTORY)
    except RunRefused as refusal:
        assert len(value) > 256 or bad_character(value) or not re.fullmatch(pattern, value)
        assert len(refusal.problems) == 1 and refusal.problems[0].startswith("text: ")
        return
    assert bad_character(value) is None and re.fullmatch(pattern, value)
    assert plan.steps[0].argv == ("printf", "%s", prefix + value)


# -- hosts --------------------------------------------------------------------------------


def hosts_of(selection: str | None, **targets: object) -> tuple[str, ...]:
    book = runbook(targets={"group": "web", "max_hosts": 5, **targets})
    plan = make_plan(book, {"service": "nginx"}, selection, INVENTORY)
    return tuple(host.name for host in plan.hosts)


def test_no_selection_means_the_runbooks_targets() -> None:
    assert hosts_of(None) == ("web-1", "web-2", "web-3")
    assert hosts_of(None, group=None, hosts=["db-1", "web-2"]) == ("web-2", "db-1")
    assert hosts_of(None, group="db", hosts=["web-1"]) == ("web-1", "db-1")


def test_a_run_may_narrow_by_name_or_group() -> None:
    assert hosts_of("web-2") == ("web-2",)
    assert hosts_of(" web-3 , web-1 ") == ("web-3", "web-1")
    assert hosts_of("web,web-1") == ("web-1", "web-2", "web-3")  # repeats merged
    assert hosts_of("db", group="linux") == ("db-1",)


def test_the_plan_carries_each_hosts_connection_details() -> None:
    book = runbook()
    plan = make_plan(book, {"service": "nginx"}, "web-2,web-1", INVENTORY)
    assert plan.hosts == (
        Host(name="web-2", address="10.0.0.6", port=2222, user="deploy", groups=("web", "linux")),
        Host(name="web-1", address="10.0.0.5", port=22, user="deploy", groups=("web", "linux")),
    )
    db = make_plan(runbook(targets={"hosts": ["db-1"]}), {"service": "nginx"}, None, INVENTORY)
    assert db.hosts[0].user == "pg"


def test_a_run_may_never_widen_its_targets() -> None:
    book = runbook(targets={"group": "web", "max_hosts": 10})
    assert refused(lambda: make_plan(book, {"service": "nginx"}, "web-1,db-1", INVENTORY)) == [
        "db-1 is outside this runbook's targets (group web); a run may narrow its targets, "
        "never widen them"
    ]
    assert refused(lambda: make_plan(book, {"service": "nginx"}, "linux", INVENTORY)) == [
        "db-1 is outside this runbook's targets (group web); a run may narrow its targets, "
        "never widen them"
    ]
    only = runbook(targets={"hosts": ["web-1", "web-2"]})
    assert refused(lambda: make_plan(only, {"service": "nginx"}, "web", INVENTORY)) == [
        "web-3 is outside this runbook's targets (hosts web-1, web-2); a run may narrow its "
        "targets, never widen them"
    ]


def test_unknown_empty_and_too_many_hosts_are_refused() -> None:
    book = runbook()
    assert refused(lambda: make_plan(book, {"service": "nginx"}, "web-9,,cache", INVENTORY)) == [
        "'web-9' is neither an inventory host nor a group",
        "hosts= has an empty name between commas; remove the extra comma",
        "'cache' is neither an inventory host nor a group",
    ]
    assert refused(lambda: make_plan(book, {"service": "nginx"}, "", INVENTORY)) == [
        "hosts= is empty; give host names or a group, like hosts=web-1,web-2"
    ]
    assert refused(lambda: make_plan(book, {"service": "nginx"}, "web", INVENTORY)) == [
        "3 hosts selected; this runbook runs on at most 2 at once: narrow the run with "
        "hosts=NAME,NAME or a smaller group"
    ]
    empty = Inventory()
    assert refused(lambda: make_plan(book, {"service": "nginx"}, None, empty)) == [
        "no inventory host is in this runbook's targets (group web); add hosts to "
        "firebreak.yaml's inventory"
    ]


# -- the plan -----------------------------------------------------------------------------


def test_the_plan_holds_what_the_executor_and_the_approval_need() -> None:
    book = runbook(
        risk="high",
        allowed_roles=["commander", "sre"],
        concurrency=3,
        max_failures=2,
        steps=[
            {
                "id": "restart",
                "argv": ["sudo", "-n", "systemctl", "restart", "{{ service }}"],
                "timeout": "2m",
                "on_failure": "rollback",
            }
        ],
        rollback=[{"id": "start", "argv": ["sudo", "-n", "systemctl", "start", "{{ service }}"]}],
        output={"max_bytes": 1000, "redact": ["secret=\\S+"]},
    )
    plan = make_plan(book, {"service": "php-fpm"}, "web-1", INVENTORY)
    assert plan.runbook_id == "probe" and plan.title == "Probe" and plan.risk == "high"
    assert plan.needs_approval is True
    assert plan.allowed_roles == ("commander", "sre")
    assert plan.concurrency == 3 and plan.max_failures == 2
    assert plan.max_output_bytes == 1000 and plan.redact == ("secret=\\S+",)
    step = plan.steps[0]
    assert step.argv == ("sudo", "-n", "systemctl", "restart", "php-fpm")
    assert step.timeout == 120.0 and step.on_failure == "rollback"
    assert step.ok_exit_codes == frozenset({0})
    assert plan.rollback[0].argv == ("sudo", "-n", "systemctl", "start", "php-fpm")
    assert plan.rollback[0].timeout == 60.0

    assert (
        make_plan(
            runbook(risk="high", approval=False), {"service": "nginx"}, "web-1", INVENTORY
        ).needs_approval
        is False
    )
    assert (
        make_plan(
            runbook(risk="low", approval=True), {"service": "nginx"}, "web-1", INVENTORY
        ).needs_approval
        is True
    )


# -- inventory and runbooks: in firebreak.yaml --------------------------------------------


def test_inventory_and_runbooks_sections_load_with_their_defaults(tmp_path: Path) -> None:
    path = tmp_path / "firebreak.yaml"
    path.write_text(
        "people:\n  alice: {slack: U0ALICE}\n"
        "inventory:\n  hosts:\n    web-1: {address: '::1', user: ops}\n"
        "runbooks:\n  groups: {sre: [alice]}\n",
        encoding="utf-8",
    )
    config, found = load_file(path, required=True)
    assert found
    assert config.inventory.host("web-1") == Host(name="web-1", address="::1", port=22, user="ops")
    assert config.runbooks.groups == {"sre": frozenset({"alice"})}
    assert config.runbooks.approval_expires.total_seconds() == 15 * 60


def test_inventory_mistakes_name_their_line(tmp_path: Path) -> None:
    path = tmp_path / "firebreak.yaml"
    path.write_text(
        "inventory:\n"
        "  user: '-oops'\n"
        "  hosts:\n"
        "    'bad name': {address: 10.0.0.1}\n"
        "    web-1: {port: 22, groups: [web, web]}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_file(path, required=True)
    assert caught.value.problems == [
        f"{path}:2: inventory.user: '-oops' is not a login name; use letters, digits, '_', "
        "'.', '-' (not starting with '-' or '.')",
        f"{path}:3: inventory.hosts: 'bad name' is not a host name; use letters, digits, '.', "
        "'_', '-' (up to 63, starting with a letter or digit)",
    ]
    path.write_text(
        "inventory:\n  hosts:\n    web-1: {port: 22, groups: [web, web]}\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError) as caught:
        load_file(path, required=True)
    assert caught.value.problems == [
        f"{path}:3: inventory.hosts.web-1.address: Field required",
        f"{path}:3: inventory.hosts.web-1.groups: groups must not repeat",
    ]
