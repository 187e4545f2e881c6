"""No path writes events without their chain records; no database of record with made-up keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from eventsourcing.persistence import IntegrityError

from domain.application import CaseWork
from jiuzhu.bootstrap import MissingKeysError, casework, eventstore_env
from jiuzhu.settings import Settings
from tests.conftest import DATABASE_URL
from tests.stories import opened
from tests.test_audit_support import audit_settings

pytestmark = pytest.mark.postgres


def test_the_plain_casework_cannot_write_into_an_audited_store(
    pg_schema: str, tmp_path: Path
) -> None:
    audited = casework(DATABASE_URL, schema=pg_schema, settings=audit_settings(tmp_path))
    plain = CaseWork(env=eventstore_env(DATABASE_URL, schema=pg_schema))
    try:
        with pytest.raises(IntegrityError, match="casework_events_chained"):
            opened(plain)
        assert audited.recorder.max_notification_id() in (None, 0)
        opened(audited)  # the audited application writes as before
    finally:
        plain.close()
        audited.close()


def test_a_database_of_record_needs_both_keys_configured(
    pg_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JIUZHU_ALLOW_GENERATED_KEYS")
    settings = Settings(database_url=DATABASE_URL, data_dir=tmp_path)
    with pytest.raises(MissingKeysError, match="JIUZHU_MASTER_KEY and JIUZHU_SIGNING_KEY_FILE"):
        casework(DATABASE_URL, schema=pg_schema, settings=settings)
    assert not (tmp_path / "keys").exists(), "no key was generated"
    # The embedded database keeps its keys in the data directory, as the demo does.
    casework(DATABASE_URL, schema=pg_schema, settings=settings, embedded=True).close()
