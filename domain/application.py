"""CaseWork: the application that runs the case workflow, one method per command."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from copy import deepcopy
from datetime import UTC, date, datetime
from typing import Any, ClassVar, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, JSONTranscoder, Recording, Transcoding

from domain.case import Case
from domain.commands import (
    AdjustBenefit,
    AnswerReferral,
    Assess,
    AssignVerification,
    AttachSignal,
    CaseCommand,
    CloseCase,
    Command,
    DeliverService,
    Enrol,
    ErasePersonalData,
    ExitProgramme,
    GiveConsent,
    GrantEmergencyRelief,
    OpenCase,
    Pay,
    PublishNotice,
    RaiseObjection,
    RecordPaymentFailure,
    Refer,
    RegulariseEmergencyRelief,
    Review,
    Verify,
    WithdrawConsent,
    parse_command,
)
from domain.deadlines import Due, deadline_event
from domain.errors import (
    CaseNotFoundError,
    DuplicateMessageError,
    PermissionDeniedError,
    RuleViolationError,
)
from domain.household import Household, HouseholdNotFoundError
from domain.payroll import (
    Instruction,
    PayrollCycle,
    PayrollError,
    Settlement,
    SettlePayrollInstruction,
    cycle_key_of,
)
from domain.policy import DEFAULT_POLICY, Policy
from domain.receipt import MessageReceipt
from domain.roles import Role, may, may_read
from domain.values import Programme

__all__ = ["CaseWork", "DateAsISO", "Unit"]

TCommand = TypeVar("TCommand", bound=Command)
Given = Mapping[str, Any]

# The upstream message being handled, if any: its receipt is saved with the events it causes.
_current_message: ContextVar[str | None] = ContextVar("current_message", default=None)
# The unit of work commands run in, if any (CaseWork.batch).
_current_unit: ContextVar[Unit | None] = ContextVar("current_unit", default=None)


class DateAsISO(Transcoding):
    """Stores calendar dates (due dates, effective dates) as ISO strings."""

    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class CaseWork(Application[UUID]):
    """Records each case of social assistance as a stream of events."""

    name = "CaseWork"
    # Monthly payments make cases long: rebuild them from a snapshot every 50 events.
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {Case: 50}
    policy: Policy = DEFAULT_POLICY

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())

    # -- commands -----------------------------------------------------------------------

    def open_case(self, command: OpenCase | Given) -> int:
        """Open a case for a household; refused while the household has an open case."""
        cmd = self._authorised(OpenCase, command)
        try:
            household = cast(Household, self._load(Household.id_for(cmd.household_id)))
        except AggregateNotFoundError:
            household = Household.register(cmd.household_id)
        household.open_case(cmd.case_id)
        case = Case.discover(
            case_id=cmd.case_id,
            household_id=cmd.household_id,
            region=cmd.region,
            channel=cmd.channel.value,
            signals=list(cmd.signals),
            household_size=cmd.household_size,
            personal=cmd.personal.model_dump(),
            by=cmd.by,
        )
        return self._append(case, household)

    def attach_signal(self, command: AttachSignal | Given) -> int:
        """Attach another risk signal to an open case."""
        return self._on_case(AttachSignal, command, lambda c, x: c.attach_signal(x.signal, by=x.by))

    def assign_verification(self, command: AssignVerification | Given) -> int:
        """Assign the verification visit."""
        return self._on_case(
            AssignVerification,
            command,
            lambda c, x: c.assign_verification(x.assignee, x.due_on, by=x.by),
        )

    def give_consent(self, command: GiveConsent | Given) -> int:
        """Record the household's consent."""
        return self._on_case(GiveConsent, command, lambda c, x: c.give_consent(x.given_by, by=x.by))

    def withdraw_consent(self, command: WithdrawConsent | Given) -> int:
        """Record the withdrawal of consent."""
        return self._on_case(WithdrawConsent, command, lambda c, x: c.withdraw_consent(by=x.by))

    def verify(self, command: Verify | Given) -> int:
        """Record the verification visit's findings."""
        return self._on_case(
            Verify,
            command,
            lambda c, x: c.verify(
                x.verdict, x.household_size, x.monthly_income_fen, dict(x.facts), by=x.by
            ),
        )

    def assess(self, command: Assess | Given) -> int:
        """Record the assessment panel's measures."""
        return self._on_case(
            Assess,
            command,
            lambda c, x: c.assess([m.model_dump(mode="json") for m in x.measures], by=x.by),
        )

    def publish_notice(self, command: PublishNotice | Given) -> int:
        """Put a dibao decision on public notice."""
        return self._on_case(
            PublishNotice,
            command,
            lambda c, x: c.publish_notice(x.starts_on, self.policy.notice_days, by=x.by),
        )

    def raise_objection(self, command: RaiseObjection | Given) -> int:
        """Record an objection raised during the notice."""
        return self._on_case(
            RaiseObjection, command, lambda c, x: c.raise_objection(x.objector, by=x.by)
        )

    def enrol(self, command: Enrol | Given) -> int:
        """Enrol the household in a programme."""
        return self._on_case(
            Enrol,
            command,
            lambda c, x: c.enrol(
                x.programme, x.amount_fen, x.category, x.effective_from, by=x.by, policy=self.policy
            ),
        )

    def pay(self, command: Pay | Given) -> int:
        """Record a payment."""
        return self._on_case(
            Pay,
            command,
            lambda c, x: c.pay(x.programme, x.period, x.amount_fen, x.payment_ref, by=x.by),
        )

    def record_payment_failure(self, command: RecordPaymentFailure | Given) -> int:
        """Record a failed payment."""
        return self._on_case(
            RecordPaymentFailure,
            command,
            lambda c, x: c.record_payment_failure(
                x.programme, x.period, x.amount_fen, x.payment_ref, by=x.by
            ),
        )

    def grant_emergency_relief(self, command: GrantEmergencyRelief | Given) -> int:
        """Pay emergency relief before verification."""
        return self._on_case(
            GrantEmergencyRelief,
            command,
            lambda c, x: c.grant_emergency_relief(
                x.grant_id, x.amount_fen, by=x.by, policy=self.policy
            ),
        )

    def regularise_emergency_relief(self, command: RegulariseEmergencyRelief | Given) -> int:
        """Complete an emergency grant's paperwork."""
        return self._on_case(
            RegulariseEmergencyRelief,
            command,
            lambda c, x: c.regularise_emergency_relief(x.grant_id, by=x.by, policy=self.policy),
        )

    def deliver_service(self, command: DeliverService | Given) -> int:
        """Record a service delivered."""
        return self._on_case(
            DeliverService, command, lambda c, x: c.deliver_service(x.service, x.provider, by=x.by)
        )

    def refer(self, command: Refer | Given) -> int:
        """Refer the household to a social organisation."""
        return self._on_case(
            Refer, command, lambda c, x: c.refer(x.referral_id, x.organisation, x.need, by=x.by)
        )

    def answer_referral(self, command: AnswerReferral | Given) -> int:
        """Record a referral's answer."""
        return self._on_case(
            AnswerReferral,
            command,
            lambda c, x: c.answer_referral(x.referral_id, x.accepted, x.amount_fen, by=x.by),
        )

    def review(self, command: Review | Given) -> int:
        """Record a periodic review."""
        return self._on_case(
            Review, command, lambda c, x: c.review(x.programme, x.outcome, by=x.by)
        )

    def adjust_benefit(self, command: AdjustBenefit | Given) -> int:
        """Change a benefit's amount."""
        return self._on_case(
            AdjustBenefit,
            command,
            lambda c, x: c.adjust_benefit(x.programme, x.amount_fen, x.effective_from, by=x.by),
        )

    def exit_programme(self, command: ExitProgramme | Given) -> int:
        """End an enrolment."""
        return self._on_case(
            ExitProgramme, command, lambda c, x: c.exit_programme(x.programme, x.ended_on, by=x.by)
        )

    def close_case(self, command: CloseCase | Given) -> int:
        """Close the case and free the household for a new one."""
        cmd = self._authorised(CloseCase, command)
        case = self.get_case(cmd.case_id)
        case.close(by=cmd.by)
        household = cast(Household, self._load(Household.id_for(case.household_id)))
        household.close_case(case.id)
        return self._append(case, household)

    def erase_personal_data(self, command: ErasePersonalData | Given) -> int:
        """Erase a household's personal data; the store destroys its key with this event."""
        cmd = self._authorised(ErasePersonalData, command)
        try:
            household = cast(Household, self._load(Household.id_for(cmd.household_id)))
        except AggregateNotFoundError:
            raise HouseholdNotFoundError(cmd.household_id) from None
        household.erase_personal_data(by=cmd.by)
        return self._append(household)

    def record_deadlines(
        self,
        passing: Sequence[tuple[Due, int]],
        *,
        recorded_at: datetime | None = None,
        role: Role = Role.SYSTEM,
    ) -> list[Recording[UUID]]:
        """Record deadlines that passed, each at its case's given next version, in ONE save.

        The clock decides what passed (domain.deadlines) from the log read up to the head;
        a case that moved since makes the save fail (IntegrityError) and nothing is stored.
        """
        if not may(role, "record_deadline"):
            raise PermissionDeniedError("clock", role.value, "record_deadline")
        now = recorded_at or datetime.now(UTC)
        events = [deadline_event(due, version, now) for due, version in passing]
        return self.save(*events) if events else []
    def settle_payroll_instruction(self, command: SettlePayrollInstruction | Given) -> int:
        """One settlement of a payroll instruction: the cycle decides, the case is paid once."""
        cmd = self._authorised(SettlePayrollInstruction, command)
        cycle, case = self._payroll_cycle_and_case(cmd.instruction_id)
        programme = Programme(cycle.programme)

        def case_refusal(item: Instruction) -> str | None:
            try:
                case.check_case_is_open()
                case.check_payable(programme, item.period, item.amount_fen)
            except RuleViolationError as error:
                return error.detail
            return None

        settlement = Settlement(
            cmd.instruction_id, cmd.outcome, cmd.amount_fen, cmd.payment_ref, cmd.failure
        )
        outcome = cycle.settle([settlement], by=cmd.by, case_refusal=case_refusal)
        for item, ref in outcome.paid:
            case.pay(programme, item.period, item.amount_fen, ref, by=cmd.by)
        for item, ref, _why in outcome.failed:
            if case_refusal(item) is None:
                case.record_payment_failure(programme, item.period, item.amount_fen, ref, by=cmd.by)
        return self._append(cycle, case)

    def _payroll_cycle_and_case(self, instruction_id: str) -> tuple[PayrollCycle, Case]:
        key = cycle_key_of(instruction_id)
        try:
            cycle = self._load(PayrollCycle.id_for(*key)) if key else None
        except AggregateNotFoundError:
            cycle = None
        if not isinstance(cycle, PayrollCycle) or instruction_id not in cycle.instructions:
            raise PayrollError(instruction_id, "no payroll instruction has this id")
        return cycle, self.get_case(UUID(cycle.instructions[instruction_id].case_id))

    def authorise_read(self, actor: str, role: Role | str, what: str) -> Role:
        """Check that a role may read something (READ_PERMISSIONS); the role, or refused."""
        try:
            checked = Role(role)
        except ValueError:
            raise PermissionDeniedError(actor, str(role), what) from None
        if not may_read(checked, what):
            raise PermissionDeniedError(actor, checked.value, what)
        return checked

    # -- reading ------------------------------------------------------------------------

    def get_case(self, case_id: UUID, version: int | None = None) -> Case:
        """A case as it stands now (in a batch: with the batch's changes), or at a version."""
        try:
            case: object = (
                self._load(case_id)
                if version is None
                else self.repository.get(case_id, version=version)
            )
        except AggregateNotFoundError:
            raise CaseNotFoundError(case_id) from None
        if not isinstance(case, Case):
            raise CaseNotFoundError(case_id)
        return case

    def case_as_of(self, case_id: UUID, moment: datetime) -> Case:
        """A case as the record stood at a moment (recorded time): case_at(known_at=...)."""
        return self.case_at(case_id, known_at=moment)

    def case_at(
        self, case_id: UUID, *, as_of: datetime | None = None, known_at: datetime | None = None
    ) -> Case:
        """A case by the two clocks: what had happened by `as_of` (business time,
        occurred_at), as far as the record held it at `known_at` (recording time).

        known_at alone is a version of the case (snapshots serve). as_of leaves out the
        events that happened after it, even those recorded before it: an alert recorded a
        week late counts from when it happened. The events kept are applied in the order
        they were recorded.
        """
        events = self.history(case_id)
        if known_at is not None:
            events = [e for e in events if e.timestamp <= known_at]
        if as_of is not None:
            events = [e for e in events if e.occurred_at <= as_of]
        if not events or not isinstance(events[0], Case.Discovered):
            raise CaseNotFoundError(case_id, _nothing_by(as_of, known_at))
        if as_of is None:
            return self.get_case(case_id, version=events[-1].originator_version)
        case = events[0].mutate(None)
        assert isinstance(case, Case)
        for event in events[1:]:
            event.apply(case)
            case.version = event.originator_version
            case.modified_on = event.timestamp
        return case

    def history(self, case_id: UUID) -> list[Case.Event]:
        """Every event of a case, in order."""
        events = [e for e in self.events.get(case_id) if isinstance(e, Case.Event)]
        if not events:
            raise CaseNotFoundError(case_id)
        return events

    def household_chain(self, household_id: str) -> list[UUID]:
        """The ids of a household's cases, oldest first."""
        try:
            household = cast(Household, self._load(Household.id_for(household_id)))
        except AggregateNotFoundError:
            return []
        return list(household.case_ids)

    def open_case_of(self, household_id: str) -> UUID | None:
        """The household's open case, if any (in a batch: as the batch left it)."""
        try:
            household = cast(Household, self._load(Household.id_for(household_id)))
        except AggregateNotFoundError:
            return None
        return household.open_case_id

    # -- upstream messages --------------------------------------------------------------

    @contextmanager
    def handling_message(self, message_key: str) -> Iterator[None]:
        """Commands run inside record a receipt for the message atomically with their events.

        A second delivery of the same message then fails to save and raises
        DuplicateMessageError, whatever else happened in between.
        """
        token = _current_message.set(message_key)
        try:
            yield
        finally:
            _current_message.reset(token)

    def has_received(self, message_key: str) -> bool:
        """Whether an upstream message has already taken effect (or will, in this batch)."""
        unit = self._unit()
        if unit is not None and unit.has_received(message_key):
            return True
        try:
            self.repository.get(MessageReceipt.id_for(message_key))
        except AggregateNotFoundError:
            return False
        return True

    # -- batches ------------------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[Unit]:
        """Commands run inside are saved together, in ONE save() when the block ends.

        Inside the block (same thread or task): commands act on aggregates kept in the
        unit, so each sees what the commands before it did, and return 0 instead of a
        notification id (nothing is stored yet; `unit.recordings` has them after the
        block). `get_case` (current version), `household_chain` and `has_received` see
        the unit's state; `history`, `case_as_of` and versioned reads see the store only.
        A message handled inside (`handling_message`) gets its receipt in the unit: a
        second one in the same unit raises DuplicateMessageError at once. Wrap each
        message in `unit.savepoint()` so one that fails leaves no trace in the unit.
        An error leaving the block saves nothing. The save itself may raise the store's
        IntegrityError (another writer saved one of the aggregates, or a receipt exists):
        nothing is stored then, and the caller may run the commands again one by one.
        """
        if _current_unit.get() is not None:
            raise RuntimeError("CaseWork.batch() does not nest (nor run beside another's)")
        unit = Unit(self)
        token = _current_unit.set(unit)
        try:
            yield unit
        finally:
            _current_unit.reset(token)
        unit.recordings = unit.save()

    # -- plumbing -----------------------------------------------------------------------

    def _unit(self) -> Unit | None:
        """The batch this application's commands run in (another app's is not ours)."""
        unit = _current_unit.get()
        return unit if unit is not None and unit.app is self else None

    def _load(self, aggregate_id: UUID) -> Aggregate:
        """An aggregate as it stands: the current batch's copy, else from the store."""
        unit = self._unit()
        if unit is None:
            loaded: Aggregate = self.repository.get(aggregate_id)
            return loaded
        return unit.get(aggregate_id)

    def _authorised(self, kind: type[TCommand], given: TCommand | Given) -> TCommand:
        """Validate the input, then check the actor's role may run it."""
        cmd = parse_command(kind, given)
        if not may(cmd.by.role, kind.name):
            raise PermissionDeniedError(cmd.by.actor, cmd.by.role.value, kind.name)
        return cmd

    def _on_case(
        self,
        kind: type[TCommand],
        given: TCommand | Given,
        step: Callable[[Case, TCommand], None],
    ) -> int:
        cmd = self._authorised(kind, given)
        assert isinstance(cmd, CaseCommand)
        case = self.get_case(cmd.case_id)
        step(case, cmd)
        return self._append(case)

    def _append(self, *aggregates: Aggregate) -> int:
        """Append the aggregates' new events atomically; the last notification id.

        In a batch the events are kept in the unit instead, and the result is 0.
        """
        message_key = _current_message.get()
        unit = self._unit()
        if unit is not None:
            unit.record(aggregates, message_key)
            if message_key is not None:
                _current_message.set(None)  # the receipt rides once, as outside a batch
            return 0
        if message_key is None:
            return self.save(*aggregates)[-1].notification.id
        try:
            recordings = self.save(*aggregates, MessageReceipt.receive(message_key))
        except IntegrityError:
            if self.has_received(message_key):
                raise DuplicateMessageError(message_key) from None
            raise
        # Only the first command a message causes carries its receipt.
        _current_message.set(None)
        return recordings[-1].notification.id


def _nothing_by(as_of: datetime | None, known_at: datetime | None) -> str:
    """Why a case was not found at a point of the two clocks, for CaseNotFoundError."""
    if as_of is not None and known_at is not None:
        happened, recorded = as_of.isoformat(), known_at.isoformat()
        return f" (nothing that happened by {happened} was recorded by {recorded})"
    if as_of is not None:
        return f" (nothing happened by {as_of.isoformat()})"
    return f" as recorded by {known_at.isoformat() if known_at else 'now'}"


class Unit:
    """The aggregates, events and receipts of a CaseWork.batch(), saved together at its end."""

    def __init__(self, app: CaseWork) -> None:
        self.app = app
        self._aggregates: dict[UUID, Aggregate] = {}
        self._changed: set[UUID] = set()  # aggregates with events not yet stored
        self._events: list[Any] = []  # new events, in the order the commands made them
        self._receipts: set[str] = set()
        self._absent: set[UUID] = set()  # known not to be in the store (see adopt)
        # During a savepoint: each aggregate touched, as it was before (None: in the store).
        self._before: dict[UUID, Aggregate | None] | None = None
        self.recordings: list[Recording[UUID]] = []

    def get(self, aggregate_id: UUID) -> Aggregate:
        """The unit's aggregate, read from the store the first time (AggregateNotFoundError)."""
        aggregate = self._aggregates.get(aggregate_id)
        if aggregate is None:
            if aggregate_id in self._absent:
                raise AggregateNotFoundError(f"aggregate {aggregate_id} not in the store")
            aggregate = cast(Aggregate, self.app.repository.get(aggregate_id))
            self._aggregates[aggregate_id] = aggregate
        if self._before is not None and aggregate_id not in self._before:
            # Only aggregates changed in the unit need a copy: the rest are read again.
            changed = aggregate_id in self._changed
            self._before[aggregate_id] = deepcopy(aggregate) if changed else None
        return aggregate

    def adopt(self, found: Mapping[UUID, Aggregate], absent: Iterable[UUID] = ()) -> None:
        """Take aggregates read in bulk, and ids known to be absent, to spare reads later."""
        for aggregate_id, aggregate in found.items():
            self._aggregates.setdefault(aggregate_id, aggregate)
        self._absent.update(absent)

    def has_received(self, message_key: str) -> bool:
        """Whether a message's receipt is already in this unit."""
        return message_key in self._receipts

    @property
    def size(self) -> int:
        """How many new events the unit holds."""
        return len(self._events)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Commands inside stay in the unit only if the block ends well; else all are undone."""
        if self._before is not None:
            raise RuntimeError("savepoints do not nest")
        self._before = {}
        events, receipts = len(self._events), set(self._receipts)
        try:
            yield
        except BaseException:
            for aggregate_id, before in self._before.items():
                if before is None:
                    self._aggregates.pop(aggregate_id, None)
                    self._changed.discard(aggregate_id)
                else:
                    self._aggregates[aggregate_id] = before
            del self._events[events:]
            self._receipts = receipts
            raise
        finally:
            self._before = None

    def record(self, aggregates: tuple[Aggregate, ...], message_key: str | None) -> None:
        """Keep the aggregates' new events (and a message's receipt) for the unit's save."""
        if message_key is not None and message_key in self._receipts:
            raise DuplicateMessageError(message_key)
        for aggregate in aggregates:
            if self._before is not None:
                self._before.setdefault(aggregate.id, None)  # new in this savepoint
            self._aggregates[aggregate.id] = aggregate
            self._changed.add(aggregate.id)
            self._events.extend(aggregate.collect_events())
        if message_key is not None:
            self._receipts.add(message_key)
            self._events.extend(MessageReceipt.receive(message_key).collect_events())

    def save(self) -> list[Recording[UUID]]:
        """Store every kept event in one save(), in the order they were made."""
        if not self._events:
            return []
        # The aggregates ride along (no events left to collect) so snapshots are taken.
        changed = [self._aggregates[i] for i in self._changed if i in self._aggregates]
        return self.app.save(*self._events, *changed)
