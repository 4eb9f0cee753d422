"""Cron schedules: parsing and the next firing, in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from proto.errors import InvalidRequest
from shard.cron import parse_schedule


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """Epoch milliseconds of a UTC wall-clock time."""
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp() * 1000)


def test_interval_counts_seconds_from_creation() -> None:
    s = parse_schedule("*/60", 12_345)
    assert s.interval_ms == 60_000
    assert s.next_after(12_345) == 72_345
    assert s.next_after(72_345) == 132_345
    assert parse_schedule("  */30 ", 0).next_after(0) == 30_000


def test_five_field_expression() -> None:
    s = parse_schedule("0 0 * * *", 0)
    assert s.fields == 5
    assert s.next_after(ms(2024, 3, 5, 13, 7)) == ms(2024, 3, 6)
    s = parse_schedule("*/15 * * * *", 0)
    assert s.next_after(ms(2024, 3, 5, 13, 7, 30)) == ms(2024, 3, 5, 13, 15)


def test_six_field_expression_has_seconds_first() -> None:
    s = parse_schedule("0 30 9 * * MON-FRI", 0)
    assert s.fields == 6
    # 2024-03-08 is a Friday; the next weekday 09:30:00 UTC after Friday 10:00 is Monday
    assert s.next_after(ms(2024, 3, 8, 10, 0)) == ms(2024, 3, 11, 9, 30, 0)
    assert s.next_after(ms(2024, 3, 8, 9, 29, 59)) == ms(2024, 3, 8, 9, 30, 0)
    # seconds first, not last: "0 5 9 * * 1" is 09:05:00 on Mondays, not 05:00:01
    s = parse_schedule("0 5 9 * * 1", 0)
    assert s.next_after(ms(2024, 3, 8)) == ms(2024, 3, 11, 9, 5, 0)


def test_every_five_seconds_six_fields_is_valid() -> None:
    s = parse_schedule("*/5 * * * * *", 0)
    assert s.fields == 6
    assert s.next_after(ms(2024, 1, 1, 0, 0, 1)) == ms(2024, 1, 1, 0, 0, 5)
    assert s.next_after(ms(2024, 1, 1, 0, 0, 5)) == ms(2024, 1, 1, 0, 0, 10)


def test_next_after_is_strictly_after() -> None:
    s = parse_schedule("0 * * * *", 0)
    t = ms(2024, 1, 1, 5, 0)
    assert s.next_after(t) == ms(2024, 1, 1, 6, 0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "*/0",
        "*/-5",
        "*/abc",
        "*/",
        "* * *",
        "* * * *",
        "*/5 *",
        "61 * * * *",
        "* 25 * * *",
        "60 * * * * *",
        "* * * * * * * *",
        "bogus x y z w",
        "0 0 30 2 *",  # February 30th never comes
    ],
)
def test_bad_schedules_are_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InvalidRequest) as ei:
        parse_schedule(text, ms(2024, 1, 1))
    assert ei.value.message.startswith("Invalid: field 'schedule'")
