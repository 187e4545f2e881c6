"""One upstream message traced through intake, events, relay and projector (in-memory spans)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from uuid import uuid4

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from consumers import tracing
from domain.application import CaseWork
from tests.test_intake_brokers import alert
from tests.test_pipeline_brokers import caught_up, eventually
from tests.test_pipeline_end_to_end import intake_settled, pipeline

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

NATS_URL = "nats://127.0.0.1:4222"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PRODUCER = f"00-{TRACE_ID}-00f067aa0ba902b7-01"  # the monitoring platform's own span


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.configure(provider)
    try:
        yield exporter
    finally:
        tracing.configure(None)
        provider.shutdown()


def test_an_upstream_messages_trace_reaches_its_projection(
    app: CaseWork, pg_schema: str, spans: InMemorySpanExporter
) -> None:
    household = f"HH-{uuid4().hex[:8]}"
    traced = {**alert(household, "alert-traced"), "traceparent": PRODUCER}

    async def scenario() -> None:
        async with pipeline(NATS_URL, app, pg_schema) as (running, upstream):
            await upstream.publish(orjson.dumps(traced), "monitoring.alert")
            await upstream.publish(orjson.dumps(alert(f"HH-{uuid4().hex[:8]}")), "monitoring.alert")
            await intake_settled(running, 2)
            await eventually(lambda: caught_up(running, app))

            async def projected() -> bool:
                return any(s.name.startswith("project ") for s in in_trace())

            await eventually(projected)

    def in_trace() -> list[object]:
        return [s for s in spans.get_finished_spans() if f"{s.context.trace_id:032x}" == TRACE_ID]

    asyncio.run(scenario())
    names = {s.name for s in in_trace()}  # type: ignore[attr-defined]
    assert "intake monitoring.alert" in names
    assert any(n.startswith("relay Case.") for n in names), names
    assert any(n.startswith("project Case.") for n in names), names
    # Parent and child: the relay continues the intake's span, the projector the relay's.
    by_id = {s.context.span_id: s for s in in_trace()}  # type: ignore[attr-defined]
    project = next(s for s in in_trace() if s.name.startswith("project "))  # type: ignore[attr-defined]
    relay = by_id[project.parent.span_id]
    assert relay.name.startswith("relay ")
    assert by_id[relay.parent.span_id].name == "intake monitoring.alert"
    # The other message started a trace of its own.
    others = {f"{s.context.trace_id:032x}" for s in spans.get_finished_spans()} - {TRACE_ID}
    assert others
