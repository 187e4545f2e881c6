"""Carrying signed checkpoints to the broker while the relay runs: a copy outside PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.audit.checkpoints import mark_published, sign_if_stale, unpublished_checkpoints
from jiuzhu.audit.publish import CHECKPOINTS_STREAM, CHECKPOINTS_SUBJECT, publish_checkpoints

__all__ = ["carry_checkpoints"]

log = structlog.get_logger("jiuzhu.audit")


async def carry_checkpoints(
    app: AuditedCaseWork,
    broker_url: str,
    stopping: asyncio.Event,
    *,
    every: float,
    subject: str = CHECKPOINTS_SUBJECT,
    stream: str = CHECKPOINTS_STREAM,
) -> None:
    """Publish checkpoints not yet on relief.audit.checkpoints, every few seconds, until stopped.

    The store signs checkpoints as it writes (every JIUZHU_CHECKPOINT_EVERY events, and at
    most every JIUZHU_CHECKPOINT_SECONDS while events arrive); when they stop, this signs the
    last ones once that interval has passed (and at once when stopped), then carries them
    out. A checkpoint is marked
    published after the broker acknowledged it, and its message id makes a re-publish after
    a crash harmless.
    """
    while not stopping.is_set():
        await _round(app, broker_url, subject, stream, interval=app.checkpoint_seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), every)
    # Stopping: vouch for the events written since the last checkpoint, whatever its age,
    # so a store at rest is covered outside the database (bounded: a broker that is away
    # must not hold up the shutdown).
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_round(app, broker_url, subject, stream, interval=0.0), 5)


async def _round(
    app: AuditedCaseWork, broker_url: str, subject: str, stream: str, *, interval: float
) -> None:
    """Sign the tail if it is due, then publish what is not on the broker yet."""
    try:
        if app.signer is not None and app.checkpoint_seconds > 0:
            await asyncio.to_thread(sign_if_stale, app.datastore, app.audit, app.signer, interval)
        pending = await asyncio.to_thread(unpublished_checkpoints, app.datastore, app.audit)
        if pending:
            await publish_checkpoints(broker_url, pending, subject=subject, stream=stream)
            ids = [c.checkpoint_id for c in pending]
            await asyncio.to_thread(mark_published, app.datastore, app.audit, ids)
            log.info("checkpoints published", count=len(ids), last=ids[-1])
    except Exception as error:
        log.warning("checkpoints not published yet", error=repr(error))
