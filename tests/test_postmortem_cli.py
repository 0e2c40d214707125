"""`firebreak postmortem` and `firebreak check` with templates: in-process through click's
runner and the real console script, against a real migrated database."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import yaml
from freezegun import freeze_time

from tests.test_cli import TOKENS, child_env, invoke, run_script
from tests.test_packaging import build_wheel, copy_sources
from tests.test_postmortem import GENERATED_AT, GOLDEN, config_data, record_incident


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "work"
    directory.mkdir()
    monkeypatch.chdir(directory)
    return directory


def write_config(directory: Path, **postmortem: str) -> Path:
    data = config_data()
    if postmortem:
        data["postmortem"] = postmortem
    path = directory / "firebreak.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.fixture
def recorded(database_url: str, workdir: Path) -> tuple[str, Path]:
    record_incident(database_url)
    return database_url, write_config(workdir)


@pytest.mark.parametrize("reference", ["INC-1", "inc-1", "1"])
def test_the_draft_goes_to_standard_output(recorded: tuple[str, Path], reference: str) -> None:
    database_url, config = recorded
    with freeze_time(GENERATED_AT):
        result = invoke(
            ["postmortem", reference], DATABASE_URL=database_url, FIREBREAK_CONFIG=str(config)
        )
    assert result.exit_code == 0, result.output
    assert result.stdout == (GOLDEN / "inc-1-utc.md").read_text(encoding="utf-8")


def test_output_file_and_template_option(recorded: tuple[str, Path], workdir: Path) -> None:
    database_url, _ = recorded
    config = write_config(workdir, timezone="America/New_York")
    target = workdir / "postmortems" / "INC-1.md"
    with freeze_time(GENERATED_AT):
        result = invoke(
            ["postmortem", "INC-1", "--template", "executive", "-o", str(target)],
            DATABASE_URL=database_url,
            FIREBREAK_CONFIG=str(config),
        )
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"Wrote {target}" in result.stderr
    golden = (GOLDEN / "inc-1-executive-new-york.md").read_text(encoding="utf-8")
    assert target.read_text(encoding="utf-8") == golden
    assert [path.name for path in target.parent.iterdir()] == ["INC-1.md"]  # no temporary left


def test_an_unknown_incident_is_exit_2_with_a_clear_error(recorded: tuple[str, Path]) -> None:
    database_url, config = recorded
    result = invoke(
        ["postmortem", "INC-99"], DATABASE_URL=database_url, FIREBREAK_CONFIG=str(config)
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: there is no incident INC-99;")
    assert result.stdout == ""


@pytest.mark.parametrize("reference", ["INC-x", "P-1", "0", "INC-99999999999"])
def test_a_reference_that_is_no_incident_id_is_refused(
    recorded: tuple[str, Path], reference: str
) -> None:
    database_url, config = recorded
    result = invoke(
        ["postmortem", reference], DATABASE_URL=database_url, FIREBREAK_CONFIG=str(config)
    )
    assert result.exit_code == 2
    assert "is not an incident; give its ID like INC-7, inc-7 or 7" in result.stderr


def test_an_unknown_template_lists_the_available_ones(
    recorded: tuple[str, Path], workdir: Path
) -> None:
    database_url, _ = recorded
    templates = workdir / "templates"
    templates.mkdir()
    (templates / "weekly.md.j2").write_text("{{ incident.reference }}\n", encoding="utf-8")
    config = write_config(workdir, templates_dir=str(templates))
    result = invoke(
        ["postmortem", "1", "--template", "nope"],
        DATABASE_URL=database_url,
        FIREBREAK_CONFIG=str(config),
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "error: template 'nope': no such template; available: default, executive, weekly\n"
    )
    ours = invoke(
        ["postmortem", "1", "--template", "weekly"],
        DATABASE_URL=database_url,
        FIREBREAK_CONFIG=str(config),
    )
    assert (ours.exit_code, ours.stdout) == (0, "INC-1\n")


def test_a_broken_template_names_template_line_and_problem_and_writes_nothing(
    recorded: tuple[str, Path], workdir: Path
) -> None:
    database_url, _ = recorded
    templates = workdir / "templates"
    templates.mkdir()
    (templates / "default.md.j2").write_text(
        "# {{ incident.title }}\n{{ ''.__class__.__mro__ }}\n", encoding="utf-8"
    )
    config = write_config(workdir, templates_dir=str(templates))
    target = workdir / "out.md"
    result = invoke(
        ["postmortem", "1", "-o", str(target)],
        DATABASE_URL=database_url,
        FIREBREAK_CONFIG=str(config),
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: template 'default' ({templates / 'default.md.j2'}:2), line 2: refused by the sandbox"
    )
    assert not target.exists()


def test_the_console_script_reports_without_a_traceback(
    recorded: tuple[str, Path], workdir: Path
) -> None:
    database_url, config = recorded
    env = child_env(DATABASE_URL=database_url, FIREBREAK_CONFIG=str(config))
    done = run_script(["postmortem", "inc-42"], env, workdir)
    assert done.returncode == 2
    assert "error: there is no incident INC-42" in done.stderr
    assert "Traceback" not in done.stderr
    shown = run_script(["postmortem", "inc-1", "--template", "executive"], env, workdir)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("# INC-1: HighErrorRate on checkout (executive summary)\n")


def test_check_compiles_every_template(workdir: Path) -> None:
    templates = workdir / "templates"
    templates.mkdir()
    (templates / "good.md.j2").write_text("{{ incident.title }}\n", encoding="utf-8")
    config = write_config(workdir, templates_dir=str(templates))
    passed = invoke(["check"], FIREBREAK_CONFIG=str(config), **TOKENS)
    assert passed.exit_code == 0, passed.output
    (templates / "broken.md.j2").write_text("line 1\n{% for x in %}\n", encoding="utf-8")
    failed = invoke(["check"], FIREBREAK_CONFIG=str(config), **TOKENS)
    assert failed.exit_code == 2
    assert (
        f"error: postmortem: template 'broken' ({templates / 'broken.md.j2'}:2), line 2: "
        "Expected an expression" in failed.stderr
    )
    assert "good" not in failed.stderr


def test_check_refuses_bad_postmortem_config_naming_line_and_key(workdir: Path) -> None:
    config = workdir / "firebreak.yaml"
    config.write_text(
        "postmortem:\n  timezone: Mars/Olympus\n  mitigated_statuses: [fixed]\n  due_after: soon\n",
        encoding="utf-8",
    )
    result = invoke(["check"], FIREBREAK_CONFIG=str(config), **TOKENS)
    assert result.exit_code == 2
    assert (
        f"error: {config}:2: postmortem.timezone: 'Mars/Olympus' is not an IANA time zone"
        in result.stderr
    )
    assert f"error: {config}:4: postmortem.due_after: 'soon' is not a delay" in result.stderr
    config.write_text("postmortem:\n  mitigated_statuses: [identified, fixed]\n", encoding="utf-8")
    result = invoke(["check"], FIREBREAK_CONFIG=str(config), **TOKENS)
    assert result.exit_code == 2
    assert (
        f"error: {config}:2: postmortem.mitigated_statuses.1: 'fixed' is not in incidents.statuses "
        "(investigating, identified, monitoring)" in result.stderr
    )


def test_the_templates_ship_in_the_wheel(tmp_path: Path) -> None:
    out = tmp_path / "wheel"
    out.mkdir()
    wheel = build_wheel(copy_sources(tmp_path / "src"), out)
    shipped = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "bot/postmortem/templates/default.md.j2",
        "bot/postmortem/templates/executive.md.j2",
    } <= shipped
