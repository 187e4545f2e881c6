"""The intake on the real NATS, RabbitMQ and Redis servers, fed by plain clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import aio_pika
import nats
import orjson
import psycopg
import pytest
import redis.asyncio as aioredis
from eventsourcing.persistence import OperationalError
from faststream.redis.parser import BinaryMessageFormatV1

from consumers.intake import IntakeStats, build_intake
from domain.application import CaseWork
from jiuzhu.bootstrap import eventstore_env
from tests.conftest import DATABASE_URL
from tests.stories import opened

NATS_URL = "nats://127.0.0.1:4222"
RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_URL = "redis://127.0.0.1:6379"

BROKERS = [
    pytest.param(NATS_URL, marks=pytest.mark.nats, id="nats"),
    pytest.param(RABBIT_URL, marks=pytest.mark.rabbit, id="rabbit"),
    pytest.param(REDIS_URL, marks=pytest.mark.redis, id="redis"),
]
pytestmark = [pytest.mark.postgres, pytest.mark.anyio]
on_every_broker = pytest.mark.parametrize("url", BROKERS)
WAIT = 15.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def alert(household: str, message_id: str | None = None, **data: Any) -> dict[str, Any]:
    """A monitoring alert envelope as the platform sends it."""
    return {
        "specversion": "1.0",
        "id": message_id or f"alert-{uuid4().hex[:8]}",
        "source": "/shaanxi/monitoring-platform",
        "type": "monitoring.alert",
        "time": "2023-06-05T09:30:00+08:00",
        "correlationid": "batch-2023-06",
        "data": {
            "household_id": household,
            "region": "610523",
            "signals": ["medical spending jumped"],
            "indicators": {"medical_spending_yuan": 47000},
            "household_size": 3,
            **data,
        },
    }


def visit_report(household: str) -> dict[str, Any]:
    """A field team's visit report envelope: consent given, the household needs support."""
    return {
        **alert(household),
        "type": "verification.reported",
        "data": {
            "household_id": household,
            "team": "anren-team",
            "consent": {"given": True},
            "verdict": "needs_support",
            "household_size": 3,
            "monthly_income_fen": 30000,
        },
    }


@dataclass
class Upstream:
    """A plain client of one broker: publishes like an upstream system, reads dead letters."""

    url: str
    prefix: str
    deadletter: str
    stream: str
    client: Any = None

    async def publish(self, body: bytes, kind: str) -> None:
        """Send raw bytes as a message of a type (the subject's last part)."""
        subject = f"{self.prefix}.{kind}"
        if self.url.startswith("nats"):
            await self.client.jetstream().publish(subject, body)
        elif self.url.startswith("amqp"):
            channel = await self.client.channel()
            exchange = await channel.get_exchange(self.prefix)
            await exchange.publish(aio_pika.Message(body), routing_key=subject)
            await channel.close()
        else:  # Redis: one stream; FastStream readers take the body from field __data__
            await self.client.xadd(self.prefix, {"__data__": body})

    async def dead_letters(self) -> list[tuple[bytes, dict[str, str]]]:
        """Every dead letter kept so far: original body and headers."""
        if self.url.startswith("nats"):
            js = self.client.jetstream()
            name = f"{self.stream}_DEADLETTER"
            count = (await js.stream_info(name)).state.messages
            kept = [await js.get_msg(name, seq) for seq in range(1, count + 1)]
            return [(m.data or b"", dict(m.headers or {})) for m in kept]
        if self.url.startswith("amqp"):
            channel = await self.client.channel()
            queue = await channel.declare_queue(self.deadletter, durable=True)
            letters = []
            while (m := await queue.get(no_ack=True, fail=False)) is not None:
                letters.append((m.body, {k: str(v) for k, v in m.headers.items()}))
            await channel.close()
            return letters
        entries = await self.client.xrange(self.deadletter)
        return [BinaryMessageFormatV1.parse(fields[b"__data__"]) for _, fields in entries]

    async def remove(self) -> None:
        """Delete this test's streams, queues and exchanges."""
        if self.url.startswith("nats"):
            js = self.client.jetstream()
            for name in (self.stream, f"{self.stream}_DEADLETTER"):
                await js.delete_stream(name)
        elif self.url.startswith("amqp"):
            channel = await self.client.channel()
            for queue in (self.stream, self.deadletter):
                await channel.queue_delete(queue)
            await channel.exchange_delete(self.prefix)
        else:
            await self.client.delete(self.prefix, self.deadletter)


@asynccontextmanager
async def intake(
    url: str, app: CaseWork, tag: str = ""
) -> AsyncIterator[tuple[Upstream, IntakeStats]]:
    """The intake running on unique names (made from a tag), and a plain client beside it."""
    tag = tag or f"t{uuid4().hex[:10]}"
    upstream = Upstream(url, f"{tag}.upstream", f"{tag}.deadletter", tag.upper())
    stats = IntakeStats()
    _, faststream_app = build_intake(
        broker_url=url,
        app=app,
        subject_prefix=upstream.prefix,
        deadletter_subject=upstream.deadletter,
        stream=upstream.stream,
        durable=f"{tag}-intake",
        retry_delay=0.2,
        stats=stats,
    )
    if url.startswith("nats"):
        upstream.client = await nats.connect(url)
    elif url.startswith("amqp"):
        upstream.client = await aio_pika.connect_robust(url)
    else:
        upstream.client = aioredis.from_url(url)
    try:
        async with faststream_app:
            yield upstream, stats
    finally:
        await upstream.remove()
        close = getattr(upstream.client, "aclose", None) or upstream.client.close
        await close()


async def settled(stats: IntakeStats, done: Callable[[IntakeStats], bool]) -> None:
    await stats.wait_until(done, timeout=WAIT)


@on_every_broker
async def test_a_monitoring_alert_opens_a_case(url: str, app: CaseWork) -> None:
    household = f"HH-{uuid4().hex[:8]}"
    async with intake(url, app) as (upstream, stats):
        await upstream.publish(orjson.dumps(alert(household, "alert-1")), "monitoring.alert")
        await settled(stats, lambda s: s.applied == 1)
    [case_id] = app.household_chain(household)
    [discovered] = app.history(case_id)
    assert discovered.household_id == household  # type: ignore[attr-defined]
    assert discovered.channel == "monitoring_alert"  # type: ignore[attr-defined]
    assert discovered.actor == "/shaanxi/monitoring-platform"
    assert discovered.role == "upstream_system"
    assert discovered.causation_id == "upstream:/shaanxi/monitoring-platform/alert-1"
    assert discovered.correlation_id == "batch-2023-06"
    assert discovered.occurred_at.isoformat() == "2023-06-05T09:30:00+08:00"
    assert app.has_received("/shaanxi/monitoring-platform/alert-1")


@on_every_broker
async def test_the_same_message_delivered_twice_has_one_effect(url: str, app: CaseWork) -> None:
    household = f"HH-{uuid4().hex[:8]}"
    body = orjson.dumps(alert(household, "alert-twice"))
    async with intake(url, app) as (upstream, stats):
        await upstream.publish(body, "monitoring.alert")
        await settled(stats, lambda s: s.applied == 1)
        position = app.recorder.max_notification_id()
        await upstream.publish(body, "monitoring.alert")
        await settled(stats, lambda s: s.duplicates >= 1)
    assert app.recorder.max_notification_id() == position
    assert len(app.household_chain(household)) == 1
    assert stats.applied == 1
    assert not stats.dead_lettered


@on_every_broker
async def test_bad_messages_reach_the_dead_letter_place_with_their_reason(
    url: str, app: CaseWork
) -> None:
    household = f"HH-{uuid4().hex[:8]}"
    opened(app, household)  # an open case, enrolled in nothing
    unenrolled_payment = {
        **alert(household),
        "type": "payment.settled",
        "data": {
            "household_id": household,
            "outcome": "paid",
            "programme": "rural_dibao",
            "period": "2023-06",
            "amount_fen": 50000,
            "payment_ref": "PAY-2023-06-1",
        },
    }
    no_region = alert(household)
    del no_region["data"]["region"]
    bad = {
        "not_json": (b"\xff not json {", "monitoring.alert"),
        "invalid_schema": (orjson.dumps(no_region), "monitoring.alert"),
        "unknown_type": (orjson.dumps({**alert(household), "type": "tax.filed"}), "tax.filed"),
        "rule_violation": (orjson.dumps(unenrolled_payment), "payment.settled"),
    }
    async with intake(url, app) as (upstream, stats):
        for body, kind in bad.values():
            await upstream.publish(body, kind)
        await settled(stats, lambda s: s.dead_lettered.total() >= len(bad))
        letters = await upstream.dead_letters()
    by_reason = {headers["x-deadletter-reason"]: (body, headers) for body, headers in letters}
    assert set(by_reason) == set(bad)
    for reason, (body, _) in bad.items():
        assert by_reason[reason][0] == body
    assert by_reason["rule_violation"][1]["x-deadletter-error"] == "NotEnrolledError"
    assert "region" in by_reason["invalid_schema"][1]["x-deadletter-detail"]
    assert by_reason["not_json"][1]["x-deadletter-origin"].startswith(upstream.prefix)
    assert stats.applied == 0
    assert len(app.household_chain(household)) == 1


class FlakyCaseWork(CaseWork):
    """CaseWork whose database is down for the first delivery's two saves.

    The batch's save, then the lone message's save it falls back to: the message is left
    for a retry after the delay.
    """

    outage = 2

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        if self.outage:
            self.outage -= 1
            raise OperationalError("connection refused: the database is down")
        return super().save(*objs, **kwargs)


@on_every_broker
async def test_a_database_fault_is_retried_until_it_succeeds(url: str, pg_schema: str) -> None:
    flaky = FlakyCaseWork(env=eventstore_env(DATABASE_URL, schema=pg_schema))
    household = f"HH-{uuid4().hex[:8]}"
    try:
        async with intake(url, flaky) as (upstream, stats):
            await upstream.publish(orjson.dumps(alert(household)), "monitoring.alert")
            await settled(stats, lambda s: s.applied == 1)
        assert stats.retried == 1
        assert not stats.dead_lettered
        assert len(flaky.household_chain(household)) == 1
    finally:
        flaky.close()


def drop_connections(app: CaseWork) -> int:
    """Terminate every server connection of the app's pool: a real database fault."""
    pool = app.recorder.datastore.pool  # type: ignore[attr-defined]
    # The connections the pool keeps open (more would only be opened on demand).
    borrowed = [pool.getconn(timeout=5.0) for _ in range(pool.min_size)]
    pids = {conn.info.backend_pid for conn in borrowed}
    for conn in borrowed:
        pool.putconn(conn)
    with psycopg.connect(DATABASE_URL, autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    return len(pids)


# A database fault is the same on every broker: the real one runs on the default broker.
@pytest.mark.parametrize("url", BROKERS[:1])
async def test_dropped_database_connections_lose_no_message(url: str, app: CaseWork) -> None:
    # Whether the pool notices the dead connections (reconnects) or a query fails (retried
    # later) depends on timing; either way the message must take effect once, unrefused.
    household = f"HH-{uuid4().hex[:8]}"
    async with intake(url, app) as (upstream, stats):
        assert drop_connections(app) > 0
        await upstream.publish(orjson.dumps(alert(household)), "monitoring.alert")
        await settled(stats, lambda s: s.applied == 1)
    assert not stats.dead_lettered
    assert len(app.household_chain(household)) == 1


@on_every_broker
async def test_messages_about_one_household_take_effect_in_the_order_sent(
    url: str, app: CaseWork
) -> None:
    # Each visit report follows its household's alert at once: taken out of turn, it would
    # find no case to verify and be refused.
    households = [f"HH-{uuid4().hex[:8]}" for _ in range(20)]
    async with intake(url, app) as (upstream, stats):
        for household in households:
            await upstream.publish(orjson.dumps(alert(household)), "monitoring.alert")
            await upstream.publish(orjson.dumps(visit_report(household)), "verification.reported")
        await settled(stats, lambda s: s.applied + s.dead_lettered.total() == 2 * len(households))
    assert not stats.dead_lettered
    for household in households:
        [case_id] = app.household_chain(household)
        assert app.get_case(case_id).verdict == "needs_support"


@pytest.mark.rabbit
async def test_rabbitmq_retries_a_fault_before_any_later_delivery(pg_schema: str) -> None:
    # Nacked back to the queue, the alert would come again behind its visit report, and
    # the report, taken first, would be refused for want of a case.
    flaky = FlakyCaseWork(env=eventstore_env(DATABASE_URL, schema=pg_schema))
    household = f"HH-{uuid4().hex[:8]}"
    try:
        async with intake(RABBIT_URL, flaky) as (upstream, stats):
            await upstream.publish(orjson.dumps(alert(household)), "monitoring.alert")
            await upstream.publish(orjson.dumps(visit_report(household)), "verification.reported")
            await settled(stats, lambda s: s.applied + s.dead_lettered.total() == 2)
        assert stats.retried >= 1
        assert not stats.dead_lettered
        [case_id] = flaky.household_chain(household)
        assert flaky.get_case(case_id).verdict == "needs_support"
    finally:
        flaky.close()
