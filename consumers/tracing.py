"""OpenTelemetry traces that follow one upstream message: intake -> events -> relay -> projector.

Off by default: nothing is traced, nothing is written, until `configure` is given a tracer
provider (`jiuzhu serve` does so when JIUZHU_OTLP_ENDPOINT is set, exporting over OTLP/HTTP).

The intake's span continues the producer's trace when the CloudEvent carries the
distributed-tracing extension (`traceparent`: in the envelope in structured mode, a
`ce-traceparent` header in binary mode) or a W3C `traceparent` header. Events are stored
without trace context (they record the domain, not the plumbing): the intake keeps the
span's context per causation id in a small table, the relay looks it up for the events it
publishes (their `causation-id` header), continues the trace and passes it on in a
`traceparent` header, and the projector's span continues it from there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError
from eventsourcing.postgres import PostgresDatastore
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from psycopg.sql import SQL, Identifier

__all__ = [
    "TRACEPARENT",
    "TraceContexts",
    "configure",
    "context_of",
    "enabled",
    "observe",
    "otlp_provider",
    "provider",
    "start_span",
    "traceparent_of",
]

TRACEPARENT = "traceparent"
_PROPAGATOR = TraceContextTextMapPropagator()
_tracer: Tracer | None = None
_provider: TracerProvider | None = None


def configure(provider: TracerProvider | None) -> None:
    """Trace with this provider from now on (None: stop tracing)."""
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer("jiuzhu") if provider is not None else None


def enabled() -> bool:
    """Whether spans are recorded at all (the hot paths skip every step when not)."""
    return _tracer is not None


def provider() -> TracerProvider | None:
    """The configured provider (FastStream's telemetry middleware uses it too)."""
    return _provider


def otlp_provider(endpoint: str, service_name: str) -> TracerProvider:
    """A provider exporting over OTLP/HTTP in batches (opentelemetry-exporter-otlp-proto-http)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    made = TracerProvider(resource=Resource.create({"service.name": service_name}))
    made.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return made


def observe(broker: Any) -> None:
    """Put FastStream's OpenTelemetry middleware on a broker when tracing is on."""
    if _provider is None:
        return
    from faststream.kafka import KafkaBroker
    from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
    from faststream.nats import NatsBroker
    from faststream.nats.opentelemetry import NatsTelemetryMiddleware
    from faststream.rabbit import RabbitBroker
    from faststream.rabbit.opentelemetry import RabbitTelemetryMiddleware
    from faststream.redis.opentelemetry import RedisTelemetryMiddleware

    middleware: Any = RedisTelemetryMiddleware
    for kind, chosen in (
        (NatsBroker, NatsTelemetryMiddleware),
        (RabbitBroker, RabbitTelemetryMiddleware),
        (KafkaBroker, KafkaTelemetryMiddleware),
    ):
        if isinstance(broker, kind):
            middleware = chosen
    broker.insert_middleware(middleware(tracer_provider=_provider))


def context_of(traceparent: str | None) -> Context | None:
    """The remote context a traceparent names (None when absent or malformed)."""
    if not traceparent:
        return None
    context = _PROPAGATOR.extract({TRACEPARENT: traceparent})
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def start_span(name: str, parent: str | None, **attributes: Any) -> Span:
    """A span continuing the trace of a traceparent (a new trace when there is none)."""
    assert _tracer is not None
    return _tracer.start_span(name, context=context_of(parent), attributes=attributes)


def traceparent_of(span: Span) -> str:
    """The W3C traceparent that continues a span's trace."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get(TRACEPARENT, "")


def header(headers: Mapping[str, Any], name: str = TRACEPARENT) -> str | None:
    """A header's value as text, whatever its case and encoding."""
    for key, value in headers.items():
        if key.lower() == name:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


class TraceContexts:
    """Trace context per causation id, in the event store's schema (written only when on)."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore
        table = Identifier(datastore.schema or "public", "trace_context")
        self._create = SQL(
            "CREATE TABLE IF NOT EXISTS {0} (causation_id text PRIMARY KEY, "
            "traceparent text NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now())"
        ).format(table)
        self._insert = SQL(
            "INSERT INTO {0} (causation_id, traceparent) VALUES (%s, %s) ON CONFLICT DO NOTHING"
        ).format(table)
        self._select = SQL(
            "SELECT causation_id, traceparent FROM {0} WHERE causation_id = ANY(%s)"
        ).format(table)
        # Traces are for the recent past: a day is plenty, and the table stays small.
        self._prune = SQL("DELETE FROM {0} WHERE recorded_at < now() - interval '1 day'").format(
            table
        )
        self._created = False

    def record(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Keep (causation id, traceparent) pairs."""
        if not pairs:
            return
        self._ensure()
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SET LOCAL synchronous_commit = off")  # a lost trace link is fine
            curs.executemany(self._insert, list(pairs))

    def find(self, causation_ids: Iterable[str]) -> dict[str, str]:
        """The traceparents kept for some causation ids."""
        wanted = sorted({c for c in causation_ids if c})
        if not wanted:
            return {}
        self._ensure()
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._select, (wanted,))
            return {row["causation_id"]: row["traceparent"] for row in curs.fetchall()}

    def prune(self) -> None:
        """Forget trace links older than a day."""
        self._ensure()
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._prune)

    def _ensure(self) -> None:
        if self._created:
            return
        try:
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(self._create)
        except IntegrityError:  # created at the same moment by another process: there now
            pass
        self._created = True
