"""Shared set-up for the audit and privacy tests: an audited CaseWork with its own keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.audit.signing import signer_from_settings
from jiuzhu.audit.verify import VerifyReport, verify_log
from jiuzhu.bootstrap import casework
from jiuzhu.settings import Settings
from tests.conftest import DATABASE_URL


def audit_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings whose keys live in a test's own directory."""
    values: dict[str, object] = {
        "data_dir": data_dir,
        "checkpoint_every": 4,
        "key_cache_seconds": 0,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with keys generated in tmp_path/keys."""
    return audit_settings(tmp_path)


# The audit tests run twice: with the server's sessions in UTC, and in China's time zone, as
# a provincial server would be (libpq sends PGTZ as the session's time zone).
SERVER_TIME_ZONES = ["UTC", "Asia/Shanghai"]


@pytest.fixture(params=SERVER_TIME_ZONES)
def server_time_zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every PostgreSQL session the test opens uses this time zone."""
    zone: str = request.param
    monkeypatch.setenv("PGTZ", zone)
    return zone


@pytest.fixture
def audited(pg_schema: str, settings: Settings, server_time_zone: str) -> Iterator[AuditedCaseWork]:
    """The audited CaseWork on its own schema, with checkpoints every 4 events."""
    app = casework(DATABASE_URL, schema=pg_schema, settings=settings)
    assert isinstance(app, AuditedCaseWork)
    try:
        yield app
    finally:
        app.close()


def verify(app: AuditedCaseWork, settings: Settings, **kwargs: object) -> VerifyReport:
    """Verify the whole log (or a case) trusting the test's signing key."""
    signer = signer_from_settings(settings)
    return verify_log(
        app.datastore,
        app.audit,
        public_keys={signer.key_id: signer.public_key},
        **kwargs,  # type: ignore[arg-type]
    )
