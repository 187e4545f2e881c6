"""The broker is transport only: two event stores on one NATS stream, and gaps in delivery.

Event ids derive from (case, version): two stores with the same case ids publish the same
event ids for different events. Each store's read models must still equal its own replay.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator, Mapping
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import pytest

import tests.stories
from consumers.event_messages import STORE_ID, encode
from consumers.projector import Projector, log_source
from consumers.store_identity import new_store_identity, store_identity
from domain.application import CaseWork
from jiuzhu.bootstrap import casework
from jiuzhu.serve import ServeSettings
from projections.base import read_model_datastore
from projections.case_status import CaseStatus
from projections.rebuild import replay
from projections.registry import READ_MODELS
from tests.conftest import DATABASE_URL, scratch_schema
from tests.stories import enrolled, opened, pay
from tests.test_case_status import all_case_ids, expected_rows, table_rows, varied_cases
from tests.test_pipeline_brokers import caught_up, cleanup, eventually, service

pytestmark = [pytest.mark.postgres]

NATS_URL = "nats://127.0.0.1:4222"


def same_case_ids() -> Iterator[UUID]:
    """The case ids every store draws, in the same order: ids collide across stores."""
    return (uuid5(NAMESPACE_URL, f"same-ids/{n}") for n in itertools.count(1))


@pytest.fixture
def second_schema() -> Iterator[str]:
    with scratch_schema() as schema:
        yield schema


class Recorded:
    def __init__(self) -> None:
        self.letters: list[tuple[Mapping[str, Any], bytes, str]] = []

    async def __call__(self, headers: Mapping[str, Any], body: bytes, reason: str) -> None:
        self.letters.append((headers, body, reason))


def test_stores_get_different_identities_and_keep_them(app: CaseWork, pg_schema: str) -> None:
    datastore = app.recorder.datastore  # type: ignore[attr-defined]
    first = store_identity(datastore)
    assert store_identity(datastore) == first
    renewed = new_store_identity(datastore)
    assert renewed != first
    assert store_identity(datastore) == renewed


def test_projector_refuses_other_stores_and_reads_what_the_broker_skipped_from_the_log(
    app: CaseWork, pg_schema: str
) -> None:
    varied_cases(app, rounds=3)
    store = store_identity(app.recorder.datastore)  # type: ignore[attr-defined]
    notifications = app.recorder.select_notifications(start=1, limit=10_000)
    ours = [encode(n, prefix="t.events", store=store) for n in notifications]
    theirs = [encode(n, prefix="t.events", store="another-store") for n in notifications[:5]]
    # The broker lost some (a duplicate id, a dead letter, a cut connection): 2, 7-9, 20.
    lost = {1, 6, 7, 8, 19}
    delivered = [(m.headers, m.body) for i, m in enumerate(ours) if i not in lost]
    foreign = [({**m.headers, "version": "1"}, b"{}") for m in theirs]
    model = CaseStatus(read_model_datastore(DATABASE_URL, schema=pg_schema))
    model.create_table()
    projector = Projector(
        app.mapper,
        [model],
        application_name=app.name,
        deadletter=Recorded(),
        store=store,
        log_source=log_source(app.recorder),
    )
    half = len(delivered) // 2
    asyncio.run(projector.project(foreign[:2] + delivered[:half]))
    asyncio.run(projector.project(delivered[half:] + foreign[2:]))
    assert projector.stats.foreign == 5
    assert projector.stats.recovered == len(lost)
    assert model.position(app.name) == notifications[-1].id
    assert table_rows(model) == expected_rows(app)
    # A message with no store id (an unknown publisher) is refused too.
    unsigned = {k: v for k, v in ours[0].headers.items() if k != STORE_ID}
    asyncio.run(projector.project([(unsigned, ours[0].body)]))
    assert projector.stats.foreign == 6
    model.datastore.close()


@pytest.mark.nats
def test_two_stores_on_one_stream_with_colliding_event_ids_each_equal_their_replay(
    pg_schema: str, second_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    apps = [casework(DATABASE_URL, schema=s) for s in (pg_schema, second_schema)]
    shared = ServeSettings(
        events_prefix=f"t{pg_schema[2:]}.events",
        events_stream=f"T{pg_schema[2:]}",
        events_deadletter=f"t{pg_schema[2:]}.deadletter.events",
        health_port=0,
    )
    # One stream, one prefix; each store's projector has its own durable consumer.
    options = [shared.model_copy(update={"events_durable": f"projector-{s}"}) for s in
               (pg_schema, second_schema)]  # fmt: skip
    first, second = apps
    # The same case ids in both stores, different events under them.
    monkeypatch.setattr(tests.stories, "uuid4", iter(same_case_ids()).__next__)
    varied_cases(first, rounds=2)
    monkeypatch.setattr(tests.stories, "uuid4", iter(same_case_ids()).__next__)
    for _ in range(4):
        pay(second, enrolled(second, amount_fen=77_700), "2023-09")
        opened(second, region="610102")

    async def scenario() -> None:
        try:
            async with (
                service(first, pg_schema, NATS_URL, options[0]) as one,
                service(second, second_schema, NATS_URL, options[1]) as two,
            ):
                await eventually(lambda: caught_up(one, first))
                await eventually(lambda: caught_up(two, second))
                for running in (one, two):
                    assert running.projector is not None
                    assert running.projector.stats.foreign > 0  # it saw the other's events
                    assert running.projector.stats.dead_lettered == 0
                    # Nothing dropped as another store's duplicate: no gap to read from the log.
                    assert running.projector.stats.recovered == 0
        finally:
            await cleanup(NATS_URL, shared.destination())

    try:
        asyncio.run(scenario())
        for app, schema in zip(apps, (pg_schema, second_schema), strict=True):
            result = replay(app, READ_MODELS, database_url=DATABASE_URL, schema=schema)
            assert result.equal, result.differences
        # Colliding ids: the same cases in both stores, with different histories.
        both = set(all_case_ids(first)) & set(all_case_ids(second))
        assert len(both) >= 4
        assert any(first.history(c) != second.history(c) for c in both)
    finally:
        for app in apps:
            app.close()
