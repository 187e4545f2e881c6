"""Screening hits published on the real NATS JetStream, taken by the running intake."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import pytest

from domain.application import CaseWork
from screening.generate import generate
from screening.policy import load_policy
from screening.rules import load_rules
from screening.run import BatchRun, run_batch
from tests.test_intake_brokers import NATS_URL, intake, settled

pytestmark = [pytest.mark.postgres, pytest.mark.nats, pytest.mark.anyio]
AS_OF = date(2023, 6, 30)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.slow
async def test_hits_published_on_the_broker_take_effect_once(app: CaseWork, tmp_path: Path) -> None:
    manifest = generate(tmp_path, records=3_000, seed=3, as_of=AS_OF, hits_per_rule=2)
    hits = sum(manifest.planted.values())
    async with intake(NATS_URL, app) as (upstream, stats):

        def publish() -> BatchRun:
            return run_batch(
                app, "2023-B9", tmp_path, as_of=AS_OF, policy=load_policy(),
                rules=load_rules(), actor="analyst-1", broker_url=NATS_URL,
                subject_prefix=upstream.prefix,
            )  # fmt: skip

        first = await asyncio.to_thread(publish)
        assert first.handed == {"published": hits}
        await settled(stats, lambda s: s.applied == hits)
        again = await asyncio.to_thread(publish)
        assert again.handed == {"duplicate": hits}  # the broker's dedup, by message key
        assert again.recorded == "already recorded"
    assert stats.applied == hits
    assert not stats.dead_lettered
    case_id = app.open_case_of(_any_planted(tmp_path))
    assert case_id is not None
    assert app.history(case_id)[0].correlation_id == "2023-B9"


def _any_planted(directory: Path) -> str:
    return (directory / "planted.csv").read_text().splitlines()[1].split(",")[0]
