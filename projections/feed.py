"""Feeding read models straight from the notification log (rebuild, replay, tests)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from eventsourcing.application import Application

from projections.base import Positioned, ReadModel

__all__ = ["catch_up", "log_batches"]


def log_batches(
    app: Application[Any],
    *,
    after: int = 0,
    batch_size: int = 1000,
    stop: int | None = None,
    topics: Sequence[str] = (),
) -> Iterator[list[Positioned]]:
    """Domain events in notification order, a batch at a time, from after a position."""
    position = after
    while True:
        notifications = app.recorder.select_notifications(
            start=position, limit=batch_size, stop=stop, topics=topics, inclusive_of_start=False
        )
        if not notifications:
            return
        yield [(app.mapper.to_domain_event(n), n.id) for n in notifications]
        position = notifications[-1].id


def catch_up(read_model: ReadModel, app: Application[Any], *, batch_size: int = 1000) -> int:
    """Apply every event the read model has not yet seen; how many were applied."""
    applied = 0
    after = read_model.position(app.name)
    for batch in log_batches(app, after=after, batch_size=batch_size):
        applied += read_model.apply(batch, application_name=app.name)
    return applied
