"""Reading what a batch of upstream messages touches in one or two queries, not three each."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, cast
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier

from consumers.contracts import CloudEvent
from domain.application import CaseWork, Unit
from domain.household import Household
from domain.receipt import MessageReceipt

__all__ = ["preload"]


def preload(app: CaseWork, unit: Unit, events: Sequence[CloudEvent]) -> set[str]:
    """Give the unit the households and cases a batch's messages name, read in bulk.

    Returns the message keys whose receipts are already stored (duplicates), found by the
    same query. Reading them one by one was most of the intake's time (two queries per
    message, and a receipt check). What is read here may change before the unit is saved:
    the save then conflicts and the batch runs again one message at a time, as it would
    have anyway.
    """
    recorder = app.recorder
    keys = [event.message_key for event in events]
    if not isinstance(recorder, PostgresApplicationRecorder):
        return {key for key in keys if app.has_received(key)}
    receipts = {MessageReceipt.id_for(key): key for key in keys}
    households = {
        Household.id_for(str(household_id))
        for event in events
        if (household_id := getattr(event.data, "household_id", None))
    }
    cases = {case_id for event in events if (case_id := getattr(event.data, "case_id", None))}
    found, stored = _read(app, recorder, households | cases, receipts)
    open_cases = {
        household.open_case_id
        for household in found.values()
        if isinstance(household, Household) and household.open_case_id is not None
    } - found.keys()
    found |= _read(app, recorder, open_cases)[0]
    unit.adopt(found, absent=(households | cases | open_cases) - found.keys())
    return {receipts[receipt_id] for receipt_id in stored}


def _read(
    app: CaseWork,
    recorder: PostgresApplicationRecorder,
    ids: Iterable[UUID],
    receipts: Iterable[UUID] = (),
) -> tuple[dict[UUID, Aggregate], set[UUID]]:
    """The aggregates stored under these ids, and which of the receipt ids are stored."""
    receipt_ids = set(receipts)
    wanted = [*ids, *receipt_ids]
    if not wanted:
        return {}, set()
    query = SQL(
        "SELECT originator_id, originator_version, topic, state FROM {}.{}"
        " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
    ).format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
    # One statement on an autocommit connection: one round trip (a transaction is three).
    with recorder.datastore.cursor() as curs:
        curs.execute(query, (wanted,), prepare=True)
        rows = curs.fetchall()
    histories: dict[UUID, list[Any]] = defaultdict(list)
    stored: set[UUID] = set()
    for row in rows:
        originator_id = row["originator_id"]
        if originator_id in receipt_ids:
            stored.add(originator_id)  # only whether it exists matters
            continue
        event = StoredEvent(
            originator_id=originator_id,
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=bytes(row["state"]),
        )
        histories[originator_id].append(app.mapper.to_domain_event(event))
    aggregates: dict[UUID, Aggregate] = {}
    for aggregate_id, history in histories.items():
        aggregate: Any = None
        for domain_event in history:  # as the repository replays them
            aggregate = domain_event.mutate(aggregate)
        aggregates[aggregate_id] = cast(Aggregate, aggregate)
    return aggregates, stored
