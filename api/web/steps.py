"""The steps a person may take next on a case: forms built by asking the domain itself.

Each candidate step is tried on a copy of the case (nothing is saved): a form appears only
for the steps the rules allow now and the viewer's role may take, with choices narrowed to
those the rules accept (the programmes one may enrol in, the referrals still unanswered...).
A submitted form becomes the command's input, the same pydantic model the API and the CLI
validate, and runs through CaseWork: a refusal comes back with the rule's own words.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from copy import copy
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal, DecimalException
from typing import Any
from uuid import UUID

from api import commands
from api.auth import Principal
from domain.application import CaseWork
from domain.case import Case
from domain.commands import COMMANDS
from domain.errors import CaseWorkError, InvalidCommandError
from domain.policy import Policy
from domain.provenance import Provenance
from domain.roles import Role, may
from domain.values import ONE_OFF, PaymentBasis, Programme, Verdict, month_of
from projections.regions import CHINA_TIME, today_in_china

__all__ = ["FormField", "StepForm", "command_input", "run_step", "steps_open"]


@dataclass(frozen=True)
class FormField:
    """One input of a step's form."""

    name: str
    kind: str  # text | date | int | yuan | select | checkbox
    default: str = ""
    options: tuple[str, ...] = ()
    required: bool = True


@dataclass(frozen=True)
class StepForm:
    """A step the viewer may take now, with its inputs."""

    command: str
    fields: list[FormField] = field(default_factory=list)


Probe = Callable[[Case, Any], None]


def _clone(case: Case) -> Case:
    """A copy of the case to try a step on: its state two levels deep, no pending events.

    A case's state is scalars, lists and dicts of scalars or of flat dicts (enrolments,
    grants, referrals), so this copies all a step can change, at a tenth of deepcopy's cost.
    """
    clone = copy(case)
    state = clone.__dict__
    for name, value in vars(case).items():
        if isinstance(value, dict):
            state[name] = {k: dict(v) if isinstance(v, dict) else v for k, v in value.items()}
        elif isinstance(value, list):
            state[name] = [dict(v) if isinstance(v, dict) else v for v in value]
    state["_pending_events"] = []
    return clone


def _allowed(case: Case, attempt: Callable[[Case], None]) -> bool:
    """Whether the domain accepts a step on a copy of the case (the copy is thrown away)."""
    try:
        attempt(_clone(case))
    except CaseWorkError:
        return False
    return True


def steps_open(case: Case, role: Role, actor: str, policy: Policy, today: date) -> list[StepForm]:
    """The forms of every step the rules allow next on this case for this role."""
    now = datetime.combine(today, time(12), tzinfo=CHINA_TIME)
    by = Provenance(actor=actor, role=role, reason="(trying)", occurred_at=now)
    programmes = list(Programme)
    active = [Programme(p) for p in case.active_programmes]
    amounts = {str(m["programme"]): int(m["amount_fen"]) for m in case.measures}
    open_referrals = [r for r, v in case.referrals.items() if not v["answered"]]
    open_grants = [g for g, v in case.emergency_grants.items() if not v["regularised"]]
    forms: list[StepForm] = []

    def offer(command: str, fields: list[FormField], *attempts: Callable[[Case], None]) -> None:
        if may(role, command) and attempts and any(_allowed(case, a) for a in attempts):
            forms.append(StepForm(command, fields))

    def choices(
        command: str, make: Callable[[Any], Callable[[Case], None]], items: list[Any]
    ) -> list[Any]:
        if not may(role, command):
            return []
        return [item for item in items if _allowed(case, make(item))]

    in_week = (today + timedelta(days=7)).isoformat()
    offer(
        "assign_verification",
        [FormField("assignee", "text", actor), FormField("due_on", "date", in_week)],
        lambda c: c.assign_verification(actor, today, by=by),
    )
    if not case.consent:
        offer(
            "give_consent",
            [FormField("given_by", "text")],
            lambda c: c.give_consent("(household)", by=by),
        )
    offer(
        "verify",
        [
            FormField("verdict", "select", options=tuple(v.value for v in Verdict)),
            FormField("household_size", "int", str(case.household_size)),
            FormField("monthly_income_fen", "yuan", "0"),
        ],
        lambda c: c.verify(Verdict.NEEDS_SUPPORT, 1, 0, {}, by=by),
    )
    offer(
        "assess",
        [
            FormField("programme", "select", options=tuple(p.value for p in programmes)),
            FormField("amount_fen", "yuan"),
            FormField("category", "text", "", required=False),
        ],
        lambda c: c.assess([{"programme": "rural_dibao", "amount_fen": 1}], by=by),
    )
    offer(
        "publish_notice",
        [FormField("starts_on", "date", today.isoformat())],
        lambda c: c.publish_notice(today, policy.notice_days, by=by),
    )
    if case.notice_starts_on is not None and not case.objection_open:
        offer(
            "raise_objection",
            [FormField("objector", "text")],
            lambda c: c.raise_objection("(someone)", by=by),
        )
    enrollable = choices(
        "enrol",
        lambda p: lambda c: c.enrol(p, amounts.get(p.value, 1), "", today, by=by, policy=policy),
        programmes,
    )
    if enrollable:
        first = enrollable[0].value
        offer(
            "enrol",
            [
                FormField("programme", "select", first, tuple(p.value for p in enrollable)),
                FormField("amount_fen", "yuan", _yuan(amounts.get(first))),
                FormField("category", "text", "", required=False),
                FormField("effective_from", "date", today.isoformat()),
            ],
            lambda c: None,
        )
    payable = choices(
        "pay",
        lambda p: lambda c: c.pay(p, _period(c, p, today), 1, "(trying)", by=by), active
    )
    if payable:
        offer(
            "pay",
            [
                FormField("programme", "select", options=tuple(p.value for p in payable)),
                FormField("period", "text", _period(case, payable[0], today)),
                FormField("amount_fen", "yuan"),
                FormField("payment_ref", "text"),
            ],
            lambda c: None,
        )
    offer(
        "grant_emergency_relief",
        [FormField("amount_fen", "yuan")],
        lambda c: c.grant_emergency_relief("(trying)", 1, by=by, policy=policy),
    )
    regularisable = choices(
        "regularise_emergency_relief",
        lambda g: lambda c: c.regularise_emergency_relief(g, by=by, policy=policy), open_grants
    )
    if regularisable:
        offer(
            "regularise_emergency_relief",
            [FormField("grant_id", "select", options=tuple(regularisable))],
            lambda c: None,
        )
    offer(
        "deliver_service",
        [FormField("service", "text"), FormField("provider", "text")],
        lambda c: c.deliver_service("(trying)", "(trying)", by=by),
    )
    offer(
        "refer",
        [FormField("organisation", "text"), FormField("need", "text")],
        lambda c: c.refer("(trying)", "(trying)", "(trying)", by=by),
    )
    if open_referrals:
        offer(
            "answer_referral",
            [
                FormField("referral_id", "select", options=tuple(open_referrals)),
                FormField("accepted", "checkbox", required=False),
                FormField("amount_fen", "yuan", "0", required=False),
            ],
            *(lambda c, r=r: c.answer_referral(r, False, 0, by=by) for r in open_referrals),
        )
    names = tuple(p.value for p in active)
    if active:
        offer(
            "review",
            [
                FormField("programme", "select", options=names),
                FormField("outcome", "select", options=("continue", "adjust", "exit")),
            ],
            lambda c: c.review(active[0], "continue", by=by),
        )
        offer(
            "adjust_benefit",
            [
                FormField("programme", "select", options=names),
                FormField("amount_fen", "yuan"),
                FormField("effective_from", "date", today.isoformat()),
            ],
            lambda c: c.adjust_benefit(active[0], 1, today, by=by),
        )
        offer(
            "exit_programme",
            [
                FormField("programme", "select", options=names),
                FormField("ended_on", "date", today.isoformat()),
            ],
            lambda c: c.exit_programme(active[0], today, by=by),
        )
    if case.consent:
        offer("withdraw_consent", [], lambda c: c.withdraw_consent(by=by))
    offer("close_case", [], lambda c: c.close(by=by))
    return forms


def _period(case: Case, programme: Programme, today: date) -> str:
    enrolment = case.enrolments.get(programme.value)
    if enrolment is None or enrolment["basis"] != PaymentBasis.MONTHLY.value:
        return ONE_OFF
    return month_of(today)


def _yuan(fen: int | None) -> str:
    return "" if fen is None else f"{Decimal(fen) / 100:.2f}"


# The read models keep money in bigint columns: larger amounts cannot be reported.
_MAX_FEN = 2**63 - 1


def _fen(command: str, name: str, text: str) -> int:
    try:
        amount = Decimal(text.replace(",", "").replace("¥", "").strip() or "0") * 100
    except DecimalException:  # not a number, or beyond the decimal context (1e999999)
        amount = Decimal("NaN")
    if not amount.is_finite():
        raise InvalidCommandError(command, [(name, f"{text!r} is not an amount in yuan")])
    if abs(amount) > _MAX_FEN:
        raise InvalidCommandError(command, [(name, f"{text!r} yuan is beyond any amount kept")])
    if amount != amount.to_integral_value():
        raise InvalidCommandError(command, [(name, "amounts are whole fen (two decimals)")])
    return int(amount)


def command_input(
    command: str,
    case_id: UUID,
    form: Mapping[str, str],
    *,
    actor: str,
    role: Role,
    today: date,
) -> dict[str, Any]:
    """A submitted form as the command's input (validated by CaseWork like any other)."""
    given: dict[str, Any] = {"case_id": str(case_id)}
    skip = {"reason", "occurred_on", "idempotency_key", "if_match"}
    for name, value in form.items():
        if name in skip:
            continue
        if name.endswith("_fen"):
            given[name] = _fen(command, name, value)
        elif name == "household_size":
            given[name] = int(value) if value.strip().isdigit() else value
        elif name == "accepted":
            given[name] = value in ("on", "true", "1", "yes")
        elif name == "category" and not value.strip():
            continue
        else:
            given[name] = value
    if command == "answer_referral":
        given.setdefault("accepted", False)
    if command == "assess":
        measure = {k: given.pop(k) for k in ("programme", "amount_fen", "category") if k in given}
        given["measures"] = [measure]
    occurred = _occurred(form.get("occurred_on", ""), today)
    given["by"] = {
        "actor": actor,
        "role": role.value,
        "reason": form.get("reason", "").strip(),
        "occurred_at": occurred,
    }
    return given


def _occurred(text: str, today: date) -> str:
    """When the step happened: now for today (or empty), else noon China time of that day."""
    try:
        day = date.fromisoformat(text) if text else today
    except ValueError:
        return text  # the command's validation names the bad date
    if day == today:
        return datetime.now(CHINA_TIME).isoformat()
    return datetime.combine(day, time(12), tzinfo=CHINA_TIME).isoformat()


def run_step(
    casework: CaseWork, principal: Principal, command: str, case_id: UUID, form: Mapping[str, str]
) -> dict[str, Any]:
    """Run a submitted step exactly as the API runs a command (api.commands).

    The form's idempotency key (one per rendered form) makes a double submit take effect
    once; its case version is the If-Match: a case that moved on since the page was drawn
    refuses the step (412) instead of applying it to a state the person did not see.
    """
    kind = COMMANDS[command]
    given = command_input(command, case_id, form, actor=principal.actor, role=principal.role,
                          today=today_in_china())  # fmt: skip
    key = form.get("idempotency_key", "").strip()[:200]
    request_key = f"{principal.actor}\n{key}" if key else None
    fingerprint = hashlib.sha256(
        json.dumps([command, str(case_id), dict(form)], sort_keys=True,
                   ensure_ascii=False).encode()
    ).hexdigest()  # fmt: skip
    version = form.get("if_match", "").strip()
    request = commands.CommandRequest(
        kind=kind, given=given, principal=principal, request_key=request_key,
        fingerprint=fingerprint, if_match=int(version) if version.isdigit() else None,
    )  # fmt: skip
    return commands.run_command(casework, request)
