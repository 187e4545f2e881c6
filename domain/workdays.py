"""Working days on China's official calendar: statutory holidays and adjusted working weekends.

The State Council publishes each year's holidays in November, and `chinese-calendar` carries
them (2004 to the last year published). A deadline counted into a year not yet published
falls back to weekends-only for that year, and says so (`WorkCount.basis`, shown on the
deadline), so that a deadline computed in December is not silently wrong. Once an updated
package knows the year, a rebuild of the deadline tables counts on the official calendar
(until then a replay equals the live rows). A locality's own overrides (policy) come first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import chinese_calendar  # type: ignore[import-untyped,unused-ignore]

from domain.policy import DEFAULT_DEADLINE_POLICY, DeadlinePolicy

__all__ = ["WorkCalendar", "WorkCount", "official_calendar_knows"]


@lru_cache(maxsize=64)
def official_calendar_knows(year: int) -> bool:
    """Whether the official calendar (chinese-calendar) has a year's holidays."""
    try:
        chinese_calendar.is_workday(date(year, 6, 1))
    except NotImplementedError:
        return False
    return True


@lru_cache(maxsize=8192)
def _official_workday(day: date) -> bool:
    return bool(chinese_calendar.is_workday(day))


@dataclass(frozen=True)
class WorkCount:
    """A day some working days after another, and what the count stood on."""

    day: date
    # "official calendar", or which years fell back to weekends only.
    basis: str


@dataclass(frozen=True)
class WorkCalendar:
    """Which civil days are working days, and how to count them, in the policy's time zone."""

    policy: DeadlinePolicy = field(default_factory=lambda: DEFAULT_DEADLINE_POLICY)
    # Counts already made: a cohort's cases share discovery days (a rebuild folds millions).
    _counted: dict[tuple[date, int], WorkCount] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def zone(self) -> ZoneInfo:
        """The time zone deadlines are counted in."""
        return ZoneInfo(self.policy.time_zone)

    def is_workday(self, day: date) -> bool:
        """Local override first, then the official calendar, else Monday to Friday."""
        override = self.policy.workday_overrides.get(day)
        if override is not None:
            return override
        if official_calendar_knows(day.year):
            return _official_workday(day)
        return day.weekday() < 5

    def add_workdays(self, start: date, days: int) -> WorkCount:
        """The `days`-th working day after `start` (start itself not counted)."""
        if days < 0:
            raise ValueError(f"cannot count {days} working days")
        known = self._counted.get((start, days))
        if known is None:
            known = self._counted[(start, days)] = self._count(start, days)
        return known

    def _count(self, start: date, days: int) -> WorkCount:
        day, counted, unknown = start, 0, set()
        while counted < days:
            day += timedelta(days=1)
            if not official_calendar_knows(day.year):
                unknown.add(day.year)
            if self.is_workday(day):
                counted += 1
        if not unknown:
            return WorkCount(day, "official calendar")
        years = ", ".join(str(y) for y in sorted(unknown))
        return WorkCount(day, f"official calendar; {years}: weekends only (not yet published)")

    def workdays_between(self, first: date, last: date) -> int:
        """Working days after `first` up to and including `last`."""
        return sum(
            self.is_workday(first + timedelta(days=n)) for n in range(1, (last - first).days + 1)
        )

    def local_date(self, moment: datetime) -> date:
        """The civil date of a moment in the policy's time zone."""
        return moment.astimezone(self.zone).date()

    def start_of(self, day: date) -> datetime:
        """The first moment of a civil day (a deadline 'on' a day passes when it begins)."""
        return datetime.combine(day, time(), self.zone)

    def end_of(self, day: date) -> datetime:
        """The moment a civil day is over (the start of the next): due 'by' a day."""
        return self.start_of(day + timedelta(days=1))
