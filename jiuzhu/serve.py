"""Running the service's processes: relay, projector (and intake), with health and SIGTERM.

SIGTERM (or SIGINT) stops taking work: the projector finishes its batch and acks it, the
relay finishes its window and records its position, then the process exits 0. The health
endpoint answers 200 only while every component is actually relaying or consuming.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from typing import Any, cast

import nats.errors
import psycopg
import structlog
from eventsourcing.persistence import PersistenceError
from eventsourcing.postgres import PostgresApplicationRecorder
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.server import start_api
from consumers import tracing
from consumers.brokers import AnyBroker, broker_connected, make_broker
from consumers.lease import UNLEASED_ROLES, Lease, LeaseState, run_leased
from consumers.projector import Feed, Projector, log_source, subscribe_projector
from consumers.relay import Relay
from consumers.store_identity import store_identity
from consumers.streams import BrokerDeadLetterer, EventsDestination, declare_events, make_publisher
from domain.application import CaseWork
from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.audit.courier import carry_checkpoints
from jiuzhu.bootstrap import casework
from jiuzhu.logging import quiet_access_log
from jiuzhu.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from jiuzhu.metrics import ProcessMetrics
from jiuzhu.settings import Settings
from processes.clock import start_clock
from projections.base import read_model_datastore
from projections.registry import READ_MODELS

__all__ = ["COMPONENTS", "ServeSettings", "Service", "serve"]

log = structlog.get_logger("jiuzhu.serve")

# A process that cannot start (database or broker away) tries again this often; a fault
# of another kind (a bad setting) ends it at once, naming it.
START_RETRY_SECONDS = 2.0
STARTUP_FAULTS: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    psycopg.Error,
    PersistenceError,  # eventsourcing's, wrapping psycopg's
    nats.errors.Error,
)

COMPONENTS = ("intake", "relay", "projector", "clock", "api")


class ServeSettings(BaseSettings):
    """Settings of the pipeline processes (JIUZHU_* variables, beside Settings)."""

    model_config = SettingsConfigDict(env_prefix="JIUZHU_", extra="ignore")

    events_prefix: str = Field(default="relief.events", description="Subject prefix of events")
    events_stream: str = Field(
        default="RELIEF_EVENTS", description="NATS stream / RabbitMQ queue of relief.events"
    )
    health_port: int | None = Field(
        default=8081, description="HTTP port of /health; empty or 0: no endpoint"
    )
    relay_window: int = Field(default=500, ge=1, le=4000, description="Events in flight")
    projector_batch: int = Field(default=500, ge=1, le=5000, description="Events per batch")
    events_deadletter: str = Field(
        default="relief.deadletter.events", description="Where undecodable events go"
    )
    projector_consumer: str = Field(default="projector-1", description="Redis consumer name")
    upstream_prefix: str = Field(
        default="relief.upstream", description="Subject prefix upstream systems publish on"
    )
    upstream_stream: str = Field(
        default="RELIEF_UPSTREAM", description="NATS stream / RabbitMQ queue of the intake"
    )
    upstream_deadletter: str = Field(
        default="relief.deadletter.upstream", description="Where bad upstream messages go"
    )
    upstream_durable: str = Field(
        default="jiuzhu-intake", description="The intake's durable consumer / consumer group"
    )
    intake_retry_delay: float = Field(
        default=5.0, gt=0, le=300, description="Seconds before a transient fault is retried"
    )
    intake_ack_wait: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Seconds before a message a killed intake held is delivered again (NATS)",
    )
    checkpoint_publish_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="How often the relay carries new checkpoints"
    )
    health_host: str | None = Field(
        default=None,
        description="Address /health (and /metrics) listen on; empty: 127.0.0.1 in the "
        "embedded mode, every interface (0.0.0.0) with configured servers",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP traces endpoint, e.g. http://otel-collector:4318/v1/traces; "
        "empty: no tracing",
    )
    events_durable: str = Field(
        default="projector",
        description="The projector's durable consumer / group (one per event store sharing "
        "a stream)",
    )

    # Upstream messages and dead letters carry personal data in clear: NATS drops them after
    # this many days (0: kept as long as the stream's limits allow). An intake outage must
    # stay shorter than the first; dead letters are for people to look at, then go.
    upstream_retention_days: float = Field(default=7.0, ge=0, le=3650)
    deadletter_retention_days: float = Field(default=30.0, ge=0, le=3650)

    def upstream_retention_seconds(self) -> float | None:
        """max_age of the upstream stream, None: unlimited."""
        return self.upstream_retention_days * 86_400 or None

    def deadletter_retention_seconds(self) -> float | None:
        """max_age of the dead-letter streams, None: unlimited."""
        return self.deadletter_retention_days * 86_400 or None

    def destination(self) -> EventsDestination:
        """The relief.events destination these settings name."""
        return EventsDestination(
            prefix=self.events_prefix,
            stream=self.events_stream,
            deadletter=self.events_deadletter,
            durable=self.events_durable,
        )


@dataclass
class Health:
    """Each running component's check and figures, served as JSON on /health."""

    checks: dict[str, Callable[[], bool]] = field(default_factory=dict)
    figures: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)
    # Whether a component is waiting out an outage (alive, resuming on its own).
    degraded: dict[str, Callable[[], bool]] = field(default_factory=dict)
    lease: LeaseState | None = None  # None: no lease (every instance works)
    metrics: Callable[[], bytes] | None = None  # /metrics, Prometheus's text format

    def report(self) -> tuple[bool, dict[str, Any]]:
        """Whether all are healthy, and the body to answer with.

        status: "ok"; "degraded" while a component waits for its broker or database
        (it resumes by itself); "down" when one is not working and not waiting.
        """
        components = {
            name: {"healthy": check(), **self.figures.get(name, dict)()}
            for name, check in self.checks.items()
        }
        for name, component in components.items():
            waiting = self.degraded.get(name)
            component["status"] = (
                "ok" if component["healthy"] else "degraded" if waiting and waiting() else "down"
            )
        if self.lease is not None and self.lease.state == "standby":
            # A hot standby is healthy: it is doing its job, waiting to take over; one
            # that cannot reach PostgreSQL could not take over: degraded until it can.
            ok = self.lease.reachable
            status = "ok" if ok else "degraded"
            return ok, {"healthy": ok, "status": status, "state": "standby", "components": {}}
        healthy = bool(components) and all(c["healthy"] for c in components.values())
        statuses = {c["status"] for c in components.values()}
        status = "ok" if healthy else "down" if "down" in statuses or not statuses else "degraded"
        state = self.lease.state if self.lease is not None else "active"
        body = {"healthy": healthy, "status": status, "state": state, "components": components}
        return healthy, body

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A minimal HTTP/1.0 answer: 200 when healthy, 503 otherwise, JSON body."""
        try:
            request = await asyncio.wait_for(reader.readline(), 5.0)
            path = request.split()[1].decode() if len(request.split()) > 1 else "/"
            content_type = "application/json"
            if path.rstrip("/") in ("/health", ""):
                healthy, body = self.report()
                status = "200 OK" if healthy else "503 Service Unavailable"
                payload = json.dumps(body).encode()
            elif path == "/metrics" and self.metrics is not None:
                status, content_type = "200 OK", METRICS_CONTENT_TYPE
                payload = await asyncio.to_thread(self.metrics)
            else:
                status, payload = "404 Not Found", b'{"error": "try /health or /metrics"}'
            writer.write(
                f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()


class Service:
    """The running components of one process, wired from settings; started and stopped once."""

    def __init__(
        self,
        components: set[str],
        *,
        database_url: str,
        broker_url: str,
        settings: Settings,
        options: ServeSettings,
        stopping: asyncio.Event | None = None,
        metrics: ProcessMetrics | None = None,
    ) -> None:
        self.components = components
        self.database_url = database_url
        self.broker_url = broker_url
        self.settings = settings
        self.options = options
        self.destination = options.destination()
        self.health = Health()
        self.stopping = stopping or asyncio.Event()
        self.metrics = metrics
        self.relay: Relay | None = None
        self.projector: Projector | None = None
        self.running: list[asyncio.Task[Any]] = []
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Service:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stopping.set()
        try:
            await asyncio.gather(*self.running, return_exceptions=True)
        finally:
            await self._stack.aclose()

    async def _start(self) -> None:
        settings, stack = self.settings, self._stack
        app = casework(
            self.database_url,
            schema=settings.db_schema,
            pool_size=settings.pool_size,
            settings=settings,
            embedded=settings.database_url is None,
        )
        stack.callback(app.close)
        if "projector" in self.components:
            await self._start_projector(app)
        if "relay" in self.components:
            await self._start_relay(app)
        if "intake" in self.components:
            self.running.append(
                await _start_intake(
                    stack,
                    app,
                    self.broker_url,
                    self.health,
                    self.stopping,
                    self.options,
                    self._observe,
                )
            )
        if "clock" in self.components:
            self.running.append(await start_clock(self, app))
        if "api" in self.components:  # the HTTP API and workbench (api.server)
            self.running.append(await start_api(stack, app, settings, self.stopping, self.health))

    async def _start_projector(self, app: CaseWork) -> None:
        stack, destination = self._stack, self.destination
        broker = make_broker(self.broker_url)
        quiet_access_log(broker)
        self._observe(broker)
        # Every read model applies a batch in ONE transaction (apply_together), so two
        # connections carry the projector; one per read model (13 now) only crowded
        # PostgreSQL's max_connections when replicas run side by side.
        datastore = read_model_datastore(
            self.database_url, schema=self.settings.db_schema, pool_size=2
        )
        stack.callback(datastore.close)
        models = [model_class(datastore) for model_class in READ_MODELS]
        for model in models:
            await asyncio.to_thread(model.create_table)
        self.projector = projector = Projector(
            app.mapper,
            models,
            application_name=app.name,
            deadletter=BrokerDeadLetterer(broker, destination),
            store=await asyncio.to_thread(store_identity, app.recorder.datastore),  # type: ignore[attr-defined]
            log_source=log_source(app.recorder),
        )
        feed = subscribe_projector(
            broker,
            destination,
            projector,
            batch_size=self.options.projector_batch,
            consumer=self.options.projector_consumer,
        )
        await declare_events(broker, destination)
        stack.push_async_callback(broker.stop)
        await feed.recover()
        await broker.start()
        await feed.start()
        stack.push_async_callback(feed.stop)
        stack.push_async_callback(projector.drain)  # runs first: the batch in hand finishes
        self.health.checks["projector"] = _projector_check(projector, feed)
        self.health.figures["projector"] = _projector_figures(projector)
        self.health.degraded["projector"] = lambda: (
            projector.stats.failing or feed.failing or not broker_connected(broker)
        )
        # Ends when the projector halts (a failed batch) or the service stops.
        self.running.append(asyncio.create_task(_first_set(projector.stopping, self.stopping)))

    async def _start_relay(self, app: CaseWork) -> None:
        broker = make_broker(self.broker_url)
        quiet_access_log(broker)
        self._observe(broker)
        await declare_events(broker, self.destination)
        self._stack.push_async_callback(broker.stop)
        self.relay = relay = Relay(
            cast(PostgresApplicationRecorder, app.recorder),
            make_publisher(broker, self.destination),
            database_url=self.database_url,
            destination=self.destination,
            window=self.options.relay_window,
        )
        self.running.append(asyncio.create_task(relay.run(self.stopping)))
        if isinstance(app, AuditedCaseWork):
            self.running.append(
                asyncio.create_task(
                    carry_checkpoints(
                        app,
                        self.broker_url,
                        self.stopping,
                        every=self.options.checkpoint_publish_seconds,
                    )
                )
            )
        self.health.checks["relay"] = lambda: relay.healthy() and broker_connected(broker)
        self.health.figures["relay"] = _relay_figures(relay)
        self.health.degraded["relay"] = lambda: relay.degraded() or not broker_connected(broker)

    def _observe(self, broker: AnyBroker) -> None:
        if self.metrics is not None:
            self.metrics.observe(broker)
        tracing.observe(broker)

    async def wait(self) -> int:
        """Until stopping is set or a component ends; the exit status (1: one failed)."""
        waiting = asyncio.create_task(self.stopping.wait())
        done, _ = await asyncio.wait([*self.running, waiting], return_when=asyncio.FIRST_COMPLETED)
        self.stopping.set()
        status = 0
        if self.projector is not None and self.projector.stats.halted:
            status = 1
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("component failed", error=repr(task.exception()))
                status = 1
        return status


async def serve(
    components: set[str],
    *,
    database_url: str,
    broker_url: str,
    settings: Settings,
    options: ServeSettings,
) -> int:
    """Run the components until SIGTERM/SIGINT (a standby while another holds the lease)."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    lease = Lease(database_url, scope=settings.db_schema, roles=components - UNLEASED_ROLES)
    health = Health(lease=lease.status if lease.keys else None)
    metrics = ProcessMetrics(
        figures=lambda: {name: figures() for name, figures in health.figures.items()},
        lease=health.lease,
        database_url=database_url,
        schema=settings.db_schema,
    )
    health.metrics = metrics.render
    if options.otlp_endpoint:
        name = f"jiuzhu-{'-'.join(sorted(components))}"
        tracing.configure(tracing.otlp_provider(options.otlp_endpoint, name))

    async def work(halt: asyncio.Event) -> int:
        while not halt.is_set():
            service = Service(
                components,
                database_url=database_url,
                broker_url=broker_url,
                settings=settings,
                options=options,
                stopping=halt,
                metrics=metrics,
            )
            try:
                await service.__aenter__()
            except STARTUP_FAULTS as error:
                # The database or broker away at the start: wait for it like any outage.
                log.warning("cannot start yet, retrying", error=repr(error))
                with suppress(TimeoutError):
                    await asyncio.wait_for(halt.wait(), START_RETRY_SECONDS)
                continue
            # Served once every component started: a half-started process is not healthy.
            served = service.health
            health.checks, health.figures, health.degraded = (
                served.checks,
                served.figures,
                served.degraded,
            )
            try:
                stream = service.destination.stream
                log.info("serving", components=sorted(components), stream=stream)
                return await service.wait()
            finally:
                health.checks, health.figures, health.degraded = {}, {}, {}
                await service.__aexit__(None, None, None)
        return 0

    server = None
    if options.health_port:
        host = options.health_host or "0.0.0.0"
        server = await asyncio.start_server(health.answer, host, options.health_port)
    try:
        status = await run_leased(lease, stopping, work)
    finally:
        if server is not None:
            server.close()
        if (provider := tracing.provider()) is not None:
            provider.shutdown()  # the last spans are exported
    log.info("stopped", status=status)
    return status


async def _first_set(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _projector_check(projector: Projector, feed: Feed) -> Callable[[], bool]:
    def consuming() -> bool:
        return feed.consuming() and not projector.stopping.is_set() and not projector.stats.failing

    return consuming


def _projector_figures(projector: Projector) -> Callable[[], dict[str, Any]]:
    def figures() -> dict[str, Any]:
        stats = projector.stats
        return {
            "applied": stats.applied,
            "position": stats.position,
            "dead_lettered": stats.dead_lettered,
            "received": stats.received,
            "batches": stats.batches,
            "batch_seconds": round(stats.batch_seconds, 6),
            "foreign": stats.foreign,
            "recovered": stats.recovered,
            "failing": stats.failing,
            "parked": stats.parked,
            "halted": stats.halted,
        }

    return figures


def _relay_figures(relay: Relay) -> Callable[[], dict[str, Any]]:
    def figures() -> dict[str, Any]:
        stats = relay.stats
        return {
            "position": stats.position,
            "published": stats.published,
            "faults": stats.faults,
            "failing": stats.failing,
            "windows": stats.windows,
            "window_seconds": round(stats.window_seconds, 6),
        }

    return figures


async def _start_intake(
    stack: AsyncExitStack,
    app: CaseWork,
    broker_url: str,
    health: Health,
    stopping: asyncio.Event,
    options: ServeSettings,
    observe: Callable[[AnyBroker], None],
) -> asyncio.Task[Any]:
    """The upstream intake, as consumers.intake.build_intake wires it (its own module),
    watched by consumers.intake_runner (started again if its connection closed for good)."""
    from consumers.intake import IntakeStats, build_intake
    from consumers.intake_runner import IntakeRunner

    stats = IntakeStats()

    def make() -> Any:
        broker, intake = build_intake(
            broker_url=broker_url,
            app=app,
            subject_prefix=options.upstream_prefix,
            deadletter_subject=options.upstream_deadletter,
            stream=options.upstream_stream,
            durable=options.upstream_durable,
            retry_delay=options.intake_retry_delay,
            stats=stats,
            ack_wait=options.intake_ack_wait,
            max_age=options.upstream_retention_seconds(),
            deadletter_max_age=options.deadletter_retention_seconds(),
        )
        quiet_access_log(broker)
        observe(broker)
        return broker, intake

    runner = IntakeRunner(make, stats)
    await runner.start()  # runs its on_startup hooks (declarations), then the broker
    stack.push_async_callback(runner.stop)
    health.checks["intake"] = runner.consuming
    health.figures["intake"] = lambda: {**stats.as_dict(), "restarts": runner.restarts}
    health.degraded["intake"] = runner.degraded
    return asyncio.create_task(runner.run(stopping))  # the intake runs until the service stops
