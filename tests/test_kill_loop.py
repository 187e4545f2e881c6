"""A SIGKILL loop over intake, relay and projector while upstream systems keep publishing
(issue 14): every acknowledged message has exactly one effect, nothing valid is
dead-lettered, case_status equals the event store and a replay equals the live tables."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import nats
import orjson
import pytest

from domain.application import CaseWork
from projections.rebuild import read_model_classes, replay
from tests.conftest import DATABASE_URL
from tests.test_case_status import expected_rows
from tests.test_intake_brokers import alert, visit_report
from tests.test_pipeline_brokers import rows_of
from tests.test_pipeline_kill import Process, _delete_streams, scalar, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

NATS_URL = "nats://127.0.0.1:4222"


class Upstream(threading.Thread):
    """Publishes an alert then a visit report per household, at a steady rate."""

    def __init__(self, prefix: str, households: list[str], rate: float) -> None:
        super().__init__(daemon=True)
        self.prefix, self.households, self.rate = prefix, households, rate
        self.keys: list[str] = []  # message keys the broker acknowledged
        self.done = threading.Event()

    def run(self) -> None:
        asyncio.run(self._publish())

    async def _publish(self) -> None:
        client = await nats.connect(NATS_URL)
        js = client.jetstream()
        try:
            for household in self.households:
                for kind, envelope in (
                    ("monitoring.alert", alert(household)),
                    ("verification.reported", visit_report(household)),
                ):
                    await _publish(js, f"{self.prefix}.{kind}", orjson.dumps(envelope))
                    self.keys.append(f"{envelope['source']}/{envelope['id']}")
                    await asyncio.sleep(1 / self.rate)
        finally:
            await client.close()
            self.done.set()


async def _publish(js: Any, subject: str, body: bytes) -> None:
    """As an upstream system does: until the broker acknowledges (the stream may not be
    declared yet by the intake)."""
    for _ in range(200):
        try:
            await js.publish(subject, body, timeout=2.0)
            return
        except (nats.errors.Error, TimeoutError):
            await asyncio.sleep(0.1)
    raise AssertionError(f"could not publish on {subject}")


def kill_loop(
    app: CaseWork, schema: str, tmp_path: Path, *, households: int, rate: float, seed: int
) -> None:
    tag = uuid4().hex[:10]
    env = {
        **os.environ,
        "JIUZHU_DATABASE_URL": DATABASE_URL,
        "JIUZHU_BROKER_URL": NATS_URL,
        "JIUZHU_DB_SCHEMA": schema,
        "JIUZHU_EVENTS_PREFIX": f"t{tag}.events",
        "JIUZHU_EVENTS_STREAM": f"T{tag}",
        "JIUZHU_EVENTS_DEADLETTER": f"t{tag}.deadletter.events",
        "JIUZHU_UPSTREAM_PREFIX": f"t{tag}.upstream",
        "JIUZHU_UPSTREAM_STREAM": f"T{tag}_UP",
        "JIUZHU_UPSTREAM_DEADLETTER": f"t{tag}.deadletter.upstream",
        "JIUZHU_UPSTREAM_DURABLE": f"t{tag}-intake",
        "JIUZHU_INTAKE_RETRY_DELAY": "0.3",
        "JIUZHU_INTAKE_ACK_WAIT": "4",  # what a killed intake held comes back this soon
        "JIUZHU_HEALTH_PORT": "0",
        "JIUZHU_POOL_SIZE": "2",  # the shared test database has few connections to spare
        "JIUZHU_LOG_JSON": "true",
        "JIUZHU_RELAY_WINDOW": "50",
        "JIUZHU_PROJECTOR_BATCH": "50",
    }
    roles = {
        name: Process(name, env, tmp_path / f"{name}.log")
        for name in ("intake", "relay", "projector")
    }
    for process in roles.values():
        process.start()
    names = [f"HH-{tag[:4]}-{n:04d}" for n in range(households)]
    upstream = Upstream(f"t{tag}.upstream", names, rate)
    chooser = random.Random(seed)
    kills = 0
    since = dict.fromkeys(roles, 0)  # where each process's log was at its last start
    try:
        wait_for(lambda: _stream_exists(f"T{tag}_UP"), timeout=120)  # the intake is up
        upstream.start()
        while not upstream.done.is_set():
            time.sleep(chooser.uniform(1.0, 3.0))
            victim = roles[chooser.choice(sorted(roles))]
            victim.kill()
            kills += 1
            since[victim.component] = victim.log.stat().st_size
            victim.start()
        upstream.join(60)
        wait_for(
            lambda: _patient(lambda: all(app.has_received(key) for key in upstream.keys)),
            timeout=120,
            explain=lambda: (tmp_path / "intake.log").read_text()[-3000:],
        )
        last = app.recorder.max_notification_id()
        projected = f'SELECT max(notification_id) FROM "{schema}".case_status_tracking'
        wait_for(lambda: _patient(lambda: scalar(projected)) == last, timeout=120)
        for name, process in roles.items():
            # SIGTERM is the service's once it serves (before: Python's default, exit -15).
            wait_for(lambda p=process: _serving(p, since[p.component]), timeout=60)  # type: ignore[misc]
            assert process.terminate() == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
        dead = _dead_letters(f"T{tag}_UP_DEADLETTER")
    finally:
        for process in roles.values():
            if process.popen is not None and process.popen.poll() is None:
                process.popen.kill()
        _delete_streams(f"T{tag}")
        _delete_streams(f"T{tag}_UP")
    assert kills > 0
    assert len(upstream.keys) == 2 * households
    assert dead == 0, "a valid message was dead-lettered"
    for household in names:  # exactly one effect each: one case, verified once
        [case_id] = app.household_chain(household)
        kinds = [type(e).__name__ for e in app.history(case_id)]
        assert kinds == ["Discovered", "ConsentGiven", "Verified"], (household, kinds)
    assert rows_of(schema) == expected_rows(app)
    result = replay(app, read_model_classes(), database_url=DATABASE_URL, schema=schema)
    assert result.equal, result.differences


def _serving(process: Process, since: int) -> bool:
    """Whether the process's log says it serves, after its last start."""
    return '"event": "serving"' in process.log.read_bytes()[since:].decode("utf-8", "replace")


def _patient(look: Any) -> Any:
    """A look at the database; None while the shared test server has no connection to spare."""
    try:
        return look()
    except Exception as error:
        if "too many clients" not in str(error):
            raise
        return None


def _stream_exists(stream: str) -> bool:
    async def look() -> bool:
        client = await nats.connect(NATS_URL)
        try:
            await client.jetstream().stream_info(stream)
        except nats.js.errors.NotFoundError:
            return False
        finally:
            await client.close()
        return True

    return asyncio.run(look())


def _dead_letters(stream: str) -> int:
    async def count() -> int:
        client = await nats.connect(NATS_URL)
        try:
            return int((await client.jetstream().stream_info(stream)).state.messages)
        except nats.js.errors.NotFoundError:
            return 0
        finally:
            await client.close()

    return asyncio.run(count())


@pytest.mark.slow
def test_killed_pipeline_processes_lose_and_double_nothing(
    app: CaseWork, pg_schema: str, tmp_path: Path
) -> None:
    kill_loop(app, pg_schema, tmp_path, households=30, rate=10.0, seed=14)


@pytest.mark.soak
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_killed_pipeline_processes_long(
    app: CaseWork, pg_schema: str, tmp_path: Path, seed: int
) -> None:
    kill_loop(app, pg_schema, tmp_path, households=1200, rate=40.0, seed=seed)
