"""`jiuzhu replay` exits 0 only when the live tables equal their rebuild; it names differences."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from typer.testing import CliRunner

from domain.application import CaseWork
from jiuzhu.cli import app as cli
from projections.base import ReadModel
from projections.feed import catch_up
from tests.conftest import DATABASE_URL
from tests.report_stories import province, report_models

pytestmark = pytest.mark.postgres


@pytest.fixture
def env(pg_schema: str) -> dict[str, str]:
    return {"JIUZHU_DATABASE_URL": DATABASE_URL, "JIUZHU_DB_SCHEMA": pg_schema}


@pytest.fixture
def live(app: CaseWork, pg_schema: str) -> Iterator[list[ReadModel]]:
    province(app)
    models = report_models(pg_schema)
    for model in models:
        catch_up(model, app)
    yield models
    models[0].datastore.close()


def replay(env: dict[str, str], *names: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["replay", *names], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_replay_of_untouched_read_models_is_equal(env: dict[str, str], live: object) -> None:
    code, output = replay(env, "funnel", "payments_ledger", "headline")
    assert code == 0, output
    assert output.count("equal") == 3


def test_replay_reports_an_altered_live_row_and_fails(
    env: dict[str, str], pg_schema: str, live: object
) -> None:
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(
            f'UPDATE "{pg_schema}".payments_ledger SET amount_fen = amount_fen + 1 '
            "WHERE region = '610523' AND month = '2023-04'"
        )
        conn.execute(f"DELETE FROM \"{pg_schema}\".funnel WHERE region = '610104'")
    code, output = replay(env)
    assert code == 1
    assert "differs payments_ledger" in output
    assert "changed" in output
    assert "amount_fen: live=50001 rebuilt=50000" in output
    assert "differs funnel" in output
    assert "only rebuilt" in output
    assert "equal   headline" in output


def test_replay_of_an_unknown_read_model_is_refused(env: dict[str, str]) -> None:
    code, output = replay(env, "nonsense")
    assert code == 1
    assert "unknown read model" in output


def test_rebuild_command_restores_an_altered_table(
    env: dict[str, str], pg_schema: str, live: object
) -> None:
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(f'UPDATE "{pg_schema}".funnel SET paid = 99')
    result = CliRunner().invoke(cli, ["rebuild", "funnel"], env=env)
    assert result.exit_code == 0, result.output
    assert "rebuilt funnel" in result.output
    assert replay(env, "funnel")[0] == 0
