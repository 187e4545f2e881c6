"""Payroll stories on the real PostgreSQL: prepare, approve, export, settle, carry over."""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.application import CaseWork
from domain.errors import PermissionDeniedError
from domain.payroll import MakerCheckerError, PayrollCycle
from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.audit.signing import Signer, signer_from_settings
from jiuzhu.audit.verify import verify_log
from jiuzhu.settings import Settings
from payroll import settle as settle_module
from payroll.decide import approve, load_cycle
from payroll.export import export_cycle
from payroll.prepare import prepare_month
from payroll.settle import settle_file
from projections.base import read_model_datastore
from projections.feed import catch_up
from projections.payments_ledger import PaymentsLedger
from projections.payments_ledger import report as payments_report
from projections.payroll_cycles import PayrollCycles
from projections.payroll_cycles import report as payroll_report
from projections.payroll_ledger import PayrollLedger
from projections.rebuild import replay
from projections.regions import Criteria
from tests.conftest import DATABASE_URL
from tests.payroll_stories import by, enrolled, ledger, staff

__all__ = ["ledger"]
pytestmark = pytest.mark.postgres


def owed(app: CaseWork, month: str, case_id: object) -> dict[str, int]:
    cycle = app.repository.get(PayrollCycle.id_for(month, "rural_dibao", "610523"))
    return {
        i.period: i.amount_fen for i in cycle.instructions.values() if i.case_id == str(case_id)
    }


def test_adjusted_in_may_and_exited_in_august_is_owed_exactly_march_to_july(
    app: CaseWork, ledger: PayrollLedger
) -> None:
    case_id = enrolled(app, effective_from=date(2023, 3, 10), amount_fen=65000)
    app.adjust_benefit({
        "case_id": case_id, "programme": "rural_dibao", "amount_fen": 70000,
        "effective_from": date(2023, 5, 1), "by": by("director", "approver", date(2023, 4, 20)),
    })  # fmt: skip
    app.exit_programme({
        "case_id": case_id, "programme": "rural_dibao", "ended_on": date(2023, 8, 1),
        "by": by("director", "approver", date(2023, 7, 28), "income above the line"),
    })  # fmt: skip
    prepared = prepare_month(app, ledger, month="2023-09", by=staff("clerk-li", "caseworker"))
    assert [(p.key, p.instructions, p.amount_fen) for p in prepared] == [
        ("2023-09/rural_dibao/610523", 5, 2 * 65000 + 3 * 70000)
    ]
    assert owed(app, "2023-09", case_id) == {
        "2023-03": 65000, "2023-04": 65000, "2023-05": 70000, "2023-06": 70000,
        "2023-07": 70000,
    }  # fmt: skip
    again = prepare_month(app, ledger, month="2023-09", by=staff("clerk-li", "caseworker"))
    assert [(p.cycle_id, p.existed) for p in again] == [(prepared[0].cycle_id, True)]


def settlement_file(path: Path, lines: list[tuple[str, str, int, str, str]]) -> Path:
    """A finance settlement file: instruction, outcome, fen, reference, reason."""
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["instruction_id", "outcome", "amount_fen", "payment_ref", "reason"])
        writer.writerows(lines)
    return path


def run_month(
    app: CaseWork,
    ledger: PayrollLedger,
    month: str,
    tmp_path: Path,
    failing: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Prepare, approve, export and settle a month; the periods in `failing` fail."""
    day = date(int(month[:4]), int(month[5:]), 25)
    prepared = prepare_month(app, ledger, month=month, by=staff("clerk-li", "caseworker", day))
    if not prepared:
        return {}
    approve(app, ledger, prepared[0].cycle_id, by=staff("director-wang", day=day))
    exported = export_cycle(
        app,
        prepared[0].cycle_id,
        out_dir=tmp_path,
        signer=SIGNER,
        by=staff("director-wang", day=day),
    )
    rows = [json.loads(line) for line in exported.jsonl_path.read_text().splitlines()[:-1]]
    lines = [
        (r["instruction_id"], "failed" if r["purpose"].split()[1] in failing else "paid",
         r["amount_fen"], f"BANK-{r['instruction_id']}", "account frozen")
        for r in rows
    ]  # fmt: skip
    path = settlement_file(tmp_path / f"settled-{month}.csv", lines)
    report = settle_file(app, ledger, month, path, by=staff("finance", "upstream_system", day))
    return {"rows": rows, "report": report.as_json(), "file": path}


SIGNER = Signer(Ed25519PrivateKey.generate())


def test_a_year_of_payrolls_pays_march_to_july_once_and_a_failure_next_month_as_arrears(
    app: CaseWork, ledger: PayrollLedger, tmp_path: Path
) -> None:
    case_id = enrolled(app, effective_from=date(2023, 3, 10), amount_fen=65000)
    app.adjust_benefit({
        "case_id": case_id, "programme": "rural_dibao", "amount_fen": 70000,
        "effective_from": date(2023, 5, 1), "by": by("director", "approver", date(2023, 4, 20)),
    })  # fmt: skip
    runs = {m: run_month(app, ledger, m, tmp_path, failing=frozenset({"2023-05"})) for m in
            ["2023-03", "2023-04", "2023-05", "2023-06"]}  # fmt: skip
    app.exit_programme({
        "case_id": case_id, "programme": "rural_dibao", "ended_on": date(2023, 8, 1),
        "by": by("director", "approver", date(2023, 7, 28), "income above the line"),
    })  # fmt: skip
    runs |= {m: run_month(app, ledger, m, tmp_path) for m in ["2023-07", "2023-08", "2023-09"]}
    assert runs["2023-05"]["report"]["failed"] == 1
    june = runs["2023-06"]["rows"]
    assert [(r["purpose"], r["amount_fen"]) for r in june] == [
        ("rural_dibao 2023-05 arrears", 70000), ("rural_dibao 2023-06", 70000),
    ]  # fmt: skip
    assert june[0]["account_ref"] == "6217003810000123456"
    assert runs["2023-08"] == runs["2023-09"] == {}
    case = app.get_case(case_id)
    assert case.payments == {
        "rural_dibao:2023-03": 65000, "rural_dibao:2023-04": 65000,
        "rural_dibao:2023-05": 70000, "rural_dibao:2023-06": 70000,
        "rural_dibao:2023-07": 70000,
    }  # fmt: skip
    # Finance sends June's file again, and then one June line with another reference.
    again = settle_file(app, ledger, "2023-06", runs["2023-06"]["file"], by=staff("finance"))
    assert again.as_json()["repeats"] == 2
    assert again.paid == 0
    instruction = june[1]["instruction_id"]
    double = settlement_file(tmp_path / "double.csv", [(instruction, "paid", 70000, "X-2", "")])
    found = settle_file(app, ledger, "2023-06", double, by=staff("finance"))
    assert found.paid == 0
    assert [f[:2] for f in found.findings] == [["double_settlement", instruction]]
    assert app.get_case(case_id).paid_total_fen == 2 * 65000 + 3 * 70000


def test_the_preparer_cannot_approve_the_cycle(app: CaseWork, ledger: PayrollLedger) -> None:
    enrolled(app, effective_from=date(2023, 3, 1), amount_fen=65000)
    day = date(2023, 3, 25)
    prepared = prepare_month(app, ledger, month="2023-03", by=staff("clerk-li", "approver", day))
    with pytest.raises(MakerCheckerError, match="clerk-li prepared this cycle and may not approve"):
        approve(app, ledger, prepared[0].cycle_id, by=staff("clerk-li", day=day))
    with pytest.raises(PermissionDeniedError):
        approve(app, ledger, prepared[0].cycle_id, by=staff("clerk-zhao", "caseworker", day))
    cycle, differences = approve(
        app, ledger, prepared[0].cycle_id, by=staff("director-wang", day=day)
    )
    assert (cycle.status, cycle.approver, differences) == ("approved", "director-wang", [])


def test_a_death_in_june_stops_july(app: CaseWork, ledger: PayrollLedger, tmp_path: Path) -> None:
    case_id = enrolled(app, effective_from=date(2023, 3, 1), amount_fen=65000)
    for month in ["2023-03", "2023-04", "2023-05"]:
        run_month(app, ledger, month, tmp_path)
    app.exit_programme({
        "case_id": case_id, "programme": "rural_dibao", "ended_on": date(2023, 6, 12),
        "by": by("registry", "upstream_system", date(2023, 6, 12), "death registered"),
    })  # fmt: skip
    prepared = prepare_month(app, ledger, month="2023-07", by=staff("clerk-li", "caseworker"))
    assert [(p.instructions, p.by_kind) for p in prepared] == [(1, {"arrears": [1, 65000]})]
    app.close_case(
        {"case_id": case_id, "by": by("registry", "upstream_system", date(2023, 6, 12), "death")}
    )
    assert prepare_month(app, ledger, month="2023-08", by=staff("clerk-li", "caseworker")) == []


def test_replay_equals_live_the_report_agrees_with_the_ledger_and_the_audit_holds(
    app: CaseWork, ledger: PayrollLedger, pg_schema: str, tmp_path: Path
) -> None:
    datastore = read_model_datastore(DATABASE_URL, schema=pg_schema)
    live = [PayrollCycles(datastore), PaymentsLedger(datastore)]
    for model in live:
        model.create_table()
    try:
        first = enrolled(app, effective_from=date(2023, 3, 1), amount_fen=65000)
        enrolled(app, effective_from=date(2023, 4, 1), amount_fen=70000, region="610502")
        grant = enrolled(app, effective_from=date(2023, 4, 5), amount_fen=300000,
                         programme="temporary_relief")  # fmt: skip
        for month in ["2023-03", "2023-04", "2023-05"]:
            prepared = prepare_month(app, ledger, month=month, by=staff("clerk-li", "caseworker"))
            for cycle in prepared:
                approve(app, ledger, cycle.cycle_id, by=staff("director-wang"))
                export_cycle(app, cycle.cycle_id, out_dir=tmp_path, signer=SIGNER,
                             by=staff("director-wang"))  # fmt: skip
            lines = [
                (i.instruction_id, "failed" if i.case_id == str(first) and month == "2023-04"
                 else "paid", i.amount_fen, f"B-{i.instruction_id}", "account frozen")
                for c in prepared for i in load_cycle(app, c.cycle_id).outstanding
            ]  # fmt: skip
            settle_file(app, ledger, month, settlement_file(tmp_path / f"{month}.csv", lines),
                        by=staff("finance", "upstream_system"))  # fmt: skip
            for model in live:
                catch_up(model, app)
        catch_up(ledger, app)
        assert app.get_case(grant).payments == {"temporary_relief:one-off": 300000}
        result = replay(
            app, [PayrollLedger, PayrollCycles, PaymentsLedger],
            database_url=DATABASE_URL, schema=pg_schema,
        )  # fmt: skip
        assert all(not found for found in result.differences.values()), result.differences
        with datastore.transaction(commit=False) as curs:
            rows = payroll_report(curs, pg_schema, Criteria()).rows
            paid = payments_report(curs, pg_schema, Criteria()).rows
        assert sum(r["paid_fen"] for r in rows) == sum(r["amount_fen"] for r in paid)
        assert sum(r["paid_fen"] for r in rows) == 65000 * 2 + 70000 * 2 + 300000 + 65000
        assert sum(r["failed_fen"] for r in rows) == 65000
        assert sum(r["outstanding"] for r in rows) == 0
        assert isinstance(app, AuditedCaseWork)
        signer = signer_from_settings(Settings())  # the key the app's checkpoints are signed with
        report = verify_log(
            app.datastore, app.audit, public_keys={signer.key_id: signer.public_key}
        )
        assert report.ok, report.findings
    finally:
        datastore.close()


def test_a_prepare_that_dies_half_way_resumes_without_double_entitlements(
    app: CaseWork, ledger: PayrollLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    for region in ["610523", "610502", "610102"]:
        enrolled(app, effective_from=date(2023, 5, 1), amount_fen=65000, region=region)
    save, saved = app.save, []

    def dies_after_one_cycle(*objs: Any, **kwargs: Any) -> Any:
        if saved:
            raise SystemExit("killed")
        saved.append(objs)
        return save(*objs, **kwargs)

    monkeypatch.setattr(app, "save", dies_after_one_cycle)
    with pytest.raises(SystemExit):
        prepare_month(app, ledger, month="2023-06", by=staff("clerk-li", "caseworker"))
    monkeypatch.setattr(app, "save", save)
    resumed = prepare_month(app, ledger, month="2023-06", by=staff("clerk-li", "caseworker"))
    assert sorted(p.existed for p in resumed) == [False, False, True]
    assert sum(p.instructions for p in resumed) == 3 * 2  # May (arrears) and June, once each
    catch_up(ledger, app)
    with ledger.datastore.transaction(commit=False) as curs:
        curs.execute(
            f"SELECT count(*) AS n, count(DISTINCT (case_id, period)) AS d "
            f'FROM "{ledger.datastore.schema}".payroll_instructions'
        )
        assert curs.fetchone() == {"n": 6, "d": 6}


def test_bank_accounts_are_erased_with_the_household(
    app: CaseWork, ledger: PayrollLedger, tmp_path: Path
) -> None:
    case_id = enrolled(app, effective_from=date(2023, 6, 1), amount_fen=65000)
    [prepared] = prepare_month(app, ledger, month="2023-06", by=staff("clerk-li", "caseworker"))
    approve(app, ledger, prepared.cycle_id, by=staff("director-wang"))
    app.erase_personal_data({
        "household_id": app.get_case(case_id).household_id,
        "by": by("director-wang", "approver", date(2023, 6, 26), "PIPL art. 47"),
    })  # fmt: skip
    written = export_cycle(app, prepared.cycle_id, out_dir=tmp_path, signer=SIGNER,
                           by=staff("director-wang"))  # fmt: skip
    [row] = [json.loads(x) for x in written.jsonl_path.read_text().splitlines()[:-1]]
    assert row["account_ref"] == "[erased]"
    assert row["amount_fen"] == 65000


def test_changes_after_preparation_are_shown_as_differences_not_included(
    app: CaseWork, ledger: PayrollLedger
) -> None:
    case_id = enrolled(app, effective_from=date(2023, 6, 1), amount_fen=65000)
    [prepared] = prepare_month(app, ledger, month="2023-06", by=staff("clerk-li", "caseworker"))
    app.adjust_benefit({
        "case_id": case_id, "programme": "rural_dibao", "amount_fen": 72000,
        "effective_from": date(2023, 6, 1), "by": by("director", "approver", date(2023, 6, 20)),
    })  # fmt: skip
    late = enrolled(app, effective_from=date(2023, 6, 15), amount_fen=50000)
    cycle, found = approve(app, ledger, prepared.cycle_id, by=staff("director-wang"))
    assert [(d.case_id, d.prepared_fen, d.now_fen) for d in found] == sorted(
        [(str(case_id), 65000, 72000), (str(late), None, 50000)]
    )
    assert cycle.totals == (1, 65000)  # what was prepared is what is approved
    assert [
        e.differences for e in app.events.get(cycle.id) if isinstance(e, PayrollCycle.Approved)
    ] == [2]


def test_a_case_changed_while_its_payment_is_settled_is_decided_again_not_paid_twice(
    app: CaseWork, ledger: PayrollLedger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case_id = enrolled(app, effective_from=date(2023, 6, 1), amount_fen=65000)
    [prepared] = prepare_month(app, ledger, month="2023-06", by=staff("clerk-li", "caseworker"))
    approve(app, ledger, prepared.cycle_id, by=staff("director-wang"))
    [item] = load_cycle(app, prepared.cycle_id).outstanding
    state, meddled = settle_module._case_state, []

    def another_writer_meanwhile(*args: Any) -> Any:
        found = state(*args)
        if not meddled:  # after the facts were read, before the save
            meddled.append(app.pay({
                "case_id": case_id, "programme": "rural_dibao", "period": "2023-06",
                "amount_fen": 65000, "payment_ref": "CASH-1",
                "by": by("finance", "upstream_system", date(2023, 6, 26), "paid at the counter"),
            }))  # fmt: skip
        return found

    monkeypatch.setattr(settle_module, "_case_state", another_writer_meanwhile)
    line = [(item.instruction_id, "paid", 65000, "BANK-1", "")]
    report = settle_file(app, ledger, "2023-06", settlement_file(tmp_path / "s.csv", line),
                         by=staff("finance", "upstream_system"))  # fmt: skip
    assert report.retries == 1
    assert [f[0] for f in report.findings] == ["refused_by_case"]
    assert app.get_case(case_id).payments == {"rural_dibao:2023-06": 65000}
    assert app.get_case(case_id).paid_total_fen == 65000
