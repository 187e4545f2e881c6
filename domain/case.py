"""The Case aggregate: one episode of assistance for one household, event by event."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.errors import (
    ActiveEnrolmentsError,
    AlreadyEnrolledError,
    CaseIsClosedError,
    ConsentRequiredError,
    DuplicatePaymentError,
    EmergencyNotRegularisedError,
    InvalidAmountError,
    NotEnrolledError,
    NoticePeriodError,
    OutsideEnrolmentPeriodError,
    ReasonRequiredError,
    SelfApprovalError,
    UnknownItemError,
    VerificationRequiredError,
)
from domain.policy import DEFAULT_POLICY, Policy
from domain.provenance import Provenance
from domain.values import ONE_OFF, PaymentBasis, Programme, Verdict, month_of

__all__ = ["Case", "add_months"]

# Civil dates of business times (a one-off grant ends on its payment's day) in China time.
_CHINA_TIME = timezone(timedelta(hours=8))


def add_months(day: date, months: int) -> date:
    """The same day some months later (clamped to the month's end)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    for candidate in (day.day, 30, 29, 28):
        try:
            return date(year, month, min(day.day, candidate))
        except ValueError:
            continue
    raise AssertionError("unreachable")  # pragma: no cover


class Case(Aggregate):
    """One household's episode of assistance, from discovery to closure."""

    class Event(Aggregate.Event):
        """Every case event records who acted, why, what caused it and when it happened."""

        actor: str
        role: str
        reason: str
        occurred_at: datetime
        causation_id: str
        correlation_id: str

        def apply(self, aggregate: Any) -> None:
            assert isinstance(aggregate, Case)
            self.apply_to(aggregate)

        def apply_to(self, case: Case) -> None:
            """Evolve the case's state; events that change nothing leave it as is."""

    # -- discovery ----------------------------------------------------------------------

    class Discovered(Event, Aggregate.Created):
        """A household in hardship came to light: the case opens."""

        household_id: str
        region: str
        channel: str
        signals: list[str]
        household_size: int
        # Names, id-card numbers, phones, addresses: encrypted at rest per household.
        personal: dict[str, str]

        def apply_to(self, case: Case) -> None:
            case.household_id = self.household_id
            case.region = self.region
            case.channel = self.channel
            case.signals = list(self.signals)
            case.household_size = self.household_size
            case.personal = dict(self.personal)
            case.discovered_at = self.occurred_at
            case.closed_reason = None
            case.closed_at = None
            case.assignee = None
            case.verification_due = None
            case.consent = False
            case.verdict = None
            case.verified_at = None
            case.monthly_income_fen = None
            case.measures = []
            case.notice_starts_on = None
            case.objection_open = False
            case.enrolments = {}
            case.payments = {}
            case.paid_total_fen = 0
            case.emergency_grants = {}
            case.assessed_by = None
            case.referrals = {}
            case.services_delivered = 0
            case.deadlines_passed = {}

    class SignalAttached(Event):
        """Another risk signal about the same household joined the open case."""

        signal: str

        def apply_to(self, case: Case) -> None:
            case.signals.append(self.signal)

    # -- verification -------------------------------------------------------------------

    class VerificationAssigned(Event):
        """A township worker or village committee is to visit by a due date."""

        assignee: str
        due_on: date

        def apply_to(self, case: Case) -> None:
            case.assignee = self.assignee
            case.verification_due = self.due_on

    class ConsentGiven(Event):
        """The household agreed to verification of its circumstances and to referrals."""

        given_by: str

        def apply_to(self, case: Case) -> None:
            case.consent = True

    class ConsentWithdrawn(Event):
        """The household withdrew its consent."""

        def apply_to(self, case: Case) -> None:
            case.consent = False

    class Verified(Event):
        """The door-to-door visit established the household's facts and a verdict."""

        verdict: str
        household_size: int
        monthly_income_fen: int
        facts: dict[str, str]

        def apply_to(self, case: Case) -> None:
            case.verdict = self.verdict
            case.verified_at = self.occurred_at
            case.household_size = self.household_size
            case.monthly_income_fen = self.monthly_income_fen

    # -- assessment and notice ----------------------------------------------------------

    class Assessed(Event):
        """The assessment panel decided the measures: programmes with amounts."""

        measures: list[dict[str, Any]]

        def apply_to(self, case: Case) -> None:
            case.measures = [dict(m) for m in self.measures]
            case.objection_open = False
            case.assessed_by = self.actor

    class NoticePublished(Event):
        """The proposed dibao decision is on public notice (公示) from a date."""

        starts_on: date
        days: int

        def apply_to(self, case: Case) -> None:
            case.notice_starts_on = self.starts_on
            case.notice_days = self.days
            case.objection_open = False

    class ObjectionRaised(Event):
        """Someone objected during the public notice; a new assessment must answer it."""

        objector: str

        def apply_to(self, case: Case) -> None:
            case.objection_open = True

    # -- enrolment and payment ----------------------------------------------------------

    class Enrolled(Event):
        """A department enrolled the household in a programme."""

        programme: str
        department: str
        basis: str
        amount_fen: int
        category: str
        effective_from: date
        review_interval_months: int

        def apply_to(self, case: Case) -> None:
            case.enrolments[self.programme] = {
                "department": self.department,
                "basis": self.basis,
                "amount_fen": self.amount_fen,
                "category": self.category,
                "effective_from": self.effective_from,
                "review_due": add_months(self.effective_from, self.review_interval_months),
                "review_interval_months": self.review_interval_months,
                "ended_on": None,
            }
            if self.basis == PaymentBasis.ONE_OFF.value:
                # A new one-off grant is paid once again: the last grant's payment is history.
                case.payments.pop(f"{self.programme}:{ONE_OFF}", None)

    class Paid(Event):
        """Finance paid a benefit for a programme and period (a month or one-off)."""

        programme: str
        period: str
        amount_fen: int
        payment_ref: str

        def apply_to(self, case: Case) -> None:
            case.payments[f"{self.programme}:{self.period}"] = self.amount_fen
            case.paid_total_fen += self.amount_fen
            # A one-off grant's enrolment ends with its one payment (rule since round 2;
            # histories recorded before read the same way: the rule is in the evolution).
            enrolment = case.enrolments.get(self.programme)
            if self.period == ONE_OFF and enrolment is not None and enrolment["ended_on"] is None:
                enrolment["ended_on"] = self.occurred_at.astimezone(_CHINA_TIME).date()

    class PaymentFailed(Event):
        """Finance reported that a payment did not go through; it may be paid again."""

        programme: str
        period: str
        amount_fen: int
        payment_ref: str

    class EmergencyReliefGranted(Event):
        """Relief paid first, before verification (先行救助); to be regularised later."""

        grant_id: str
        programme: str
        amount_fen: int

        def apply_to(self, case: Case) -> None:
            case.emergency_grants[self.grant_id] = {
                "amount_fen": self.amount_fen,
                "regularised": False,
                "granted_by": self.actor,
            }
            case.paid_total_fen += self.amount_fen

    class EmergencyReliefRegularised(Event):
        """The paperwork for an emergency grant was completed after verification."""

        grant_id: str

        def apply_to(self, case: Case) -> None:
            case.emergency_grants[self.grant_id]["regularised"] = True

    # -- services and referrals ---------------------------------------------------------

    class ServiceDelivered(Event):
        """A service (counselling, companionship, mediation...) reached the household."""

        service: str
        provider: str

        def apply_to(self, case: Case) -> None:
            case.services_delivered += 1

    class Referred(Event):
        """The case was referred to a social organisation (needs consent)."""

        referral_id: str
        organisation: str
        need: str

        def apply_to(self, case: Case) -> None:
            case.referrals[self.referral_id] = {
                "organisation": self.organisation,
                "answered": False,
                "accepted": None,
            }

    class ReferralAnswered(Event):
        """The social organisation answered a referral."""

        referral_id: str
        accepted: bool
        amount_fen: int

        def apply_to(self, case: Case) -> None:
            referral = case.referrals[self.referral_id]
            referral["answered"] = True
            referral["accepted"] = self.accepted

    # -- follow-up ----------------------------------------------------------------------

    class Reviewed(Event):
        """A periodic review of an enrolment: continue, adjust or exit."""

        programme: str
        outcome: str
        next_review_due: date

        def apply_to(self, case: Case) -> None:
            case.enrolments[self.programme]["review_due"] = self.next_review_due

    class BenefitAdjusted(Event):
        """The amount of a programme's benefit changed from a date."""

        programme: str
        amount_fen: int
        effective_from: date

        def apply_to(self, case: Case) -> None:
            case.enrolments[self.programme]["amount_fen"] = self.amount_fen

    class Exited(Event):
        """The household left a programme."""

        programme: str
        ended_on: date

        def apply_to(self, case: Case) -> None:
            case.enrolments[self.programme]["ended_on"] = self.ended_on

    class Closed(Event):
        """The case closed; no further step may be taken on it."""

        def apply_to(self, case: Case) -> None:
            case.closed_reason = self.reason
            case.closed_at = self.occurred_at

    # -- deadlines: recorded by the clock (actor clock, role system) ----------------------

    class DeadlinePassed(Event):
        """A deadline of the case passed: the rule is the reason, the deadline the cause."""

        deadline: str  # "<kind>:<key>" within the case, e.g. "review_due:rural_dibao"
        kind: str
        due_at: datetime

        def apply_to(self, case: Case) -> None:
            passed = case.__dict__.setdefault("deadlines_passed", {})
            passed[f"{self.deadline}@{self.due_at.isoformat()}"] = {
                "event": type(self).__name__,
                "kind": self.kind,
                "due_at": self.due_at,
            }

    class DeadlineWarned(DeadlinePassed):
        """A deadline is near or passed its first term: the staff are warned."""

    class Escalated(DeadlinePassed):
        """A deadline passed with the step not done: the case goes up to the county."""

        escalated_to: str

    class ReviewFellDue(DeadlinePassed):
        """An enrolment's periodic review fell due: a review task for the caseworker."""

        programme: str

    class ReadyForEnrolment(DeadlinePassed):
        """The public notice ended without an open objection: the approver may enrol."""

    if TYPE_CHECKING:  # set by Discovered; declared here for readers and type checkers
        household_id: str
        region: str
        channel: str
        signals: list[str]
        household_size: int
        personal: dict[str, str]
        discovered_at: datetime
        closed_reason: str | None
        closed_at: datetime | None
        assignee: str | None
        verification_due: date | None
        consent: bool
        verdict: str | None
        verified_at: datetime | None
        monthly_income_fen: int | None
        measures: list[dict[str, Any]]
        notice_starts_on: date | None
        notice_days: int
        objection_open: bool
        enrolments: dict[str, dict[str, Any]]
        payments: dict[str, int]
        paid_total_fen: int
        emergency_grants: dict[str, dict[str, Any]]
        assessed_by: str | None
        referrals: dict[str, dict[str, Any]]
        services_delivered: int
        deadlines_passed: dict[str, dict[str, Any]]

    # -- commands -----------------------------------------------------------------------

    @classmethod
    def discover(
        cls,
        *,
        case_id: UUID,
        household_id: str,
        region: str,
        channel: str,
        signals: list[str],
        household_size: int,
        personal: dict[str, str],
        by: Provenance,
    ) -> Case:
        """Open a case for a household that came to light."""
        return cls._create(
            Case.Discovered,
            id=case_id,
            household_id=household_id,
            region=region,
            channel=channel,
            signals=list(signals),
            household_size=household_size,
            personal=dict(personal),
            **by.event_fields(),
        )

    def attach_signal(self, signal: str, *, by: Provenance) -> None:
        """Record another risk signal about the household."""
        self.check_case_is_open()
        self.trigger_event(Case.SignalAttached, signal=signal, **by.event_fields())

    def assign_verification(self, assignee: str, due_on: date, *, by: Provenance) -> None:
        """Send someone to verify the household's circumstances by a date."""
        self.check_case_is_open()
        self.trigger_event(
            Case.VerificationAssigned, assignee=assignee, due_on=due_on, **by.event_fields()
        )

    def give_consent(self, given_by: str, *, by: Provenance) -> None:
        """Record the household's consent."""
        self.check_case_is_open()
        self.trigger_event(Case.ConsentGiven, given_by=given_by, **by.event_fields())

    def withdraw_consent(self, *, by: Provenance) -> None:
        """Record that the household withdrew its consent."""
        self.check_case_is_open()
        self.trigger_event(Case.ConsentWithdrawn, **by.event_fields())

    def verify(
        self,
        verdict: Verdict,
        household_size: int,
        monthly_income_fen: int,
        facts: dict[str, str],
        *,
        by: Provenance,
    ) -> None:
        """Record the visit's findings: a verification needs the household's consent."""
        self.check_case_is_open()
        self.check_consent("verification")
        if monthly_income_fen < 0:
            raise InvalidAmountError(self.id, "monthly income cannot be negative")
        self.trigger_event(
            Case.Verified,
            verdict=verdict.value,
            household_size=household_size,
            monthly_income_fen=monthly_income_fen,
            facts=dict(facts),
            **by.event_fields(),
        )

    def assess(self, measures: list[dict[str, Any]], *, by: Provenance) -> None:
        """Record the assessment panel's measures for a verified household."""
        self.check_case_is_open()
        self.check_positive_verification("assessment")
        for measure in measures:
            self.check_amount(int(measure["amount_fen"]))
        self.trigger_event(Case.Assessed, measures=measures, **by.event_fields())

    def publish_notice(self, starts_on: date, days: int, *, by: Provenance) -> None:
        """Put a dibao decision on public notice."""
        self.check_case_is_open()
        self.check_positive_verification("public notice")
        self.trigger_event(
            Case.NoticePublished, starts_on=starts_on, days=days, **by.event_fields()
        )

    def raise_objection(self, objector: str, *, by: Provenance) -> None:
        """Record an objection raised during the public notice."""
        self.check_case_is_open()
        if self.notice_starts_on is None:
            raise UnknownItemError(self.id, "no public notice to object to")
        self.trigger_event(Case.ObjectionRaised, objector=objector, **by.event_fields())

    def enrol(
        self,
        programme: Programme,
        amount_fen: int,
        category: str,
        effective_from: date,
        *,
        by: Provenance,
        policy: Policy = DEFAULT_POLICY,
    ) -> None:
        """Enrol the household in a programme after positive verification and consent."""
        self.check_case_is_open()
        self.check_positive_verification(f"enrolment in {programme}")
        self.check_consent(f"enrolment in {programme}")
        self.check_four_eyes(by, f"enrol it in {programme}", policy)
        self.check_amount(amount_fen)
        current = self.enrolments.get(programme.value)
        if current is not None and current["ended_on"] is None:
            raise AlreadyEnrolledError(self.id, f"already enrolled in {programme}")
        if programme.is_dibao:
            self.check_notice_elapsed(by.occurred_at.date(), policy)
        self.trigger_event(
            Case.Enrolled,
            programme=programme.value,
            department=programme.department.value,
            basis=programme.basis.value,
            amount_fen=amount_fen,
            category=category,
            effective_from=effective_from,
            review_interval_months=policy.review_months(category),
            **by.event_fields(),
        )

    def pay(
        self,
        programme: Programme,
        period: str,
        amount_fen: int,
        payment_ref: str,
        *,
        by: Provenance,
    ) -> None:
        """Record a payment of an enrolled programme for one period, once."""
        self._settle(Case.Paid, programme, period, amount_fen, payment_ref, by)

    def record_payment_failure(
        self,
        programme: Programme,
        period: str,
        amount_fen: int,
        payment_ref: str,
        *,
        by: Provenance,
    ) -> None:
        """Record that finance could not complete a payment (nothing counts as paid)."""
        self._settle(Case.PaymentFailed, programme, period, amount_fen, payment_ref, by)

    def _settle(
        self,
        outcome: type[Case.Paid] | type[Case.PaymentFailed],
        programme: Programme,
        period: str,
        amount_fen: int,
        payment_ref: str,
        by: Provenance,
    ) -> None:
        # A failed payment is checked like a payment: it must be one that could be made.
        self.check_case_is_open()
        self.check_payable(programme, period, amount_fen)
        self.trigger_event(
            outcome,
            programme=programme.value,
            period=period,
            amount_fen=amount_fen,
            payment_ref=payment_ref,
            **by.event_fields(),
        )

    def grant_emergency_relief(
        self, grant_id: str, amount_fen: int, *, by: Provenance, policy: Policy = DEFAULT_POLICY
    ) -> None:
        """Pay temporary relief first; verification and paperwork follow (先行救助)."""
        self.check_case_is_open()
        self.check_four_eyes(by, "grant it emergency relief", policy)
        self.check_amount(amount_fen)
        if grant_id in self.emergency_grants:
            raise DuplicatePaymentError(self.id, f"emergency grant {grant_id} already paid")
        self.trigger_event(
            Case.EmergencyReliefGranted,
            grant_id=grant_id,
            programme=Programme.TEMPORARY_RELIEF.value,
            amount_fen=amount_fen,
            **by.event_fields(),
        )

    def regularise_emergency_relief(
        self, grant_id: str, *, by: Provenance, policy: Policy = DEFAULT_POLICY
    ) -> None:
        """Complete an emergency grant's paperwork once the household is verified."""
        self.check_case_is_open()
        grant = self.emergency_grants.get(grant_id)
        if grant is None:
            raise UnknownItemError(self.id, f"no emergency grant {grant_id}")
        if self.verdict is None:
            raise VerificationRequiredError(
                self.id, f"emergency grant {grant_id} can be regularised only after verification"
            )
        self.check_consent(f"regularising emergency grant {grant_id}")
        if grant["regularised"]:
            raise UnknownItemError(self.id, f"emergency grant {grant_id} is already regularised")
        if policy.four_eyes and grant.get("granted_by") == by.actor:
            raise SelfApprovalError(
                self.id, f"{by.actor} granted emergency grant {grant_id} and may not regularise it"
            )
        self.trigger_event(Case.EmergencyReliefRegularised, grant_id=grant_id, **by.event_fields())

    def deliver_service(self, service: str, provider: str, *, by: Provenance) -> None:
        """Record a service delivered to the household."""
        self.check_case_is_open()
        self.trigger_event(
            Case.ServiceDelivered, service=service, provider=provider, **by.event_fields()
        )

    def refer(self, referral_id: str, organisation: str, need: str, *, by: Provenance) -> None:
        """Refer the household to a social organisation, with its consent."""
        self.check_case_is_open()
        self.check_consent(f"referral to {organisation}")
        if referral_id in self.referrals:
            raise UnknownItemError(self.id, f"referral {referral_id} already exists")
        self.trigger_event(
            Case.Referred,
            referral_id=referral_id,
            organisation=organisation,
            need=need,
            **by.event_fields(),
        )

    def answer_referral(
        self, referral_id: str, accepted: bool, amount_fen: int, *, by: Provenance
    ) -> None:
        """Record a social organisation's answer to a referral."""
        self.check_case_is_open()
        referral = self.referrals.get(referral_id)
        if referral is None:
            raise UnknownItemError(self.id, f"no referral {referral_id}")
        if referral["answered"]:
            raise UnknownItemError(self.id, f"referral {referral_id} is already answered")
        if amount_fen < 0 or (amount_fen > 0 and not accepted):
            raise InvalidAmountError(
                self.id, "a referral answer carries a positive amount only when accepted"
            )
        self.trigger_event(
            Case.ReferralAnswered,
            referral_id=referral_id,
            accepted=accepted,
            amount_fen=amount_fen,
            **by.event_fields(),
        )

    def review(self, programme: Programme, outcome: str, *, by: Provenance) -> None:
        """Review an enrolment; the next review falls one interval later."""
        self.check_case_is_open()
        enrolment = self.active_enrolment(programme)
        self.trigger_event(
            Case.Reviewed,
            programme=programme.value,
            outcome=outcome,
            next_review_due=add_months(
                by.occurred_at.date(), int(enrolment["review_interval_months"])
            ),
            **by.event_fields(),
        )

    def adjust_benefit(
        self, programme: Programme, amount_fen: int, effective_from: date, *, by: Provenance
    ) -> None:
        """Change the amount of an active enrolment from a date."""
        self.check_case_is_open()
        self.active_enrolment(programme)
        self.check_amount(amount_fen)
        self.trigger_event(
            Case.BenefitAdjusted,
            programme=programme.value,
            amount_fen=amount_fen,
            effective_from=effective_from,
            **by.event_fields(),
        )

    def exit_programme(self, programme: Programme, ended_on: date, *, by: Provenance) -> None:
        """End the household's enrolment in a programme; a reason is required."""
        self.check_case_is_open()
        self.check_reason(by, f"exit from {programme}")
        self.active_enrolment(programme)
        self.trigger_event(
            Case.Exited, programme=programme.value, ended_on=ended_on, **by.event_fields()
        )

    def close(self, *, by: Provenance) -> None:
        """Close the case once no enrolment is active and emergencies are regularised."""
        self.check_case_is_open()
        self.check_reason(by, "closure")
        if active := sorted(self.active_programmes):
            raise ActiveEnrolmentsError(
                self.id, f"still enrolled in {', '.join(active)}: exit them first"
            )
        if pending := sorted(k for k, g in self.emergency_grants.items() if not g["regularised"]):
            raise EmergencyNotRegularisedError(
                self.id, f"emergency grant(s) {', '.join(pending)} not regularised"
            )
        self.trigger_event(Case.Closed, **by.event_fields())

    # -- rules --------------------------------------------------------------------------

    def check_case_is_open(self) -> None:
        """No step on a closed case."""
        if self.closed_at is not None:
            raise CaseIsClosedError(self.id, f"case is closed ({self.closed_reason})")

    def check_four_eyes(self, by: Provenance, step: str, policy: Policy) -> None:
        """Whoever assessed the case may not approve its outcome too (unless policy allows)."""
        # Snapshots taken before this rule have no assessed_by.
        if policy.four_eyes and by.actor == getattr(self, "assessed_by", None):
            raise SelfApprovalError(self.id, f"{by.actor} assessed this case and may not {step}")

    def check_consent(self, step: str) -> None:
        """Verification, enrolment and referral need the household's recorded consent."""
        if not self.consent:
            raise ConsentRequiredError(self.id, f"{step} needs the household's recorded consent")

    def check_positive_verification(self, step: str) -> None:
        """Assessment, notice and enrolment need a verification that found need."""
        if self.verdict != Verdict.NEEDS_SUPPORT.value:
            found = self.verdict or "no verification yet"
            raise VerificationRequiredError(
                self.id, f"{step} needs a verification that found need ({found})"
            )

    def check_notice_elapsed(self, today: date, policy: Policy) -> None:
        """Dibao: the public notice ran its full term without an open objection."""
        if self.notice_starts_on is None:
            raise NoticePeriodError(self.id, "dibao enrolment needs a public notice first")
        ends = self.notice_starts_on + timedelta(days=policy.notice_days)
        if today < ends:
            raise NoticePeriodError(self.id, f"public notice runs until {ends.isoformat()}")
        if self.objection_open:
            raise NoticePeriodError(self.id, "an objection to the notice awaits a new assessment")

    def check_amount(self, amount_fen: int) -> None:
        """Money is a positive whole number of fen."""
        if isinstance(amount_fen, bool) or not isinstance(amount_fen, int) or amount_fen <= 0:
            raise InvalidAmountError(
                self.id, f"amount must be a positive whole number of fen, got {amount_fen!r}"
            )

    def check_reason(self, by: Provenance, step: str) -> None:
        """Exits and closures are refused without a written reason."""
        if not by.reason.strip():
            raise ReasonRequiredError(self.id, f"{step} needs a reason")

    def check_payable(self, programme: Programme, period: str, amount_fen: int) -> None:
        """A payment needs an enrolment covering the period, once per programme and period."""
        self.check_amount(amount_fen)
        enrolment = self.enrolments.get(programme.value)
        if enrolment is None:
            raise NotEnrolledError(self.id, f"not enrolled in {programme}")
        monthly = enrolment["basis"] == PaymentBasis.MONTHLY.value
        if monthly == (period == ONE_OFF):
            expected = "a month 'YYYY-MM'" if monthly else ONE_OFF
            raise OutsideEnrolmentPeriodError(
                self.id, f"{programme} pays per {expected}, not {period!r}"
            )
        if monthly:
            starts = month_of(enrolment["effective_from"])
            ended_on = enrolment["ended_on"]
            if period < starts or (ended_on is not None and period > month_of(ended_on)):
                ends = month_of(ended_on) if ended_on is not None else "open"
                raise OutsideEnrolmentPeriodError(
                    self.id, f"{programme} enrolment runs {starts}..{ends}, not {period}"
                )
        if f"{programme.value}:{period}" in self.payments:
            raise DuplicatePaymentError(self.id, f"{programme} already paid for {period}")
        if not monthly and enrolment["ended_on"] is not None:
            raise OutsideEnrolmentPeriodError(self.id, f"{programme} enrolment has ended")

    def active_enrolment(self, programme: Programme) -> dict[str, Any]:
        """The active enrolment in a programme, or a rule violation naming it."""
        enrolment = self.enrolments.get(programme.value)
        if enrolment is None or enrolment["ended_on"] is not None:
            raise NotEnrolledError(self.id, f"no active enrolment in {programme}")
        return enrolment

    # -- reading ------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Whether the case is still open."""
        return self.closed_at is None

    @property
    def active_programmes(self) -> list[str]:
        """Programmes the household is currently enrolled in."""
        return [p for p, e in self.enrolments.items() if e["ended_on"] is None]

    @property
    def status(self) -> str:
        """Where the case stands in the workflow."""
        if self.closed_at is not None:
            return "closed"
        if self.active_programmes:
            return "enrolled"
        if self.verdict is not None:
            return "verified"
        if self.assignee is not None:
            return "verifying"
        return "discovered"
