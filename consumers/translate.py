"""Upstream messages become CaseWork commands: pure, decided on what the store says now.

The intake reads a `Situation` (the household's open case and, for messages acting on a
case, a few facts about it), calls `translate`, and runs the commands in order. Because
each step is decided on the current state (consent already given? programmes still
active?), translating again after a partial run yields only the steps still to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import NAMESPACE_URL, UUID, uuid5

from consumers.contracts import (
    ApplicationSubmittedEvent,
    CloudEvent,
    DeathRegisteredEvent,
    MonitoringAlertEvent,
    PaymentSettledEvent,
    ScreeningHitEvent,
    VerificationReportedEvent,
)
from domain.case import Case
from domain.commands import (
    AssignVerification,
    AttachSignal,
    CloseCase,
    Command,
    ExitProgramme,
    GiveConsent,
    OpenCase,
    Pay,
    RecordPaymentFailure,
    Verify,
    WithdrawConsent,
)
from domain.errors import CaseWorkError
from domain.payroll import SettlePayrollInstruction
from domain.provenance import Provenance
from domain.roles import Role
from domain.values import Channel, Programme

__all__ = [
    "DEFAULT_REASONS",
    "CaseFacts",
    "NoOpenCaseError",
    "Situation",
    "acts_on_case",
    "case_id_for",
    "provenance",
    "translate",
]

# The legal basis recorded when the upstream data gives no reason of its own.
DEFAULT_REASONS = {
    "monitoring.alert": "dynamic monitoring alert: active discovery of a household at risk",
    "application.submitted": (
        "application for social assistance (Interim Measures for Social Assistance, art. 11)"
    ),
    "verification.reported": (
        "household verification visit (Interim Measures for Social Assistance, art. 11)"
    ),
    "payment.settled": "payment settlement reported by finance",
    "civil.death_registered": (
        "death registered by the civil registry: benefits end "
        "(Interim Measures for Social Assistance, arts. 13 and 18)"
    ),
    "screening.hit": "data comparison: active discovery by departments' data (数据比对)",
}
_MEMBER_DIED = (
    "death of a household member registered: the household's benefits are to be reviewed "
    "(Interim Measures for Social Assistance, art. 13)"
)
_CHANNELS = {
    "hotline": Channel.HOTLINE,
    "online": Channel.APPLICATION_ONLINE,
    "one_window_hall": Channel.APPLICATION_HALL,
}
_CASE_IDS = uuid5(NAMESPACE_URL, "https://jiuzhu.example/upstream-case")
_SIGNAL_LIMIT = 500  # AttachSignal's limit


class NoOpenCaseError(CaseWorkError):
    """A message acts on a household's case, but the household has no open case."""

    rule = "message-addresses-an-open-case"

    def __init__(self, household_id: str, detail: str) -> None:
        self.household_id = household_id
        super().__init__(f"household {household_id}: {detail} (rule {self.rule})")


@dataclass(frozen=True)
class CaseFacts:
    """What translation needs to know about the case a message acts on."""

    case_id: UUID
    household_id: str
    household_size: int
    consent: bool
    active_programmes: tuple[str, ...] = ()
    unregularised_grants: tuple[str, ...] = ()

    @classmethod
    def of(cls, case: Case) -> CaseFacts:
        """The facts of a case as it stands."""
        return cls(
            case_id=case.id,
            household_id=case.household_id,
            household_size=case.household_size,
            consent=case.consent,
            active_programmes=tuple(sorted(case.active_programmes)),
            unregularised_grants=tuple(
                sorted(k for k, g in case.emergency_grants.items() if not g["regularised"])
            ),
        )


@dataclass(frozen=True)
class Situation:
    """What the event store says about the household a message concerns."""

    open_case_id: UUID | None = None
    case: CaseFacts | None = None  # read only for messages that act on a case


def acts_on_case(event: CloudEvent) -> bool:
    """Whether translating this message needs the facts of its case."""
    return not isinstance(event, MonitoringAlertEvent | ApplicationSubmittedEvent)


def case_id_for(event: CloudEvent) -> UUID:
    """The id of the case a message opens: the same on every redelivery."""
    return uuid5(_CASE_IDS, event.message_key)


def provenance(event: CloudEvent, reason: str | None = None) -> Provenance:
    """Who, why, what caused it, when: the envelope speaks for the upstream system."""
    return Provenance(
        actor=event.source,
        role=Role.UPSTREAM_SYSTEM,
        reason=event.data.reason or reason or DEFAULT_REASONS.get(event.type, event.type),
        occurred_at=event.time,
        causation_id=event.causation_id,
        correlation_id=event.correlation_id,
    )


def translate(event: CloudEvent, situation: Situation) -> list[Command]:
    """The commands a message causes, in order; empty when it changes nothing."""
    if isinstance(event, MonitoringAlertEvent):
        return [_alert(event, situation)]
    if isinstance(event, ApplicationSubmittedEvent):
        return [_application(event, situation)]
    if isinstance(event, VerificationReportedEvent):
        return _verification(event, _case(event, situation))
    if isinstance(event, PaymentSettledEvent):
        if event.data.instruction_id is not None:  # a payroll instruction: its cycle decides
            return [_payroll_settlement(event)]
        return [_payment(event, _case(event, situation))]
    if isinstance(event, DeathRegisteredEvent):
        return _death(event, situation.case)
    if isinstance(event, ScreeningHitEvent):
        return _screening_hit(event, situation)
    raise TypeError(f"no translation for {type(event).__name__}")


def _signal(text: str) -> str:
    return text if len(text) <= _SIGNAL_LIMIT else text[: _SIGNAL_LIMIT - 1] + "…"


def _alert(event: MonitoringAlertEvent, situation: Situation) -> Command:
    data, by = event.data, provenance(event)
    indicators = [f"{name}={value}" for name, value in sorted(data.indicators.items())]
    if situation.open_case_id is None:
        return OpenCase(
            case_id=case_id_for(event),
            household_id=data.household_id,
            region=data.region,
            channel=Channel.MONITORING_ALERT,
            signals=[*data.signals, *(_signal(f"indicator {i}") for i in indicators)],
            household_size=data.household_size,
            personal=data.personal,
            by=by,
        )
    # One alert, one event: its signals and indicators together.
    measured = f" (indicators: {', '.join(indicators)})" if indicators else ""
    signal = f"monitoring alert: {'; '.join(data.signals)}{measured}"
    return AttachSignal(case_id=situation.open_case_id, signal=_signal(signal), by=by)


def _application(event: ApplicationSubmittedEvent, situation: Situation) -> Command:
    data, by = event.data, provenance(event)
    asked = ", ".join(p.value for p in data.programmes)
    if situation.open_case_id is None:
        return OpenCase(
            case_id=case_id_for(event),
            household_id=data.household_id,
            region=data.region,
            channel=_CHANNELS[data.channel],
            signals=[_signal(f"applied for {asked}: {data.need}")],
            household_size=data.household_size,
            personal=data.personal,
            by=by,
        )
    signal = f"application via {data.channel} for {asked}: {data.need}"
    return AttachSignal(case_id=situation.open_case_id, signal=_signal(signal), by=by)


def _case(
    event: VerificationReportedEvent | PaymentSettledEvent, situation: Situation
) -> CaseFacts:
    household = event.data.household_id
    facts = situation.case
    if facts is None:
        raise NoOpenCaseError(household, f"no open case for {event.type}")
    if facts.household_id != household:
        raise NoOpenCaseError(household, f"case {facts.case_id} belongs to another household")
    return facts


def _verification(event: VerificationReportedEvent, case: CaseFacts) -> list[Command]:
    data, by = event.data, provenance(event)
    if not data.consent.given:
        # No consent, no verification (the domain's rule); the refusal is still recorded.
        refused = AttachSignal(
            case_id=case.case_id,
            signal=_signal(f"verification visit by {data.team}: the household did not consent"),
            by=by,
        )
        return [*([WithdrawConsent(case_id=case.case_id, by=by)] if case.consent else []), refused]
    consent = [GiveConsent(case_id=case.case_id, given_by=data.consent.given_by, by=by)]
    verify = Verify(
        case_id=case.case_id,
        verdict=data.verdict,
        household_size=data.household_size,
        monthly_income_fen=data.monthly_income_fen,
        facts={"team": data.team, **data.facts},
        by=by,
    )
    return [*(consent if not case.consent else []), verify]


def _payment(event: PaymentSettledEvent, case: CaseFacts) -> Command:
    data = event.data
    if data.outcome == "paid":
        kind: type[Pay | RecordPaymentFailure] = Pay
        by = provenance(event)
    else:
        kind = RecordPaymentFailure
        by = provenance(event, f"payment failed: {data.failure or 'reported by finance'}")
    return kind(
        case_id=case.case_id,
        programme=data.programme,
        period=data.period,
        amount_fen=data.amount_fen,
        payment_ref=data.payment_ref,
        by=by,
    )


def _payroll_settlement(event: PaymentSettledEvent) -> Command:
    data = event.data
    return SettlePayrollInstruction(
        instruction_id=data.instruction_id or "",
        outcome=data.outcome,
        amount_fen=data.amount_fen,
        payment_ref=data.payment_ref,
        failure=data.failure or "",
        by=provenance(event),
    )


def _death(event: DeathRegisteredEvent, case: CaseFacts | None) -> list[Command]:
    """Decided: benefits here are the household's, not one person's.

    A one-member household: every active programme ends on the date of death, then the
    case closes (unless an emergency grant still awaits regularisation: closing would be
    refused, so a signal asks staff to finish it). A larger household: its benefits do
    not end with one member; the death is attached as a signal for the review that
    adjusts them. No open case: nothing to end.
    """
    if case is None:
        return []
    data = event.data
    registered = f"death registered ({data.registration_ref}) on {data.date_of_death}"
    if case.household_size > 1:
        by = provenance(event, _MEMBER_DIED)
        size = case.household_size
        signal = f"{registered}: household of {size} now {size - 1}; review the benefits"
        return [AttachSignal(case_id=case.case_id, signal=signal, by=by)]
    by = provenance(event)
    exits: list[Command] = [
        ExitProgramme(
            case_id=case.case_id, programme=Programme(p), ended_on=data.date_of_death, by=by
        )
        for p in case.active_programmes
    ]
    if case.unregularised_grants:
        pending = ", ".join(case.unregularised_grants)
        signal = f"{registered}: closure waits for emergency grant(s) {pending} to be regularised"
        return [*exits, AttachSignal(case_id=case.case_id, signal=signal, by=by)]
    return [*exits, CloseCase(case_id=case.case_id, by=by)]


def _screening_hit(event: ScreeningHitEvent, situation: Situation) -> list[Command]:
    """Decided: a hit becomes work once, whatever the household's state.

    No open case: the case opens (channel data_comparison) with a verification task. An
    open case that this very hit opened (a run stopped between its two steps): only the
    task is left to issue. An enrolled household (应退尽退): a review visit is assigned,
    its reason saying what was found; enrolment is never ended automatically. Any other
    open case: the finding is attached as a signal to the work already under way.
    """
    data = event.data
    signal = _signal(f"data comparison {data.batch}, rule {data.rule}: {data.finding}")
    opened = case_id_for(event)

    def task(case_id: UUID, reason: str | None = None) -> Command:
        by = provenance(event, data.legal_basis)
        if reason is not None:
            by = by.model_copy(update={"reason": _signal(reason)})
        return AssignVerification(
            case_id=case_id, assignee=data.assignee, due_on=data.verify_by, by=by
        )

    if situation.open_case_id is None:
        indicators = [f"indicator {k}={v}" for k, v in sorted(data.indicators.items())]
        return [
            OpenCase(
                case_id=opened,
                household_id=data.household_id,
                region=data.region,
                channel=Channel.DATA_COMPARISON,
                signals=[signal, *(_signal(i) for i in indicators)],
                household_size=data.household_size,
                by=provenance(event, data.legal_basis),
            ),
            task(opened),
        ]
    if situation.open_case_id == opened:
        return [task(opened)]
    if situation.case is not None and situation.case.active_programmes:
        review = f"eligibility review: {signal} ({data.legal_basis})"
        return [task(situation.open_case_id, review)]
    by = provenance(event, data.legal_basis)
    return [AttachSignal(case_id=situation.open_case_id, signal=signal, by=by)]
