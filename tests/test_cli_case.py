"""The CLI tells a case's state and history, and refuses bad arguments in one line."""

from __future__ import annotations

import json
from uuid import UUID, uuid4

import pytest
from typer.testing import CliRunner

from domain.application import CaseWork
from jiuzhu.cli import app as cli
from tests.conftest import DATABASE_URL
from tests.stories import enrolled, pay

pytestmark = pytest.mark.postgres


@pytest.fixture
def runner(pg_schema: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("JIUZHU_DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("JIUZHU_DB_SCHEMA", pg_schema)
    monkeypatch.setenv("JIUZHU_ACTOR", "auditor-7")
    monkeypatch.setenv("JIUZHU_ROLE", "auditor")
    return CliRunner()


@pytest.fixture
def paid_case(app: CaseWork) -> UUID:
    case_id = enrolled(app)
    pay(app, case_id, "2023-04")
    return case_id


def test_case_show_json_reports_the_current_state(runner: CliRunner, paid_case: UUID) -> None:
    result = runner.invoke(cli, ["case", "show", str(paid_case), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["status"] == "enrolled"
    assert shown["paid_total_fen"] == 50000
    assert shown["personal"]["id_card"] == "6105**********1234"


def test_analysts_see_a_case_without_its_personal_data(runner: CliRunner, paid_case: UUID) -> None:
    result = runner.invoke(cli, ["case", "show", str(paid_case), "--json", "--role", "analyst"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["personal"] == {"name": "[redacted]", "id_card": "[redacted]"}
    assert "610523198001011234" not in result.stdout


def test_reading_a_case_needs_a_known_role(runner: CliRunner, paid_case: UUID) -> None:
    result = runner.invoke(cli, ["case", "history", str(paid_case), "--role", "visitor"])
    assert result.exit_code == 1
    assert "visitor" in result.stderr


def test_case_show_at_a_version_travels_back(runner: CliRunner, paid_case: UUID) -> None:
    result = runner.invoke(cli, ["case", "show", str(paid_case), "--version", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "discovered"


def test_case_history_lists_every_event_in_order(
    runner: CliRunner, paid_case: UUID, app: CaseWork
) -> None:
    result = runner.invoke(cli, ["case", "history", str(paid_case), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["version"] for r in rows] == list(range(1, len(app.history(paid_case)) + 1))
    assert rows[-1]["type"] == "Paid"
    assert rows[-1]["actor"] == "upstream_system-1"
    assert rows[-1]["reason"] == "monthly disbursement"
    assert set(rows[0]) >= {"occurred_at", "recorded_at", "causation_id", "summary"}
    table = runner.invoke(cli, ["case", "history", str(paid_case)])
    assert table.exit_code == 0
    assert "rural_dibao 2023-04: ¥500.00" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["case", "show", "not-a-uuid"], "is not a case id"),
        (["case", "show", str(uuid4())], "not found"),
        (["case", "history", str(uuid4())], "not found"),
        (["case", "show", "{case}", "--as-of", "yesterday"], "is not a date"),
        (["case", "show", "{case}", "--as-of", "2001-01-01"], "nothing happened by 2001-01-01"),
        (["case", "show", "{case}", "--known-at", "2001-01-01"], "as recorded by 2001-01-01"),
        (["case", "show", "{case}", "--known-at", "soon"], "--known-at 'soon' is not a date"),
        (["case", "show", "{case}", "--version", "1", "--as-of", "2024-01-01"], "not both"),
    ],
)
def test_user_mistakes_get_one_line_and_exit_1(
    runner: CliRunner, paid_case: UUID, args: list[str], message: str
) -> None:
    result = runner.invoke(cli, [a.replace("{case}", str(paid_case)) for a in args])
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_case_show_lists_the_pending_deadlines(runner: CliRunner, paid_case: UUID) -> None:
    result = runner.invoke(cli, ["case", "show", str(paid_case), "--json"])
    assert result.exit_code == 0, result.output
    deadlines = {d["deadline"]: d for d in json.loads(result.stdout)["deadlines"]}
    # Enrolled 1 April 2023 as a changing household: reviewed every 6 months.
    assert set(deadlines) == {"review_due:rural_dibao", "review_overdue:rural_dibao"}
    assert deadlines["review_due:rural_dibao"]["due_at"].startswith("2023-10-01T00:00:00+08:00")
    table = runner.invoke(cli, ["case", "show", str(paid_case)])
    assert "Pending deadlines" in table.stdout
    assert "review_due:rural_dibao" in table.stdout
    at_first = runner.invoke(cli, ["case", "show", str(paid_case), "--version", "1", "--json"])
    kinds = [d["kind"] for d in json.loads(at_first.stdout)["deadlines"]]
    assert kinds == ["decision_near", "decision_due", "decision_limit"]
