"""Screening hits through the intake on the real PostgreSQL: once, whatever happens."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any
from uuid import uuid4

import orjson
import psycopg
import pytest

from consumers.contracts import ScreeningHitEvent, message_key_of, parse_upstream
from consumers.translate import CaseFacts, Situation, case_id_for, translate
from domain.application import CaseWork
from domain.commands import AssignVerification, AttachSignal, OpenCase
from domain.screening import HIT_SOURCE, hit_of
from domain.values import Channel
from jiuzhu.bootstrap import casework
from projections.base import read_model_datastore
from projections.feed import catch_up
from projections.programme_roll import ProgrammeRoll
from screening.generate import generate
from screening.policy import load_policy
from screening.rules import load_rules
from screening.run import roll_population, run_batch
from tests.conftest import DATABASE_URL
from tests.report_stories import enrol, visit
from tests.stories import opened

AS_OF = date(2023, 6, 30)
pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("batch")
    generate(out, records=6_000, seed=11, as_of=AS_OF, hits_per_rule=4)
    return out


def _planted(directory: Path) -> list[tuple[str, str]]:
    with (directory / "planted.csv").open() as f:
        return sorted((row["household_id"], row["rule"]) for row in csv.DictReader(f))


def _run(app: CaseWork, directory: Path, name: str = "2023-B4") -> Any:
    return run_batch(
        app, name, directory, as_of=AS_OF, policy=load_policy(), rules=load_rules(),
        actor=HIT_SOURCE,
    )  # fmt: skip


def _max_notification(app: CaseWork) -> int:
    return app.recorder.max_notification_id() or 0


def test_each_hit_opens_a_case_with_a_task_and_a_rerun_changes_nothing(
    app: CaseWork, batch: Path
) -> None:
    first = _run(app, batch)
    planted = _planted(batch)
    assert first.handed == {"applied": len(planted)}
    assert first.recorded == "recorded"
    for household, rule in planted:
        case_id = app.open_case_of(household)
        assert case_id is not None
        history = app.history(case_id)
        opened, task = history[0], history[1]
        assert opened.channel == Channel.DATA_COMPARISON.value
        assert opened.correlation_id == "2023-B4"
        key = message_key_of(HIT_SOURCE, f"2023-B4/{rule}/{household}")
        assert opened.causation_id == f"upstream:{key}"
        assert hit_of(opened.causation_id) == ("2023-B4", rule, household)
        assert task.assignee == f"civil-affairs-{opened.region}"
        assert task.due_on == date(2023, 7, 15)
    position = _max_notification(app)

    again = _run(app, batch)
    assert again.handed == {"duplicate": len(planted)}
    assert again.recorded == "already recorded"
    assert _max_notification(app) == position


HOUSEHOLD = "HH-610523-00000001"


def _hit(rule: str = "income_drop") -> ScreeningHitEvent:
    body = {
        "specversion": "1.0", "id": f"B1/{rule}/{HOUSEHOLD}", "source": "/jiuzhu/screening",
        "type": "screening.hit", "time": "2023-06-30T09:00:00+08:00", "correlationid": "B1",
        "data": {
            "household_id": HOUSEHOLD, "region": "610523", "batch": "B1", "rule": rule,
            "finding": "annual income fell from 40000 to 12000 yuan (-70%)",
            "legal_basis": "Interim Measures for Social Assistance, art. 9",
            "indicators": {"drop_pct": 70.0}, "household_size": 3,
            "verify_by": "2023-07-15", "assignee": "civil-affairs-610523",
        },
    }  # fmt: skip
    event = parse_upstream(orjson.dumps(body))
    assert isinstance(event, ScreeningHitEvent)
    return event


def _facts(case_id: Any, programmes: tuple[str, ...] = ()) -> CaseFacts:
    return CaseFacts(
        case_id=case_id, household_id=HOUSEHOLD, household_size=3, consent=True,
        active_programmes=programmes,
    )  # fmt: skip


def test_a_hit_on_a_household_without_a_case_opens_one_and_issues_its_task() -> None:
    hit = _hit()
    opened, task = translate(hit, Situation())
    assert isinstance(opened, OpenCase)
    assert opened.channel is Channel.DATA_COMPARISON
    assert opened.case_id == case_id_for(hit)
    assert opened.by.correlation_id == "B1"
    assert isinstance(task, AssignVerification)
    assert (task.assignee, task.due_on) == ("civil-affairs-610523", date(2023, 7, 15))


def test_a_hit_on_an_open_case_attaches_a_signal() -> None:
    case_id = uuid4()
    (command,) = translate(_hit(), Situation(open_case_id=case_id, case=_facts(case_id)))
    assert isinstance(command, AttachSignal)
    assert command.signal.startswith("data comparison B1, rule income_drop: annual income fell")


def test_a_hit_on_an_enrolled_household_starts_a_review_never_an_exit() -> None:
    case_id = uuid4()
    situation = Situation(open_case_id=case_id, case=_facts(case_id, ("rural_dibao",)))
    (command,) = translate(_hit("vehicle_registered"), situation)
    assert isinstance(command, AssignVerification)
    assert command.by.reason.startswith("eligibility review: data comparison B1")


def test_a_hit_stopped_after_opening_its_case_only_issues_the_task_again() -> None:
    hit = _hit()
    own = case_id_for(hit)
    (command,) = translate(hit, Situation(open_case_id=own, case=_facts(own)))
    assert isinstance(command, AssignVerification)


def _events(schema: str) -> set[tuple[Any, ...]]:
    """Every stored event, less what differs by nature: what a run left, comparable."""
    with psycopg.connect(DATABASE_URL) as conn:
        rows = conn.execute(
            "SELECT originator_id, originator_version, topic, state "
            f'FROM "{schema}".casework_events'
        ).fetchall()
    kept = set()
    for originator, version, topic, state in rows:
        body = orjson.loads(state)
        body.pop("timestamp", None)  # when it was recorded
        body.pop("personal", None)  # sealed with a fresh nonce each time (jiuzhu.privacy)
        kept.add((originator, version, topic, orjson.dumps(body, option=orjson.OPT_SORT_KEYS)))
    return kept


def _receipts(schema: str) -> int:
    with psycopg.connect(DATABASE_URL) as conn:
        table = conn.execute("SELECT to_regclass(%s)", (f'"{schema}".casework_events',)).fetchone()
        if not table or table[0] is None:
            return 0  # the run has not created the store yet
        row = conn.execute(
            f'SELECT count(*) FROM "{schema}".casework_events WHERE topic LIKE %s',
            ("%MessageReceipt%",),
        ).fetchone()
    return int(row[0]) if row else 0


@pytest.mark.slow
def test_a_batch_killed_half_way_and_run_again_ends_as_one_clean_run(
    batch: Path, pg_schema: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "JIUZHU_DATABASE_URL": DATABASE_URL,
        "JIUZHU_DB_SCHEMA": pg_schema,
        "JIUZHU_DATA_DIR": str(tmp_path / "data"),
    }
    command = [str(Path(sys.executable).with_name("jiuzhu")), "screen", "run", "2023-B4",
               "--data", str(batch), "--chunk", "1", "--json"]  # fmt: skip
    planted = len(_planted(batch))
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while _receipts(pg_schema) < planted // 3:  # a position, not a pause
            assert process.poll() is None, "the run ended before it was killed"
            assert time.monotonic() < deadline, "the batch never got going"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    killed_at = _receipts(pg_schema)
    assert killed_at < planted, "the batch finished before it was killed"
    rerun = subprocess.run(command, env=env, capture_output=True, timeout=120, check=True)
    summary = orjson.loads(rerun.stdout)
    assert summary["intake"].get("duplicate", 0) >= killed_at
    assert sum(summary["intake"].values()) == planted

    clean_schema = f"t_{uuid4().hex[:12]}"
    clean = casework(DATABASE_URL, schema=clean_schema)
    try:
        _run(clean, batch)
        assert _events(pg_schema) == _events(clean_schema)
    finally:
        clean.close()
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{clean_schema}" CASCADE')


def test_the_population_can_come_from_the_programme_roll(
    app: CaseWork, pg_schema: str, batch: Path
) -> None:
    household = next(h for h, rule in _planted(batch) if rule == "vehicle_registered")
    case_id = opened(app, household=household)
    visit(app, case_id, "needs_support")
    enrol(app, case_id, "rural_dibao", 60000)
    roll = ProgrammeRoll(read_model_datastore(DATABASE_URL, schema=pg_schema))
    try:
        roll.create_table()
        catch_up(roll, app)
    finally:
        roll.datastore.close()

    def from_roll(out: Path) -> Path:
        with psycopg.connect(DATABASE_URL) as conn:
            return roll_population(conn, pg_schema, out)

    run = run_batch(
        app, "2023-B6", batch, as_of=AS_OF, policy=load_policy(), rules=load_rules(),
        actor=HIT_SOURCE, roll=from_roll,
    )  # fmt: skip
    assert run.comparison.households == 1
    assert run.comparison.hits["vehicle_registered"] == 1
    assert sum(run.comparison.hits.values()) == 1
    assert run.handed == {"applied": 1}
    review = app.history(case_id)[-1]
    assert review.reason.startswith("eligibility review: data comparison 2023-B6")
    assert app.get_case(case_id).active_programmes == ["rural_dibao"]  # a review, not an exit


def test_a_hit_is_found_again_from_its_events_causation_id() -> None:
    key = message_key_of(HIT_SOURCE, "B1/income_drop/HH-61/0001%")
    assert hit_of(f"upstream:{key}") == ("B1", "income_drop", "HH-61/0001%")
    assert hit_of("upstream:/jiuzhu/screening/B1/income_drop/HH-1") == ("B1", "income_drop", "HH-1")
    assert hit_of("upstream:/shaanxi/monitoring-platform/alert-1") is None
