"""Helpers for the clock's tests: a clock on a test schema, moved by hand."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from uuid import UUID

from domain.application import CaseWork
from domain.case import Case
from processes.clock import Clock, ControlledClock
from projections.base import read_model_datastore
from tests.conftest import DATABASE_URL

CST = timezone(timedelta(hours=8))


def moment(day: str, hour: int = 9) -> datetime:
    """A moment in China time, e.g. moment('2023-03-11')."""
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=CST)


@contextmanager
def clock_on(app: CaseWork, schema: str, now: ControlledClock, **options: int) -> Iterator[Clock]:
    """A clock process manager over a test schema (a fresh instance: a restart)."""
    datastore = read_model_datastore(DATABASE_URL, schema=schema, pool_size=2)
    try:
        yield Clock(app, datastore, now=now, **options)
    finally:
        datastore.close()


def passed(app: CaseWork, case_id: UUID) -> list[Case.DeadlinePassed]:
    """The deadline events of a case, in order."""
    return [e for e in app.history(case_id) if isinstance(e, Case.DeadlinePassed)]
