"""The clock SIGKILLed at random during a burst of deadlines: each recorded exactly once,
and its table equals a replay of the log."""

from __future__ import annotations

import os
import random
import threading
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest

from domain.application import CaseWork
from domain.case import Case
from projections.base import read_model_datastore
from projections.deadlines import Deadlines
from projections.feed import log_batches
from projections.rebuild import feed
from tests.conftest import DATABASE_URL
from tests.stories import by
from tests.test_pipeline_kill import Process, wait_for

pytestmark = [pytest.mark.postgres]


def burst(app: CaseWork, cases: int) -> None:
    """Cases discovered in 2023 with a visit due in March: 4 deadlines each by 2030."""
    for first in range(0, cases, 250):
        with app.batch():
            for n in range(first, min(first + 250, cases)):
                case_id = uuid4()
                app.open_case(
                    {"case_id": case_id, "household_id": f"HH-K{n}", "region": "610523",
                     "channel": "hotline", "by": by("upstream_system", days=n % 20)}
                )  # fmt: skip
                app.assign_verification(
                    {"case_id": case_id, "assignee": "team", "due_on": date(2023, 3, 25),
                     "by": by(days=n % 20)}
                )  # fmt: skip


class Polling:
    """Numbers from the test database over one connection (polling opens no new ones)."""

    def __init__(self) -> None:
        self.conn = psycopg.connect(DATABASE_URL, autocommit=True)

    def __call__(self, sql: str) -> int:
        try:
            row = self.conn.execute(sql).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
        return int(row[0] or 0) if row else 0


def table(schema: str, name: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(DATABASE_URL) as conn:
        return conn.execute(
            f'SELECT * FROM "{schema}".{name} ORDER BY case_id, deadline'
        ).fetchall()


def run_killed(app: CaseWork, pg_schema: str, tmp_path: Path, cases: int, kills: int) -> None:
    burst(app, cases)
    expected = cases * 4  # verification overdue, decision near, due and limit
    env = {
        **os.environ,
        "JIUZHU_DATABASE_URL": DATABASE_URL,
        "JIUZHU_BROKER_URL": "nats://127.0.0.1:4222",  # not used by the clock alone
        "JIUZHU_DB_SCHEMA": pg_schema,
        "JIUZHU_HEALTH_PORT": "0",
        "JIUZHU_LOG_JSON": "true",
        "JIUZHU_CLOCK_START": "2030-01-01T00:00:00+08:00",
        "JIUZHU_CLOCK_EVERY": "0.2",
        "JIUZHU_CLOCK_FIRE_BATCH": "100",  # small saves: a kill lands between many of them
    }
    clock = Process("clock", env, tmp_path / "clock.log")
    recorded = (
        f'SELECT count(*) FROM "{pg_schema}".casework_events WHERE topic IN '
        "('domain.case:Case.Escalated', 'domain.case:Case.DeadlineWarned')"
    )
    rng = random.Random(11)
    scalar = Polling()
    clock.start()
    try:
        killed_at = []
        for share in sorted(rng.uniform(0.05, 0.9) for _ in range(kills)):
            # Mid-burst: once a random share is recorded, plus a random moment more.
            wait_for(lambda share=share: scalar(recorded) >= share * expected, timeout=120)
            threading.Event().wait(rng.uniform(0, 0.05))
            clock.kill()
            killed_at.append(scalar(recorded))
            clock.start()
        wait_for(lambda: scalar(recorded) >= expected, timeout=120,
                 explain=lambda: (tmp_path / "clock.log").read_text()[-2000:])  # fmt: skip
        head = app.recorder.max_notification_id()
        tracked = f'SELECT max(notification_id) FROM "{pg_schema}".clock_tracking'
        wait_for(lambda: scalar(tracked) == head, timeout=60)
        assert clock.terminate() == 0, (tmp_path / "clock.log").read_text()[-3000:]
        assert any(n < expected for n in killed_at), f"no kill landed mid-burst: {killed_at}"
    finally:
        if clock.popen is not None and clock.popen.poll() is None:
            clock.popen.kill()
            clock.popen.wait(10)
        scalar.conn.close()
    causes: Counter[str] = Counter()
    for batch in log_batches(app, batch_size=2000):
        causes.update(e.causation_id for e, _ in batch if isinstance(e, Case.DeadlinePassed))
    assert len(causes) == expected
    assert max(causes.values()) == 1, "a deadline was recorded twice"
    # Replay: the log folded afresh into another schema equals the clock's live table.
    scratch = f"r_{uuid4().hex[:10]}"
    datastore = read_model_datastore(DATABASE_URL, schema=scratch, pool_size=1)
    try:
        replay = Deadlines(datastore)
        replay.create_table()
        feed([replay], app, batch_size=997)
        assert table(scratch, "deadline") == table(pg_schema, "clock_deadline")
    finally:
        datastore.close()
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{scratch}" CASCADE')


@pytest.mark.slow
def test_killed_clock_records_each_deadline_once_and_replay_equals_live(
    app: CaseWork, pg_schema: str, tmp_path: Path
) -> None:
    run_killed(app, pg_schema, tmp_path, cases=300, kills=2)


@pytest.mark.soak
def test_killed_clock_soak(app: CaseWork, pg_schema: str, tmp_path: Path) -> None:
    run_killed(app, pg_schema, tmp_path, cases=20000, kills=25)
