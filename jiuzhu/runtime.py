"""Where the service's servers are: configured URLs, or embedded servers started on demand."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from domain.application import CaseWork
from jiuzhu.bootstrap import casework
from jiuzhu.settings import Settings

__all__ = ["Endpoints", "endpoints", "open_casework"]


@dataclass(frozen=True)
class Endpoints:
    """The database and broker a command runs against."""

    database_url: str
    broker_url: str | None
    embedded: bool


@contextmanager
def endpoints(settings: Settings, *, broker: bool = False) -> Iterator[Endpoints]:
    """The configured servers, or embedded ones in the data directory, stopped on exit."""
    from jiuzhu.embedded import embedded_nats, embedded_postgres  # only when needed

    with ExitStack() as stack:
        database_url = settings.database_url
        embedded = database_url is None
        if database_url is None:
            database_url = stack.enter_context(embedded_postgres(settings.data_dir))
        broker_url = settings.broker_url
        if broker and broker_url is None:
            broker_url = stack.enter_context(embedded_nats(settings.data_dir))
            embedded = True
        yield Endpoints(database_url=database_url, broker_url=broker_url, embedded=embedded)


@contextmanager
def open_casework(settings: Settings, database_url: str) -> Iterator[CaseWork]:
    """The CaseWork application on a database, closed on exit."""
    app = casework(
        database_url,
        schema=settings.db_schema,
        pool_size=settings.pool_size,
        settings=settings,
        embedded=settings.database_url is None,
    )
    try:
        yield app
    finally:
        app.close()
