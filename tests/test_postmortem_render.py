"""Postmortem rendering: metrics on odd timelines, Markdown escaping, Slack text as names,
every timeline kind in Markdown, and templates that try to leave the sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from bot import timeline
from bot.db import Database
from bot.incidents import service
from bot.incidents.config import IncidentsSection
from bot.postmortem import context, metrics
from bot.postmortem.config import PostmortemSection, parse_due_after
from bot.postmortem.markdown import Md, Names, cell, escape, link, sentence_renderer
from bot.postmortem.templates import TemplateError, Templates, UnknownTemplate, template_problems
from bot.timeline import BOT, KINDS, TimelineEvent
from tests.conftest import PEOPLE
from tests.test_timeline_render import SAMPLES

START = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
POLICY = IncidentsSection()


def minutes(n: float) -> datetime:
    return START + timedelta(minutes=n)


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    database = Database(database_url)
    try:
        with database.session_scope() as session:
            yield session
    finally:
        database.dispose()


def declare(session: Session, by: str = "U0ALICE", title: str = "Checkout down") -> Any:
    return service.declare(
        session, title=title, declared_by=by, declare_key=f"k-{title}", policy=POLICY, now=START
    ).incident


def measured(session: Session, incident: Any, **section: Any) -> metrics.Metrics:
    statuses = PostmortemSection(**section).mitigated_statuses
    return metrics.compute(
        timeline.for_incident(session, incident.id),
        declared_at=incident.declared_at,
        mitigated_statuses=statuses,
    )


# -- metrics --------------------------------------------------------------------------


def test_still_open_and_untouched_has_no_durations(session: Session) -> None:
    numbers = measured(session, declare(session))
    assert numbers.time_to_acknowledge is None
    assert numbers.time_to_mitigate is None
    assert numbers.time_to_resolve is None
    assert metrics.format_duration(numbers.time_to_resolve) == "—"


def test_the_first_responder_action_after_declaring_acknowledges(session: Session) -> None:
    incident = declare(session)  # the declaration and its commander role do not count
    service.add_note(session, incident, "looking", actor="U0BOB", now=minutes(3))
    service.set_status(
        session, incident, "monitoring", actor="U0ALICE", policy=POLICY, now=minutes(9)
    )
    numbers = measured(session, incident)
    assert numbers.time_to_acknowledge == timedelta(minutes=3)
    assert numbers.acknowledged_by == "U0BOB"
    assert numbers.time_to_mitigate == timedelta(minutes=9)
    assert numbers.time_to_resolve is None  # still open


def test_mitigated_statuses_are_configurable(session: Session) -> None:
    incident = declare(session)
    for at, status in ((5, "identified"), (15, "monitoring")):
        service.set_status(
            session, incident, status, actor="U0ALICE", policy=POLICY, now=minutes(at)
        )
    assert measured(session, incident).time_to_mitigate == timedelta(minutes=5)
    only_monitoring = measured(session, incident, mitigated_statuses=["monitoring"])
    assert only_monitoring.time_to_mitigate == timedelta(minutes=15)


def test_never_acknowledged_and_resolved_by_monitoring(session: Session) -> None:
    incident = declare(session, by=BOT)
    service.resolve(session, incident, "alerts resolved", actor=BOT, now=minutes(12))
    numbers = measured(session, incident)
    assert numbers.time_to_acknowledge is None
    assert numbers.time_to_mitigate is None  # it went straight to resolved
    assert numbers.time_to_resolve == timedelta(minutes=12)


def test_resolved_before_acknowledgement_has_no_time_to_acknowledge(session: Session) -> None:
    incident = declare(session, by=BOT)
    service.resolve(session, incident, "false alarm", actor="U0BOB", now=minutes(4))
    service.add_note(session, incident, "it was a test alert", actor="U0BOB", now=minutes(6))
    numbers = measured(session, incident)
    assert numbers.time_to_acknowledge is None  # closing is not acknowledging; later is late
    assert numbers.time_to_resolve == timedelta(minutes=4)


def test_reopened_counts_to_the_last_resolution_and_is_open_while_reopened(
    session: Session,
) -> None:
    incident = declare(session)
    service.resolve(session, incident, "", actor="U0ALICE", now=minutes(10))
    service.set_status(
        session, incident, "investigating", actor="U0BOB", policy=POLICY, now=minutes(20)
    )
    reopened = measured(session, incident)
    assert reopened.time_to_resolve is None and reopened.reopened == 1
    assert reopened.time_to_acknowledge == timedelta(minutes=20)  # bob reopening is an action
    service.resolve(session, incident, "", actor="U0ALICE", now=minutes(40))
    assert measured(session, incident).time_to_resolve == timedelta(minutes=40)


def test_an_acknowledgement_recorded_before_the_declaration_counts_as_at_it() -> None:
    def fact(kind: str, at: datetime, actor: str = "U0BOB") -> TimelineEvent:
        return TimelineEvent(kind=kind, actor=actor, occurred_at=at, data={})

    numbers = metrics.compute(
        [fact("declared", START, BOT), fact("page_acknowledged", minutes(-2))],
        declared_at=START,
        mitigated_statuses=["identified"],
    )
    assert numbers.time_to_acknowledge == timedelta(0)
    assert metrics.compute([], declared_at=START, mitigated_statuses=[]).reopened == 0


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0 s"), (42, "42 s"), (303, "5 min 03 s"), (7500, "2 h 05 min"), (273_600, "3 d 4 h")],
)
def test_durations_read_in_two_units(seconds: int, shown: str) -> None:
    assert metrics.format_duration(timedelta(seconds=seconds)) == shown


def test_due_after_reads_working_days_days_and_hours() -> None:
    assert str(parse_due_after("5 working days")) == "5 working days"
    assert parse_due_after("1 Day").unit == "days"
    assert parse_due_after("48 hours").amount == 48
    with pytest.raises(ValueError, match="'5 weeks' is not a delay"):
        parse_due_after("5 weeks")


# -- Markdown -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("{{ 7*7 }}", "{{ 7\\*7 }}"),
        ("{% raw %}{% endraw %}", "{% raw %}{% endraw %}"),
        ("a | b\nc", "a \\| b<br>c"),
        ("<img src=x onerror=alert(1)>", "\\<img src=x onerror=alert(1)\\>"),
        ("[click](javascript:alert(1))", "\\[click\\](javascript:alert(1))"),
        ("# heading", "\\# heading"),
        ("- item", "\\- item"),
        ("1. item", "1\\. item"),
        ("`code` *b* _i_ ~s~ &amp;", "\\`code\\` \\*b\\* \\_i\\_ \\~s\\~ \\&amp;"),
        ("C:\\path", "C:\\\\path"),
    ],
)
def test_user_text_is_inert_markdown(text: str, shown: str) -> None:
    assert escape(text) == shown
    assert cell(text) == shown
    assert escape(escape(text)) == shown  # Markdown is never escaped twice


def test_links_are_http_only_and_cannot_break_out_of_their_parentheses() -> None:
    assert link("Graph", "https://g.example/x?a=(1)") == "[Graph](https://g.example/x?a=%281%29)"
    assert link("evil", "javascript:alert(1)") == "evil (javascript:alert(1))"
    assert link("a]b", "http://x.example/a<b>") == "[a\\]b](http://x.example/a%3Cb%3E)"
    assert link("spaced", "http://x.example/a b") == "spaced (http://x.example/a b)"


def test_slack_mentions_and_channels_read_as_names_and_unknown_ids_are_defanged() -> None:
    names = Names({person.slack: name for name, person in PEOPLE.items()}, {"C0INC1": "inc-1"})
    text = (
        "<@U0ALICE> and <@U0BOB|robert> asked <@U0ZED|zed> and <@U0NOBODY> in <#C0INC1> and "
        "<#C0OPS|ops> <!channel> <!subteam^S0OPS|@oncall> <https://evil.example|your bank>"
    )
    assert names.markdown(text) == (
        "@alice and @bob asked @zed and @U0NOBODY in \\#inc-1 and \\#ops @channel @oncall "
        "your bank (https://evil.example)"
    )


def kind_event(kind: str, **data: Any) -> TimelineEvent:
    facts = {key: SAMPLES.get(key, f"sample {key}") for key in KINDS[kind]}
    facts.update(data)
    return TimelineEvent(
        id=1,
        incident_id=7,
        page_id=3 if kind.startswith("page_") else None,
        kind=kind,
        actor="U0ALICE",
        occurred_at=START,
        data=facts,
    )


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_has_a_markdown_sentence_and_its_text_stays_data(kind: str) -> None:
    render = sentence_renderer(Names({"U0ALICE": "alice"}))
    plain = render(kind_event(kind))
    assert isinstance(plain, Md) and plain.strip()
    assert not plain.startswith(f"alice recorded {kind}")
    attack = "{{ 7*7 }} | <b>x</b>\n# h"
    sample = kind_event(kind).data
    hostile_data = {
        key: [attack] if isinstance(value, list) else attack if isinstance(value, str) else value
        for key, value in sample.items()
    }
    hostile = render(kind_event(kind, **hostile_data))
    assert "<b>" not in hostile and "\n" not in hostile
    assert hostile.replace("\\|", "").count("|") == 0


# -- templates ------------------------------------------------------------------------


def custom(tmp_path: Path, **files: str) -> Templates:
    for name, source in files.items():
        (tmp_path / f"{name}.md.j2").write_text(source, encoding="utf-8")
    return Templates.load(tmp_path)


@pytest.fixture
def variables(session: Session) -> dict[str, Any]:
    incident = declare(session, title="{{ 7*7 }} {% raw %} | {{ ''.__class__ }}")
    service.add_note(session, incident, "{% endraw %}{{ 6*7 }}", actor="U0BOB", now=minutes(2))
    built = context.build(
        session,
        incident.id,
        people=PEOPLE,
        severities=POLICY.severities,
        section=PostmortemSection(),
        now=minutes(30),
    )
    return built.variables()


def test_text_that_looks_like_a_template_is_shown_not_run(variables: dict[str, Any]) -> None:
    text = Templates.load().render("default", variables)
    assert text.startswith("# INC-1: {{ 7\\*7 }} {% raw %} \\| {{ ''.\\_\\_class\\_\\_ }}\n")
    assert "{% endraw %}{{ 6\\*7 }}" in text
    assert "49" not in text and "42" not in text and "<class" not in text


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("# x\n{{ ''.__class__.__mro__ }}", 2),
        ("{{ cycler.__init__.__globals__ }}", 1),
        ("a\nb\n{{ self.__init__ }}", 3),
        ("{{ joiner.__init__.__globals__['os'] }}", 1),
        ("{{ lipsum.__globals__ }}", 1),
        ("{{ incident.__class__.__subclasses__() }}", 1),
        ("{{ '{0.__class__}'.format(incident) }}", 1),
        ("{{ range.__globals__ }}", 1),
    ],
)
def test_sandbox_escapes_are_refused_naming_template_and_line(
    tmp_path: Path, variables: dict[str, Any], source: str, line: int
) -> None:
    templates = custom(tmp_path, escape=source)
    with pytest.raises(TemplateError) as refused:
        templates.render("escape", variables)
    message = str(refused.value)
    assert message.startswith(f"template 'escape' ({tmp_path / 'escape.md.j2'}:")
    assert "refused by the sandbox" in message or "unsafe" in message or "undefined" in message
    assert refused.value.line is not None and refused.value.line >= line
    assert "Traceback" not in message


def test_a_huge_loop_is_refused(tmp_path: Path, variables: dict[str, Any]) -> None:
    templates = custom(tmp_path, loop="{% for i in range(10**9) %}x{% endfor %}")
    with pytest.raises(TemplateError, match="line 1: OverflowError: Range too big"):
        templates.render("loop", variables)


def test_a_broken_template_is_named_with_its_line(
    tmp_path: Path, variables: dict[str, Any]
) -> None:
    templates = custom(tmp_path, broken="# ok\n\n{% if incident.title %}\nno end\n")
    with pytest.raises(TemplateError) as broken:
        templates.render("broken", variables)
    assert broken.value.template == "broken"
    assert broken.value.line == 4  # where the file ended with the `if` open
    assert "Unexpected end of template" in broken.value.problem
    assert [error.template for error in templates.check()] == ["broken"]
    assert template_problems(tmp_path) == [f"postmortem: {broken.value}"]


def test_an_undefined_name_is_an_error_not_an_empty_string(
    tmp_path: Path, variables: dict[str, Any]
) -> None:
    templates = custom(tmp_path, typo="{{ incident.titel }}")
    with pytest.raises(TemplateError, match=r"line 1: .*has no attribute 'titel'"):
        templates.render("typo", variables)


def test_templates_dir_overrides_and_adds(tmp_path: Path, variables: dict[str, Any]) -> None:
    templates = custom(tmp_path, default="Ours: {{ incident.reference }}", brief="{{ zone.name }}")
    assert templates.names == ["brief", "default", "executive"]
    assert templates.render("default", variables) == "Ours: INC-1"
    assert templates.render("brief", variables) == "UTC"
    with pytest.raises(UnknownTemplate, match="available: brief, default, executive"):
        templates.render("nope", variables)


def test_a_missing_templates_dir_is_reported(tmp_path: Path) -> None:
    problems = template_problems(tmp_path / "missing")
    assert problems == [
        f"postmortem.templates_dir: {tmp_path / 'missing'} is not a directory (relative paths "
        "start at the working directory)"
    ]
