"""The intake as a long-running role: started, watched, started again when its broker
connection is gone for good, and stopped within a bounded time.

nats-py reconnects after a network fault, but any `-ERR` from the server (a message over
its size limit, say) closes the client for good: FastStream's pull loop then spun at 100%
CPU on the closed connection, /health timed out and SIGTERM went unheeded. The runner
notices a closed connection within a second, says so in its health, and builds the intake
anew (a new broker, a new connection); messages left unacked meanwhile come back from
the durable consumer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import structlog
from faststream import FastStream

from consumers.brokers import AnyBroker, broker_connected, nats_connection
from consumers.intake import IntakeStats

__all__ = ["IntakeRunner"]

log = structlog.get_logger("jiuzhu.intake")

# How often the connection is looked at; how long a stop may take before it is abandoned.
WATCH_SECONDS = 1.0
STOP_SECONDS = 10.0


class IntakeRunner:
    """Runs an intake built by `make`; rebuilds it when its connection closed for good."""

    def __init__(
        self,
        make: Callable[[], tuple[AnyBroker, FastStream]],
        stats: IntakeStats,
    ) -> None:
        self.make = make
        self.stats = stats
        self.broker: AnyBroker | None = None
        self.app: FastStream | None = None
        self.restarts = 0

    async def start(self) -> None:
        """Build and start the intake (declarations, then the subscriber)."""
        self.broker, self.app = self.make()
        await self.app.start()

    def connected(self) -> bool:
        """Whether the broker connection is up (other brokers: assumed, FastStream watches)."""
        if self.broker is None:
            return False
        return broker_connected(self.broker)

    def closed_for_good(self) -> bool:
        """A NATS client that will not reconnect by itself."""
        connection = nats_connection(self.broker) if self.broker is not None else None
        return connection is not None and bool(connection.is_closed)

    def consuming(self) -> bool:
        """Connected, and every subscriber runs with none of its tasks dead."""
        if self.broker is None or not self.connected():
            return False
        subscribers: list[Any] = list(self.broker.subscribers)
        return bool(subscribers) and all(
            s.running and not any(t.done() for t in getattr(s, "tasks", [])) for s in subscribers
        )

    def degraded(self) -> bool:
        """Waiting out an outage: the broker reconnecting, or the database refusing."""
        return not self.connected() or self.stats.stalled()

    async def run(self, stopping: asyncio.Event) -> None:
        """Watch the connection until stopping; rebuild the intake when it closed for good."""
        while not stopping.is_set():
            with suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), WATCH_SECONDS)
            if stopping.is_set() or not (self.broker is None or self.closed_for_good()):
                continue
            log.error("intake broker connection closed for good; starting the intake again")
            await self.stop()
            try:
                await self.start()
            except Exception as error:  # the broker still unreachable: next turn again
                log.warning("intake not started again yet", error=repr(error))
                self.broker = self.app = None
                continue
            self.restarts += 1

    async def stop(self) -> None:
        """Stop the intake within STOP_SECONDS, whatever state its connection is in."""
        app, self.app = self.app, None
        if app is None:
            return
        try:
            await asyncio.wait_for(app.stop(), STOP_SECONDS)
        except Exception as error:  # a dead connection must not hold up a SIGTERM
            log.warning("intake did not stop cleanly", error=repr(error))
