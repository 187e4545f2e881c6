"""Entitlements: what an enrolment is owed up to a payroll month, from its history alone.

The history of one household's enrolment in one programme is a short list of facts in
the order they were recorded (from the case's events): enrolments, benefit adjustments,
exits and closures, payments. The rules, decided here once for every payroll:

- A monthly programme owes every month from the month its enrolment takes effect (the
  whole start month) while the enrolment is in force on at least the month's first day
  after the start: an exit (or a death, or a closure) dated on day D ends the benefit from
  D on, so the month of D is owed only when D is after that month's first day. Exiting on
  1 August leaves March to July owed; a death on 12 June leaves June owed, not July.
- The amount owed for a month is that of the most recently recorded enrolment or
  adjustment taking effect in or before that month ("700 yuan from May").
- Months up to the payroll month that are owed and neither paid nor already instructed
  in another cycle are entitlements: earlier months are arrears (a late enrolment, a
  month no cycle paid, a payment that failed).
- A one-off programme owes its grant once, from its effective month, while the enrolment
  has not ended and the grant is not paid.
- A closed case is owed nothing more: the Case takes no step once closed, payments
  included (a one-member household's death exits its programmes and closes the case).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

from domain.values import ONE_OFF

__all__ = [
    "AmountChanged",
    "CaseClosed",
    "EnrolmentEnded",
    "EnrolmentFact",
    "EnrolmentStarted",
    "Entitlement",
    "PeriodPaid",
    "covered_months",
    "entitlements",
    "month_of",
    "next_month",
    "refusal",
]


@dataclass(frozen=True, slots=True)
class EnrolmentStarted:
    """The household was enrolled (again) with an amount from a date."""

    effective_from: date
    amount_fen: int
    monthly: bool = True


@dataclass(frozen=True, slots=True)
class AmountChanged:
    """The benefit changed to an amount from a date (BenefitAdjusted)."""

    effective_from: date
    amount_fen: int


@dataclass(frozen=True, slots=True)
class EnrolmentEnded:
    """The enrolment ended on a date: an exit, a death or the case's closure."""

    ended_on: date


@dataclass(frozen=True, slots=True)
class PeriodPaid:
    """A period ('YYYY-MM' or 'one-off') was paid."""

    period: str


@dataclass(frozen=True, slots=True)
class CaseClosed:
    """The household's case closed: nothing more is paid on it."""

    on: date


EnrolmentFact = EnrolmentStarted | AmountChanged | EnrolmentEnded | PeriodPaid | CaseClosed


@dataclass(frozen=True, slots=True)
class Entitlement:
    """One period owed to the enrolment in a payroll month, and how much."""

    period: str
    amount_fen: int
    kind: str  # "monthly" (the payroll's own month), "arrears" or "one_off"


@lru_cache(maxsize=8192)  # a cohort's dates repeat: a payroll folds hundreds of thousands
def month_of(day: date) -> str:
    """The 'YYYY-MM' month containing a day."""
    return f"{day.year:04d}-{day.month:02d}"


@lru_cache(maxsize=2048)
def next_month(month: str) -> str:
    """The month after a 'YYYY-MM' month."""
    year, number = int(month[:4]), int(month[5:7])
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


def _last_month_in_force(ended_on: date) -> str:
    # The benefit stops on ended_on: the last month owed is the one holding the day before.
    return month_of(ended_on - timedelta(days=1))


def covered_months(history: Sequence[EnrolmentFact], up_to: str) -> list[str]:
    """Months up to `up_to` in which a monthly enrolment of this history was in force."""
    spans: list[tuple[str, str | None]] = []
    open_start: str | None = None
    for fact in history:
        if isinstance(fact, EnrolmentStarted) and fact.monthly:
            if open_start is not None:  # enrolled again without an exit: the old span ends
                spans.append((open_start, _previous(month_of(fact.effective_from))))
            open_start = month_of(fact.effective_from)
        elif isinstance(fact, EnrolmentEnded) and open_start is not None:
            spans.append((open_start, _last_month_in_force(fact.ended_on)))
            open_start = None
    if open_start is not None:
        spans.append((open_start, None))
    months: set[str] = set()
    for start, end in spans:
        last = up_to if end is None or end > up_to else end
        month = start
        while month <= last:
            months.add(month)
            month = next_month(month)
    return sorted(months)


def _previous(month: str) -> str:
    year, number = int(month[:4]), int(month[5:7])
    return f"{year - 1:04d}-12" if number == 1 else f"{year:04d}-{number - 1:02d}"


def _amount_in(history: Sequence[EnrolmentFact], month: str) -> int | None:
    """The amount of the latest recorded enrolment or adjustment in effect by `month`."""
    for fact in reversed(history):
        if (
            isinstance(fact, EnrolmentStarted | AmountChanged)
            and month_of(fact.effective_from) <= month
        ):
            return fact.amount_fen
    return None


def entitlements(
    history: Sequence[EnrolmentFact], month: str, in_flight: Collection[str] = ()
) -> list[Entitlement]:
    """What the enrolment is owed in the payroll of `month`, oldest period first.

    `in_flight` holds periods already instructed in another cycle and not yet settled:
    they are owed there, not here (a failure there brings them back as arrears).
    """
    paid = {fact.period for fact in history if isinstance(fact, PeriodPaid)}
    starts = [fact for fact in history if isinstance(fact, EnrolmentStarted)]
    if not starts or any(isinstance(fact, CaseClosed) for fact in history):
        return []
    owed: list[Entitlement] = []
    if starts[-1].monthly:
        for period in covered_months(history, month):
            if period in paid or period in in_flight:
                continue
            amount = _amount_in(history, period)
            if amount is not None and amount > 0:
                kind = "monthly" if period == month else "arrears"
                owed.append(Entitlement(period, amount, kind))
        return owed
    # A one-off grant: owed once while its latest enrolment stands.
    # The latest enrolment by position (equal facts may repeat: not history.index).
    last = max(i for i, fact in enumerate(history) if isinstance(fact, EnrolmentStarted))
    ended = any(isinstance(fact, EnrolmentEnded) for fact in history[last:])
    if ended or month_of(starts[-1].effective_from) > month:
        return []
    if ONE_OFF in paid or ONE_OFF in in_flight:
        return []
    amount = _amount_in(history, month)
    return [Entitlement(ONE_OFF, amount, "one_off")] if amount else []


def refusal(history: Sequence[EnrolmentFact], period: str) -> str | None:
    """Why a payment for `period` may not be recorded now; None when it is owed."""
    month = "9999-12" if period == ONE_OFF else period
    if any(e.period == period for e in entitlements(history, month)):
        return None
    if any(isinstance(fact, CaseClosed) for fact in history):
        return "the case is closed"
    if any(isinstance(fact, PeriodPaid) and fact.period == period for fact in history):
        return f"already paid for {period}"
    return f"not enrolled for {period}"
