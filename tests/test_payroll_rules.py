"""The payroll cycle's own rules, without a database: maker-checker, order, settlement."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from domain.payroll import (
    CycleStateError,
    Instruction,
    MakerCheckerError,
    PayrollCycle,
    Settlement,
)
from domain.provenance import Provenance

T = datetime(2023, 6, 25, 9, tzinfo=timezone(timedelta(hours=8)))


def by(actor: str, role: str = "approver", reason: str = "monthly payroll") -> Provenance:
    return Provenance(actor=actor, role=role, reason=reason, occurred_at=T)


def cycle(n: int = 3) -> PayrollCycle:
    items = [
        Instruction(PayrollCycle.instruction_id("2023-06", "rural_dibao", "610523", i),
                    f"case-{i}", f"HH-{i}", "2023-06", 65000, "monthly")
        for i in range(1, n + 1)
    ]  # fmt: skip
    return PayrollCycle.prepare(
        month="2023-06", programme="rural_dibao", region="610523", as_of=7,
        entitlements=items, by=by("clerk-li", "caseworker"),
    )  # fmt: skip


def test_preparing_again_names_the_same_cycle() -> None:
    assert cycle().id == cycle().id == PayrollCycle.id_for("2023-06", "rural_dibao", "610523")
    assert cycle().totals == (3, 195000)


def test_the_preparer_cannot_approve_or_reject() -> None:
    prepared = cycle()
    with pytest.raises(MakerCheckerError, match="clerk-li prepared this cycle"):
        prepared.approve(0, by=by("clerk-li"))
    with pytest.raises(MakerCheckerError):
        prepared.reject(by=by("clerk-li"))
    prepared.approve(0, by=by("director-wang"))
    assert prepared.status == "approved"
    with pytest.raises(CycleStateError, match="approved"):
        prepared.reject(by=by("director-zhao"))


def test_nothing_is_exported_or_settled_before_approval() -> None:
    prepared = cycle()
    with pytest.raises(CycleStateError):
        prepared.record_export(3, 195000, "ab", by=by("director-wang"))
    with pytest.raises(CycleStateError):
        prepared.settle([], by=by("finance", "upstream_system"))


def test_each_instruction_settles_once_and_the_rest_are_findings() -> None:
    approved = cycle()
    approved.approve(0, by=by("director-wang"))
    first, second, third = sorted(approved.instructions)
    outcome = approved.settle(
        [
            Settlement(first, "paid", 65000, "B-1"),
            Settlement(first, "paid", 65000, "B-1b"),  # again in the same file
            Settlement(second, "failed", 65000, "B-2", "account closed"),
            Settlement(third, "paid", 60000, "B-3"),  # not what was instructed
            Settlement("PI-2023-06-rural_dibao-610523-999999", "paid", 65000, "B-9"),
        ],
        by=by("finance", "upstream_system"),
    )
    assert [i.instruction_id for i, _ in outcome.paid] == [first]
    assert [(i.instruction_id, why) for i, _, why in outcome.failed] == [(second, "account closed")]
    assert [f[0] for f in outcome.findings] == [
        "double_settlement", "amount_differs", "unknown_instruction",
    ]  # fmt: skip
    repeated = approved.settle([Settlement(first, "paid", 65000, "B-1")], by=by("finance"))
    assert (repeated.paid, repeated.findings, repeated.repeats) == ([], [], 1)
    again = approved.settle([Settlement(first, "paid", 65000, "B-1c")], by=by("finance"))
    assert again.paid == []
    assert again.findings[0][0] == "double_settlement"
    assert [i.instruction_id for i in approved.outstanding] == [third]
