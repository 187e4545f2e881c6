"""The screening report: per batch, what was compared and found, and what followed."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest

from domain.application import CaseWork
from projections.base import read_model_datastore
from projections.feed import catch_up
from projections.regions import Criteria
from projections.screening import Screening, report
from screening.generate import generate
from screening.policy import load_policy
from screening.rules import load_rules
from screening.run import run_batch
from tests.conftest import DATABASE_URL
from tests.report_stories import enrol, visit
from tests.stories import by, opened

pytestmark = pytest.mark.postgres
AS_OF = date(2023, 6, 30)


def _planted(directory: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    with (directory / "planted.csv").open() as f:
        for row in csv.DictReader(f):
            found.setdefault(row["rule"], []).append(row["household_id"])
    return found


def _report(model: Screening, schema: str) -> list[dict[str, Any]]:
    with model.datastore.transaction(commit=False) as curs:
        return report(curs, schema, Criteria()).rows


def _tables(model: Screening) -> dict[str, list[Any]]:
    with model.datastore.transaction(commit=False) as curs:
        found = {}
        for table in model.tables:
            curs.execute(model.sql(f"SELECT t::text FROM {{schema}}.{table} t ORDER BY 1"))
            found[table] = [row["t"] for row in curs.fetchall()]
        return found


def test_the_batch_report_counts_hits_tasks_and_what_followed(
    app: CaseWork, pg_schema: str, tmp_path: Path
) -> None:
    manifest = generate(tmp_path, records=5_000, seed=5, as_of=AS_OF, hits_per_rule=3)
    planted = _planted(tmp_path)
    # Before the batch: an enrolled household (its eligibility is to be reviewed) and a
    # household whose case is already open.
    enrolled_case = opened(app, household=planted["vehicle_registered"][0])
    visit(app, enrolled_case, "needs_support")
    enrol(app, enrolled_case, "rural_dibao", 60000)
    open_case = opened(app, household=planted["income_drop"][0])

    run = run_batch(
        app, "2023-B5", tmp_path, as_of=AS_OF, policy=load_policy(), rules=load_rules(),
        actor="analyst-1",
    )  # fmt: skip
    hits = sum(manifest.planted.values())
    assert run.handed == {"applied": hits}
    assert app.open_case_of(planted["income_drop"][0]) == open_case
    # Later, the field teams: one hit's household needs no help, another is enrolled.
    checked = app.open_case_of(planted["medical_self_pay"][0])
    helped = app.open_case_of(planted["newly_disabled"][0])
    assert checked is not None
    assert helped is not None
    for case_id, verdict in ((checked, "risk_eliminated"), (helped, "needs_support")):
        app.give_consent({"case_id": case_id, "given_by": "head", "by": by(days=130)})
        app.verify(
            {"case_id": case_id, "verdict": verdict, "household_size": 2,
             "monthly_income_fen": 90000, "by": by(days=131)}
        )  # fmt: skip
    enrol(app, helped, "temporary_relief", 300000)

    datastore = read_model_datastore(DATABASE_URL, schema=pg_schema)
    model = Screening(datastore)
    model.create_table()
    catch_up(model, app, batch_size=7)  # small batches: a hit's events cross them
    batch, total = _report(model, pg_schema)
    assert batch["batch"] == "2023-B5"
    assert batch["records_compared"] == manifest.records
    assert batch["hits"] == hits
    assert batch["hits_by_rule"] == manifest.planted
    assert batch["cases_opened"] == hits - 2
    assert batch["signals_attached"] == 1
    assert batch["reviews_started"] == 1
    assert batch["tasks_issued"] == hits - 1
    # The enrolled household's enrolment came before the hit: not counted as following it.
    assert (batch["verified"], batch["enrolled"], batch["risks_eliminated"]) == (2, 1, 1)
    assert total["batch"] == "total (1 batches)"
    assert total["tasks_issued"] == hits - 1

    # Rebuilt from the log in one pass, the tables are the same.
    other = f"t_{uuid4().hex[:12]}"
    rebuilt = Screening(read_model_datastore(DATABASE_URL, schema=other))
    try:
        rebuilt.create_table()
        catch_up(rebuilt, app, batch_size=10_000)
        assert _tables(rebuilt) == _tables(model)
    finally:
        rebuilt.datastore.close()
        datastore.close()
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{other}" CASCADE')
