"""/metrics of a real `jiuzhu serve`, scraped, its counters checked against what was done."""

from __future__ import annotations

import asyncio
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import nats
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from domain.application import CaseWork
from tests.test_intake_brokers import alert
from tests.test_pipeline_kill import wait_for
from tests.test_replicas import Replica, pipeline_env, the_active
from tests.test_serve import JIUZHU, NATS_URL, remove

pytestmark = [pytest.mark.postgres, pytest.mark.nats]


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics: (name, labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:  # fmt: skip
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def deployment(pg_schema: str, tmp_path: Path) -> Iterator[tuple[Replica, object]]:
    env, options = pipeline_env(pg_schema)
    process = Replica("all", env, tmp_path / "serve.log")
    with (tmp_path / "serve.log").open("wb") as out:
        process.popen = subprocess.Popen(
            [str(JIUZHU), "serve"], env=process.env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield process, options
    finally:
        process.popen.kill()
        process.popen.wait(10)
        asyncio.run(remove(options))


@pytest.mark.slow
def test_metrics_count_what_the_pipeline_did(
    app: CaseWork, deployment: tuple[Replica, object]
) -> None:
    process, options = deployment
    prefix = options.upstream_prefix  # type: ignore[attr-defined]
    the_active([process], timeout=120)
    households = [f"HH-{uuid4().hex[:8]}" for _ in range(3)]

    async def publish() -> None:
        client = await nats.connect(NATS_URL)
        js = client.jetstream()
        for household in households:
            await js.publish(f"{prefix}.monitoring.alert", orjson.dumps(alert(household)))
        await js.publish(f"{prefix}.monitoring.alert", b"\xff not json")
        await js.publish(f"{prefix}.tax.filed", orjson.dumps({**alert("x"), "type": "tax.filed"}))
        await client.close()

    asyncio.run(publish())
    wait_for(lambda: all(app.household_chain(h) for h in households), timeout=30)
    head = app.recorder.max_notification_id()

    def settled() -> bool:
        samples = scrape(process.port)
        return (
            value(samples, "jiuzhu_projector_position") == head
            and value(samples, "jiuzhu_upstream_messages_total", outcome="dead_lettered") == 2
        )

    wait_for(settled, timeout=30)
    samples = scrape(process.port)
    assert value(samples, "jiuzhu_upstream_messages_total", outcome="received") == 5
    assert value(samples, "jiuzhu_upstream_messages_total", outcome="applied") == 3
    assert value(samples, "jiuzhu_upstream_dead_letters_total", reason="not_json") == 1
    assert value(samples, "jiuzhu_upstream_dead_letters_total", reason="unknown_type") == 1
    assert value(samples, "jiuzhu_event_store_head") == head
    assert value(samples, "jiuzhu_relay_published_total") == head
    assert value(samples, "jiuzhu_relay_lag_events") == 0
    assert value(samples, "jiuzhu_projector_lag_events") == 0
    assert value(samples, "jiuzhu_projector_lag_seconds") == 0
    assert value(samples, "jiuzhu_projector_received_total") == head  # no redelivery here
    assert value(samples, "jiuzhu_projector_applied_total") >= 3  # what read models use
    assert value(samples, "jiuzhu_projector_batches_total") >= 1
    assert value(samples, "jiuzhu_projector_foreign_total") == 0
    [(lease, active)] = [(k, v) for k, v in samples.items() if k[0] == "jiuzhu_lease_active"]
    assert active == 1
    assert {"intake", "projector", "relay"} <= set(dict(lease[1])["roles"].split(","))
    # FastStream's own middleware saw the intake's deliveries.
    received = sum(
        v for (name, _), v in samples.items() if name == "faststream_received_messages_total"
    )
    assert received >= 1
