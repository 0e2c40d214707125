"""Settings from the environment and the YAML file: defaults, and errors a person can act on."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.config import (
    DEFAULT_ROLES,
    DEFAULT_SEVERITIES,
    DEFAULT_STATUSES,
    ConfigError,
    load_file,
    load_settings,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = PROJECT_ROOT / "examples" / "firebreak.yaml"


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
