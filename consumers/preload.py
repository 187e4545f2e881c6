"""Reading what a batch of upstream messages will touch in two queries, not two per message."""

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

__all__ = ["preload"]


def preload(app: CaseWork, unit: Unit, events: Sequence[CloudEvent]) -> None:
    """Give the unit the households and cases a batch's messages name, read in bulk.

    Reading them one by one was most of the intake's time (two queries per message).
    What is read here may change before the unit is saved: the save then conflicts and the
    batch runs again one message at a time, as it would have anyway.
    """
    recorder = app.recorder
    if not isinstance(recorder, PostgresApplicationRecorder):
        return
    households = {
        Household.id_for(str(household_id))
        for event in events
        if (household_id := getattr(event.data, "household_id", None))
    }
    cases = {case_id for event in events if (case_id := getattr(event.data, "case_id", None))}
    found = _read(app, recorder, households | cases)
    open_cases = {
        household.open_case_id
        for household in found.values()
        if isinstance(household, Household) and household.open_case_id is not None
    } - found.keys()
    found |= _read(app, recorder, open_cases)
    unit.adopt(found, absent=(households | cases | open_cases) - found.keys())


def _read(
    app: CaseWork, recorder: PostgresApplicationRecorder, ids: Iterable[UUID]
) -> dict[UUID, Aggregate]:
    wanted = list(ids)
    if not wanted:
        return {}
    query = SQL(
        "SELECT originator_id, originator_version, topic, state FROM {}.{}"
        " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
    ).format(Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name))
    with recorder.datastore.transaction(commit=False) as curs:
        curs.execute(query, (wanted,), prepare=True)
        rows = curs.fetchall()
    histories: dict[UUID, list[Any]] = defaultdict(list)
    for row in rows:
        stored = StoredEvent(
            originator_id=row["originator_id"],
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=bytes(row["state"]),
        )
        histories[row["originator_id"]].append(app.mapper.to_domain_event(stored))
    aggregates: dict[UUID, Aggregate] = {}
    for aggregate_id, history in histories.items():
        aggregate: Any = None
        for event in history:  # as the repository replays them
            aggregate = event.mutate(aggregate)
        aggregates[aggregate_id] = cast(Aggregate, aggregate)
    return aggregates
