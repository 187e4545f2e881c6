"""CaseWork with the audit trail wired in: chained recorder, personal-data mapper, key shredding."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, Mapper
from eventsourcing.postgres import PostgresDatastore, PostgresFactory
from eventsourcing.utils import EnvType

from domain.application import CaseWork
from jiuzhu.audit.recorder import ChainedApplicationRecorder
from jiuzhu.audit.signing import Signer
from jiuzhu.audit.tables import AuditTables
from jiuzhu.privacy.keys import DataKeyStore
from jiuzhu.privacy.mapper import PersonalDataMapper

__all__ = ["AuditedCaseWork"]


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
        key_cache_seconds: float = 5.0,
    ) -> None:
        self._master_key = master_key
        self.signer = signer
        self._checkpoint_every = checkpoint_every
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
        if self._create_tables():
            self.data_keys.create_table()
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
            hooks=[self.data_keys.shred_on_erasure],
        )
        if self._create_tables():
            recorder.create_table()
        return recorder

    def _create_tables(self) -> bool:
        factory: Any = self.factory
        return bool(factory.env_create_table())
