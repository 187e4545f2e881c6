"""Fixtures: a CaseWork application on the test machine's real PostgreSQL, one schema per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
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


@pytest.fixture
def pg_schema() -> Iterator[str]:
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
def app(pg_schema: str) -> Iterator[CaseWork]:
    """CaseWork on PostgreSQL in its own schema."""
    application = casework(DATABASE_URL, schema=pg_schema)
    try:
        yield application
    finally:
        application.close()
