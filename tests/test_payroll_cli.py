"""`jiuzhu payroll` end to end on the real PostgreSQL: the same rules, in one-line errors."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from domain.application import CaseWork
from jiuzhu.audit.signing import load_public_key, signing_key_path
from jiuzhu.cli import app as cli
from jiuzhu.settings import Settings
from payroll.export import verify_file
from tests.conftest import DATABASE_URL
from tests.payroll_stories import enrolled

pytestmark = pytest.mark.postgres


@pytest.fixture
def runner(pg_schema: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("JIUZHU_DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("JIUZHU_DB_SCHEMA", pg_schema)
    return CliRunner()


def run(runner: CliRunner, actor: str, role: str, *args: str) -> tuple[int, str]:
    result = runner.invoke(cli, ["payroll", *args, "--actor", actor, "--role", role])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_prepare_approve_export_settle_from_the_command_line(
    app: CaseWork, runner: CliRunner, tmp_path: Path
) -> None:
    enrolled(app, effective_from=date(2023, 6, 1), amount_fen=65000, account="6217-0001")
    enrolled(app, effective_from=date(2023, 5, 1), amount_fen=70000, account="6217-0002")
    code, out = run(runner, "clerk-li", "caseworker", "prepare", "--month", "2023-06")
    assert code == 0, out
    [cycle] = json.loads(out)
    assert (cycle["cycle"], cycle["instructions"], cycle["amount_fen"]) == (
        "2023-06/rural_dibao/610523", 3, 65000 + 2 * 70000,
    )  # fmt: skip
    assert cycle["by_kind"] == {"arrears": [1, 70000], "monthly": [2, 135000]}
    name = cycle["cycle"]
    code, out = run(runner, "clerk-li", "approver", "approve", name, "--reason", "checked")
    assert code == 1
    assert (
        "clerk-li prepared this cycle and may not approve it (rule preparer-may-not-approve)" in out
    )
    code, out = run(runner, "analyst-1", "analyst", "export", name, "--out", str(tmp_path))
    assert code == 1
    assert "analyst-1 (analyst) may not export payroll" in out
    code, out = run(runner, "director-wang", "approver", "approve", name, "--reason", "checked")
    assert code == 0, out
    assert json.loads(out)["status"] == "approved"
    code, out = run(runner, "director-wang", "approver", "export", name, "--out", str(tmp_path))
    assert code == 0, out
    written = json.loads(out)
    rows = [json.loads(x) for x in Path(written["jsonl_path"]).read_text().splitlines()[:-1]]
    assert sorted(r["account_ref"] for r in rows) == ["6217-0001", "6217-0002", "6217-0002"]
    key = load_public_key(signing_key_path(Settings()))
    for path in (written["csv_path"], written["jsonl_path"]):
        assert verify_file(Path(path), cycle["cycle_id"], key)
    settlement = tmp_path / "bank.csv"
    settlement.write_text(
        "instruction_id,outcome,amount_fen,payment_ref,reason\n"
        + "".join(
            f"{r['instruction_id']},paid,{r['amount_fen']},B{i},\n" for i, r in enumerate(rows)
        )
        + "PI-2023-06-rural_dibao-610523-000099,paid,100,B99,\n"
    )
    code, out = run(runner, "bank", "upstream_system", "settle", name, str(settlement))
    assert code == 0, out
    settled = json.loads(out[: out.rindex("}") + 1])
    assert (settled["paid"], settled["paid_fen"], settled["findings"]) == (
        3, 205000, {"unknown_instruction": 1},
    )  # fmt: skip
    code, out = run(runner, "auditor-7", "auditor", "show", name)
    assert code == 0, out
    reconciled = json.loads(out)
    assert (reconciled["paid"], reconciled["outstanding"]) == (3, 0)
    assert [(f["kind"], f["amount_fen"]) for f in reconciled["findings"]] == [
        ("unknown_instruction", 100)
    ]
    code, out = run(runner, "bank", "upstream_system", "settle", name, str(tmp_path / "nope.csv"))
    assert (code, "is not a file" in out) == (1, True)
    bad = tmp_path / "bad.csv"
    bad.write_text("instruction_id,outcome,amount_fen,payment_ref,reason\nPI-x,paid,12.5,B,\n")
    code, out = run(runner, "bank", "upstream_system", "settle", name, str(bad))
    assert code == 1
    assert "bad settlement file" in out
    assert "line 2" in out
    code, out = run(runner, "clerk-li", "caseworker", "prepare", "--month", "2023-6")
    assert (code, "--month '2023-6' is not a month like 2023-06" in out) == (1, True)
    code, out = run(
        runner, "clerk-li", "caseworker", "prepare", "--month", "2023-07", "--region", "6105"
    )
    assert (code, "is not a 6-digit administrative code" in out) == (1, True)
    rebuilt = runner.invoke(cli, ["rebuild", "payroll_cycles", "payments_ledger"])
    assert rebuilt.exit_code == 0, rebuilt.output
    shown = runner.invoke(cli, ["report", "payroll", "--format", "json"])
    assert shown.exit_code == 0, shown.output
    [row] = json.loads(shown.stdout)["rows"]
    assert (row["paid"], row["paid_fen"], row["outstanding"], row["findings"]) == (3, 205000, 0, 1)
    ledger = json.loads(runner.invoke(cli, ["report", "payments", "--format", "json"]).stdout)
    assert sum(r["amount_fen"] for r in ledger["rows"]) == row["paid_fen"]
