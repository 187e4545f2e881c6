"""Helpers of the workbench tests: the app on a test schema, signing in, feeding read models."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from api.app import create_app
from api.server import running_in_thread
from domain.application import CaseWork
from jiuzhu.settings import Settings
from projections.base import read_model_datastore
from projections.feed import catch_up
from projections.registry import READ_MODELS
from tests.conftest import DATABASE_URL

__all__ = ["feed_read_models", "signed_in", "workbench"]


@contextmanager
def workbench(app: CaseWork, data_dir: Path) -> Iterator[httpx.Client]:
    """A client of the real app (API and workbench) served by uvicorn on the test's CaseWork."""
    settings = Settings(data_dir=data_dir)
    with (
        running_in_thread(create_app(settings, casework=app)) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


def signed_in(client: httpx.Client, actor: str) -> httpx.Client:
    """The client signed in as a demo staff member (the session cookie set)."""
    response = client.post("/web/login", data={"actor": actor})
    assert response.status_code == 303, response.text
    return client


def feed_read_models(app: CaseWork, schema: str) -> None:
    """Bring every read model up to the head of the log, as the projector would."""
    datastore = read_model_datastore(DATABASE_URL, schema=schema, pool_size=1)
    try:
        for model_class in READ_MODELS:
            model = model_class(datastore)
            model.create_table()
            catch_up(model, app)
    finally:
        datastore.close()
