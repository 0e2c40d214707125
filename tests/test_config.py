"""Settings from the environment and the YAML file: defaults, and errors a person can act on."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import config_file
from bot.config import ConfigError, load_file, load_settings
from bot.incidents.config import DEFAULT_ROLES, DEFAULT_SEVERITIES, DEFAULT_STATUSES

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = PROJECT_ROOT / "examples" / "firebreak.yaml"


# Not a speed target (the suite asserts no speed; benchmarks/ measures it): a bound that
# only a hang, an expanded alias bomb or a parser gone quadratic would cross, far above
# what a loaded CI machine needs for these files.
HANG = 60.0  # seconds


def write(tmp_path: Path, text: str, name: str = "firebreak.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_file(path, required=True)
    assert caught.value.problems, "a ConfigError must list at least one problem"
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def line_of(path: Path, needle: str) -> int:
    """The 1-based line where `needle` first appears in the file."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


# -- defaults -----------------------------------------------------------------------------


def test_embedded_defaults_when_no_file_and_no_firebreak_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no firebreak.yaml here
    settings = load_settings({})

    assert settings.config_found is False
    assert settings.config_path == Path("firebreak.yaml")
    assert settings.env.database_url == "sqlite:///firebreak.db"
    assert settings.env.slack_api_url == "https://slack.com/api/"
    assert settings.env.slack_bot_token is None
    assert settings.env.slack_signing_secret is None
    incidents = settings.file.incidents
    assert incidents.channel_prefix == "inc"
    assert incidents.severities == DEFAULT_SEVERITIES
    assert incidents.default_severity in incidents.severities
    assert incidents.statuses == DEFAULT_STATUSES
    assert incidents.initial_status == DEFAULT_STATUSES[0]
    assert incidents.roles == DEFAULT_ROLES
    assert settings.file.slack.announce_channel is None
    assert settings.file.people == {}


def test_firebreak_yaml_in_the_working_directory_is_read_without_firebreak_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "incidents:\n  channel_prefix: outage\n")
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert settings.config_found is True
    assert settings.file.incidents.channel_prefix == "outage"


def test_environment_values_are_read_and_the_api_url_gains_a_slash(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    settings = load_settings(
        {
            "FIREBREAK_CONFIG": str(path),
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/firebreak",
            "SLACK_BOT_TOKEN": "xoxb-1-2-abc",
            "SLACK_SIGNING_SECRET": "s3cret",
            "SLACK_API_URL": "http://127.0.0.1:8080/api",
            "UNRELATED": "ignored",
        }
    )
    assert settings.config_found is True
    assert settings.config_path == path
    assert settings.env.database_url == "postgresql://postgres@127.0.0.1:5432/firebreak"
    assert settings.env.slack_api_url == "http://127.0.0.1:8080/api/"
    assert settings.env.slack_bot_token is not None
    assert settings.env.slack_bot_token.get_secret_value() == "xoxb-1-2-abc"
    assert "xoxb-1-2-abc" not in repr(settings.env)  # secrets stay out of logs
    # An empty file means the embedded defaults.
    assert settings.file.incidents.statuses == DEFAULT_STATUSES


def test_the_example_configuration_loads_cleanly() -> None:
    config, found = load_file(EXAMPLE, required=True)
    assert found is True
    assert config.slack.announce_channel == "C0INCIDENTS"
    assert config.incidents.channel_prefix == "inc"
    assert config.incidents.default_severity in config.incidents.severities
    assert all(config.incidents.severities.values()), "every severity has a description"
    assert config.incidents.statuses[-1] == "resolved"
    assert "commander" in config.incidents.roles
    assert set(config.people) == {"alice", "bob", "carol"}
    alice = config.person_by_slack_id("U0ALICE")
    assert alice is not None
    assert (alice.email, alice.timezone) == ("alice@example.com", "Europe/Berlin")
    assert config.person_by_slack_id("U0NOBODY") is None


def test_the_example_configuration_through_firebreak_config() -> None:
    settings = load_settings({"FIREBREAK_CONFIG": str(EXAMPLE)})
    assert settings.config_found is True
    assert settings.file.people["bob"].slack == "U0BOB"


# -- the file -----------------------------------------------------------------------------


def test_firebreak_config_pointing_at_a_missing_file_is_an_error_naming_it(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nowhere" / "firebreak.yaml"
    with pytest.raises(ConfigError) as caught:
        load_settings({"FIREBREAK_CONFIG": str(missing)})
    [problem] = caught.value.problems
    assert problem.startswith(f"{missing}:")
    assert "no such file" in problem


def test_a_missing_file_that_is_not_required_means_defaults(tmp_path: Path) -> None:
    config, found = load_file(tmp_path / "absent.yaml", required=False)
    assert found is False
    assert config.incidents.severities == DEFAULT_SEVERITIES


def test_invalid_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "slack:\n  announce_channel: C0INCIDENTS\nincidents:\n  channel_prefix: [inc\n"
        "  default_severity: sev2\n",
    )
    [problem] = problems_of(path)
    match = re.match(rf"^{re.escape(str(path))}:(\d+): not valid YAML", problem)
    assert match, problem
    # The parser notices the unclosed flow sequence on or after the line that opened it.
    assert int(match.group(1)) >= line_of(path, "channel_prefix")


def test_invalid_yaml_from_a_tab_indent_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "incidents:\n  channel_prefix: inc\n\tdefault_severity: sev2\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:{line_of(path, 'default_severity')}: not valid YAML")


def test_top_level_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "- slack\n- incidents\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:")
    assert "mapping" in problem


def test_a_misspelt_key_names_file_line_and_dotted_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "slack:\n"
        "  announce_channel: C0INCIDENTS\n"
        "incidents:\n"
        "  default_severity: sev2\n"
        "  channel_prefx: inc\n",
    )
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:5: incidents.channel_prefx: unknown key")


def test_a_misspelt_section_is_reported_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "slack: {}\npeeple:\n  alice:\n    slack: U0ALICE\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:2: peeple: unknown key")


def test_announce_channel_given_as_a_name_asks_for_the_id(tmp_path: Path) -> None:
    path = write(tmp_path, "# where incidents go\nslack:\n  announce_channel: '#incidents'\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:3: slack.announce_channel:")
    assert "'#incidents'" in problem
    assert "channel ID" in problem


def test_a_default_severity_that_is_not_a_severity(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "incidents:\n"
        "  severities:\n"
        "    sev1: Critical\n"
        "    sev2: Major\n"
        "  default_severity: sev9\n",
    )
    [problem] = problems_of(path)
    # The module's documented contract: the line of the key itself and its dotted path.
    assert problem.startswith(f"{path}:5: incidents.default_severity:"), problem
    assert "'sev9' is not a severity" in problem
    assert "sev1, sev2" in problem


def test_own_severities_without_the_default_one_need_a_default_severity(tmp_path: Path) -> None:
    path = write(tmp_path, "incidents:\n  severities:\n    p1: Critical\n    p2: Major\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:1: incidents.default_severity:"), problem
    assert "is not a severity; choose one of p1, p2" in problem


def test_statuses_without_resolved_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "incidents:\n  statuses:\n    - investigating\n    - monitoring\n    - closed\n",
    )
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:2: incidents.statuses:"), problem
    assert "'resolved'" in problem


def test_resolved_cannot_be_the_initial_status(tmp_path: Path) -> None:
    path = write(tmp_path, "incidents:\n  statuses: [resolved, investigating]\n")
    [problem] = problems_of(path)
    assert "'resolved'" in problem and "first" in problem


def test_repeated_and_badly_spelt_status_names(tmp_path: Path) -> None:
    path = write(tmp_path, "incidents:\n  roles: [commander, Comms Lead]\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:2: incidents.roles:")
    assert "'Comms Lead'" in problem


def test_a_person_with_a_bad_slack_id(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "people:\n  alice:\n    slack: alice.smith\n    email: alice@example.com\n",
    )
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:3: people.alice.slack:")
    assert "'alice.smith' is not a Slack user ID" in problem


def test_a_person_with_a_bad_timezone_names_dotted_key_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "people:\n"
        "  alice:\n"
        "    slack: U0ALICE\n"
        "    timezone: Europe/Berlin\n"
        "  bob:\n"
        "    slack: U0BOB\n"
        "    timezone: Mars/Olympus_Mons\n",
    )
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:7: people.bob.timezone:")
    assert "'Mars/Olympus_Mons' is not an IANA time zone" in problem


def test_a_person_with_a_bad_email(tmp_path: Path) -> None:
    path = write(tmp_path, "people:\n  alice:\n    slack: U0ALICE\n    email: alice at example\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:4: people.alice.email:")
    assert "not an email address" in problem


def test_a_person_without_a_slack_id(tmp_path: Path) -> None:
    path = write(tmp_path, "people:\n  alice:\n    email: alice@example.com\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:2: people.alice.slack:")


def test_several_problems_are_reported_together(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "slack:\n"
        "  announce_channel: incidents\n"
        "incidents:\n"
        "  channel_prefx: inc\n"
        "people:\n"
        "  alice:\n"
        "    slack: U0ALICE\n"
        "    timezone: Berlin/Europe\n"
        "  bob:\n"
        "    slack: bob\n",
    )
    problems = problems_of(path)
    assert len(problems) == 4, problems
    wheres = {problem.split(": ", 2)[1]: problem.split(": ", 1)[0] for problem in problems}
    assert wheres == {
        "slack.announce_channel": f"{path}:2",
        "incidents.channel_prefx": f"{path}:4",
        "people.alice.timezone": f"{path}:8",
        "people.bob.slack": f"{path}:10",
    }


# -- the environment ----------------------------------------------------------------------


def test_a_user_token_is_refused_as_slack_bot_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"FIREBREAK_CONFIG": str(EXAMPLE), "SLACK_BOT_TOKEN": "xoxp-123-456"})
    [problem] = caught.value.problems
    assert problem.startswith("environment: SLACK_BOT_TOKEN:")
    assert "xoxb-" in problem
    assert "xoxp-123-456" not in problem  # never echo a secret


def test_slack_api_url_must_be_http(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"FIREBREAK_CONFIG": str(EXAMPLE), "SLACK_API_URL": "ftp://slack.com/api"})
    [problem] = caught.value.problems
    assert problem.startswith("environment: SLACK_API_URL:")
    assert "'ftp://slack.com/api'" in problem


def test_several_environment_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"SLACK_BOT_TOKEN": "token", "SLACK_API_URL": "slack.com/api"})
    named = sorted(problem.split(":")[1].strip() for problem in caught.value.problems)
    assert named == ["SLACK_API_URL", "SLACK_BOT_TOKEN"]


# -- files that must fail cleanly: file, line and key, never a traceback -------------------

LAYER = "    - {name: l, users: [alice], rotation: weekly, handoff: mon 09:00, start: %s}\n"
SCHEDULE = (
    "people:\n  alice: {slack: U0ALICE}\nschedules:\n  primary:\n    timezone: UTC\n    layers:\n"
)
DEEP = "paging: " + "[" * 10_000 + "]" * 10_000 + "\n"


def laughs(levels: int) -> str:
    """A "billion laughs" document: each level is nine aliases of the one before."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]\n"]
    for level in range(1, levels):
        aliases = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"l{level}: &l{level} [{aliases}]\n")
    return "".join(lines)


# (file content, line, dotted key, a phrase of the problem)
BROKEN: dict[str, tuple[str | bytes, int, str, str]] = {
    "duplicate person": (
        "people:\n  alice: {slack: U0A}\n  alice: {slack: U0B}\n",
        3,
        "people.alice",
        "given twice (first at line 2)",
    ),
    "duplicate section": ("incidents: {}\nslack: {}\nincidents: {}\n", 3, "incidents", "twice"),
    "duplicate in a flow mapping": ("paging: {wait: 5m, wait: 10m}\n", 1, "paging.wait", "twice"),
    "duplicate, one quoted": ("slack: {}\n'slack': {}\n", 2, "slack", "twice"),
    "duplicate with CRLF": (
        "paging:\r\n  repeat: 1\r\n  repeat: 2\r\n",
        3,
        "paging.repeat",
        "twice",
    ),
    "a number as a key": ("people:\n  1: {slack: U0A}\n", 2, "people.1", "read as a number"),
    "null as a key": ("people:\n  null: {slack: U0A}\n", 2, "people.null", "read as null"),
    "yes as a key": (
        "incidents:\n  severities:\n    yes: Critical\n",
        3,
        "incidents.severities.yes",
        "read as true/false",
    ),
    "a list as a key": ("people:\n  ? [a, b]\n  : {slack: U0A}\n", 2, "people", "not a list"),
    "a mapping as a key": ("slack:\n  {a: 1}: x\n", 2, "slack", "not a mapping"),
    "a list at the top": ("- slack\n- people\n", 1, "(top level)", "must be a mapping"),
    "a scalar at the top": ("just words\n", 1, "(top level)", "must be a mapping"),
    "10,000 levels deep": (DEEP, 1, "paging" + ".0" * 31, "nested deeper than 32 levels"),
    "40 block levels": (
        "".join("  " * level + f"k{level}:\n" for level in range(40)),
        33,
        ".".join(f"k{level}" for level in range(32)),
        "nested deeper than 32 levels",
    ),
    "billion laughs": (laughs(7), 6, "l5.", "more than 200,000 values"),
    "an alias inside itself": (
        "paging: &a [*a]\n",
        1,
        "paging.0",
        "refers to a value that contains it",
    ),
    "an unknown alias": ("paging:\n  wait: *nothing\n", 2, "paging.wait", "no anchor (&nothing)"),
    "a custom tag": (
        "paging: !custom {wait: 5m}\n",
        1,
        "paging",
        "the tag !custom is not supported",
    ),
    "a NUL byte": (
        "people:\n  alice: {slack: U0\x00A}\n",
        2,
        "people.alice.slack",
        "character U+0000 is not allowed",
    ),
    "latin-1 bytes": (
        "people:\n  alice:\n    slack: U0A\n    email: jos\xe9@example.com\n".encode("latin-1"),
        4,
        "people.alice.email",
        "byte 0xe9 at offset 46 is not UTF-8",
    ),
    "latin-1 after a UTF-8 BOM": (
        b"\xef\xbb\xbfpeople:\n  alice: {slack: U0\xe9}\n",
        2,
        "people.alice.slack",
        "byte 0xe9 at offset 30 is not UTF-8",  # counted in the file, BOM included
    ),
    "an impossible date": (
        SCHEDULE + LAYER % "2024-13-01",
        7,
        "schedules.primary.layers.0.start",
        "is not a date: month must be in 1..12",
    ),
    "start 9999-12-31": (
        SCHEDULE + LAYER % "9999-12-31",
        7,
        "schedules.primary.layers.0.start",
        "9999-12-31 is out of range; use a date from 2000-01-01 to 2099-12-31",
    ),
    "start 1999-12-31": (
        SCHEDULE + LAYER % "1999-12-31",
        7,
        "schedules.primary.layers.0.start",
        "out of range",
    ),
    "an override ending in 2100": (
        SCHEDULE + LAYER % "2024-01-01" + "    overrides:\n"
        "    - {user: alice, start: 2099-12-31 10:00, end: 2100-01-01T00:30:00+01:00}\n",
        9,
        "schedules.primary.overrides.0.end",
        "out of range",
    ),
    "a wait of 99999999999 weeks": (
        "paging:\n  wait: 99999999999w\n",
        2,
        "paging.wait",
        "'99999999999w' is longer than a year; the limit is 365d",
    ),
    "a wait of 366 days": ("paging:\n  wait: 366d\n", 2, "paging.wait", "longer than a year"),
    "a 53-week webhook timeout": (
        "notifiers:\n  webhook: {url: 'https://hooks.example.com/x', timeout: 53w}\n",
        2,
        "notifiers.webhook.timeout",
        "longer than a year",
    ),
    "a rotation every 400 days": (
        SCHEDULE
        + LAYER.replace("weekly", "{every: 400d}").replace("mon 09:00", "09:00") % "2024-01-01",
        7,
        "schedules.primary.layers.0.rotation",
        "longer than a year",
    ),
    "an hourly rotation of 10^20 hours": (
        SCHEDULE
        + LAYER.replace("weekly", "'hourly:100000000000000000000'").replace("mon 09:00", "09:00")
        % "2024-01-01",
        7,
        "schedules.primary.layers.0.rotation",
        "longer than a year",
    ),
    "a 5,000-digit number": (
        "paging:\n  repeat: " + "9" * 5000 + "\n",
        2,
        "paging.repeat",
        "too many digits",
    ),
    "two people, one Slack ID": (
        "people:\n  alice: {slack: U0SAME}\n  bob: {slack: U0SAME}\n",
        3,
        "people.bob.slack",
        "'U0SAME' is already the Slack ID of 'alice'",
    ),
}


@pytest.fixture(params=["libyaml", "pure-python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every case runs on both parsers: libyaml when installed, PyYAML's own otherwise."""
    if request.param == "libyaml":
        if not yaml.__with_libyaml__:
            if os.environ.get("CI"):  # CI installs PyYAML's wheel, which has libyaml
                pytest.fail("PyYAML without libyaml in CI: the libyaml parser goes untested")
            pytest.skip("PyYAML without libyaml")
        monkeypatch.setattr(config_file, "_Loader", yaml.CSafeLoader)
    else:
        monkeypatch.setattr(config_file, "_Loader", yaml.SafeLoader)
    return str(request.param)


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_file_is_one_clean_error_at_file_line_and_key(
    case: str, parser: str, tmp_path: Path
) -> None:
    content, line, key, phrase = BROKEN[case]
    path = tmp_path / "firebreak.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8"))
    started = time.perf_counter()
    problems = problems_of(path)
    assert time.perf_counter() - started < HANG
    matching = [p for p in problems if p.startswith(f"{path}:{line}: {key}")]
    assert matching, problems
    assert phrase in matching[0], matching[0]
    assert all("Traceback" not in problem for problem in problems)


def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    path = write(tmp_path, laughs(20))  # 9^20 values once expanded: counted, never built
    started = time.perf_counter()
    [problem] = problems_of(path)
    assert time.perf_counter() - started < HANG
    assert "more than 200,000 values (counting every alias expansion)" in problem


def test_a_utf16_file_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "firebreak.yaml"
    path.write_bytes("slack: {}\n".encode("utf-16"))
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:1: the file is UTF-16")


def test_a_tab_indent_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, "paging:\n\trepeat: 1\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:2: not valid YAML")
    assert "tab" in problem


def test_a_second_document_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "slack: {}\n---\nslack: {}\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:2: a second YAML document")


def test_every_duplicate_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "paging:\n  wait: 5m\n  wait: 6m\nslack: {}\nslack: {}\n")
    problems = problems_of(path)
    assert [problem.split(": ")[0:2] for problem in problems] == [
        [f"{path}:3", "paging.wait"],
        [f"{path}:5", "slack"],
    ]


def test_a_directory_is_refused(tmp_path: Path) -> None:
    [problem] = problems_of(tmp_path)
    assert problem.startswith(f"{tmp_path}: is a directory")


def test_a_device_or_a_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    [problem] = problems_of(Path(os.devnull))
    assert "not a regular file" in problem
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "firebreak.yaml"
        os.mkfifo(fifo)
        [problem] = problems_of(fifo)  # opening a FIFO with no writer would block
        assert problem == f"{fifo}: is not a regular file (a device, pipe or socket)"


def test_a_file_over_5_mib_is_refused_quickly_without_being_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "firebreak.yaml"
    path.write_bytes(b"# " + b"x" * (6 * 1024 * 1024) + b"\n")

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a file over the limit must not be opened")

    monkeypatch.setattr(os, "open", never)
    started = time.perf_counter()
    [problem] = problems_of(path)
    assert time.perf_counter() - started < 0.5
    assert problem == (
        f"{path}: is 6,291,459 bytes; a configuration may be at most 5 MiB (5,242,880 bytes)"
    )


def test_a_huge_sparse_file_is_refused_instantly(tmp_path: Path) -> None:
    path = tmp_path / "firebreak.yaml"
    with path.open("wb") as handle:
        handle.truncate(8 * 1024**3)  # 8 GiB of holes: reading it would take minutes
    started = time.perf_counter()
    [problem] = problems_of(path)
    assert time.perf_counter() - started < 0.5
    assert "a configuration may be at most 5 MiB" in problem


def test_a_big_file_of_many_people_fails_cleanly(tmp_path: Path) -> None:
    lines = []
    size = number = 0
    while size < 4_900_000:
        lines.append(f"  p{number}: {{slack: U{number:08d}, email: p{number}@example.com}}\n")
        size += len(lines[-1])
        number += 1
    path = write(tmp_path, "people:\n" + "".join(lines))
    started = time.perf_counter()
    [problem] = problems_of(path)
    assert time.perf_counter() - started < HANG
    assert "more than 200,000 values" in problem


def test_a_big_file_just_under_the_limits_loads(tmp_path: Path) -> None:
    people = "".join(
        f"  p{number}: {{slack: U{number:08d}, email: p{number}@example.com, "
        "timezone: Europe/Berlin}\n"
        for number in range(20_000)
    )
    notes = "# " + "n" * 100 + "\n"
    text = "people:\n" + people
    text += notes * ((5_000_000 - len(text)) // len(notes))
    path = write(tmp_path, text)
    assert 4_900_000 < path.stat().st_size <= config_file.MAX_BYTES
    started = time.perf_counter()
    config, found = load_file(path, required=True)
    assert time.perf_counter() - started < HANG
    assert found and len(config.people) == 20_000


def test_thousands_of_mistakes_are_listed_a_hundred_at_a_time(tmp_path: Path) -> None:
    people = "".join(f"  p{number}: {{slack: U{number:05d}}}\n" for number in range(3000))
    users = ", ".join(f"nobody{number}" for number in range(3000))
    layer = f"    - {{name: l, users: [{users}], rotation: daily, handoff: '09:00', start: 2024-01-01}}\n"
    path = write(tmp_path, SCHEDULE.replace("people:\n", "people:\n" + people) + layer)
    problems = problems_of(path)
    assert len(problems) == 101
    assert problems[-1] == f"{path}: ... and 2900 more problems; fix these first"
    assert problems[0] == (
        f"{path}:3007: schedules.primary.layers.0.users.0: 'nobody0' is not in people: "
        "(p0, p1, p2, p3, p4, p5, p6, p7, p8, p9 and 2991 more)"
    )


# -- files that load ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "# nothing but a comment\n",
        "---\n",
        "\ufeffpaging: {repeat: 1}\n",
        "paging: {repeat: 1}\r\n",
    ],
    ids=["empty", "comment", "document marker", "UTF-8 BOM", "CRLF"],
)
def test_empty_files_a_bom_and_crlf_load(text: str, tmp_path: Path) -> None:
    path = tmp_path / "firebreak.yaml"
    path.write_bytes(text.encode("utf-8"))
    _, found = load_file(path, required=True)
    assert found is True


def test_anchors_aliases_and_merges_still_work(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "people:\n"
        "  alice: &person {slack: U0ALICE, timezone: Europe/Berlin}\n"
        "  bob:\n"
        "    <<: *person\n"
        "    slack: U0BOB\n"
        "schedules:\n"
        "  primary:\n"
        "    timezone: UTC\n"
        "    layers:\n"
        "      - {name: a, users: &team [alice, bob], rotation: weekly, handoff: mon 09:00,"
        " start: 2024-01-01}\n"
        "      - {name: b, users: *team, rotation: daily, handoff: '09:00', start: 2099-12-31}\n",
    )
    config, _ = load_file(path, required=True)
    assert config.people["bob"].slack == "U0BOB"
    assert config.people["bob"].timezone == "Europe/Berlin"
    assert config.schedules["primary"].layers[1].users == ["alice", "bob"]


def test_an_error_in_a_merged_mapping_names_the_key_that_counts(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "people:\n  alice: &person {slack: U0ALICE}\n  bob:\n    <<: *person\n    slack: bob\n",
    )
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:5: people.bob.slack: 'bob' is not a Slack user ID")


def test_a_time_zone_that_names_a_directory_of_zones(tmp_path: Path) -> None:
    path = write(tmp_path, "people:\n  alice: {slack: U0ALICE, timezone: Europe}\n")
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:2: people.alice.timezone:")


# -- any file at all: a configuration or a ConfigError ------------------------------------


def outcome_of(path: Path) -> str:
    """'loaded' or 'refused'; anything else escapes and fails the property."""
    try:
        load_file(path, required=True)
    except ConfigError as error:
        assert error.problems
        assert all(isinstance(problem, str) and problem for problem in error.problems)
        return "refused"
    return "loaded"


FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@FUZZ
@given(content=st.binary(max_size=400))
def test_any_bytes_load_or_are_refused(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(content)
    outcome_of(path)


@FUZZ
@given(content=st.text(max_size=400))
def test_any_text_loads_or_is_refused(content: str, tmp_path: Path) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(content.encode("utf-8", "surrogatepass"))
    outcome_of(path)


_EXAMPLE_LINES = EXAMPLE.read_text(encoding="utf-8").splitlines()
_VALUE_LINES = [
    number for number, line in enumerate(_EXAMPLE_LINES) if re.match(r"^\s*(- )?[\w<]+: \S", line)
]
_VALUES = [
    "U0ALICE", "C0INC", "UTC", "weekly", "daily", "hourly:99999999999", "every: 12h",
    "mon 09:00", "2024-01-01", "9999-12-31", "2024-13-01", "1999-01-01T00:00:00+01:00",
    "5m", "99999999999w", "366d", "0s", "[alice, bob]", "[user:alice, schedule:nope]", "{}",
    "[]", "&a [1]", "*a", "*nope", "!!set {a}", "!!binary aGk=", "!!bool x", "1e400", "-1",
    "true", "null", "''", "'\\0'", "|\n  text", "mon-fri 09:00-17:00", "http://x", "=",
    "!custom x", "{every: 400d}", "9" * 40, "[" * 40, "{a: 1, a: 2}",
]  # fmt: skip


def _mutated(changes: dict[int, str]) -> str:
    lines = list(_EXAMPLE_LINES)
    for number, value in changes.items():
        lines[number] = lines[number].split(": ", 1)[0] + ": " + value
    return "\n".join(lines) + "\n"


@FUZZ
@given(
    content=st.dictionaries(
        st.sampled_from(_VALUE_LINES),
        st.one_of(st.sampled_from(_VALUES), st.text(max_size=8)),
        max_size=4,
    ).map(_mutated)
)
def test_the_example_with_any_values_changed_loads_or_is_refused(
    content: str, tmp_path: Path
) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(content.encode("utf-8", "surrogatepass"))
    outcome_of(path)
