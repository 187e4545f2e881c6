"""CaseWork with the audit trail wired in: chained recorder, personal-data mapper, key shredding."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.application import ProcessingEvent
from eventsourcing.domain import (
    BaseAggregate,
    CollectEventsProtocol,
    DomainEvent,
    DomainEventProtocol,
    MutableOrImmutableAggregate,
)
from eventsourcing.persistence import ApplicationRecorder, EventStore, Mapper, Recording
from eventsourcing.postgres import PostgresDatastore, PostgresFactory
from eventsourcing.utils import EnvType

from domain.application import CaseWork
from domain.case import Case
from domain.household import Household
from jiuzhu.audit.recorder import ChainedApplicationRecorder
from jiuzhu.audit.signing import Signer
from jiuzhu.audit.snapshots import SealedSnapshotRecorder
from jiuzhu.audit.tables import AuditTables
from jiuzhu.privacy.blind_index import BlindIndex
from jiuzhu.privacy.keys import DataKeyStore
from jiuzhu.privacy.mapper import PersonalDataMapper

__all__ = ["AuditedCaseWork", "collect_events"]


class AuditedCaseWork(CaseWork):
    """The CaseWork application every entry point gets from bootstrap.casework()."""

    # Same name, same tables and settings prefix as plain CaseWork.
    name = "CaseWork"

    def __init__(
        self,
        env: EnvType | None = None,
        *,
        master_key: bytes,
        signer: Signer | None = None,
        checkpoint_every: int = 0,
        checkpoint_seconds: float = 0.0,
        key_cache_seconds: float = 5.0,
    ) -> None:
        self._master_key = master_key
        self.signer = signer
        self._checkpoint_every = checkpoint_every
        self._checkpoint_seconds = checkpoint_seconds
        self._key_cache_seconds = key_cache_seconds
        super().__init__(env)

    @property
    def datastore(self) -> PostgresDatastore:
        """The event store's connection pool."""
        factory = self.factory
        if not isinstance(factory, PostgresFactory):
            raise TypeError("the audit trail needs the PostgreSQL event store")
        return factory.datastore

    @property
    def checkpoint_seconds(self) -> float:
        """At most this long between checkpoints while events arrive (0: by count only)."""
        return self._checkpoint_seconds

    @property
    def audit(self) -> AuditTables:
        """The chain and checkpoint tables beside the events table."""
        assert isinstance(self.recorder, ChainedApplicationRecorder)
        return self.recorder.audit

    def construct_mapper(self) -> Mapper[UUID]:
        self.data_keys = DataKeyStore(
            self.datastore,
            table=f"{self.name.lower()}_data_keys",
            master_key=self._master_key,
            cache_seconds=self._key_cache_seconds,
        )
        # Exact search by id-card number, kept in the events' transactions (never plaintext).
        self.blind_index = BlindIndex(
            self.datastore, table=f"{self.name.lower()}_blind_index", master_key=self._master_key
        )
        if self._create_tables():
            self.data_keys.create_table()
            self.blind_index.create_table()
        return PersonalDataMapper(
            transcoder=self.construct_transcoder(),
            keys=self.data_keys,
            compressor=self.factory.compressor(),
            cipher=self.factory.cipher(),
        )

    def construct_recorder(self) -> ApplicationRecorder:
        recorder = ChainedApplicationRecorder(
            self.datastore,
            events_table_name=f"{self.name.lower()}_events",
            signer=self.signer,
            checkpoint_every=self._checkpoint_every,
            checkpoint_seconds=self._checkpoint_seconds,
            before_insert=[self.data_keys.insert_new_keys],
            hooks=[self.data_keys.shred_on_erasure, self.blind_index.on_insert],
        )
        if self._create_tables():
            recorder.create_table()
        return recorder

    def construct_snapshot_store(self) -> EventStore[UUID]:
        # Snapshots are sealed to the chain and checked before use (jiuzhu.audit.snapshots).
        recorder = SealedSnapshotRecorder(
            self.datastore,
            events_table_name=f"{self.name.lower()}_snapshots",
            audit=self.audit,
            signer=self.signer,
        )
        if self._create_tables():
            recorder.create_table()
        return EventStore(mapper=self.mapper, recorder=recorder)

    def save(
        self,
        *objs: MutableOrImmutableAggregate[UUID] | DomainEventProtocol[UUID] | None,
        **kwargs: Any,
    ) -> list[Recording[UUID]]:
        # The library's Application.save, collecting events without its two runtime
        # Protocol isinstance checks per aggregate (~27 us each on Python 3.11).
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        collect_events(processing_event, objs, kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        self.notify(processing_event.events)  # Deprecated (a no-op unless overridden).
        return recordings

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Recording[UUID]]:
        # One save seals its events with keys looked up in one query; keys it has to make
        # are inserted by the recorder in the events' own transaction, not one by one before.
        mapper = self.mapper
        assert isinstance(mapper, PersonalDataMapper)
        # Free text (facts, need) is sealed with the key of the case's household.
        households = {
            aggregate_id: aggregate.household_id
            for aggregate_id, aggregate in processing_event.aggregates.items()
            if isinstance(aggregate, Case)
        }
        with (
            mapper.sealing(processing_event.events, households) as keys,
            self.blind_index.indexing(processing_event.events),
        ):
            recordings = super()._record(processing_event)
        erased = {
            e.household_id
            for e in processing_event.events
            if isinstance(e, Household.PersonalDataErased)
        }
        self.data_keys.stored(k for k in keys.new if k.household_id not in erased)
        return recordings

    def _create_tables(self) -> bool:
        factory: Any = self.factory
        return bool(factory.env_create_table())


# Aggregate classes whose instances the library's protocol checks treat as aggregates.
_AGGREGATE_TYPES: set[type] = set()


def collect_events(
    processing_event: ProcessingEvent[UUID],
    objs: tuple[MutableOrImmutableAggregate[UUID] | DomainEventProtocol[UUID] | None, ...],
    kwargs: dict[str, Any],
) -> None:
    """ProcessingEvent.collect_events, with each aggregate class's protocol checks done once."""
    for obj in objs:
        if isinstance(obj, DomainEvent):  # a dataclass with both fields: the protocol holds
            processing_event.events.append(obj)
            continue
        kind = type(obj)
        if kind not in _AGGREGATE_TYPES:
            if not (
                isinstance(obj, BaseAggregate)
                and not isinstance(obj, DomainEventProtocol)
                and isinstance(obj, CollectEventsProtocol)
            ):
                processing_event.collect_events(obj)
                continue
            _AGGREGATE_TYPES.add(kind)
        aggregate: Any = obj
        processing_event.events.extend(aggregate.collect_events())
        processing_event.aggregates[aggregate.id] = aggregate
    processing_event.saved_kwargs.update(kwargs)
