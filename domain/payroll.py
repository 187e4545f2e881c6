"""The PayrollCycle aggregate: one month's entitlements of one programme in one county.

Prepared (entitlements listed, totals) → Approved by a second person or Rejected →
Exported (the disbursement file's digest) → settlements: each entitlement ends paid
once or failed with a reason; anything else a settlement says is a finding, never a
second payment. Ids are uuid5 of (month, programme, region): preparing again finds the
same cycle. Instruction ids name their cycle ("PI-2023-06-rural_dibao-610523-000017").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate
from pydantic import Field, StrictInt

from domain.commands import Command
from domain.errors import CaseWorkError
from domain.provenance import Provenance

__all__ = [
    "CHUNK",
    "CycleStateError",
    "Instruction",
    "MakerCheckerError",
    "PayrollCycle",
    "PayrollError",
    "SettlePayrollInstruction",
    "Settlement",
    "SettlementOutcome",
    "cycle_key_of",
]

_NAMESPACE = uuid5(NAMESPACE_URL, "https://jiuzhu.example/payroll-cycle")
# Entitlements and settlements are recorded this many to an event (one save holds them all).
CHUNK = 2000


class PayrollError(CaseWorkError):
    """A payroll command broke a rule of the cycle; names the cycle and the rule."""

    rule = "payroll-rule"

    def __init__(self, cycle: str, detail: str) -> None:
        self.cycle, self.detail = cycle, detail
        super().__init__(f"payroll cycle {cycle}: {detail} (rule {self.rule})")


class MakerCheckerError(PayrollError):
    rule = "preparer-may-not-approve"


class CycleStateError(PayrollError):
    rule = "payroll-cycle-order"


@dataclass(frozen=True, slots=True)
class Instruction:
    """One entitlement of the cycle as finance is told to pay it."""

    instruction_id: str
    case_id: str
    household_id: str
    period: str
    amount_fen: int
    kind: str  # monthly, arrears, one_off

    def as_row(self) -> list[Any]:
        """The instruction as stored in an event."""
        return [
            self.instruction_id, self.case_id, self.household_id, self.period,
            self.amount_fen, self.kind,
        ]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Settlement:
    """What finance says became of one instruction."""

    instruction_id: str
    outcome: str  # paid or failed
    amount_fen: int
    payment_ref: str
    reason: str = ""


@dataclass
class SettlementOutcome:
    """How a batch of settlements was taken: payments, failures, findings."""

    paid: list[tuple[Instruction, str]] = field(default_factory=list)
    failed: list[tuple[Instruction, str, str]] = field(default_factory=list)
    findings: list[list[Any]] = field(default_factory=list)  # kind, instruction, ref, fen, why
    repeats: int = 0  # settlements delivered again: no effect


class SettlePayrollInstruction(Command):
    """Finance settled one payroll instruction (a `payment.settled` message naming it)."""

    name: ClassVar[str] = "settle_payroll_instruction"
    instruction_id: str = Field(min_length=1, max_length=100)
    outcome: Literal["paid", "failed"]
    amount_fen: StrictInt = Field(gt=0)
    payment_ref: str = Field(min_length=1, max_length=500)
    failure: str = Field(default="", max_length=500)


def cycle_key_of(instruction_id: str) -> tuple[str, str, str] | None:
    """(month, programme, region) named by an instruction id, or None if it names none."""
    parts = instruction_id.split("-")
    if len(parts) != 6 or parts[0] != "PI":
        return None
    return f"{parts[1]}-{parts[2]}", parts[3], parts[4]


class PayrollCycle(Aggregate):
    """A month's payroll of one programme in one county, from preparation to settlement."""

    class Event(Aggregate.Event):
        """Every cycle event records who acted, why, what caused it and when."""

        actor: str
        role: str
        reason: str
        occurred_at: datetime
        causation_id: str
        correlation_id: str

        def apply(self, aggregate: Any) -> None:
            assert isinstance(aggregate, PayrollCycle)
            self.apply_to(aggregate)

        def apply_to(self, cycle: PayrollCycle) -> None:
            """Evolve the cycle."""

    class Prepared(Event, Aggregate.Created):
        """Entitlements were computed from the log up to a position; totals by kind."""

        month: str
        programme: str
        region: str
        as_of: int  # the notification id the entitlements were computed at
        instructions: int
        amount_fen: int
        by_kind: dict[str, list[int]]  # kind -> [count, fen]

        def apply_to(self, cycle: PayrollCycle) -> None:
            cycle.month, cycle.programme, cycle.region = self.month, self.programme, self.region
            cycle.as_of, cycle.preparer = self.as_of, self.actor
            cycle.totals = (self.instructions, self.amount_fen)
            cycle.by_kind = {k: list(v) for k, v in self.by_kind.items()}
            cycle.status = "prepared"
            cycle.instructions = {}
            cycle.settled = {}
            cycle.approver = None
            cycle.exports = 0
            cycle.findings = []

    class EntitlementsListed(Event):
        """Some of the cycle's entitlements, as instructions (all are saved with Prepared)."""

        programme: str
        items: list[list[Any]]

        def apply_to(self, cycle: PayrollCycle) -> None:
            for row in self.items:
                cycle.instructions[row[0]] = Instruction(*row)

    class Approved(Event):
        """A second person approved the cycle, having seen its totals and differences."""

        differences: int

        def apply_to(self, cycle: PayrollCycle) -> None:
            cycle.status, cycle.approver = "approved", self.actor

    class Rejected(Event):
        """A second person rejected the cycle: nothing of it is paid; its months stay owed."""

        def apply_to(self, cycle: PayrollCycle) -> None:
            cycle.status = "rejected"

    class Exported(Event):
        """The disbursement instructions were written for finance (digest of the file)."""

        instructions: int
        amount_fen: int
        digest: str

        def apply_to(self, cycle: PayrollCycle) -> None:
            cycle.exports += 1

    class EntitlementsPaid(Event):
        """Finance paid these instructions: [instruction id, payment reference, fen]."""

        items: list[list[Any]]

        def apply_to(self, cycle: PayrollCycle) -> None:
            for instruction_id, ref, _fen in self.items:
                cycle.settled[instruction_id] = ("paid", ref)

    class EntitlementsFailed(Event):
        """These instructions failed: [instruction id, payment reference, fen, reason]."""

        items: list[list[Any]]

        def apply_to(self, cycle: PayrollCycle) -> None:
            for instruction_id, ref, _fen, _why in self.items:
                cycle.settled[instruction_id] = ("failed", ref)

    class FindingsRecorded(Event):
        """Settlements that paid nothing: [kind, instruction id, reference, fen, detail]."""

        items: list[list[Any]]

        def apply_to(self, cycle: PayrollCycle) -> None:
            cycle.findings.extend(list(item) for item in self.items)

    if TYPE_CHECKING:  # set by Prepared
        month: str
        programme: str
        region: str
        as_of: int
        preparer: str
        approver: str | None
        status: str
        totals: tuple[int, int]
        by_kind: dict[str, list[int]]
        instructions: dict[str, Instruction]
        settled: dict[str, tuple[str, str]]  # instruction -> (outcome, payment reference)
        exports: int
        findings: list[list[Any]]  # the reconciliation's findings, in the order found

    # -- commands -----------------------------------------------------------------------

    @staticmethod
    def id_for(month: str, programme: str, region: str) -> UUID:
        """The one cycle of a month, programme and county."""
        return uuid5(_NAMESPACE, f"{month}/{programme}/{region}")

    @staticmethod
    def instruction_id(month: str, programme: str, region: str, number: int) -> str:
        """The id of the cycle's n-th instruction (it names the cycle)."""
        return f"PI-{month}-{programme}-{region}-{number:06d}"

    @classmethod
    def prepare(
        cls,
        *,
        month: str,
        programme: str,
        region: str,
        as_of: int,
        entitlements: Sequence[Instruction],
        by: Provenance,
    ) -> PayrollCycle:
        """A cycle listing its entitlements, with totals shown before approval."""
        by_kind: dict[str, list[int]] = {}
        for item in entitlements:
            counts = by_kind.setdefault(item.kind, [0, 0])
            counts[0] += 1
            counts[1] += item.amount_fen
        cycle = cls._create(
            PayrollCycle.Prepared,
            id=cls.id_for(month, programme, region),
            month=month,
            programme=programme,
            region=region,
            as_of=as_of,
            instructions=len(entitlements),
            amount_fen=sum(item.amount_fen for item in entitlements),
            by_kind=by_kind,
            **by.event_fields(),
        )
        for start in range(0, len(entitlements), CHUNK):
            rows = [item.as_row() for item in entitlements[start : start + CHUNK]]
            cycle.trigger_event(
                PayrollCycle.EntitlementsListed,
                programme=programme,
                items=rows,
                **by.event_fields(),
            )
        return cycle

    def approve(self, differences: int, *, by: Provenance) -> None:
        """Approve: only a prepared cycle, only by someone who did not prepare it."""
        self.check_decision(by, "approve")
        self.trigger_event(PayrollCycle.Approved, differences=differences, **by.event_fields())

    def reject(self, *, by: Provenance) -> None:
        """Reject: only a prepared cycle, only by someone who did not prepare it."""
        self.check_decision(by, "reject")
        self.trigger_event(PayrollCycle.Rejected, **by.event_fields())

    def record_export(
        self, instructions: int, amount_fen: int, digest: str, *, by: Provenance
    ) -> None:
        """Record that the instructions went to finance; only an approved cycle is paid."""
        self.check_approved("export")
        self.trigger_event(
            PayrollCycle.Exported,
            instructions=instructions,
            amount_fen=amount_fen,
            digest=digest,
            **by.event_fields(),
        )

    def settle(
        self,
        settlements: Iterable[Settlement],
        *,
        by: Provenance,
        case_refusal: Callable[[Instruction], str | None] = lambda _: None,
    ) -> SettlementOutcome:
        """Take finance's settlements: each instruction ends paid once or failed.

        A settlement naming no instruction of the cycle, a second one for a settled
        instruction, an amount other than instructed, or a payment the case refuses
        (`case_refusal`: e.g. paid meanwhile by another route) is a finding. The very
        settlement that settled an instruction (same outcome and reference), delivered
        again (a file settled twice, a message redelivered), changes nothing.
        """
        self.check_approved("settle")
        outcome = SettlementOutcome()
        seen: dict[str, tuple[str, str]] = {}
        for settlement in settlements:
            key = settlement.instruction_id
            instruction = self.instructions.get(key)
            earlier = seen.get(key) or self.settled.get(key)
            finding = None
            if earlier == (settlement.outcome, settlement.payment_ref):
                outcome.repeats += 1
                continue
            if instruction is None:
                finding = ("unknown_instruction", "no such instruction in this cycle")
            elif earlier is not None:
                finding = ("double_settlement", f"already {earlier[0]} as {earlier[1]}")
            elif settlement.amount_fen != instruction.amount_fen:
                finding = (
                    "amount_differs",
                    f"instructed {instruction.amount_fen} fen, settled {settlement.amount_fen}",
                )
            elif settlement.outcome == "paid" and (refused := case_refusal(instruction)):
                finding = ("refused_by_case", refused)
            if finding is not None:
                outcome.findings.append(
                    [finding[0], key, settlement.payment_ref, settlement.amount_fen, finding[1]]
                )
                continue
            assert instruction is not None
            seen[key] = (settlement.outcome, settlement.payment_ref)
            if settlement.outcome == "paid":
                outcome.paid.append((instruction, settlement.payment_ref))
            else:
                why = settlement.reason or "failed at the bank"
                outcome.failed.append((instruction, settlement.payment_ref, why))
        fields = by.event_fields()
        paid = [[i.instruction_id, ref, i.amount_fen] for i, ref in outcome.paid]
        failed = [[i.instruction_id, ref, i.amount_fen, why] for i, ref, why in outcome.failed]
        for start in range(0, len(paid), CHUNK):
            self.trigger_event(
                PayrollCycle.EntitlementsPaid, items=paid[start : start + CHUNK], **fields
            )
        for start in range(0, len(failed), CHUNK):
            self.trigger_event(
                PayrollCycle.EntitlementsFailed, items=failed[start : start + CHUNK], **fields
            )
        for start in range(0, len(outcome.findings), CHUNK):
            self.trigger_event(
                PayrollCycle.FindingsRecorded,
                items=outcome.findings[start : start + CHUNK],
                **fields,
            )
        return outcome

    # -- rules --------------------------------------------------------------------------

    @property
    def key(self) -> str:
        """The cycle's name: month/programme/region."""
        return f"{self.month}/{self.programme}/{self.region}"

    def check_decision(self, by: Provenance, step: str) -> None:
        """Maker-checker: a prepared cycle, decided with a reason by someone else."""
        if self.status != "prepared":
            raise CycleStateError(self.key, f"cannot {step} a cycle that is {self.status}")
        if by.actor == self.preparer:
            raise MakerCheckerError(
                self.key, f"{by.actor} prepared this cycle and may not {step} it"
            )
        if not by.reason.strip():
            raise CycleStateError(self.key, f"{step} needs a reason")

    def check_approved(self, step: str) -> None:
        """Nothing is exported or settled before approval."""
        if self.status != "approved":
            raise CycleStateError(self.key, f"cannot {step} a cycle that is {self.status}")

    @property
    def outstanding(self) -> list[Instruction]:
        """Instructions not yet settled."""
        return [i for k, i in self.instructions.items() if k not in self.settled]
