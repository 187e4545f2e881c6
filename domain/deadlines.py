"""Case deadlines, computed from the case's events alone: when each falls due, what settles it.

A case's deadlines are rows keyed "<kind>:<key>" (e.g. "review_due:rural_dibao"), each
pending, passed (the clock recorded its event), done (the step was taken) or cancelled.
`DeadlineBook.evolve` folds one event into a case's rows; the clock and the `deadlines` read
model both fold the log with it, so a replay computes the very rows the live clock kept.

A step settles a deadline whenever it is recorded before the clock acts, even when it was
recorded late with an earlier `occurred_at`: the clock acts only on rows still pending
after it has read the log up to the head, and records its event at the case's next version
(a step recorded meanwhile makes that save fail, and the clock reads it before trying again).
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.case import Case, add_months
from domain.policy import DEFAULT_POLICY, DeadlinePolicy, Policy
from domain.values import PaymentBasis, Programme, Verdict
from domain.workdays import WorkCalendar

__all__ = [
    "PENDING",
    "DeadlineBook",
    "DeadlineKind",
    "Due",
    "deadline_event",
]

Row = dict[str, Any]
PENDING, PASSED, DONE, CANCELLED = "pending", "passed", "done", "cancelled"


class DeadlineKind(StrEnum):
    """What falls due, and what the clock records when it passes."""

    VERIFICATION_OVERDUE = "verification_overdue"
    NOTICE_ENDED = "notice_ended"
    DECISION_NEAR = "decision_near"
    DECISION_DUE = "decision_due"
    DECISION_LIMIT = "decision_limit"
    REVIEW_DUE = "review_due"
    REVIEW_OVERDUE = "review_overdue"
    EMERGENCY_NOT_REGULARISED = "emergency_not_regularised"

    @property
    def event_class(self) -> type[Case.DeadlinePassed]:
        """The case event the clock records when this deadline passes."""
        return _EVENTS[self]

    @property
    def rule(self) -> str:
        """The rule, recorded as the event's reason."""
        return _RULES[self]


_EVENTS: dict[DeadlineKind, type[Case.DeadlinePassed]] = {
    DeadlineKind.VERIFICATION_OVERDUE: Case.Escalated,
    DeadlineKind.NOTICE_ENDED: Case.ReadyForEnrolment,
    DeadlineKind.DECISION_NEAR: Case.DeadlineWarned,
    DeadlineKind.DECISION_DUE: Case.DeadlineWarned,
    DeadlineKind.DECISION_LIMIT: Case.Escalated,
    DeadlineKind.REVIEW_DUE: Case.ReviewFellDue,
    DeadlineKind.REVIEW_OVERDUE: Case.Escalated,
    DeadlineKind.EMERGENCY_NOT_REGULARISED: Case.Escalated,
}
_RULES = {
    DeadlineKind.VERIFICATION_OVERDUE: (
        "verification visit not recorded by its due date: escalated to the county "
        "(rule verification-due-date)"
    ),
    DeadlineKind.NOTICE_ENDED: (
        "public notice ended without an open objection: ready for the enrolment decision "
        "(rule dibao-public-notice)"
    ),
    DeadlineKind.DECISION_NEAR: (
        "decision due soon: the working-day limit from discovery is near "
        "(rule decision-within-working-days)"
    ),
    DeadlineKind.DECISION_DUE: (
        "no decision within the working days allowed from discovery; the extended limit "
        "applies (rule decision-within-working-days)"
    ),
    DeadlineKind.DECISION_LIMIT: (
        "no decision within the extended working-day limit: escalated to the county "
        "(rule decision-within-working-days)"
    ),
    DeadlineKind.REVIEW_DUE: (
        "periodic review fell due for the household's category: review task (rule periodic-review)"
    ),
    DeadlineKind.REVIEW_OVERDUE: (
        "periodic review not done within its grace period: escalated to the county "
        "(rule periodic-review)"
    ),
    DeadlineKind.EMERGENCY_NOT_REGULARISED: (
        "emergency relief not regularised within its working-day limit: escalated to the "
        "county (rule emergency-relief-must-be-regularised)"
    ),
}
_DECISIONS = (DeadlineKind.DECISION_NEAR, DeadlineKind.DECISION_DUE, DeadlineKind.DECISION_LIMIT)


@dataclass(frozen=True)
class Due:
    """A pending deadline that has passed, as the clock hands it to CaseWork."""

    case_id: UUID
    deadline: str
    kind: DeadlineKind
    due_at: datetime
    region: str

    @property
    def cause(self) -> str:
        """The causation id of the event it leads to: the deadline itself."""
        return f"deadline:{self.case_id}:{self.deadline}@{self.due_at.isoformat()}"


def deadline_event(due: Due, version: int, recorded_at: datetime) -> Case.DeadlinePassed:
    """The event the clock records for a deadline that passed, at a case's next version.

    It happened when the deadline passed (occurred_at = due_at, the same on every run), and
    was recorded when the clock saw it (timestamp).
    """
    extra: dict[str, Any] = {}
    kind = due.kind
    if kind.event_class is Case.Escalated:
        extra["escalated_to"] = f"county {due.region[:6]}"
    elif kind.event_class is Case.ReviewFellDue:
        extra["programme"] = due.deadline.partition(":")[2]
    event_class: Any = kind.event_class  # the library's events take their fields as keywords
    event: Case.DeadlinePassed = event_class(
        originator_id=due.case_id,
        originator_version=version,
        timestamp=recorded_at,
        actor="clock",
        role="system",
        reason=kind.rule,
        occurred_at=due.due_at,
        causation_id=due.cause,
        correlation_id=due.cause,
        deadline=due.deadline,
        kind=kind.value,
        due_at=due.due_at,
        **extra,
    )
    return event


@dataclass(frozen=True)
class DeadlineBook:
    """Folds a case's events into its deadline rows: pure, the policy and calendar given."""

    policy: Policy = DEFAULT_POLICY
    calendar: WorkCalendar = field(default_factory=WorkCalendar)

    @property
    def rules(self) -> DeadlinePolicy:
        """The clock's local rules (warnings, grace periods, overrides)."""
        return self.calendar.policy

    def evolve(self, rows: MutableMapping[str, Row], case_id: UUID, event: Any) -> set[str]:
        """Fold one event into the case's rows (deadline id -> row); the ids changed."""
        changed: set[str] = set()
        at: datetime = event.occurred_at
        cal = self.calendar
        match event:
            case Case.Discovered():
                day = cal.local_date(at)
                days = self.policy.decision_days
                limits = (
                    (DeadlineKind.DECISION_NEAR, max(days - self.rules.decision_warning_days, 1)),
                    (DeadlineKind.DECISION_DUE, days),
                    (DeadlineKind.DECISION_LIMIT, self.policy.decision_days_max),
                )
                for kind, workdays in limits:
                    counted = cal.add_workdays(day, workdays)
                    basis = f"{workdays} working days from {day} ({counted.basis})"
                    self._open(
                        rows,
                        changed,
                        case_id,
                        event.region,
                        kind,
                        "",
                        cal.end_of(counted.day),
                        basis,
                    )
            case Case.VerificationAssigned():
                due = cal.end_of(event.due_on)
                basis = f"visit by {event.assignee} due {event.due_on}"
                self._open(
                    rows, changed, case_id, None, DeadlineKind.VERIFICATION_OVERDUE, "", due, basis
                )
            case Case.Verified():
                self._done(rows, changed, [DeadlineKind.VERIFICATION_OVERDUE.value], at)
                if event.verdict != Verdict.NEEDS_SUPPORT.value:  # decided: no support due
                    self._done(rows, changed, [k.value for k in _DECISIONS], at)
            case Case.NoticePublished():
                ends = event.starts_on + timedelta(days=event.days)
                basis = f"{event.days}-day notice from {event.starts_on}"
                self._open(
                    rows,
                    changed,
                    case_id,
                    None,
                    DeadlineKind.NOTICE_ENDED,
                    "",
                    cal.start_of(ends),
                    basis,
                )
            case Case.ObjectionRaised():
                self._cancel(rows, changed, [DeadlineKind.NOTICE_ENDED.value])
            case Case.Enrolled():
                self._done(rows, changed, [k.value for k in _DECISIONS], at)
                if Programme(event.programme).is_dibao:
                    self._done(rows, changed, [DeadlineKind.NOTICE_ENDED.value], at)
                if event.basis == PaymentBasis.MONTHLY.value:
                    review_on = add_months(event.effective_from, event.review_interval_months)
                    months = event.review_interval_months
                    self._open_review(rows, changed, case_id, event.programme, review_on, months)
            case Case.Reviewed():
                self._done(rows, changed, self._review_ids(event.programme), at)
                reviewed_on, next_on = event.occurred_at.date(), event.next_review_due
                months = (next_on.year - reviewed_on.year) * 12 + next_on.month - reviewed_on.month
                self._open_review(
                    rows, changed, case_id, event.programme, event.next_review_due, months
                )
            case Case.Exited():
                self._cancel(rows, changed, self._review_ids(event.programme))
            case Case.EmergencyReliefGranted():
                limit = self.rules.emergency_regularise_workdays
                counted = cal.add_workdays(cal.local_date(at), limit)
                basis = f"{limit} working days from {cal.local_date(at)} ({counted.basis})"
                kind = DeadlineKind.EMERGENCY_NOT_REGULARISED
                self._open(
                    rows,
                    changed,
                    case_id,
                    None,
                    kind,
                    event.grant_id,
                    cal.end_of(counted.day),
                    basis,
                )
            case Case.EmergencyReliefRegularised():
                kind = DeadlineKind.EMERGENCY_NOT_REGULARISED
                self._done(rows, changed, [f"{kind.value}:{event.grant_id}"], at)
            case Case.Closed():  # nothing is awaited any more, passed or not
                self._cancel(rows, changed, list(rows), also_passed=True)
            case Case.DeadlinePassed():
                row = rows.get(event.deadline)
                if row is not None and row["state"] == PENDING and row["due_at"] == event.due_at:
                    row["state"] = PASSED
                    row["passed_event"] = type(event).__name__
                    row["passed_at"] = event.timestamp
                    changed.add(event.deadline)
        return changed

    # -- the three moves ----------------------------------------------------------------

    def _open(
        self,
        rows: MutableMapping[str, Row],
        changed: set[str],
        case_id: UUID,
        region: str | None,
        kind: DeadlineKind,
        key: str,
        due_at: datetime,
        basis: str,
    ) -> None:
        """A deadline falls due at a moment; an earlier one of the same id is replaced."""
        deadline = f"{kind.value}:{key}" if key else kind.value
        if region is None:  # the case's county, from the rows opened at discovery
            region = next((r["region"] for r in rows.values()), "")
        rows[deadline] = {
            "case_id": case_id,
            "deadline": deadline,
            "kind": kind.value,
            "region": region,
            "due_at": due_at,
            "basis": basis,
            "state": PENDING,
            "done_at": None,
            "passed_event": None,
            "passed_at": None,
        }
        changed.add(deadline)

    @staticmethod
    def _done(
        rows: MutableMapping[str, Row], changed: set[str], ids: Iterable[str], at: datetime
    ) -> None:
        """The step was taken at a moment: a pending deadline will not pass."""
        for deadline in ids:
            row = rows.get(deadline)
            if row is None or row["state"] == CANCELLED or row["done_at"] is not None:
                continue
            row["done_at"] = at
            if row["state"] == PENDING:
                row["state"] = DONE
            changed.add(deadline)

    @staticmethod
    def _cancel(
        rows: MutableMapping[str, Row],
        changed: set[str],
        ids: Iterable[str],
        *,
        also_passed: bool = False,
    ) -> None:
        """The deadline no longer applies (objection, exit, closure)."""
        states = (PENDING, PASSED) if also_passed else (PENDING,)
        for deadline in ids:
            row = rows.get(deadline)
            if row is not None and row["state"] in states and row["done_at"] is None:
                row["state"] = CANCELLED
                changed.add(deadline)

    # -- reviews ------------------------------------------------------------------------

    @staticmethod
    def _review_ids(programme: str) -> list[str]:
        return [f"{DeadlineKind.REVIEW_DUE.value}:{programme}",
                f"{DeadlineKind.REVIEW_OVERDUE.value}:{programme}"]  # fmt: skip

    def _open_review(
        self,
        rows: MutableMapping[str, Row],
        changed: set[str],
        case_id: UUID,
        programme: str,
        due: date,
        months: int,
    ) -> None:
        basis = f"{months}-month review interval"
        grace = self.rules.review_grace_days
        starts = self.calendar.start_of(due)
        self._open(rows, changed, case_id, None, DeadlineKind.REVIEW_DUE, programme, starts, basis)
        overdue = self.calendar.start_of(due + timedelta(days=grace))
        self._open(
            rows, changed, case_id, None, DeadlineKind.REVIEW_OVERDUE, programme, overdue,
            f"{basis}, {grace} days' grace",
        )  # fmt: skip
