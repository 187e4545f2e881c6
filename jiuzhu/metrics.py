"""/metrics of a serve process, in Prometheus's text format.

Two sources, one registry per process:
- FastStream's Prometheus middleware on every broker the process opens (messages received,
  processed, published, their durations and sizes, per handler);
- the domain's own figures, read when scraped (a collector, nothing on the hot paths):
  upstream messages by outcome and dead-letter reason, the event store's head (its rate
  is the events appended per second), relay and projector positions and their lag behind
  the head in events and seconds, batch counts, sizes and time, refused and recovered
  events, the lease (active or standby), and every numeric figure any component puts on
  /health (the clock's, the payroll's, the screening's when they run in this process).

Lag in seconds is the time since the follower was last seen at the head (0 while it is):
the event store keeps no commit time per event to subtract from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from faststream.kafka import KafkaBroker
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.nats import NatsBroker
from faststream.nats.prometheus import NatsPrometheusMiddleware
from faststream.rabbit import RabbitBroker
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from faststream.redis.prometheus import RedisPrometheusMiddleware
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg.sql import SQL, Identifier

from consumers.brokers import AnyBroker
from consumers.lease import LeaseState

__all__ = ["CONTENT_TYPE", "ProcessMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Figures (from /health) that are followers' positions in the notification log.
_FOLLOWERS = ("relay", "projector")


class ProcessMetrics(Collector):
    """The process's registry: FastStream's middleware metrics and the domain's figures."""

    def __init__(
        self,
        *,
        figures: Callable[[], dict[str, dict[str, Any]]],
        lease: LeaseState | None,
        database_url: str,
        schema: str,
        events_table: str = "casework_events",
    ) -> None:
        self.registry = CollectorRegistry()
        self.figures = figures
        self.lease = lease
        self.database_url = database_url
        self._head_query = SQL("SELECT max(notification_id) FROM {0}").format(
            Identifier(schema, events_table)
        )
        self._middlewares: dict[type, Any] = {}
        self._at_head: dict[str, float] = {}
        self.registry.register(self)

    def observe(self, broker: AnyBroker) -> None:
        """Put FastStream's Prometheus middleware on a broker (one per broker kind)."""
        kind = type(broker)
        if kind not in self._middlewares:
            middleware: Any
            if isinstance(broker, NatsBroker):
                middleware = NatsPrometheusMiddleware
            elif isinstance(broker, RabbitBroker):
                middleware = RabbitPrometheusMiddleware
            elif isinstance(broker, KafkaBroker):
                middleware = KafkaPrometheusMiddleware
            else:
                middleware = RedisPrometheusMiddleware
            self._middlewares[kind] = middleware(registry=self.registry, app_name="jiuzhu")
        broker.insert_middleware(self._middlewares[kind])

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)

    def describe(self) -> list[Metric]:
        """Nothing up front: the figures are only known when scraped."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The domain's figures as they are now."""
        components = self.figures()
        head = self._head()
        if head is not None:
            yield _gauge("jiuzhu_event_store_head", "Last notification id in the store", head)
        if "intake" in components:
            yield from _intake(components["intake"])
        for name in _FOLLOWERS:
            if name in components:
                yield from self._follower(name, components[name], head)
        if "projector" in components:
            yield from _projector(components["projector"])
        if "relay" in components:
            yield from _relay(components["relay"])
        yield from self._lease()
        yield from _every_figure(components)

    def _head(self) -> int | None:
        try:
            with psycopg.connect(self.database_url, connect_timeout=3) as conn:
                row = conn.execute(self._head_query).fetchone()
        except psycopg.Error:
            return None  # the scrape still answers; the head is simply missing
        return int(row[0] or 0) if row else 0

    def _follower(self, name: str, figures: dict[str, Any], head: int | None) -> Iterator[Metric]:
        position = int(figures.get("position", 0))
        yield _gauge(f"jiuzhu_{name}_position", f"Last notification id the {name} did", position)
        if head is None:
            return
        now = time.monotonic()
        if position >= head or name not in self._at_head:
            self._at_head[name] = now
        yield _gauge(
            f"jiuzhu_{name}_lag_events", f"Events the {name} is behind", max(head - position, 0)
        )
        yield _gauge(
            f"jiuzhu_{name}_lag_seconds",
            f"Seconds since the {name} was last at the head",
            now - self._at_head[name] if position < head else 0.0,
        )

    def _lease(self) -> Iterator[Metric]:
        if self.lease is None:
            return
        roles = ",".join(self.lease.roles)
        active = GaugeMetricFamily(
            "jiuzhu_lease_active", "1 while this instance is active, 0 standby", labels=["roles"]
        )
        active.add_metric([roles], 1.0 if self.lease.state == "active" else 0.0)
        yield active
        for what, value in (("takeovers", self.lease.takeovers), ("lost", self.lease.lost)):
            counter = CounterMetricFamily(
                f"jiuzhu_lease_{what}", f"Times this instance's lease was {what}", labels=["roles"]
            )
            counter.add_metric([roles], value)
            yield counter


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _intake(figures: dict[str, Any]) -> Iterator[Metric]:
    outcomes = CounterMetricFamily(
        "jiuzhu_upstream_messages",
        "Upstream messages by outcome (received counts each delivery)",
        labels=["outcome"],
    )
    for outcome in ("received", "applied", "no_effect", "duplicates", "retried"):
        outcomes.add_metric([outcome], float(figures.get(outcome, 0)))
    dead = figures.get("dead_lettered", {})
    outcomes.add_metric(["dead_lettered"], float(sum(dead.values())))
    yield outcomes
    reasons = CounterMetricFamily(
        "jiuzhu_upstream_dead_letters",
        "Upstream messages dead-lettered, by reason",
        labels=["reason"],
    )
    for reason, count in sorted(dead.items()):
        reasons.add_metric([reason], float(count))
    yield reasons


def _projector(figures: dict[str, Any]) -> Iterator[Metric]:
    for name, documentation in (
        ("applied", "Events applied to the read models"),
        ("received", "relief.events messages received"),
        ("batches", "Batches committed"),
        ("batch_seconds", "Seconds spent applying batches"),
        ("dead_lettered", "relief.events messages dead-lettered"),
        ("foreign", "Messages refused: published by another event store"),
        ("recovered", "Events read from the log: the broker did not deliver them"),
    ):
        yield _counter(f"jiuzhu_projector_{name}", documentation, float(figures.get(name, 0)))
    yield _gauge(
        "jiuzhu_projector_halted", "1 once a batch failed unexpectedly", bool(figures.get("halted"))
    )


def _relay(figures: dict[str, Any]) -> Iterator[Metric]:
    for name, documentation in (
        ("published", "Events published to the broker"),
        ("windows", "Windows published and recorded"),
        ("window_seconds", "Seconds spent publishing windows"),
        ("faults", "Broker or database faults the relay resumed after"),
    ):
        yield _counter(f"jiuzhu_relay_{name}", documentation, float(figures.get(name, 0)))


def _every_figure(components: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    figure = GaugeMetricFamily(
        "jiuzhu_component_figure",
        "Every numeric figure a component reports on /health",
        labels=["component", "figure"],
    )
    for component, figures in sorted(components.items()):
        for name, value in sorted(figures.items()):
            if isinstance(value, bool | int | float):
                figure.add_metric([component, name], float(value))
    yield figure
