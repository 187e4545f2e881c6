"""Benchmark: the broker pipeline on NATS JetStream, each figure beside a raw baseline, same run.

Run: .venv/bin/python -m bench.bench_pipeline [--database-url URL] [--nats-url URL]
     [--events N] [--lag-seconds S] [--rate R] [--lag-only] [--one-process]

(a) relay: the event store's log into JetStream (events/s) beside raw nats-py publishing of
    the same messages, 500 in flight; (b) projector: the same stream into case_status (and
    into every read model, as `jiuzhu serve` runs it) beside raw nats-py pull requests of 500
    answered into an inbox, no database (nats-py's own fetch(500) printed too); (c)
    end-to-end lag from an upstream publish to its case_status row, p50 and p99, at a steady
    rate, with `jiuzhu serve intake`, `relay` and `projector` running as three OS processes
    as docker-compose.yml deploys them (--one-process: also as one `jiuzhu.serve.Service`
    inside this interpreter, sharing one GIL), and the CPU each process used per message.
Events are written by `bootstrap.casework()` as shipped (audit chain, sealed personal data).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, cast
from uuid import uuid4

import nats
import orjson
import psutil
import psycopg
from eventsourcing.postgres import PostgresApplicationRecorder
from nats.js.api import AckPolicy as NatsAckPolicy
from nats.js.api import ConsumerConfig
from psycopg.sql import SQL, Identifier
from pydantic import SecretStr

from bench.common import (
    Row,
    Target,
    base_arguments,
    console,
    fresh_schema,
    machine,
    percentile,
    print_table,
    print_targets,
    rate,
)
from bench.rebuild_histories import generate
from consumers.brokers import make_broker
from consumers.event_messages import EventMessage, encode
from consumers.projector import NatsFeed, Projector, subscribe_projector
from consumers.relay import Relay
from consumers.streams import BrokerDeadLetterer, EventsDestination, declare_events, make_publisher
from domain.application import CaseWork
from jiuzhu.bootstrap import casework
from jiuzhu.logging import configure_logging, quiet_access_log
from jiuzhu.serve import COMPONENTS, ServeSettings, Service
from jiuzhu.settings import Settings
from projections.base import ReadModel, read_model_datastore
from projections.case_status import CaseStatus
from projections.registry import READ_MODELS

RELAY_TARGET = 0.50  # of raw pipelined publishing
PROJECTOR_TARGET = 10_000.0  # events/s into case_status
LAG_P99_TARGET_MS = 250.0
IN_FLIGHT = 500
BATCH = 500  # relay window and projector batch, as `jiuzhu serve` defaults them


def destination(tag: str, durable: str = "projector") -> EventsDestination:
    """A relief.events destination no one else uses."""
    return EventsDestination(
        prefix=f"b{tag}.events",
        stream=f"B{tag}".upper(),
        durable=durable,
        deadletter=f"b{tag}.deadletter.events",
    )


async def until(condition: Any, timeout: float = 120.0) -> None:
    """Poll a condition on the event loop (a benchmark, not a test: plain asyncio.sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the pipeline did not get there in time")
        await asyncio.sleep(0.002)


async def delete_streams(nats_url: str, *names: str) -> None:
    client = await nats.connect(nats_url)
    js = client.jetstream()
    for name in names:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(name)
    await client.close()


# -- (a) relay ----------------------------------------------------------------------------


async def relay_throughput(app: CaseWork, database_url: str, nats_url: str, tag: str) -> float:
    """Events/s the relay puts into JetStream, from its start until the last is acked."""
    where = destination(tag)
    broker = make_broker(nats_url)
    quiet_access_log(broker)
    await declare_events(broker, where)
    relay = Relay(
        cast(PostgresApplicationRecorder, app.recorder),
        make_publisher(broker, where),
        database_url=database_url,
        destination=where,
        window=BATCH,
    )
    last = app.recorder.max_notification_id() or 0
    stopping = asyncio.Event()
    started = time.perf_counter()
    running = asyncio.create_task(relay.run(stopping))
    await until(lambda: relay.stats.position >= last)
    seconds = time.perf_counter() - started
    stopping.set()
    await running
    await broker.stop()
    return rate(relay.stats.published, seconds)


async def raw_publish(messages: Sequence[EventMessage], nats_url: str, tag: str) -> float:
    """Msg/s of nats-py JetStream publish_async, 500 in flight, the same messages and headers."""
    where = destination(tag)
    client = await nats.connect(nats_url)
    js = client.jetstream(publish_async_max_pending=IN_FLIGHT)
    await js.add_stream(
        name=where.stream, subjects=where.nats_subjects, duplicate_window=where.duplicate_window
    )
    started = time.perf_counter()
    acks = [await js.publish_async(m.subject, m.body, headers=m.headers) for m in messages]
    await asyncio.gather(*acks)
    seconds = time.perf_counter() - started
    await client.close()
    return rate(len(messages), seconds)


# -- (b) projector ------------------------------------------------------------------------


@dataclass
class Projected:
    """One projector run: its rate and how often the NATS feed restarted at a gap."""

    per_second: float
    gap_restarts: int


async def projector_throughput(
    app: CaseWork,
    database_url: str,
    nats_url: str,
    where: EventsDestination,
    models: Sequence[type[ReadModel]],
) -> Projected:
    """Events/s from the stream into read models in a fresh schema, as `serve` wires it."""
    last = app.recorder.max_notification_id() or 0
    with fresh_schema(database_url, "bench_rm") as schema:
        datastore = read_model_datastore(database_url, schema=schema, pool_size=len(models) + 1)
        read_models = [model(datastore) for model in models]
        for model in read_models:
            model.create_table()
        broker = make_broker(nats_url)
        quiet_access_log(broker)
        projector = Projector(
            app.mapper,
            read_models,
            application_name=app.name,
            deadletter=BrokerDeadLetterer(broker, where),
        )
        feed = cast(NatsFeed, subscribe_projector(broker, where, projector, batch_size=BATCH))
        restarts = 0
        restart_at = feed._restart_at

        async def counted(sequence: int) -> None:
            nonlocal restarts
            restarts += 1
            await restart_at(sequence)

        started = time.perf_counter()
        await declare_events(broker, where)
        await feed.recover()
        feed._restart_at = counted  # type: ignore[method-assign]
        await broker.start()
        await feed.start()
        await until(lambda: projector.stats.position >= last)
        seconds = time.perf_counter() - started
        await projector.drain()
        await feed.stop()
        await broker.stop()
        datastore.close()
    return Projected(rate(projector.stats.applied, seconds), restarts)


async def raw_consume(nats_url: str, where: EventsDestination, count: int) -> float:
    """Msg/s of a nats-py durable pull consumer over the same stream: fetch 500, ack each."""
    client = await nats.connect(nats_url)
    js = client.jetstream()
    subscription = await js.pull_subscribe(
        where.nats_subjects[0], durable=f"raw-{uuid4().hex[:8]}", stream=where.stream
    )
    received = 0
    started = time.perf_counter()
    while received < count:
        try:
            messages = await subscription.fetch(BATCH, timeout=1.0)
        except TimeoutError:
            continue
        for message in messages:
            await message.ack()
        received += len(messages)
    seconds = time.perf_counter() - started
    await client.close()
    return rate(received, seconds)


async def raw_inbox_consume(nats_url: str, where: EventsDestination, count: int) -> float:
    """Msg/s of plain nats-py pull requests of 500 answered into a callback inbox, one ack
    (AckPolicy.ALL) per answered request, no database: the transport's ceiling here."""
    client = await nats.connect(nats_url)
    js = client.jetstream()
    durable = f"raw-inbox-{uuid4().hex[:8]}"
    await js.add_consumer(
        where.stream,
        ConsumerConfig(
            durable_name=durable, ack_policy=NatsAckPolicy.ALL, max_ack_pending=BATCH * 4
        ),
    )
    inbox = client.new_inbox()
    answered = asyncio.Event()
    batch: list[Any] = []
    wanted = BATCH

    async def arrived(msg: Any) -> None:
        if not msg.data and msg.headers and "Status" in msg.headers:  # 408: expired
            answered.set()
            return
        batch.append(msg)
        if len(batch) == wanted:
            answered.set()

    await client.subscribe(inbox, cb=arrived)
    received = 0
    started = time.perf_counter()
    while received < count:
        batch.clear()
        answered.clear()
        # Never more than is left: a request for more would wait out its expiry at the end.
        wanted = min(BATCH, count - received)
        request = orjson.dumps({"batch": wanted, "expires": 1_000_000_000})
        await client.publish(f"$JS.API.CONSUMER.MSG.NEXT.{where.stream}.{durable}", request, inbox)
        await answered.wait()
        if batch:
            await batch[-1].ack()
            received += len(batch)
    seconds = time.perf_counter() - started
    await client.close()
    return rate(received, seconds)


# -- (c) end-to-end lag -------------------------------------------------------------------


def alert(household: str, number: int) -> bytes:
    """A monitoring alert for a new household: opens a case."""
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": f"lag-{number}",
            "source": "/bench/monitoring-platform",
            "type": "monitoring.alert",
            "time": "2023-06-05T09:30:00+08:00",
            "data": {
                "household_id": household,
                "region": "610523",
                "signals": ["medical spending jumped"],
                "household_size": 3,
            },
        }
    )


class RowWatcher(threading.Thread):
    """Notes when each household's case_status row first becomes visible (polls every 5 ms).

    case_status has no index on household_id: polling it every 5 ms would seq-scan the
    growing table ~200 times a second (2-3 ms each at 15,000 rows, a tenth of a core of
    PostgreSQL taken from the pipeline it measures). `index()` adds one in the benchmark's
    schema once the projector made the table; its upkeep falls on the projector's writes.
    """

    def __init__(self, database_url: str, schema: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self.database_url, self.prefix = database_url, prefix
        self.query = SQL("SELECT household_id FROM {0}.case_status WHERE household_id > %s").format(
            Identifier(schema)
        )
        self.create_index = SQL(
            "CREATE INDEX IF NOT EXISTS bench_lag_household ON {0}.case_status (household_id)"
        ).format(Identifier(schema))
        self.seen: dict[str, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            highest = self.prefix
            while not self.done.is_set():
                try:
                    rows = conn.execute(self.query, (highest,)).fetchall()
                except psycopg.errors.UndefinedTable:
                    rows = []
                now = time.perf_counter()
                for (household,) in rows:
                    if household.startswith(self.prefix):
                        self.seen.setdefault(household, now)
                        highest = max(highest, household)
                self.done.wait(0.005)

    def index(self) -> None:
        """Index case_status by household (the table exists once the projector started)."""
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(self.create_index)


@dataclass
class Lag:
    """One steady-rate run: lag per message (ms), unseen ones as lower bounds."""

    per_second: int
    lags: list[float]
    unseen: int
    carried: float  # upstream messages/s the pipeline turned into rows
    # CPU ms per upstream message while it ran, by process (PostgreSQL: all its processes).
    cpu: dict[str, float] = field(default_factory=dict)

    def figure(self, q: float) -> float:
        return percentile(self.lags, q)

    def bound(self, q: float) -> str:
        """The percentile, marked as a lower bound when unseen rows reach into it."""
        at_least = self.unseen and q / 100 > 1 - self.unseen / len(self.lags)
        return f"{'>= ' if at_least else ''}{self.figure(q):,.0f} ms"


class Lagging(ABC):
    """Where the pipeline under test runs: ready on entry, stopped and cleaned up on exit."""

    def __init__(self, database_url: str, nats_url: str, schema: str, data_dir: Path) -> None:
        tag = uuid4().hex[:8]
        self.database_url, self.nats_url, self.schema = database_url, nats_url, schema
        self.data_dir = data_dir
        self.options = ServeSettings(
            events_prefix=f"b{tag}.events",
            events_stream=f"B{tag}".upper(),
            events_deadletter=f"b{tag}.deadletter.events",
            upstream_prefix=f"b{tag}.upstream",
            upstream_stream=f"B{tag}_UP".upper(),
            upstream_deadletter=f"b{tag}.deadletter.upstream",
            upstream_durable=f"b{tag}-intake",
            health_port=0,
        )
        self.prefix = f"LAG-{tag}-"
        self.settings = Settings(
            database_url=database_url,
            broker_url=nats_url,
            db_schema=schema,
            data_dir=data_dir,
            master_key=SecretStr(base64.b64encode(os.urandom(32)).decode()),
            allow_generated_keys=True,  # a bench's throw-away signing key
        )

    @property
    def streams(self) -> list[str]:
        events, upstream = self.options.events_stream, self.options.upstream_stream
        return [events, f"{events}_DEADLETTER", upstream, f"{upstream}_DEADLETTER"]

    @abstractmethod
    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The pipeline, consuming once entered; stopped and its streams deleted on exit."""

    def pids(self) -> dict[str, list[int]]:
        """The processes whose CPU the run counts, by name."""
        return {"this process": [os.getpid()]}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by each of `pids`, and by PostgreSQL and nats-server."""
        groups = self.pids()
        for name, command in (("postgres", "postgres"), ("nats-server", "nats-server")):
            groups[name] = [pid for pid in _all_pids() if _command(pid) == command]
        return {name: sum(_cpu_of(pid) for pid in pids) for name, pids in groups.items()}


class InOneProcess(Lagging):
    """intake + relay + projector as one `Service` in this interpreter (one GIL)."""

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        service = Service(
            set(COMPONENTS),
            database_url=self.database_url,
            broker_url=self.nats_url,
            settings=self.settings,
            options=self.options,
        )
        try:
            async with service:
                await until(lambda: service.health.report()[0], timeout=60)
                yield
        finally:
            await delete_streams(self.nats_url, *self.streams)


class AsDeployed(Lagging):
    """`jiuzhu serve intake|relay|projector` as three OS processes, as docker-compose.yml."""

    def __init__(self, database_url: str, nats_url: str, schema: str, data_dir: Path) -> None:
        super().__init__(database_url, nats_url, schema, data_dir)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    def environment(self, component: str) -> dict[str, str]:
        """The JIUZHU_* variables one process reads (Settings and ServeSettings)."""
        settings, options = self.settings, self.options
        assert settings.master_key is not None
        env = {
            **os.environ,
            "JIUZHU_DATABASE_URL": self.database_url,
            "JIUZHU_BROKER_URL": self.nats_url,
            "JIUZHU_DB_SCHEMA": self.schema,
            "JIUZHU_DATA_DIR": str(self.data_dir),
            "JIUZHU_MASTER_KEY": settings.master_key.get_secret_value(),
            "JIUZHU_LOG_JSON": "true",  # as compose: JSON lines, INFO, into a file here
        }
        for name, value in options.model_dump().items():
            env[f"JIUZHU_{name.upper()}"] = "" if value is None else str(value)
        env["JIUZHU_HEALTH_PORT"] = str(self.ports[component])
        env["JIUZHU_API_PORT"] = "0"  # `serve api` (a COMPONENT too): any free port
        return env

    def log(self, component: str) -> Path:
        return self.data_dir / f"{component}.log"

    def pids(self) -> dict[str, list[int]]:
        return {name: [process.pid] for name, process in self.processes.items()}

    def cpu_seconds(self) -> dict[str, float]:
        """As Lagging's, with PostgreSQL's share split by the process its backends serve."""
        used = super().cpu_seconds()
        served_by = {}  # a client's TCP port: the process it belongs to
        for name, process in self.processes.items():
            with contextlib.suppress(psutil.Error):
                for connection in psutil.Process(process.pid).net_connections(kind="tcp"):
                    served_by[connection.laddr.port] = name
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            backends = conn.execute(
                "SELECT pid, client_port FROM pg_stat_activity WHERE client_port IS NOT NULL"
            ).fetchall()
        for pid, port in backends:
            if port in served_by:
                share = f"postgres for {served_by[port]}"
                used[share] = used.get(share, 0.0) + _cpu_of(pid)
        return used

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        # Tables and the signing key made here first: the processes then only find them.
        casework(self.database_url, schema=self.schema, settings=self.settings).close()
        try:
            for component in COMPONENTS:
                self.ports[component] = free_port()
                with self.log(component).open("wb") as out:
                    self.processes[component] = subprocess.Popen(
                        [*serve_command(), component],
                        env=self.environment(component),
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
            for component in COMPONENTS:
                await self.until_healthy(component)
            yield
        finally:
            await asyncio.to_thread(self.stop)
            await delete_streams(self.nats_url, *self.streams)

    async def until_healthy(self, component: str, timeout: float = 60.0) -> None:
        """Until its /health answers 200 (consuming, not only connected)."""
        deadline = time.monotonic() + timeout
        while not await healthy(self.ports[component]):
            if self.processes[component].poll() is not None or time.monotonic() > deadline:
                tail = self.log(component).read_text(errors="replace")[-3000:]
                raise RuntimeError(f"jiuzhu serve {component} did not become healthy:\n{tail}")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM each (finish the batch in hand), SIGKILL what is still there after 20 s."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_command() -> list[str]:
    """The installed `jiuzhu serve` (as the image runs it), else the module."""
    script = Path(sys.executable).with_name("jiuzhu")
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-m", "jiuzhu.cli_serve"]


def free_port() -> int:
    """A TCP port nothing listens on now, for a process's /health."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def healthy(port: int) -> bool:
    """Whether a process's /health answers 200."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(b"GET /health HTTP/1.0\r\n\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5.0)
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
    return b" 200 " in status


TOPOLOGIES: dict[str, type[Lagging]] = {"processes": AsDeployed, "one process": InOneProcess}


async def end_to_end_lag(
    database_url: str,
    nats_url: str,
    seconds: float,
    per_second: int,
    drain: float,
    topology: str = "processes",
) -> Lag:
    """Lag from upstream publish to case_status row at a steady rate.

    topology "processes": `jiuzhu serve intake`, `relay` and `projector` as three OS
    processes, as deployed; "one process": the three in one `Service` in this interpreter.
    """
    count = int(seconds * per_second)
    published: dict[str, float] = {}
    with fresh_schema(database_url, "bench_lag") as schema, TemporaryDirectory() as data_dir:
        pipeline = TOPOLOGIES[topology](database_url, nats_url, schema, Path(data_dir))
        prefix = pipeline.prefix
        watcher = RowWatcher(database_url, schema, prefix)
        try:
            async with pipeline.running():
                watcher.index()
                watcher.start()
                client = await nats.connect(nats_url)
                js = client.jetstream()
                subject = f"{pipeline.options.upstream_prefix}.monitoring.alert"
                cpu_before = pipeline.cpu_seconds()
                started = time.perf_counter()
                for number in range(count):
                    due = started + number / per_second
                    if (ahead := due - time.perf_counter()) > 0:
                        await asyncio.sleep(ahead)
                    household = f"{prefix}{number:06d}"
                    published[household] = time.perf_counter()
                    await js.publish(subject, alert(household, number))
                deadline = time.perf_counter() + drain
                while len(watcher.seen) < count and time.perf_counter() < deadline:
                    await asyncio.sleep(0.05)
                ended = time.perf_counter()
                cpu_used = {
                    name: (seconds - cpu_before.get(name, 0.0)) * 1000 / count
                    for name, seconds in pipeline.cpu_seconds().items()
                }
                await client.close()
        finally:
            watcher.done.set()
            if watcher.ident is not None:
                watcher.join(5)
    seen = watcher.seen
    lags = [(seen.get(h, ended) - t) * 1000 for h, t in published.items()]
    last_row = max(seen.values(), default=started)
    carried = rate(len(seen), last_row - started)
    return Lag(per_second, lags, count - len(seen), carried, cpu_used)


# -- the run ------------------------------------------------------------------------------


async def throughput(
    app: CaseWork, database_url: str, nats_url: str
) -> tuple[list[Row], list[Target]]:
    tag = uuid4().hex[:8]
    where = destination(tag)
    notifications = app.recorder.select_notifications(start=1, limit=10**9)
    messages = [encode(n, prefix=f"braw{tag}.events") for n in notifications]
    try:
        relay = await relay_throughput(app, database_url, nats_url, tag)
        raw = await raw_publish(messages, nats_url, f"raw{tag}")
        console.print(f"relay {relay:,.0f}/s, raw publish {raw:,.0f}/s")
        fetched = await raw_consume(nats_url, where, len(messages))
        consumed = await raw_inbox_consume(nats_url, where, len(messages))
        alone = await projector_throughput(app, database_url, nats_url, where, [CaseStatus])
        every = await projector_throughput(
            app, database_url, nats_url, replace_durable(where, "every"), READ_MODELS
        )
        console.print(
            f"projector {alone.per_second:,.0f}/s ({alone.gap_restarts} gap restarts), "
            f"all read models {every.per_second:,.0f}/s ({every.gap_restarts}), "
            f"raw inbox pull {consumed:,.0f}/s, raw fetch {fetched:,.0f}/s"
        )
    finally:
        await delete_streams(
            nats_url, where.stream, f"{where.stream}_DEADLETTER", destination(f"raw{tag}").stream
        )
    raw_pull = "nats-py pull requests of 500, no database"
    rows = [
        Row("relay → JetStream", relay, "events/s", raw, f"publish_async, {IN_FLIGHT} in flight"),
        Row("projector → case_status", alone.per_second, "events/s", consumed, raw_pull),
        Row(
            f"projector → all {len(READ_MODELS)} read models (as served)",
            every.per_second,
            "events/s",
            consumed,
            raw_pull,
        ),
    ]
    targets = [
        Target(
            f"relay >= {RELAY_TARGET:.0%} of raw pipelined publishing",
            relay >= RELAY_TARGET * raw,
            f"{relay / raw:.0%}",
        ),
        Target(
            f"projector >= {PROJECTOR_TARGET:,.0f} events/s into case_status",
            alone.per_second >= PROJECTOR_TARGET,
            f"{alone.per_second:,.0f} events/s; gap restarts {alone.gap_restarts}"
            f" / {every.gap_restarts} (case_status / all); nats-py fetch(500) consumes"
            f" {fetched:,.0f} msg/s in this run",
        ),
    ]
    return rows, targets


def replace_durable(where: EventsDestination, durable: str) -> EventsDestination:
    return EventsDestination(
        prefix=where.prefix, stream=where.stream, durable=durable, deadletter=where.deadletter
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = base_arguments(__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    parser.add_argument("--events", type=int, default=15_000, help="events relayed and projected")
    parser.add_argument("--lag-seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=500, help="upstream messages/s for the lag")
    parser.add_argument("--drain", type=float, default=10.0, help="s to wait after publishing")
    parser.add_argument(
        "--steady-rate", type=int, default=20, help="a rate the pipeline carries, for its lag"
    )
    parser.add_argument("--steady-seconds", type=float, default=10.0)
    parser.add_argument("--lag-only", action="store_true", help="skip relay/projector rates")
    parser.add_argument(
        "--one-process",
        action="store_true",
        help="also measure the lag with the three parts in this one process",
    )
    args = parser.parse_args(argv)
    configure_logging(json=False, level=30)  # warnings and errors only
    console.print(machine(args.database_url))
    rows: list[Row] = []
    targets: list[Target] = []
    if not args.lag_only:
        rows, targets = relay_and_projector(args)
    topologies = ["processes", "one process"] if args.one_process else ["processes"]
    for topology in topologies:
        for per_second, seconds in (
            (args.rate, args.lag_seconds),
            (args.steady_rate, args.steady_seconds),
        ):
            lag = asyncio.run(
                end_to_end_lag(
                    args.database_url, args.nats_url, seconds, per_second, args.drain, topology
                )
            )
            lag_rows, target = lag_figures(
                lag, topology, args.drain, headline=per_second == args.rate
            )
            rows.extend(lag_rows)
            if target is not None and topology == "processes":
                targets.append(target)
    print_table("Broker pipeline on NATS JetStream (same run)", rows)
    print_targets(targets)


def relay_and_projector(args: argparse.Namespace) -> tuple[list[Row], list[Target]]:
    """(a) and (b): histories written as shipped, then relayed and projected."""
    with fresh_schema(args.database_url, "bench_pipe") as schema, TemporaryDirectory() as keys:
        settings = Settings(
            database_url=args.database_url,
            db_schema=schema,
            data_dir=Path(keys),
            allow_generated_keys=True,
        )
        app = casework(args.database_url, schema=schema, settings=settings)
        started = time.perf_counter()
        events = generate(app, args.events, cohort=500, save_every=1000)
        console.print(f"{events:,} events written in {time.perf_counter() - started:.1f} s")
        try:
            return asyncio.run(throughput(app, args.database_url, args.nats_url))
        finally:
            app.close()


def lag_figures(
    lag: Lag, topology: str, drain: float, *, headline: bool
) -> tuple[list[Row], Target | None]:
    """A lag run's rows (and, for the target rate, its target), printed as it ends."""
    rate_ = lag.per_second
    console.print(
        f"lag at {rate_}/s ({topology}): p50 {lag.bound(50)}, p99 {lag.bound(99)}, "
        f"{lag.unseen} of {len(lag.lags)} rows unseen {drain:.0f} s after publishing, "
        f"pipeline carried {lag.carried:,.0f} messages/s; load average {os.getloadavg()[0]:.1f}"
    )
    console.print(
        "CPU per message: " + ", ".join(f"{name} {ms:.2f} ms" for name, ms in lag.cpu.items())
    )
    rows = [
        Row(f"end-to-end lag p{q} at {rate_}/s ({topology})", lag.figure(q), "ms") for q in (50, 99)
    ]
    rows.append(Row(f"upstream messages/s carried at {rate_}/s ({topology})", lag.carried, "msg/s"))
    if not headline:
        return rows, None
    return rows, Target(
        f"end-to-end p99 < {LAG_P99_TARGET_MS:.0f} ms at {rate_} messages/s ({topology})",
        lag.figure(99) < LAG_P99_TARGET_MS and not lag.unseen,
        f"p50 {lag.bound(50)}, p99 {lag.bound(99)}; the pipeline carried "
        f"{lag.carried:,.0f}/s; {lag.unseen} of {len(lag.lags)} rows not seen "
        f"{drain:.0f} s after the last publish",
    )


if __name__ == "__main__":
    main()
