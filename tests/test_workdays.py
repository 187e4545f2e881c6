"""Working days on the official calendar: holidays, adjusted weekends, local overrides."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from domain.policy import DEFAULT_POLICY, DeadlinePolicy
from domain.workdays import WorkCalendar

OFFICIAL = WorkCalendar()


def test_national_day_week_moves_a_30_working_day_decision_by_three_working_days() -> None:
    # Discovered Friday 2024-09-20. Weekends only, the 30th working day is Fri 2024-11-01.
    # Officially, 1-7 October are off (five weekdays lost) but Sun 29 Sep and Sat 12 Oct
    # are worked (two days gained): three working days more, so Wednesday 2024-11-06.
    weekends_only = DeadlinePolicy(
        workday_overrides={
            date(2024, 9, 29): False, date(2024, 10, 12): False,
            **{date(2024, 10, d): True for d in (1, 2, 3, 4, 7)},
        }
    )  # fmt: skip
    discovered = date(2024, 9, 20)
    days = DEFAULT_POLICY.decision_days
    assert WorkCalendar(weekends_only).add_workdays(discovered, days).day == date(2024, 11, 1)
    assert OFFICIAL.add_workdays(discovered, days).day == date(2024, 11, 6)
    assert OFFICIAL.add_workdays(discovered, days).basis == "official calendar"
    assert OFFICIAL.add_workdays(discovered, DEFAULT_POLICY.decision_days_max).day == date(
        2024, 11, 27
    )


def test_adjusted_working_weekend_counts_and_statutory_holiday_does_not() -> None:
    assert OFFICIAL.is_workday(date(2024, 9, 29))  # a Sunday worked for National Day
    assert not OFFICIAL.is_workday(date(2024, 10, 2))  # a Wednesday off
    assert not OFFICIAL.is_workday(date(2024, 9, 28))  # an ordinary Saturday


def test_local_override_comes_before_the_official_calendar() -> None:
    county_holiday = WorkCalendar(DeadlinePolicy(workday_overrides={date(2024, 9, 23): False}))
    assert not county_holiday.is_workday(date(2024, 9, 23))
    assert county_holiday.add_workdays(date(2024, 9, 20), 1).day == date(2024, 9, 24)


def test_an_unpublished_year_falls_back_to_weekends_and_says_so() -> None:
    counted = OFFICIAL.add_workdays(date(2026, 12, 1), 30)
    assert counted.day.year == 2027
    assert "2027: weekends only" in counted.basis


def test_days_are_civil_days_in_shanghai() -> None:
    late_evening_utc = datetime(2024, 9, 19, 17, 0, tzinfo=UTC)  # 01:00 on the 20th
    assert OFFICIAL.local_date(late_evening_utc) == date(2024, 9, 20)
    assert OFFICIAL.end_of(date(2024, 9, 20)) - OFFICIAL.start_of(date(2024, 9, 20)) == timedelta(
        days=1
    )
    assert OFFICIAL.end_of(date(2024, 9, 20)).utcoffset() == timedelta(hours=8)


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="-1 working days"):
        OFFICIAL.add_workdays(date(2024, 9, 20), -1)
