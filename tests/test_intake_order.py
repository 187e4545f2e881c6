"""Order per household survives a killed or doubled intake (issue 14 finding 1): a message
refused only for coming before an earlier one still on its way is held, not dead-lettered."""

from __future__ import annotations

from uuid import uuid4

import nats
import orjson
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from domain.application import CaseWork
from tests.test_intake_brokers import NATS_URL, alert, intake, settled, visit_report

pytestmark = [pytest.mark.postgres, pytest.mark.nats, pytest.mark.anyio]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_report_after_an_alert_held_by_a_killed_intake_waits_for_it(
    app: CaseWork,
) -> None:
    household = f"HH-{uuid4().hex[:8]}"
    tag = f"t{uuid4().hex[:10]}"
    prefix, stream, durable = f"{tag}.upstream", tag.upper(), f"{tag}-intake"
    client = await nats.connect(NATS_URL)
    js = client.jetstream()
    try:
        # The durable consumer as the intake makes it, with a short ack_wait for the test.
        await js.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.>"]))
        await js.add_consumer(
            stream,
            ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=3.0,
                max_deliver=-1,
                filter_subject=f"{prefix}.>",
            ),
        )
        await js.publish(f"{prefix}.monitoring.alert", orjson.dumps(alert(household)))
        await js.publish(f"{prefix}.verification.reported", orjson.dumps(visit_report(household)))
        # An intake takes the alert and is killed before acking it.
        killed = await js.pull_subscribe_bind(durable, stream)
        [held] = await killed.fetch(1, timeout=5)
        assert held.subject.endswith("monitoring.alert")
        await killed.unsubscribe()

        async with intake(NATS_URL, app, tag=tag) as (_, stats):
            # The restarted intake gets the report first; the alert only after ack_wait.
            await settled(stats, lambda s: s.applied + s.dead_lettered.total() == 2)
    finally:
        await client.close()
    # Before: the report was dead-lettered (rule_violation, NoOpenCaseError) and lost.
    assert not stats.dead_lettered
    assert stats.held >= 1
    [case_id] = app.household_chain(household)
    assert app.get_case(case_id).verdict == "needs_support"


async def test_two_intakes_on_one_stream_keep_each_households_order(app: CaseWork) -> None:
    from consumers.intake import IntakeStats, build_intake

    households = [f"HH-{uuid4().hex[:8]}" for _ in range(40)]
    tag = f"t{uuid4().hex[:10]}"
    prefix, stream, durable = f"{tag}.upstream", tag.upper(), f"{tag}-intake"
    stats = IntakeStats()  # shared: what both did together
    intakes = [
        build_intake(
            broker_url=NATS_URL,
            app=app,
            subject_prefix=prefix,
            deadletter_subject=f"{tag}.deadletter",
            stream=stream,
            durable=durable,
            retry_delay=0.2,
            stats=stats,
        )[1]
        for _ in range(2)
    ]
    client = await nats.connect(NATS_URL)
    js = client.jetstream()
    try:
        for running in intakes:
            await running.start()
        for household in households:  # a trickle, so that both intakes get some
            await js.publish(f"{prefix}.monitoring.alert", orjson.dumps(alert(household)))
            await js.publish(
                f"{prefix}.verification.reported", orjson.dumps(visit_report(household))
            )
        await settled(stats, lambda s: s.applied + s.dead_lettered.total() == 2 * len(households))
    finally:
        for running in intakes:
            await running.stop()
        for name in (stream, f"{stream}_DEADLETTER"):
            await js.delete_stream(name)
        await client.close()
    assert not stats.dead_lettered
    for household in households:
        [case_id] = app.household_chain(household)
        assert app.get_case(case_id).verdict == "needs_support"
