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


def test_serve_refuses_a_database_of_record_without_keys(
    pg_schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from jiuzhu.cli import app as cli

    monkeypatch.delenv("JIUZHU_ALLOW_GENERATED_KEYS")
    monkeypatch.delenv("JIUZHU_MASTER_KEY", raising=False)
    monkeypatch.setenv("JIUZHU_DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("JIUZHU_DB_SCHEMA", pg_schema)
    monkeypatch.setenv("JIUZHU_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("JIUZHU_BROKER_URL", "nats://127.0.0.1:4222")

    result = CliRunner().invoke(cli, ["serve", "relay"])

    assert result.exit_code == 1
    assert "JIUZHU_MASTER_KEY and JIUZHU_SIGNING_KEY_FILE must be set" in result.output
