"""Command inputs: pydantic models validated at the boundary (CLI, broker, API alike)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any, ClassVar, Literal, TypeVar
from uuid import UUID, uuid4

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, ValidationError

from domain.errors import InvalidCommandError
from domain.provenance import Provenance
from domain.values import Channel, Programme, Verdict, validate_period, validate_region

__all__ = [
    "COMMANDS",
    "AdjustBenefit",
    "AnswerReferral",
    "Assess",
    "AssignVerification",
    "AttachSignal",
    "CaseCommand",
    "CloseCase",
    "Command",
    "DeliverService",
    "Enrol",
    "ErasePersonalData",
    "ExitProgramme",
    "GiveConsent",
    "GrantEmergencyRelief",
    "Measure",
    "OpenCase",
    "Pay",
    "PersonalData",
    "PublishNotice",
    "RaiseObjection",
    "RecordPaymentFailure",
    "Refer",
    "RegulariseEmergencyRelief",
    "Review",
    "Verify",
    "WithdrawConsent",
    "parse_command",
]

RegionCode = Annotated[
    str,
    AfterValidator(validate_region),
    Field(description="GB/T 2260 six-digit county code", examples=["610523"]),
]
Fen = Annotated[
    StrictInt, Field(gt=0, description="Amount in fen (1 yuan = 100 fen)", examples=[400000])
]
Period = Annotated[
    str,
    AfterValidator(validate_period),
    Field(description="Month 'YYYY-MM', or 'one-off' for a grant", examples=["2023-06"]),
]
Text = Annotated[str, Field(min_length=1, max_length=500)]


class Command(BaseModel):
    """Base of every command: strict fields, and the provenance every event records."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: ClassVar[str]

    by: Provenance = Field(description="Who issues the command, why, and what caused it")


class CaseCommand(Command):
    """A command addressed to an existing case."""

    case_id: UUID = Field(description="The case the command addresses")


class PersonalData(BaseModel):
    """Personal data of the household head: encrypted at rest, never in read models."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="", max_length=100, examples=["王某某"])
    id_card: str = Field(default="", max_length=18, examples=["610523198001011234"])
    phone: str = Field(default="", max_length=20, examples=["13800000000"])
    address: str = Field(default="", max_length=200, examples=["安仁镇某村3组"])
    # Where the payroll pays the household (disbursement files only; see payroll/export).
    bank_account: str = Field(default="", max_length=40, examples=["6217003810000123456"])


class OpenCase(Command):
    """Open a case for a household in hardship (refused while it has an open case)."""

    name: ClassVar[str] = "open_case"
    case_id: UUID = Field(default_factory=uuid4, description="Id of the new case")
    household_id: Text = Field(description="Household registry number", examples=["HH-610523-0001"])
    region: RegionCode
    channel: Channel
    signals: list[Text] = Field(default_factory=list, description="Risk signals that raised it")
    household_size: StrictInt = Field(default=1, ge=1, le=30)
    personal: PersonalData = Field(default_factory=PersonalData)


class AttachSignal(CaseCommand):
    """Attach another risk signal to an open case."""

    name: ClassVar[str] = "attach_signal"
    signal: Text


class AssignVerification(CaseCommand):
    """Send a worker to verify the household by a due date."""

    name: ClassVar[str] = "assign_verification"
    assignee: Text
    due_on: date


class GiveConsent(CaseCommand):
    """Record the household's consent."""

    name: ClassVar[str] = "give_consent"
    given_by: Text = Field(description="Who in the household consented")


class WithdrawConsent(CaseCommand):
    """Record that the household withdrew its consent."""

    name: ClassVar[str] = "withdraw_consent"


class Verify(CaseCommand):
    """Record the verification visit's findings and verdict."""

    name: ClassVar[str] = "verify"
    verdict: Verdict
    household_size: StrictInt = Field(ge=1, le=30)
    monthly_income_fen: StrictInt = Field(ge=0)
    facts: dict[str, str] = Field(default_factory=dict, description="Non-personal findings")


class Measure(BaseModel):
    """One measure decided by the assessment panel."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    programme: Programme
    amount_fen: Fen
    category: str = Field(default="", max_length=50)


class Assess(CaseCommand):
    """Record the assessment panel's measures."""

    name: ClassVar[str] = "assess"
    measures: list[Measure] = Field(min_length=1)


class PublishNotice(CaseCommand):
    """Put a dibao decision on public notice."""

    name: ClassVar[str] = "publish_notice"
    starts_on: date


class RaiseObjection(CaseCommand):
    """Record an objection to the public notice."""

    name: ClassVar[str] = "raise_objection"
    objector: Text


class Enrol(CaseCommand):
    """Enrol the household in a programme."""

    name: ClassVar[str] = "enrol"
    programme: Programme
    amount_fen: Fen
    category: str = Field(default="", max_length=50, examples=["stable", "changing"])
    effective_from: date


class Pay(CaseCommand):
    """Record a payment for a programme and period."""

    name: ClassVar[str] = "pay"
    programme: Programme
    period: Period
    amount_fen: Fen
    payment_ref: Text


class RecordPaymentFailure(CaseCommand):
    """Record that a payment failed at the bank or treasury."""

    name: ClassVar[str] = "record_payment_failure"
    programme: Programme
    period: Period
    amount_fen: Fen
    payment_ref: Text


class GrantEmergencyRelief(CaseCommand):
    """Pay temporary relief first, before verification."""

    name: ClassVar[str] = "grant_emergency_relief"
    grant_id: Text = Field(default_factory=lambda: f"EG-{uuid4().hex[:12]}")
    amount_fen: Fen


class RegulariseEmergencyRelief(CaseCommand):
    """Complete the paperwork of an emergency grant."""

    name: ClassVar[str] = "regularise_emergency_relief"
    grant_id: Text


class DeliverService(CaseCommand):
    """Record a service delivered to the household."""

    name: ClassVar[str] = "deliver_service"
    service: Text = Field(examples=["psychological counselling", "companionship visit"])
    provider: Text


class Refer(CaseCommand):
    """Refer the household to a social organisation."""

    name: ClassVar[str] = "refer"
    referral_id: Text = Field(default_factory=lambda: f"RF-{uuid4().hex[:12]}")
    organisation: Text = Field(examples=["Red Cross"])
    need: Text


class AnswerReferral(CaseCommand):
    """Record a social organisation's answer."""

    name: ClassVar[str] = "answer_referral"
    referral_id: Text
    accepted: bool
    amount_fen: StrictInt = Field(default=0, ge=0)


class Review(CaseCommand):
    """Record a periodic review of an enrolment."""

    name: ClassVar[str] = "review"
    programme: Programme
    outcome: Literal["continue", "adjust", "exit"]


class AdjustBenefit(CaseCommand):
    """Change a benefit's amount from a date."""

    name: ClassVar[str] = "adjust_benefit"
    programme: Programme
    amount_fen: Fen
    effective_from: date


class ExitProgramme(CaseCommand):
    """End an enrolment."""

    name: ClassVar[str] = "exit_programme"
    programme: Programme
    ended_on: date


class CloseCase(CaseCommand):
    """Close the case."""

    name: ClassVar[str] = "close_case"


COMMANDS: dict[str, type[Command]] = {
    cls.name: cls
    for cls in (
        OpenCase, AttachSignal, AssignVerification, GiveConsent, WithdrawConsent, Verify,
        Assess, PublishNotice, RaiseObjection, Enrol, Pay, RecordPaymentFailure,
        GrantEmergencyRelief, RegulariseEmergencyRelief, DeliverService, Refer,
        AnswerReferral, Review, AdjustBenefit, ExitProgramme, CloseCase,
    )
}  # fmt: skip


class ErasePersonalData(Command):
    """Erase a household's personal data by destroying its data key (crypto-shredding)."""

    name: ClassVar[str] = "erase_personal_data"
    household_id: Text = Field(description="Household registry number", examples=["HH-610523-0001"])


COMMANDS[ErasePersonalData.name] = ErasePersonalData

TCommand = TypeVar("TCommand", bound=Command)


def parse_command(kind: type[TCommand], given: TCommand | Mapping[str, Any]) -> TCommand:
    """Validate a command's input, raising InvalidCommandError that names each bad field."""
    if isinstance(given, kind):
        return given
    try:
        return kind.model_validate(given)
    except ValidationError as error:
        problems = [
            (".".join(str(part) for part in e["loc"]) or "input", e["msg"]) for e in error.errors()
        ]
        raise InvalidCommandError(kind.name, problems) from None
