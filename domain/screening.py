"""Data comparison batches: what a batch compared, and how its hits are named.

A screening batch compares departments' extracts with the monitored population; each hit
enters the intake as an upstream message whose CloudEvents `id` is `batch/rule/household`
and whose correlation id is the batch. `ScreeningBatch.Compared` records, once per batch,
the records compared per source, the hits per rule and the rows refused per file, so the
batch report can be rebuilt from the history like every other.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from domain.provenance import Provenance

__all__ = ["HIT_SOURCE", "ScreeningBatch", "hit_id", "hit_of", "validate_batch_name"]

# The CloudEvents source of every screening hit (the actor its events record).
HIT_SOURCE = "/jiuzhu/screening"
_CAUSATION = f"upstream:{HIT_SOURCE}/"
_BATCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_NAMESPACE = uuid5(NAMESPACE_URL, "https://jiuzhu.example/screening-batch")


def validate_batch_name(batch: str) -> str:
    """A batch name (letters, digits, . _ -; at most 64), or ValueError naming it."""
    if not _BATCH.match(batch):
        msg = f"batch {batch!r} is not a batch name: letters, digits, '.', '_', '-' (at most 64)"
        raise ValueError(msg)
    return batch


def hit_id(batch: str, rule: str, household_id: str) -> str:
    """The CloudEvents id of a hit: the same on every run of the batch."""
    return f"{batch}/{rule}/{household_id}"


def hit_of(causation_id: str) -> tuple[str, str, str] | None:
    """(batch, rule, household) of an event caused by a screening hit, else None."""
    if not causation_id.startswith(_CAUSATION):
        return None
    key = causation_id[len(_CAUSATION) :]
    # The message key percent-encodes '/' and '%' in the id (consumers.contracts.
    # message_key_of); keys recorded before that carry the id as it is.
    separator = "%2F" if "%2F" in key else "/"
    parts = key.split(separator, 2)
    if len(parts) != 3:
        return None
    if separator == "%2F":
        parts = [part.replace("%2F", "/").replace("%25", "%") for part in parts]
    return parts[0], parts[1], parts[2]


class ScreeningBatch(Aggregate):
    """One data comparison batch, recorded once whatever the number of runs."""

    class Compared(Aggregate.Created):
        """The batch was compared: records per source, hits per rule, rows refused per file."""

        batch: str
        as_of: date
        records: dict[str, int]
        hits: dict[str, int]
        rejected: dict[str, int]
        thresholds: dict[str, float]
        actor: str
        role: str
        reason: str
        occurred_at: datetime
        causation_id: str
        correlation_id: str

    @staticmethod
    def id_for(batch: str) -> UUID:
        """The batch's aggregate id: a second record of the same batch conflicts."""
        return uuid5(_NAMESPACE, batch)

    @classmethod
    def compare(
        cls,
        batch: str,
        *,
        as_of: date,
        records: dict[str, int],
        hits: dict[str, int],
        rejected: dict[str, int],
        thresholds: dict[str, float],
        by: Provenance,
    ) -> ScreeningBatch:
        """Record a batch's comparison."""
        fields: dict[str, Any] = by.event_fields()
        return cls._create(
            cls.Compared,
            id=cls.id_for(validate_batch_name(batch)),
            batch=batch,
            as_of=as_of,
            records=dict(records),
            hits=dict(hits),
            rejected=dict(rejected),
            thresholds={k: float(v) for k, v in thresholds.items()},
            **fields,
        )
