"""Processes started at once on a fresh database create its tables one after another."""

from __future__ import annotations

import threading
from typing import Any
from uuid import uuid4

import psycopg
import pytest

from consumers.relay import RelayPosition
from jiuzhu.bootstrap import casework
from projections.base import read_model_datastore
from projections.registry import READ_MODELS
from tests.conftest import DATABASE_URL

pytestmark = pytest.mark.postgres


def start_like_a_process(schema: str, role: str, errors: list[BaseException]) -> None:
    """What each `jiuzhu serve <role>` does first on its database: create what it needs."""
    try:
        app = casework(DATABASE_URL, schema=schema, pool_size=2)
        try:
            if role == "projector":
                datastore = read_model_datastore(DATABASE_URL, schema=schema)
                try:
                    for model_class in READ_MODELS:
                        model_class(datastore).create_table()
                finally:
                    datastore.close()
            elif role == "relay":
                recorder: Any = app.recorder
                RelayPosition(recorder, "nats:T").create_table()
        finally:
            app.close()
    except BaseException as error:
        errors.append(error)


def test_three_processes_starting_at_once_on_a_fresh_schema_all_start() -> None:
    # Before the DDL lock, about one start in six lost a process to UniqueViolation.
    for _ in range(3):
        schema = f"t_{uuid4().hex[:12]}"  # not created: the processes create it
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=start_like_a_process, args=(schema, role, errors))
            for role in ("intake", "relay", "projector")
        ]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
        finally:
            with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        assert errors == []
