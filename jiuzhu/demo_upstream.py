"""The demo's upstream systems: they publish CloudEvents on NATS, as a real one would."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import nats
import orjson
from nats.aio.client import Client
from nats.js import JetStreamContext

from consumers.contracts import parse_upstream
from consumers.translate import case_id_for
from domain.application import CaseWork

__all__ = ["Upstream", "UpstreamTimeoutError"]

T = TypeVar("T")


class UpstreamTimeoutError(RuntimeError):
    """An upstream message had no effect in time (dead-lettered, or the intake is down)."""


class Upstream:
    """Publishes upstream messages from synchronous demo code and waits for their effect.

    nats-py is asynchronous: its connection lives on an event loop in a thread of its own,
    so the demo's storytellers (plain threads calling CaseWork) can publish and wait.
    """

    def __init__(self, broker_url: str, app: CaseWork, *, prefix: str = "relief.upstream") -> None:
        self.app, self.prefix = app, prefix
        self.published = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._client: Client = self._run(nats.connect(broker_url))
        self._stream: JetStreamContext = self._client.jetstream()
        self._lock = threading.Lock()

    def close(self) -> None:
        """Drain the connection and stop the loop."""
        self._run(self._client.drain())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def publish(
        self,
        kind: str,
        *,
        message_id: str,
        source: str,
        time: datetime,
        correlation_id: str,
        data: dict[str, Any],
    ) -> tuple[str, UUID | None]:
        """Publish one CloudEvent; its message key, and the case it opens (if it opens one)."""
        envelope = {
            "specversion": "1.0",
            "id": message_id,
            "source": source,
            "type": kind,
            "time": time.isoformat(),
            "subject": data.get("household_id"),
            "correlationid": correlation_id,
            "data": data,
        }
        body = orjson.dumps(envelope)
        event = parse_upstream(body)  # the demo's own messages must be valid ones
        self._run(self._stream.publish(f"{self.prefix}.{kind}", body))
        with self._lock:
            self.published += 1
        opens = kind in ("monitoring.alert", "application.submitted")
        return event.message_key, case_id_for(event) if opens else None

    def wait(self, keys: Iterable[str], timeout: float = 60.0) -> None:
        """Block until each message has taken effect (its receipt is in the event store)."""
        waiting = list(keys)
        deadline = self._loop.time() + timeout
        pause = threading.Event()
        delay = 0.005
        while waiting:
            waiting = [key for key in waiting if not self.app.has_received(key)]
            if not waiting:
                return
            if self._loop.time() > deadline:
                raise UpstreamTimeoutError(
                    f"upstream message {waiting[0]} had no effect within {timeout:.0f}s"
                )
            pause.wait(delay)  # back off while the intake works through its queue
            delay = min(delay * 2, 0.1)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=30)
