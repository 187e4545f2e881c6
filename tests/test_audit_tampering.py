"""Tampering with the events table by plain SQL is found, and named by case and version."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from psycopg.sql import SQL, Identifier
from typer.testing import CliRunner

from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.audit.checkpoints import list_checkpoints, sign_if_stale
from jiuzhu.audit.recorder import ChainedApplicationRecorder
from jiuzhu.bootstrap import casework
from jiuzhu.cli import app as cli
from jiuzhu.settings import Settings
from tests.conftest import DATABASE_URL
from tests.stories import enrolled, opened, pay
from tests.test_audit_support import (  # noqa: F401
    audit_settings,
    audited,
    server_time_zone,
    settings,
    verify,
)

pytestmark = pytest.mark.postgres

Tamper = Callable[[psycopg.Cursor[Any], Identifier, UUID, UUID], None]


def two_cases(app: AuditedCaseWork) -> tuple[UUID, UUID]:
    """An enrolled case paid three months (versions 1-9, paid at 7-9), and another just opened."""
    case_id = enrolled(app)
    for month in ("2023-04", "2023-05", "2023-06"):
        pay(app, case_id, month)
    return case_id, opened(app)


def sql_on_events(app: AuditedCaseWork, tamper: Tamper, case_id: UUID, other: UUID) -> None:
    events = Identifier(app.audit.schema, app.audit.events_table)
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn, conn.cursor() as curs:
        tamper(curs, events, case_id, other)


def update_state(curs: Any, events: Identifier, case: UUID, other: UUID) -> None:
    curs.execute(
        SQL(
            "UPDATE {0} SET state = convert_to(replace(convert_from(state, 'UTF8'),"
            " '\"amount_fen\":50000', '\"amount_fen\":90000'), 'UTF8')"
            " WHERE originator_id = %s AND originator_version = 7"
        ).format(events),
        (case,),
    )


def test_an_untouched_store_passes_with_signed_checkpoints(
    audited: AuditedCaseWork,  # noqa: F811
    settings: Settings,  # noqa: F811
) -> None:
    two_cases(audited)
    report = verify(audited, settings)
    assert report.ok, report.findings
    assert report.events == audited.recorder.max_notification_id()
    assert report.checkpoints >= 2
    assert report.unverified_signatures == 0


def test_removing_the_tail_from_both_tables_breaks_the_signed_checkpoint(
    audited: AuditedCaseWork,  # noqa: F811
    settings: Settings,  # noqa: F811
) -> None:
    two_cases(audited)
    last = list_checkpoints(audited.datastore, audited.audit)[-1].last_notification_id
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        for table in (audited.audit.events_table, audited.audit.chain_table):
            conn.execute(
                SQL("DELETE FROM {0} WHERE notification_id >= %s").format(
                    Identifier(audited.audit.schema, table)
                ),
                (last,),
            )
    report = verify(audited, settings)
    assert [f.kind for f in report.findings] == ["checkpoint"]
    assert "tail removed" in report.findings[0].detail


def test_verify_command_exits_non_zero_and_names_the_row(
    audited: AuditedCaseWork,  # noqa: F811
    settings: Settings,  # noqa: F811
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case_id, other = two_cases(audited)
    monkeypatch.setenv("JIUZHU_DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("JIUZHU_DB_SCHEMA", pg_schema)
    monkeypatch.setenv("JIUZHU_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("JIUZHU_ACTOR", "auditor-7")
    monkeypatch.setenv("JIUZHU_ROLE", "auditor")
    runner = CliRunner()

    clean = runner.invoke(cli, ["audit", "verify"])
    assert clean.exit_code == 0, clean.output
    assert "ok:" in clean.output

    sql_on_events(audited, update_state, case_id, other)
    found = runner.invoke(cli, ["audit", "verify"])
    assert found.exit_code == 1
    assert f"changed: case {case_id} version 7" in found.output

    refused = runner.invoke(cli, ["audit", "verify", "--role", "upstream_system"])
    assert refused.exit_code == 1
    assert "may not verify audit trail" in refused.output


def delete_case_whole(app: AuditedCaseWork, case_id: UUID) -> None:
    """Delete every events and chain row of a case, as an administrator could."""
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        for table in (app.audit.events_table, app.audit.chain_table):
            conn.execute(
                SQL("DELETE FROM {0} WHERE originator_id = %s").format(
                    Identifier(app.audit.schema, table)
                ),
                (case_id,),
            )


def test_a_case_deleted_whole_is_named_not_another(
    audited: AuditedCaseWork,  # noqa: F811
    settings: Settings,  # noqa: F811
) -> None:
    case_id, other = two_cases(audited)
    delete_case_whole(audited, case_id)

    by_case = verify(audited, settings, case_id=case_id)
    assert [(f.kind, f.case_id) for f in by_case.findings] == [("vanished", str(case_id))]
    whole = verify(audited, settings)
    assert ("vanished", str(case_id)) in {(f.kind, f.case_id) for f in whole.findings}
    assert str(other) not in {f.case_id for f in whole.findings}, whole.findings

    unknown = verify(audited, settings, case_id=uuid4())
    assert [f.kind for f in unknown.findings] == ["unknown"]


def test_checkpoints_are_signed_on_time_too_and_verify_counts_the_tail(
    pg_schema: str, tmp_path: Path
) -> None:
    timed = audit_settings(tmp_path, checkpoint_every=1_000, checkpoint_seconds=60)
    app = casework(DATABASE_URL, schema=pg_schema, settings=timed)
    assert isinstance(app, AuditedCaseWork)
    recorder = app.recorder
    assert isinstance(recorder, ChainedApplicationRecorder)
    now = [datetime.now(UTC)]
    recorder.clock = lambda: now[0]
    try:
        opened(app)  # a store far below 1,000 events is vouched for all the same
        assert len(list_checkpoints(app.datastore, app.audit)) == 1
        opened(app)  # within the minute: not again
        assert len(list_checkpoints(app.datastore, app.audit)) == 1
        report = verify(app, timed)
        assert report.ok, report.findings
        assert report.uncovered == 3  # the second case, its household and index entry
        assert sign_if_stale(app.datastore, app.audit, recorder.signer, 3_600) is None  # type: ignore[arg-type]

        now[0] += timedelta(seconds=61)
        opened(app)
        assert len(list_checkpoints(app.datastore, app.audit)) == 2
        assert verify(app, timed).uncovered == 0

        opened(app)  # events stop here: the courier signs them once the interval passed
        later = now[0] + timedelta(seconds=60)
        assert sign_if_stale(app.datastore, app.audit, recorder.signer, 60, later) is not None  # type: ignore[arg-type]
        assert verify(app, timed).uncovered == 0
    finally:
        app.close()
