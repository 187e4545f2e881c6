"""`jiuzhu deadletter list|show|redrive` on the real NATS intake: a refused payment comes back
once its cause is fixed, and takes effect once however often it is redriven."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from uuid import uuid4

import orjson
import pytest
from typer.testing import CliRunner

from domain.application import CaseWork
from jiuzhu.cli import app as cli
from tests.conftest import DATABASE_URL
from tests.stories import by, enrolled
from tests.test_intake_brokers import NATS_URL, alert, intake, settled

pytestmark = [pytest.mark.postgres, pytest.mark.nats, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def jiuzhu(tag: str, schema: str, *args: str) -> tuple[int, str]:
    env = {
        "JIUZHU_DATABASE_URL": DATABASE_URL,
        "JIUZHU_BROKER_URL": NATS_URL,
        "JIUZHU_DB_SCHEMA": schema,
        "JIUZHU_UPSTREAM_PREFIX": f"{tag}.upstream",
        "JIUZHU_UPSTREAM_STREAM": tag.upper(),
    }
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env)
    return result.exit_code, result.output


async def test_a_dead_letter_redriven_after_the_cause_is_fixed_takes_effect_once(
    app: CaseWork, pg_schema: str
) -> None:
    case_id = enrolled(app)  # rural dibao only
    household = app.get_case(case_id).household_id
    payment = {
        **alert(household, "pay-2023-06"),
        "type": "payment.settled",
        "data": {
            "household_id": household,
            "outcome": "paid",
            "programme": "temporary_relief",
            "period": "one-off",
            "amount_fen": 300000,
            "payment_ref": "PAY-TR-1",
        },
    }
    tag = f"t{uuid4().hex[:10]}"
    async with intake(NATS_URL, app, tag=tag) as (upstream, stats):
        await upstream.publish(orjson.dumps(payment), "payment.settled")
        await settled(stats, lambda s: s.dead_lettered.total() == 1)

        status, output = await jiuzhu(tag, pg_schema, "deadletter", "list", "--json")
        assert status == 0, output
        [row] = json.loads(output)
        assert row["reason"] == "rule_violation"
        assert row["error"] == "NotEnrolledError"
        assert row["message_key"] == "/shaanxi/monitoring-platform/pay-2023-06"
        status, output = await jiuzhu(tag, pg_schema, "deadletter", "show", str(row["sequence"]))
        assert status == 0, output
        assert "PAY-TR-1" in output
        assert "payment-requires-enrolment" in output

        # The operator fixes the cause: the household is enrolled in temporary relief.
        app.enrol(
            {
                "case_id": case_id,
                "programme": "temporary_relief",
                "amount_fen": 300000,
                "effective_from": date(2023, 4, 1),
                "by": by("approver", days=21),
            }
        )
        status, output = await jiuzhu(tag, pg_schema, "deadletter", "redrive", str(row["sequence"]))
        assert status == 0, output
        await settled(stats, lambda s: s.applied == 1)
        status, output = await jiuzhu(tag, pg_schema, "deadletter", "list", "--json")
        assert json.loads(output) == []
        # The same message once more (an upstream retry, a second redrive): no second effect.
        await upstream.publish(orjson.dumps(payment), "payment.settled")
        await settled(stats, lambda s: s.duplicates == 1)
        status, output = await jiuzhu(tag, pg_schema, "deadletter", "redrive", "999")
        assert status == 1
        assert "no dead letter 999" in output
    assert app.get_case(case_id).paid_total_fen == 300000
