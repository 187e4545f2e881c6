"""Entitlements from an enrolment's history: the stories, and a fold they must equal."""

from __future__ import annotations

import calendar
from datetime import date

from hypothesis import example, given, settings
from hypothesis import strategies as st

from domain.entitlements import (
    AmountChanged,
    CaseClosed,
    EnrolmentEnded,
    EnrolmentFact,
    EnrolmentStarted,
    Entitlement,
    PeriodPaid,
    entitlements,
    refusal,
)


def owed(history: list[EnrolmentFact], month: str, in_flight: tuple[str, ...] = ()) -> dict:
    return {e.period: e.amount_fen for e in entitlements(history, month, in_flight)}


def test_adjusted_in_may_and_exited_in_august_is_owed_march_to_july() -> None:
    history: list[EnrolmentFact] = [
        EnrolmentStarted(date(2023, 3, 10), 65000),
        AmountChanged(date(2023, 5, 1), 70000),
        EnrolmentEnded(date(2023, 8, 1)),
    ]
    assert owed(history, "2023-09") == {
        "2023-03": 65000, "2023-04": 65000, "2023-05": 70000, "2023-06": 70000,
        "2023-07": 70000,
    }  # fmt: skip


def test_a_death_in_june_stops_july() -> None:
    history: list[EnrolmentFact] = [
        EnrolmentStarted(date(2023, 3, 1), 65000),
        EnrolmentEnded(date(2023, 6, 12)),
    ]
    assert list(owed(history, "2023-07")) == ["2023-03", "2023-04", "2023-05", "2023-06"]


def test_paid_and_in_flight_months_are_not_owed_and_earlier_months_are_arrears() -> None:
    history: list[EnrolmentFact] = [
        EnrolmentStarted(date(2023, 3, 1), 65000),
        PeriodPaid("2023-03"),
    ]
    found = entitlements(history, "2023-06", in_flight=("2023-05",))
    assert found == [
        Entitlement("2023-04", 65000, "arrears"),
        Entitlement("2023-06", 65000, "monthly"),
    ]


def test_a_one_off_grant_is_owed_once_until_paid() -> None:
    grant: list[EnrolmentFact] = [EnrolmentStarted(date(2023, 6, 3), 300000, monthly=False)]
    assert entitlements(grant, "2023-05") == []
    assert entitlements(grant, "2023-07") == [Entitlement("one-off", 300000, "one_off")]
    assert entitlements([*grant, PeriodPaid("one-off")], "2023-07") == []
    assert entitlements([*grant, EnrolmentEnded(date(2023, 6, 30))], "2023-07") == []


def test_a_payment_is_refused_when_paid_closed_or_outside_the_enrolment() -> None:
    history: list[EnrolmentFact] = [
        EnrolmentStarted(date(2023, 3, 1), 65000),
        EnrolmentEnded(date(2023, 6, 1)),
        PeriodPaid("2023-03"),
    ]
    assert refusal(history, "2023-04") is None
    assert refusal(history, "2023-03") == "already paid for 2023-03"
    assert refusal(history, "2023-06") == "not enrolled for 2023-06"
    assert refusal([*history, CaseClosed(date(2023, 6, 2))], "2023-04") == "the case is closed"


# -- the property: an independent month-by-month fold --------------------------------------


def _months(first: str, last: str) -> list[str]:
    out, year, number = [], int(first[:4]), int(first[5:])
    while f"{year:04d}-{number:02d}" <= last:
        out.append(f"{year:04d}-{number:02d}")
        year, number = (year + 1, 1) if number == 12 else (year, number + 1)
    return out


def reference(history: list[EnrolmentFact], month: str, in_flight: set[str]) -> dict:
    """Month by month, with dates: in force on some day of the month from the start on."""
    starts = [i for i, f in enumerate(history) if isinstance(f, EnrolmentStarted)]
    if not starts or any(isinstance(f, CaseClosed) for f in history):
        return {}
    paid = {f.period for f in history if isinstance(f, PeriodPaid)}
    last_start = history[starts[-1]]
    assert isinstance(last_start, EnrolmentStarted)
    if not last_start.monthly:
        ended = any(isinstance(f, EnrolmentEnded) for f in history[starts[-1] :])
        start = last_start.effective_from.strftime("%Y-%m")
        if ended or start > month or "one-off" in paid | in_flight:
            return {}
        amount = next(
            f.amount_fen
            for f in reversed(history)
            if isinstance(f, EnrolmentStarted | AmountChanged)
            and f.effective_from.strftime("%Y-%m") <= month
        )
        return {"one-off": amount}
    result = {}
    for m in _months("2020-01", month):
        year, number = int(m[:4]), int(m[5:])
        first = date(year, number, 1)
        last = date(year, number, calendar.monthrange(year, number)[1])
        covered = False
        for i in starts:
            start = history[i]
            assert isinstance(start, EnrolmentStarted)
            if start.effective_from > last:
                continue
            end = next((f for f in history[i:] if isinstance(f, EnrolmentEnded)), None)
            if end is None or end.ended_on > first:
                covered = True
        if not covered or m in paid or m in in_flight:
            continue
        amount = None
        for f in history:
            if isinstance(f, EnrolmentStarted | AmountChanged) and f.effective_from <= last:
                amount = f.amount_fen
        if amount:
            result[m] = amount
    return result


days = st.dates(min_value=date(2022, 1, 1), max_value=date(2024, 12, 31))
months = st.builds(lambda d: d.strftime("%Y-%m"), days)


@st.composite
def histories(draw: st.DrawFn) -> list[EnrolmentFact]:
    """Histories the Case allows: adjust and exit only while enrolled, enrol only when not."""
    monthly = draw(st.booleans())
    facts: list[EnrolmentFact] = []
    active = False
    for _ in range(draw(st.integers(0, 8))):
        step = draw(st.sampled_from(["enrol", "adjust", "exit", "pay", "close"]))
        if step == "enrol" and not active:
            facts.append(EnrolmentStarted(draw(days), draw(st.integers(1, 90000)), monthly))
            active = True
        elif step == "adjust" and active:
            facts.append(AmountChanged(draw(days), draw(st.integers(1, 90000))))
        elif step == "exit" and active:
            facts.append(EnrolmentEnded(draw(days)))
            active = False
        elif step == "close" and not active:
            facts.append(CaseClosed(draw(days)))
            break
        elif step == "pay":
            facts.append(PeriodPaid(draw(months) if monthly else "one-off"))
    return facts


@settings(max_examples=300, deadline=None)
@given(histories(), months, st.sets(months, max_size=3))
@example(  # found by this test: equal enrolment facts, the latest one counts
    history=[
        EnrolmentStarted(date(2022, 1, 1), 1, monthly=False),
        EnrolmentEnded(date(2022, 1, 1)),
        EnrolmentStarted(date(2022, 1, 1), 1, monthly=False),
    ],
    month="2022-01",
    in_flight=set(),
)
def test_entitlements_equal_a_month_by_month_fold(
    history: list[EnrolmentFact], month: str, in_flight: set[str]
) -> None:
    found = entitlements(history, month, in_flight)
    assert {e.period: e.amount_fen for e in found} == reference(history, month, in_flight)
    assert [e.period for e in found] == sorted(e.period for e in found)
    assert all(e.kind == ("monthly" if e.period == month else "arrears") for e in found
               if e.period != "one-off")  # fmt: skip
