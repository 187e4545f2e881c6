"""Rebuild: the fast log reader, and swapping rebuilt tables in while intake goes on."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

from domain.application import CaseWork
from projections.base import Columns, LogBatch, ReadModel
from projections.feed import catch_up, log_batches
from projections.log_reader import SKIPPED, LogReader, handled_events
from projections.rebuild import REPORT_MODELS, rebuild, replay
from tests.conftest import DATABASE_URL
from tests.report_stories import open_case, pay, province, report_models, snapshot, visit

pytestmark = pytest.mark.postgres


@pytest.fixture
def live(pg_schema: str) -> Iterator[list[ReadModel]]:
    models = report_models(pg_schema)
    yield models
    models[0].datastore.close()


def test_log_reader_decodes_exactly_what_the_mapper_decodes(app: CaseWork) -> None:
    province(app)
    expected = {position: event for batch in log_batches(app) for event, position in batch}
    reader = LogReader(app, REPORT_MODELS)
    seen = 0
    for batch, _ in reader.batches(batch_size=7):
        for event, position in batch:
            if event is SKIPPED:
                continue
            assert type(event) is type(expected[position])
            fast, mapped = dict(event.__dict__), dict(expected[position].__dict__)
            if "personal" in fast:  # personal data stays sealed: no read model reads it
                assert all(v.startswith("enc:") for v in fast.pop("personal").values() if v)
                assert mapped.pop("personal")["name"] == "张某"
            if fast.pop("sealed_for", None) is not None:  # so does free text (facts, need)
                for field in ("facts", "need"):
                    if field in fast:
                        assert str(fast.pop(field)).count("enc:") >= 1
                        assert mapped.pop(field)
            assert fast == mapped
            seen += 1
    # Events no report uses (consent, notices, the household index) are never decoded.
    used = set().union(*(handled_events(model) or () for model in REPORT_MODELS))
    assert seen == sum(1 for e in expected.values() if type(e) in used) > 0
    fast = [[(type(e), p) for e, p in b] for b, _ in LogReader(app, REPORT_MODELS).batches()]
    reader.decoder.fast = False  # the mapper path gives the same batches
    assert fast == [[(type(e), p) for e, p in b] for b, _ in reader.batches()]


def test_log_batch_columns_follow_the_batch(app: CaseWork) -> None:
    """The columns the decoder notes equal those worked out from the events themselves."""
    province(app)
    joined = LogBatch()
    for batch, _ in LogReader(app, REPORT_MODELS).batches(batch_size=7):
        assert batch.columns() == Columns.of([event for event, _ in batch])
        assert batch.columns().kinds[-1] is type(batch[-1][0])
        joined += batch  # as the projector joins batches: the columns follow
        assert joined.columns() == Columns.of([event for event, _ in joined])
    assert SKIPPED in joined.columns().events


def test_rebuild_replaces_altered_live_tables_and_moves_tracking_to_the_head(
    app: CaseWork, pg_schema: str, live: list[ReadModel]
) -> None:
    province(app)
    for model in live:
        catch_up(model, app)
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(f'UPDATE "{pg_schema}".funnel SET discovered = discovered + 100')
        conn.execute(f'DELETE FROM "{pg_schema}".payments_ledger')
    late = open_case(app, "610528")  # recorded after the live tables caught up
    head = app.recorder.max_notification_id()

    positions = rebuild(app, REPORT_MODELS, database_url=DATABASE_URL, schema=pg_schema)

    assert set(positions.values()) == {head}
    assert all(model.position(app.name) == head for model in live)
    result = replay(app, REPORT_MODELS, database_url=DATABASE_URL, schema=pg_schema)
    assert result.equal, result.differences
    assert any(row["region"] == "610528" for row in snapshot(live)["funnel"])
    # The projector carries on where the rebuild stopped.
    visit(app, late, "not_eligible")
    assert all(catch_up(model, app) > 0 for model in live)
    assert replay(app, REPORT_MODELS, database_url=DATABASE_URL, schema=pg_schema).equal


def test_rebuild_while_intake_and_projection_go_on_loses_nothing(
    app: CaseWork, pg_schema: str, live: list[ReadModel]
) -> None:
    cases = province(app)
    for model in live:
        catch_up(model, app)
    done = threading.Event()
    errors: list[BaseException] = []

    def intake() -> None:
        # New cases and payments keep arriving; the projector keeps catching up.
        try:
            month = 6
            while not done.is_set() and month <= 12:
                open_case(app, "610526")
                pay(app, cases["a"], "rural_dibao", f"2023-{month:02d}", 50000, 30 * month)
                month += 1
                for model in live:
                    catch_up(model, app, batch_size=3)
        except BaseException as error:  # surfaced in the test's thread
            errors.append(error)

    worker = threading.Thread(target=intake)
    worker.start()
    try:
        rebuild(app, REPORT_MODELS, database_url=DATABASE_URL, schema=pg_schema, batch_size=5)
    finally:
        done.set()
        worker.join(timeout=60)
    assert not errors, errors
    for model in live:
        catch_up(model, app)
    result = replay(app, REPORT_MODELS, database_url=DATABASE_URL, schema=pg_schema)
    assert result.equal, result.differences
