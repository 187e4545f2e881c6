"""Single-message probes against the real NATS intake (issue 14): a hostile message is
dead-lettered once with a precise reason, and the messages around it still take effect."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import orjson
import pytest

from consumers.deadletter import fitted, safe_headers
from domain.application import CaseWork
from tests.test_intake_brokers import NATS_URL, alert, intake, settled

pytestmark = [pytest.mark.postgres, pytest.mark.nats, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def publish(
    upstream: Any, body: bytes, kind: str, headers: dict[str, str] | None = None
) -> None:
    subject = f"{upstream.prefix}.{kind}"
    await upstream.client.jetstream().publish(subject, body, headers=headers)


async def raw_publish(subject: str, headers: dict[str, str], body: bytes) -> None:
    """Publish over the bare protocol: a header name nats-py itself would refuse to send."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", 4222)
    await reader.readline()  # INFO
    block = b"NATS/1.0\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
    block += b"\r\n"
    writer.write(b'CONNECT {"verbose":false,"headers":true}\r\n')
    writer.write(f"HPUB {subject} {len(block)} {len(block) + len(body)}\r\n".encode())
    writer.write(block + body + b"\r\nPING\r\n")
    await writer.drain()
    assert (await reader.readline()).startswith(b"PONG")
    writer.close()


async def test_a_nul_in_a_household_id_is_refused_as_invalid_schema_alone(app: CaseWork) -> None:
    households = [f"HH-{uuid4().hex[:8]}" for _ in range(3)]
    async with intake(NATS_URL, app) as (upstream, stats):
        await publish(upstream, orjson.dumps(alert(households[0])), "monitoring.alert")
        await publish(upstream, orjson.dumps(alert("HH-\x00")), "monitoring.alert")
        await publish(upstream, orjson.dumps(alert(households[1])), "monitoring.alert")
        await settled(stats, lambda s: s.applied + s.dead_lettered.total() == 3)
        [(_, headers)] = await upstream.dead_letters()
    assert dict(stats.dead_lettered) == {"invalid_schema": 1}
    assert "data.household_id" in headers["x-deadletter-detail"]
    assert stats.retried == 0
    for household in households[:2]:
        assert len(app.household_chain(household)) == 1


async def test_a_type_on_a_longer_subject_is_a_type_mismatch_with_its_key(app: CaseWork) -> None:
    household = f"HH-{uuid4().hex[:8]}"
    async with intake(NATS_URL, app) as (upstream, stats):
        body = orjson.dumps(alert(household, "alert-mismatch"))
        await publish(upstream, body, "foo.monitoring.alert")
        await settled(stats, lambda s: s.dead_lettered.total() == 1)
        [(letter, headers)] = await upstream.dead_letters()
    assert letter == body
    assert headers["x-deadletter-reason"] == "type_mismatch"
    assert headers["x-deadletter-message-key"] == "/shaanxi/monitoring-platform/alert-mismatch"
    assert app.household_chain(household) == []


@pytest.mark.parametrize(
    "hostile",
    [
        {"Nats-Expected-Stream": "{stream}"},  # the stream it came on
        {"x(fuzz)": "1"},
        {"Nats-Msg-Id": "same-as-another"},
    ],
)
async def test_hostile_headers_do_not_make_a_dead_letter_retry(
    app: CaseWork, hostile: dict[str, str]
) -> None:
    async with intake(NATS_URL, app) as (upstream, stats):
        hostile = {k: v.format(stream=upstream.stream) for k, v in hostile.items()}
        headers = {"traceparent": "00-abc-01", **hostile}
        await raw_publish(f"{upstream.prefix}.monitoring.alert", headers, b"<not json/>")
        household = f"HH-{uuid4().hex[:8]}"
        await publish(upstream, orjson.dumps(alert(household)), "monitoring.alert")
        await settled(stats, lambda s: s.applied == 1 and s.dead_lettered.total() == 1)
        [(letter, kept)] = await upstream.dead_letters()
    assert stats.retried == 0
    assert letter == b"<not json/>"
    assert kept["x-deadletter-reason"] == "not_json"
    assert kept["traceparent"] == "00-abc-01"
    assert all(kept.get(name) != value for name, value in hostile.items())


async def test_an_invalid_message_near_the_size_limit_is_dead_lettered_cut_and_marked(
    app: CaseWork,
) -> None:
    household = f"HH-{uuid4().hex[:8]}"
    padding = "x" * (1_048_276 - len(orjson.dumps(alert(household, reason=""))))
    body = orjson.dumps(alert(household, reason=padding))
    assert len(body) == 1_048_276
    async with intake(NATS_URL, app) as (upstream, stats):
        await publish(upstream, body, "monitoring.alert", {"traceparent": "00-abc-01"})
        after = f"HH-{uuid4().hex[:8]}"
        await publish(upstream, orjson.dumps(alert(after)), "monitoring.alert")
        await settled(stats, lambda s: s.applied == 1 and s.dead_lettered.total() == 1)
        [(letter, headers)] = await upstream.dead_letters()
    assert stats.retried == 0
    assert headers["x-deadletter-reason"] == "invalid_schema"
    assert headers["x-deadletter-truncated"] == str(len(body))
    assert body.startswith(letter)
    assert len(app.household_chain(after)) == 1


def test_safe_headers_keep_plain_names_and_flatten_values() -> None:
    kept = safe_headers(
        {"ce-type": "a\r\nb", "nats-expected-stream": "X", "x-deadletter-reason": "old", "é": "1"}
    )
    assert kept == {"ce-type": "a b"}


def test_a_fitted_dead_letter_is_within_the_limit() -> None:
    body, headers = fitted(b"x" * 5000, {"a": "b" * 3000}, 2048)
    assert len(body) + sum(len(k) + len(v) + 4 for k, v in headers.items()) + 512 <= 2048
    assert headers["x-deadletter-truncated"] == "5000"
