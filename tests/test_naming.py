"""Channel names: Slack's rules hold for any title."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from bot.incidents.naming import MAX_LENGTH, channel_name, slugify

SLACK_NAME = re.compile(r"^[a-z0-9_-]{1,80}$")


def test_examples() -> None:
    assert channel_name("inc", 1, "Checkout latency above 2s") == "inc-1-checkout-latency-above-2s"
    assert channel_name("inc", 7, "Café Zürich: Straße down!!") == "inc-7-cafe-zurich-strasse-down"
    assert channel_name("inc", 3, "DB  --  replica_lag") == "inc-3-db-replica_lag"
    assert channel_name("inc", 4, "🔥 on fire") == "inc-4-fire-on-fire"
    assert channel_name("inc", 5, "!!!") == "inc-5"
    assert channel_name("inc", 1, "Checkout down", attempt=2) == "inc-1-checkout-down-2"


def test_long_titles_are_cut_to_80_with_room_for_the_suffix() -> None:
    title = "Payments " * 30
    first = channel_name("inc", 12345, title)
    tenth = channel_name("inc", 12345, title, attempt=10)
    assert len(first) <= MAX_LENGTH and len(tenth) <= MAX_LENGTH
    assert tenth.endswith("-10") and not first.endswith("-")
    assert first.startswith("inc-12345-payments-payments")


@given(title=st.text(max_size=300), number=st.integers(1, 10**9), attempt=st.integers(1, 99))
def test_every_name_is_a_valid_slack_name(title: str, number: int, attempt: int) -> None:
    name = channel_name("inc", number, title, attempt)
    assert SLACK_NAME.match(name), name
    assert name.startswith(f"inc-{number}")


@given(title=st.text(max_size=200))
def test_slugs_never_start_or_end_with_separators(title: str) -> None:
    slug = slugify(title)
    assert slug == "" or (slug[0] not in "-_" and slug[-1] not in "-_")
    assert "--" not in slug
