"""Local rules that vary by locality: notice period, review intervals, decision deadlines."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

__all__ = ["DEFAULT_DEADLINE_POLICY", "DEFAULT_POLICY", "DeadlinePolicy", "Policy"]


@dataclass(frozen=True)
class Policy:
    """The configurable public rules a locality applies to its cases."""

    # 7-day public notice (公示) before a dibao enrolment takes effect.
    notice_days: int = 7
    # Dibao households are reviewed every 6 or 12 months depending on their category.
    review_months_by_category: dict[str, int] = field(
        default_factory=lambda: {"stable": 12, "changing": 6}
    )
    default_review_months: int = 12
    # A decision is due within 30 working days of discovery, 45 at most.
    decision_days: int = 30
    decision_days_max: int = 45
    # Four eyes (审批分离): whoever assessed a case may not also enrol it or grant it relief,
    # and whoever granted emergency relief may not regularise (approve) it.
    four_eyes: bool = True

    def review_months(self, category: str) -> int:
        """Months between reviews for a household category."""
        return self.review_months_by_category.get(category, self.default_review_months)


DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class DeadlinePolicy:
    """Local rules of the clock: warnings, grace periods, limits and the working calendar."""

    # The decision warning fires this many working days before the decision is due.
    decision_warning_days: int = 5
    # A review not done this many days after it fell due escalates to the county.
    review_grace_days: int = 30
    # Emergency relief (先行救助) must be regularised within this many working days.
    emergency_regularise_workdays: int = 10
    # Local working-day overrides (a county's own holiday, a working Saturday): date -> workday.
    workday_overrides: dict[date, bool] = field(default_factory=dict)
    # Deadlines are counted in civil days of this time zone.
    time_zone: str = "Asia/Shanghai"


DEFAULT_DEADLINE_POLICY = DeadlinePolicy()
