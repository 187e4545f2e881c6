"""`jiuzhu report NAME`: regions roll up, months filter, three formats, charts in the table."""

from __future__ import annotations

import csv
import io
import json
from datetime import date

import pytest
from typer.testing import CliRunner

from domain.application import CaseWork
from jiuzhu.cli import app as cli
from projections import programme_roll, verification_tasks
from projections.base import read_model_datastore
from projections.feed import catch_up
from projections.regions import Criteria, Level
from tests.conftest import DATABASE_URL
from tests.report_stories import province, report_models

pytestmark = pytest.mark.postgres


@pytest.fixture
def env(app: CaseWork, pg_schema: str) -> dict[str, str]:
    province(app)
    models = report_models(pg_schema)
    for model in models:
        catch_up(model, app)
    models[0].datastore.close()
    return {
        "JIUZHU_DATABASE_URL": DATABASE_URL,
        "JIUZHU_DB_SCHEMA": pg_schema,
        "JIUZHU_ACTOR": "county-analyst",
        "JIUZHU_ROLE": "analyst",
    }


def report(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(cli, ["report", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_funnel_rolls_counties_up_to_cities_and_the_province(env: dict[str, str]) -> None:
    by_city = json.loads(report(env, "funnel", "--by", "city", "--format", "json"))["rows"]
    assert {r["region"]: r["discovered"] for r in by_city} == {"6101": 1, "6105": 3, "6106": 1}
    [province] = json.loads(report(env, "funnel", "--by", "province", "--format", "json"))["rows"]
    assert (province["region"], province["discovered"], province["paid"]) == ("61", 5, 3)


def test_region_and_months_filter_the_payments(env: dict[str, str]) -> None:
    output = report(
        env, "payments", "--region", "610500", "--from", "2023-05", "--to", "2023-05",
        "--format", "csv",
    )  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(output)))
    assert [(r["region"], r["programme"], r["amount_fen"]) for r in rows] == [
        ("610523", "rural_dibao", "50000")
    ]


def test_table_shows_yuan_a_funnel_bar_and_a_payments_sparkline(env: dict[str, str]) -> None:
    funnel = report(env, "funnel")
    assert "█" in funnel
    payments = report(env, "payments")
    assert "¥3,000.00" in payments  # Yichuan's temporary relief, 300,000 fen
    assert "monthly payments 2023-03" in payments


def test_headline_counts_people_under_the_guarantee(env: dict[str, str]) -> None:
    rows = json.loads(report(env, "headline", "--by", "province", "--format", "json"))["rows"]
    assert rows == [
        {
            "region": "61",
            "cases_discovered": 5,
            "monitoring_alerts": 4,
            "verification_tasks_issued": 4,
            "risks_eliminated": 1,
            "temporary_relief_grants": 2,
            "temporary_relief_fen": 500000,
            "households_under_guarantee": 2,
            "people_under_guarantee": 7,
        }
    ]


def test_overdue_tasks_and_reviews_are_read_against_a_day(
    env: dict[str, str], pg_schema: str
) -> None:
    datastore = read_model_datastore(DATABASE_URL, schema=pg_schema, pool_size=1)
    try:
        with datastore.transaction(commit=False) as curs:
            before = Criteria(today=date(2023, 3, 8), level=Level.PROVINCE)
            after = Criteria(today=date(2023, 3, 11), level=Level.PROVINCE)
            early = {
                r["assignee"]: r for r in verification_tasks.report(curs, pg_schema, before).rows
            }
            late = {
                r["assignee"]: r for r in verification_tasks.report(curs, pg_schema, after).rows
            }
            roll = programme_roll.report(curs, pg_schema, Criteria(today=date(2023, 10, 2))).rows
    finally:
        datastore.close()
    assert (early["anren-team"]["done"], early["lianhu-team"]["overdue"]) == (3, 0)
    assert (late["lianhu-team"]["open"], late["lianhu-team"]["overdue"]) == (1, 1)
    assert late["(unassigned)"]["cases"] == 1
    overdue = {(r["region"], r["programme"]): r["reviews_overdue"] for r in roll}
    assert overdue[("610523", "rural_dibao")] == 1  # a's 6-monthly review fell on 1 October
    assert overdue[("610630", "rural_dibao")] == 0


def test_unknown_report_and_bad_month_are_refused(env: dict[str, str]) -> None:
    unknown = CliRunner().invoke(cli, ["report", "nonsense"], env=env)
    assert unknown.exit_code == 1
    assert "unknown report" in unknown.output
    month = CliRunner().invoke(cli, ["report", "funnel", "--from", "2023-13"], env=env)
    assert month.exit_code == 1
    assert "not a month" in month.output


def test_report_says_who_reads_like_every_reading_command(env: dict[str, str]) -> None:
    anonymous = {k: v for k, v in env.items() if k not in ("JIUZHU_ACTOR", "JIUZHU_ROLE")}
    missing = CliRunner().invoke(cli, ["report", "funnel"], env=anonymous)
    assert missing.exit_code == 1
    assert "say who acts: --actor and --role" in missing.output
    upstream = CliRunner().invoke(
        cli, ["report", "funnel", "--actor", "feed", "--role", "upstream_system"], env=anonymous
    )
    assert upstream.exit_code == 1
    assert "feed (upstream_system) may not read history" in upstream.output
    options = ["--actor", "ms-li", "--role", "auditor", "--format", "json"]
    assert json.loads(report(anonymous, "funnel", *options))["rows"]
