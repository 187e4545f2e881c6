"""RabbitMQ deliveries taken in queue order, in batches, though handled concurrently.

aiormq hands each delivery to a task of its own, so FastStream handlers of one queue run
concurrently and can finish out of turn: an alert and the visit report right behind it
could be applied report first (and the report refused: no case yet). Delivery tags are
consecutive on a channel, so handlers only add their delivery here, and one consumer
takes unbroken runs of tags: queue order, a batch at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["DeliveryRuns"]

M = TypeVar("M")


class DeliveryRuns(Generic[M]):
    """Deliveries of one channel by delivery tag; next_run gives the next unbroken run."""

    def __init__(
        self,
        batch_size: int,
        tag_of: Callable[[M], Any],
        *,
        skip_missing_after: float | None = None,
        channel_of: Callable[[M], object] | None = None,
    ) -> None:
        """`skip_missing_after`: seconds after which a tag that never showed up (its handler
        failed before adding it) is passed over; None waits for it (a consumer acking
        runs with `multiple` must not ack past a delivery it never saw). `channel_of`:
        the channel a delivery came on; deliveries held from an earlier channel (closed,
        reopened after a reconnect: tags start again) are dropped, RabbitMQ redelivers them."""
        self.batch_size = batch_size
        self._tag_of = tag_of
        self._skip_after = skip_missing_after
        self._channel_of = channel_of
        self._channel: object = None
        self.arrived: dict[int, M] = {}
        self.next_tag: int | None = None
        self._ready = asyncio.Event()

    def add(self, message: M) -> None:
        """A delivery arrived, not yet acknowledged."""
        if self._channel_of is not None:
            channel = self._channel_of(message)
            if channel is not self._channel:
                self.drain()
                self._channel = channel
        self.arrived[int(self._tag_of(message))] = message
        self._ready.set()

    def __len__(self) -> int:
        return len(self.arrived)

    async def next_run(self) -> list[M]:
        """The next deliveries in tag order (up to a batch), once the first is there."""
        while True:
            run = self._take()
            if run:
                return run
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), self._skip_after)
            except TimeoutError:
                if self.arrived:  # the next tag is not coming: go on from what is here
                    self.next_tag = min(self.arrived)

    def drain(self) -> list[M]:
        """Every delivery held, in tag order, none kept (they are being given back)."""
        held = [self.arrived[tag] for tag in sorted(self.arrived)]
        self.arrived.clear()
        self.next_tag = None  # they come back with new tags: start at the lowest seen
        return held

    def _take(self) -> list[M]:
        if not self.arrived:
            return []
        lowest = min(self.arrived)
        if self.next_tag is None or lowest < self.next_tag:  # first delivery, or a new channel
            self.next_tag = lowest
        run: list[M] = []
        while self.next_tag in self.arrived and len(run) < self.batch_size:
            run.append(self.arrived.pop(self.next_tag))
            self.next_tag += 1
        return run
