"""Two of each process on one database and broker: one active per role, the other a standby.

The active instance of a role is SIGKILLed again and again while cases are written and
upstream alerts arrive; the standby takes over within seconds, nothing is lost or doubled
(case_status equals the event store), no instance halts, and /health tells which is which.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from consumers.lease import Lease, LeaseState, lease_key
from domain.application import CaseWork
from tests.conftest import DATABASE_URL
from tests.test_case_status import expected_rows, varied_cases
from tests.test_pipeline_brokers import rows_of
from tests.test_pipeline_end_to_end import unique_options
from tests.test_pipeline_kill import Process, scalar, wait_for
from tests.test_serve import NATS_URL, free_port, get_health, publish_alert, remove

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

ROLES = ("relay", "projector", "intake")


class Replica(Process):
    """A serve process with its own /health port."""

    def __init__(self, component: str, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        super().__init__(component, {**env, "JIUZHU_HEALTH_PORT": str(self.port)}, log)

    def state(self) -> str:
        """active, standby, or down (not answering)."""
        if self.popen is None or self.popen.poll() is not None:
            return "down"
        try:
            status, body = get_health(self.port)
        except OSError:
            return "down"
        return str(body.get("state", "down")) if status == 200 else "unhealthy"


def pipeline_env(schema: str) -> tuple[dict[str, str], object]:
    options = unique_options()
    env = {
        **os.environ,
        "JIUZHU_DATABASE_URL": DATABASE_URL,
        "JIUZHU_BROKER_URL": NATS_URL,
        "JIUZHU_DB_SCHEMA": schema,
        "JIUZHU_LOG_JSON": "true",
        "JIUZHU_RELAY_WINDOW": "100",
        "JIUZHU_PROJECTOR_BATCH": "100",
        "JIUZHU_POOL_SIZE": "2",  # six processes on a PostgreSQL other tests share
        **{
            f"JIUZHU_{name.upper()}": str(value)
            for name, value in options.model_dump().items()
            if name.startswith(("events_", "upstream_", "intake_"))
        },
    }
    return env, options


def the_active(replicas: list[Replica], timeout: float = 30.0) -> tuple[Replica, float]:
    """The one replica that says it is active (exactly one), and how long it took to find."""
    started = time.monotonic()
    states: list[str] = []

    def one_active() -> bool:
        nonlocal states
        states = [replica.state() for replica in replicas]
        return states.count("active") == 1 and "unhealthy" not in states

    wait_for(one_active, timeout=timeout, explain=lambda: str(states))
    return replicas[states.index("active")], time.monotonic() - started


@pytest.fixture
def replicas(pg_schema: str, tmp_path: Path) -> Iterator[tuple[dict[str, list[Replica]], object]]:
    env, options = pipeline_env(pg_schema)
    running = {
        role: [Replica(role, env, tmp_path / f"{role}-{n}.log") for n in (1, 2)] for role in ROLES
    }
    try:
        for pair in running.values():
            for replica in pair:
                replica.start()
        yield running, options
    finally:
        for pair in running.values():
            for replica in pair:
                if replica.popen is not None and replica.popen.poll() is None:
                    replica.popen.kill()
                    replica.popen.wait(10)
        asyncio.run(remove(options))


@pytest.mark.slow
def test_standbys_take_over_from_killed_actives_and_nothing_is_lost_or_doubled(
    app: CaseWork, pg_schema: str, replicas: tuple[dict[str, list[Replica]], object]
) -> None:
    kill_actives(app, pg_schema, replicas, ("projector", "relay", "intake", "projector"), 12)


@pytest.mark.soak
def test_many_takeovers_under_load(
    app: CaseWork, pg_schema: str, replicas: tuple[dict[str, list[Replica]], object]
) -> None:
    kill_actives(app, pg_schema, replicas, ROLES * 10, 150)


def kill_actives(
    app: CaseWork,
    pg_schema: str,
    replicas: tuple[dict[str, list[Replica]], object],
    kills: tuple[str, ...],
    rounds: int,
) -> None:
    """Write cases and send alerts while the active of each role in `kills` is SIGKILLed."""
    running, options = replicas
    writing_done = threading.Event()

    def write() -> None:
        try:
            varied_cases(app, rounds=rounds)
        finally:
            writing_done.set()

    for role in ROLES:  # six Pythons starting at once: slow on a loaded machine
        the_active(running[role], timeout=180)
    writer = threading.Thread(target=write)
    writer.start()
    households = [f"HH-{uuid4().hex[:8]}" for _ in kills]
    takeovers: list[float] = []
    try:
        for role, household in zip(kills, households, strict=True):
            asyncio.run(publish_alert(options.upstream_prefix, household))  # type: ignore[attr-defined]
            active, _ = the_active(running[role])
            active.kill()
            standby, took = the_active(running[role])
            assert standby is not active
            takeovers.append(took)
            active.start()  # back, as the standby now
            wait_for(lambda back=active: back.state() == "standby", timeout=120)  # type: ignore[misc]
        writer.join(120)
        assert writing_done.is_set()
        wait_for(lambda: all(len(app.household_chain(h)) == 1 for h in households), timeout=30)
        last = app.recorder.max_notification_id()
        projected = f'SELECT max(notification_id) FROM "{pg_schema}".case_status_tracking'
        wait_for(lambda: scalar(projected) == last, timeout=30)
        for role in ROLES:  # still one active and one standby each: nobody halted
            states = sorted(replica.state() for replica in running[role])
            assert states == ["active", "standby"], (role, states)
    finally:
        writer.join(120)
    assert rows_of(pg_schema) == expected_rows(app)  # replay (the store) equals live
    # About a second when the machine is quiet (a lock poll and a start); loaded, more.
    assert max(takeovers) < 10.0, takeovers


def test_a_lease_is_held_by_one_instance_and_freed_when_its_session_ends(pg_schema: str) -> None:
    async def scenario() -> None:
        first = Lease(DATABASE_URL, scope=pg_schema, roles=["projector"])
        second = Lease(DATABASE_URL, scope=pg_schema, roles=["projector", "relay"])
        other_store = Lease(DATABASE_URL, scope=f"{pg_schema}_b", roles=["projector"])
        try:
            assert await first.try_acquire()
            assert not await second.try_acquire()  # all or none: relay is not kept either
            assert await other_store.try_acquire()  # another schema: another store
            relay_alone = Lease(DATABASE_URL, scope=pg_schema, roles=["relay"])
            assert await relay_alone.try_acquire()
            await relay_alone.release()
            assert await first.still_held()
            await first.release()  # the session ends: the lock goes with it
            assert await second.try_acquire()
            assert second.status.state == "active"
            assert second.status.takeovers == 1
        finally:
            for lease in (first, second, other_store):
                await lease.release()

    asyncio.run(scenario())
    assert lease_key("a", "projector") != lease_key("b", "projector")


def test_health_of_a_standby_says_whether_it_could_take_over() -> None:
    from jiuzhu.serve import Health

    lease = LeaseState(roles=["relay"], state="standby")
    health = Health(lease=lease)
    assert health.report() == (
        True,
        {"healthy": True, "status": "ok", "state": "standby", "components": {}},
    )
    lease.reachable = False  # PostgreSQL away: it could not take over
    healthy, body = health.report()
    assert not healthy
    assert body["status"] == "degraded"
