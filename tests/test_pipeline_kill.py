"""Relay and projector killed with SIGKILL mid-stream and restarted: case_status ends exact."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest

from domain.application import CaseWork
from tests.conftest import DATABASE_URL
from tests.test_case_status import expected_rows, varied_cases
from tests.test_pipeline_brokers import rows_of

pytestmark = [pytest.mark.postgres, pytest.mark.nats, pytest.mark.slow]

NATS_URL = "nats://127.0.0.1:4222"
ROOT = Path(__file__).resolve().parent.parent


def wait_for(
    condition: Callable[[], bool],
    timeout: float = 60.0,
    explain: Callable[[], str] = lambda: "",
) -> None:
    """Poll a condition until it holds; fail after the timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not reached in time {explain()}"
        threading.Event().wait(0.05)


def scalar(sql: str) -> int:
    """One number from the test database (0 when the table is not there yet)."""
    try:
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            row = conn.execute(sql).fetchone()
    except psycopg.errors.UndefinedTable:
        return 0
    return int(row[0] or 0) if row else 0


class Process:
    """`python -m jiuzhu.cli_serve <component>` with the test's schema and names."""

    def __init__(self, component: str, env: dict[str, str], log: Path) -> None:
        self.component, self.env, self.log = component, env, log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "jiuzhu.cli_serve", self.component],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.popen is not None
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self) -> int:
        assert self.popen is not None
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(30)


def test_killed_relay_and_projector_resume_and_case_status_is_exact(
    app: CaseWork, pg_schema: str, tmp_path: Path
) -> None:
    tag = uuid4().hex[:10]
    env = {
        **os.environ,
        "JIUZHU_DATABASE_URL": DATABASE_URL,
        "JIUZHU_BROKER_URL": NATS_URL,
        "JIUZHU_DB_SCHEMA": pg_schema,
        "JIUZHU_EVENTS_PREFIX": f"t{tag}.events",
        "JIUZHU_EVENTS_STREAM": f"T{tag}",
        "JIUZHU_EVENTS_DEADLETTER": f"t{tag}.deadletter.events",
        "JIUZHU_HEALTH_PORT": "0",
        "JIUZHU_LOG_JSON": "true",
        "JIUZHU_RELAY_WINDOW": "100",  # small windows: a kill lands between many of them
        "JIUZHU_PROJECTOR_BATCH": "100",
    }
    relay = Process("relay", env, tmp_path / "relay.log")
    projector = Process("projector", env, tmp_path / "projector.log")
    relayed = f'SELECT max(notification_id) FROM "{pg_schema}".relay_position'
    projected = f'SELECT max(notification_id) FROM "{pg_schema}".case_status_tracking'

    writing_done = threading.Event()

    def write() -> None:
        try:
            varied_cases(app, rounds=60)  # ~2,000 events, one command at a time
        finally:
            writing_done.set()

    writer = threading.Thread(target=write)
    relay.start()
    projector.start()
    writer.start()
    try:
        wait_for(lambda: scalar(relayed) > 300)
        relay.kill()  # mid-stream: windows in flight, position maybe not recorded
        killed_at = scalar(relayed)
        relay.start()
        wait_for(lambda: scalar(projected) > killed_at)
        projector.kill()  # mid-batch: rows and tracking commit together, or neither
        projector.start()
        wait_for(lambda: scalar(relayed) > killed_at + 300)
        relay.kill()
        relay.start()
        writer.join(120)
        assert writing_done.is_set()
        last = app.recorder.max_notification_id()
        assert last > 1500
        wait_for(
            lambda: scalar(projected) == last,
            explain=lambda: f"relayed {scalar(relayed)}, projected {scalar(projected)}, of {last}",
        )
        # SIGTERM: each finishes its window or batch, records its position and exits 0.
        assert relay.terminate() == 0, (tmp_path / "relay.log").read_text()[-3000:]
        assert projector.terminate() == 0, (tmp_path / "projector.log").read_text()[-3000:]
    finally:
        for process in (relay, projector):
            if process.popen is not None and process.popen.poll() is None:
                process.popen.kill()
        writer.join(120)
        _delete_streams(f"T{tag}")
    assert rows_of(pg_schema) == expected_rows(app)


def _delete_streams(stream: str) -> None:
    import asyncio

    import nats

    async def delete() -> None:
        client = await nats.connect(NATS_URL)
        js = client.jetstream()
        for name in (stream, f"{stream}_DEADLETTER"):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await js.delete_stream(name)
        await client.close()

    asyncio.run(delete())
