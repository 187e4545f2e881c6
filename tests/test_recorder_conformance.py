"""The chained recorders pass the library's own recorder test cases on the real PostgreSQL."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.tests.persistence import (
    ApplicationRecorderTestCase,
    ProcessRecorderTestCase,
    TrackingRecorderTestCase,
)
from psycopg.conninfo import conninfo_to_dict

from jiuzhu.audit.recorder import ChainedApplicationRecorder, ChainedProcessRecorder
from jiuzhu.audit.signing import Signer
from jiuzhu.audit.verify import verify_log
from tests.conftest import DATABASE_URL

pytestmark = pytest.mark.postgres


class _FreshSchema:
    """Each library test gets its own schema (its ids start at 1), verified and dropped after."""

    datastore: PostgresDatastore
    schema: str
    recorder: Any = None

    def setUp(self) -> None:
        self.schema = f"rc_{uuid4().hex[:12]}"
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{self.schema}"')
        params = conninfo_to_dict(DATABASE_URL)
        self.datastore = PostgresDatastore(
            dbname=str(params.get("dbname")),
            host=str(params.get("host")),
            port=str(params.get("port") or "5432"),
            user=str(params.get("user")),
            password=str(params.get("password") or ""),
            schema=self.schema,
            pool_size=4,
            max_overflow=10,
        )

    def tearDown(self) -> None:
        try:
            if self.recorder is not None:
                # Whatever the library's tests wrote, the chain must still verify.
                signer = self.recorder.signer
                report = verify_log(
                    self.datastore,
                    self.recorder.audit,
                    public_keys={signer.key_id: signer.public_key},
                )
                assert report.findings == [], report.findings[:5]
        finally:
            self.datastore.close()
            with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{self.schema}" CASCADE')

    def _chained(self, cls: type[Any], **kwargs: Any) -> Any:
        recorder = cls(
            self.datastore,
            events_table_name="stored_events",
            signer=Signer(Ed25519PrivateKey.generate()),
            checkpoint_every=7,
            **kwargs,
        )
        recorder.create_table()
        self.recorder = recorder
        return recorder


class TestChainedApplicationRecorder(
    _FreshSchema, ApplicationRecorderTestCase[ChainedApplicationRecorder]
):
    def create_recorder(self) -> ChainedApplicationRecorder:
        recorder: ChainedApplicationRecorder = self._chained(ChainedApplicationRecorder)
        return recorder

    def test_insert_subscribe(self) -> None:
        self.optional_test_insert_subscribe()


class TestChainedProcessRecorder(_FreshSchema, ProcessRecorderTestCase):
    def create_recorder(self) -> ChainedProcessRecorder:
        recorder: ChainedProcessRecorder = self._chained(
            ChainedProcessRecorder, tracking_table_name="notification_tracking"
        )
        return recorder


class TestChainedProcessRecorderTracking(_FreshSchema, TrackingRecorderTestCase):
    def create_recorder(self) -> ChainedProcessRecorder:
        recorder: ChainedProcessRecorder = self._chained(
            ChainedProcessRecorder, tracking_table_name="notification_tracking"
        )
        return recorder
