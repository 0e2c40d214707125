"""Rotation maths: DST-correct turns, restrictions, layers, overrides, and their invariants."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.oncall.configuration import Schedule
from bot.oncall.overrides import configured
from bot.oncall.rotation import (
    OverrideSpan,
    Shift,
    final_shifts,
    layer_shifts,
    shift_at,
    shifts_around,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
HOUR = timedelta(hours=1)


def schedule(zone: str, *layers: dict[str, Any], overrides: list[Any] | None = None) -> Schedule:
    return Schedule.model_validate(
        {"timezone": zone, "layers": list(layers), "overrides": overrides or []}
    )


def layer(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "weekly",
        "users": ["alice", "bob", "carol"],
        "rotation": "weekly",
        "handoff": "mon 09:00",
        "start": "2026-01-05",
    }
    return base | fields


def at(zone: ZoneInfo, year: int, month: int, day: int, hour: int = 0) -> datetime:
    """A wall-clock time in `zone`, as an aware UTC datetime."""
    return datetime(year, month, day, hour, tzinfo=zone).astimezone(UTC)


def local(shift: Shift, zone: ZoneInfo) -> tuple[str, str]:
    return (
        shift.start.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z"),
        shift.end.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z"),
    )


def holder(shifts: list[Shift], moment: datetime) -> Shift | None:
    return next((s for s in shifts if s.contains(moment)), None)


# -- weekly across daylight saving ---------------------------------------------------------


def test_weekly_monday_handoff_stays_at_0900_berlin_across_spring_forward() -> None:
    primary = schedule("Europe/Berlin", layer())
    shifts = final_shifts(primary, at(BERLIN, 2026, 3, 20), at(BERLIN, 2026, 4, 8))
    assert [local(s, BERLIN) for s in shifts] == [
        ("Fri 2026-03-20 00:00 CET", "Mon 2026-03-23 09:00 CET"),
        ("Mon 2026-03-23 09:00 CET", "Mon 2026-03-30 09:00 CEST"),
        ("Mon 2026-03-30 09:00 CEST", "Mon 2026-04-06 09:00 CEST"),
        ("Mon 2026-04-06 09:00 CEST", "Wed 2026-04-08 00:00 CEST"),
    ]
    assert [s.length for s in shifts[1:3]] == [167 * HOUR, 168 * HOUR]
    # 2026-03-16 is turn 10 after the first Monday (2026-01-05, alice): 10 % 3 -> bob
    assert [s.person for s in shifts] == ["bob", "carol", "alice", "bob"]


def test_weekly_monday_handoff_stays_at_0900_berlin_across_fall_back() -> None:
    primary = schedule("Europe/Berlin", layer())
    shift = shift_at(primary, at(BERLIN, 2026, 10, 25, 12))
    assert shift is not None
    assert local(shift, BERLIN) == ("Mon 2026-10-19 09:00 CEST", "Mon 2026-10-26 09:00 CET")
    assert shift.length == 169 * HOUR


def test_weekly_new_york_spring_forward_and_fall_back() -> None:
    primary = schedule("America/New_York", layer())
    spring = shift_at(primary, at(NEW_YORK, 2026, 3, 8, 12))
    fall = shift_at(primary, at(NEW_YORK, 2026, 11, 1, 12))
    assert spring is not None and fall is not None
    assert local(spring, NEW_YORK) == ("Mon 2026-03-02 09:00 EST", "Mon 2026-03-09 09:00 EDT")
    assert local(fall, NEW_YORK) == ("Mon 2026-10-26 09:00 EDT", "Mon 2026-11-02 09:00 EST")
    assert (spring.length, fall.length) == (167 * HOUR, 169 * HOUR)


@freeze_time("2026-03-29 01:30:00", tz_offset=0)
def test_on_call_now_during_the_skipped_hour() -> None:
    primary = schedule("Europe/Berlin", layer(rotation="daily", handoff="09:00"))
    now = datetime.now(UTC)  # 03:30 CEST, just after Berlin skipped 02:00-03:00
    shift = shift_at(primary, now)
    assert shift is not None
    assert local(shift, BERLIN) == ("Sat 2026-03-28 09:00 CET", "Sun 2026-03-29 09:00 CEST")
    assert shift.length == 23 * HOUR


def test_daily_turns_are_23_and_25_hours_on_change_days() -> None:
    primary = schedule(
        "America/New_York", layer(rotation="daily", handoff="09:00", start="2026-03-01")
    )
    spring = shift_at(primary, at(NEW_YORK, 2026, 3, 8, 3))
    fall = shift_at(primary, at(NEW_YORK, 2026, 11, 1, 3))
    assert spring is not None and fall is not None
    assert (spring.length, fall.length) == (23 * HOUR, 25 * HOUR)
    assert local(fall, NEW_YORK) == ("Sat 2026-10-31 09:00 EDT", "Sun 2026-11-01 09:00 EST")


def test_a_handoff_in_the_skipped_hour_happens_an_hour_later_on_the_wall_clock() -> None:
    primary = schedule("Europe/Berlin", layer(rotation="daily", handoff="02:30"))
    shifts = final_shifts(primary, at(BERLIN, 2026, 3, 28, 12), at(BERLIN, 2026, 3, 30, 12))
    assert [local(s, BERLIN)[1] for s in shifts[:2]] == [
        "Sun 2026-03-29 03:30 CEST",
        "Mon 2026-03-30 02:30 CEST",
    ]
    assert all(a.end == b.start for a, b in itertools.pairwise(shifts))


# -- elapsed-time rotations ----------------------------------------------------------------


def test_hourly_and_every_12h_are_exact_elapsed_time_across_a_change() -> None:
    six = layer(name="six", rotation="hourly:6", handoff="00:00", start="2026-10-24")
    twelve = layer(name="twelve", rotation={"every": "12h"}, handoff="08:00", start="2026-10-24")
    primary = schedule("Europe/Berlin", six)
    shifts = layer_shifts(
        primary.layers[0], BERLIN, at(BERLIN, 2026, 10, 24), at(BERLIN, 2026, 10, 25, 23)
    )
    assert all(s.length == 6 * HOUR for s in shifts)
    assert [s.start.astimezone(BERLIN).hour for s in shifts] == [0, 6, 12, 18, 0, 5, 11, 17]
    halves = layer_shifts(
        schedule("Europe/Berlin", twelve).layers[0],
        BERLIN,
        at(BERLIN, 2026, 10, 24, 8),
        at(BERLIN, 2026, 10, 26, 7),
    )
    assert [s.start.astimezone(BERLIN).hour for s in halves] == [8, 20, 7, 19]
    assert [s.person for s in halves] == ["alice", "bob", "carol", "alice"]


def test_nobody_before_the_first_turn_and_weekly_anchors_on_the_first_handoff_weekday() -> None:
    primary = schedule("Europe/Berlin", layer(start="2026-01-07"))  # a Wednesday
    shifts = final_shifts(primary, at(BERLIN, 2026, 1, 1), at(BERLIN, 2026, 1, 20))
    assert [(local(s, BERLIN), s.person) for s in shifts] == [
        (("Mon 2026-01-12 09:00 CET", "Mon 2026-01-19 09:00 CET"), "alice"),
        (("Mon 2026-01-19 09:00 CET", "Tue 2026-01-20 00:00 CET"), "bob"),
    ]
    assert shift_at(primary, at(BERLIN, 2026, 1, 10)) is None


def test_a_one_person_layer_is_one_long_shift() -> None:
    primary = schedule("Europe/Berlin", layer(users=["alice"], rotation="daily", handoff="09:00"))
    shifts = final_shifts(primary, at(BERLIN, 2026, 2, 1), at(BERLIN, 2026, 3, 1))
    assert shifts == [Shift(at(BERLIN, 2026, 2, 1), at(BERLIN, 2026, 3, 1), "alice", "weekly")]


# -- restrictions --------------------------------------------------------------------------


def test_business_hours_restriction() -> None:
    office = layer(name="office", restrict=["mon-fri 09:00-17:00"])
    shifts = final_shifts(
        schedule("Europe/Berlin", office), at(BERLIN, 2026, 3, 27), at(BERLIN, 2026, 4, 1)
    )
    assert [(local(s, BERLIN), s.person) for s in shifts] == [
        (("Fri 2026-03-27 09:00 CET", "Fri 2026-03-27 17:00 CET"), "carol"),
        (("Mon 2026-03-30 09:00 CEST", "Mon 2026-03-30 17:00 CEST"), "alice"),
        (("Tue 2026-03-31 09:00 CEST", "Tue 2026-03-31 17:00 CEST"), "alice"),
    ]


def test_a_window_across_midnight_and_across_a_change_of_clock() -> None:
    nights = layer(name="nights", rotation="daily", handoff="12:00", restrict=["daily 22:00-06:00"])
    berlin = final_shifts(
        schedule("Europe/Berlin", nights), at(BERLIN, 2026, 3, 28, 12), at(BERLIN, 2026, 3, 29, 12)
    )
    assert [(local(s, BERLIN), s.length) for s in berlin] == [
        (("Sat 2026-03-28 22:00 CET", "Sun 2026-03-29 06:00 CEST"), 7 * HOUR)
    ]
    york = final_shifts(
        schedule("America/New_York", nights),
        at(NEW_YORK, 2026, 10, 31, 12),
        at(NEW_YORK, 2026, 11, 1, 12),
    )
    assert [(local(s, NEW_YORK), s.length) for s in york] == [
        (("Sat 2026-10-31 22:00 EDT", "Sun 2026-11-01 06:00 EST"), 9 * HOUR)
    ]


def test_a_turn_changing_inside_a_window_splits_the_window() -> None:
    days = layer(name="days", rotation="daily", handoff="12:00", restrict=["mon-fri 09:00-17:00"])
    shifts = final_shifts(
        schedule("Europe/Berlin", days), at(BERLIN, 2026, 3, 2), at(BERLIN, 2026, 3, 3)
    )
    assert [(local(s, BERLIN)[0][-9:], s.person) for s in shifts] == [
        ("09:00 CET", "bob"),
        ("12:00 CET", "carol"),
    ]


# -- layers and overrides ------------------------------------------------------------------


def stacked(**override_fields: Any) -> Schedule:
    return schedule(
        "Europe/Berlin",
        layer(),
        layer(
            name="office",
            users=["carol", "bob"],
            rotation="daily",
            handoff="09:00",
            restrict=["mon-fri 09:00-17:00"],
        ),
        **override_fields,
    )


def test_a_higher_layer_wins_where_it_has_someone() -> None:
    shifts = final_shifts(stacked(), at(BERLIN, 2026, 3, 2, 8), at(BERLIN, 2026, 3, 3, 18))
    assert [(local(s, BERLIN)[0][4:], s.person, s.source) for s in shifts] == [
        ("2026-03-02 08:00 CET", "bob", "weekly"),  # turn 7 of the weekly layer
        ("2026-03-02 09:00 CET", "carol", "office"),
        ("2026-03-02 17:00 CET", "carol", "weekly"),  # a new source: not merged
        ("2026-03-03 09:00 CET", "bob", "office"),
        ("2026-03-03 17:00 CET", "carol", "weekly"),
    ]
    assert all(a.end == b.start for a, b in itertools.pairwise(shifts))


def test_overrides_beat_every_layer_and_a_later_override_beats_an_earlier_one() -> None:
    config_override = {"user": "bob", "start": "2026-03-02T12:00", "end": "2026-03-02T20:00"}
    primary = stacked(overrides=[config_override])
    later = OverrideSpan(at(BERLIN, 2026, 3, 2, 16), at(BERLIN, 2026, 3, 2, 18), "carol", 7)
    spans = [*configured(primary), later]
    shifts = final_shifts(primary, at(BERLIN, 2026, 3, 2, 8), at(BERLIN, 2026, 3, 2, 22), spans)
    assert [(local(s, BERLIN)[0][15:], s.person, s.source) for s in shifts] == [
        ("08:00 CET", "bob", "weekly"),
        ("09:00 CET", "carol", "office"),
        ("12:00 CET", "bob", "override"),
        ("16:00 CET", "carol", "override #7"),
        ("18:00 CET", "bob", "override"),
        ("20:00 CET", "carol", "weekly"),
    ]


def test_shifts_around_gives_whole_current_and_next_shifts() -> None:
    primary = schedule("Europe/Berlin", layer())
    current, following = shifts_around(primary, at(BERLIN, 2026, 3, 25, 12))
    assert local(current, BERLIN) == ("Mon 2026-03-23 09:00 CET", "Mon 2026-03-30 09:00 CEST")
    assert (current.person, following.person) == ("carol", "alice")
    assert following.start == current.end


# -- invariants ----------------------------------------------------------------------------

PROPERTY_SCHEDULES = [
    schedule(
        zone,
        layer(start="2026-02-04"),
        layer(
            name="office",
            users=["carol", "bob"],
            rotation="daily",
            handoff="10:00",
            restrict=["mon-fri 09:00-17:00", "sat 22:00-03:00"],
        ),
        layer(name="nights", users=["bob", "alice"], rotation="hourly:12", handoff="02:30"),
        overrides=[{"user": "carol", "start": "2026-03-28T20:00", "end": "2026-03-29T04:00"}],
    )
    for zone in ("Europe/Berlin", "America/New_York")
]


@settings(max_examples=200, deadline=None)
@given(
    which=st.sampled_from(PROPERTY_SCHEDULES),
    start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31)),
    minutes=st.integers(min_value=1, max_value=60 * 24 * 20),
    cut=st.floats(min_value=0, max_value=1),
    probes=st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=5),
)
def test_final_shifts_are_sorted_disjoint_and_agree_with_shift_at(
    which: Schedule, start: datetime, minutes: int, cut: float, probes: list[float]
) -> None:
    begin = start.replace(tzinfo=UTC)
    end = begin + timedelta(minutes=minutes)
    spans = configured(which)
    shifts = final_shifts(which, begin, end, spans)
    for shift in shifts:
        assert begin <= shift.start < shift.end <= end
    for a, b in itertools.pairwise(shifts):
        assert a.end <= b.start
        assert not (a.end == b.start and (a.person, a.source) == (b.person, b.source))
    for fraction in probes:
        moment = begin + (end - begin) * fraction
        if moment >= end:
            continue
        found, direct = holder(shifts, moment), shift_at(which, moment, spans)
        assert (found and found.person) == (direct and direct.person)
    middle = begin + (end - begin) * cut
    halves = final_shifts(which, begin, middle, spans) + final_shifts(which, middle, end, spans)
    rejoined: list[Shift] = []
    for shift in halves:
        last = rejoined[-1] if rejoined else None
        if (
            last
            and last.end == shift.start
            and (last.person, last.source)
            == (
                shift.person,
                shift.source,
            )
        ):
            rejoined[-1] = Shift(last.start, shift.end, last.person, last.source)
        else:
            rejoined.append(shift)
    assert rejoined == shifts
