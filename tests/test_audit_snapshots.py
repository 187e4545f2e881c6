"""A forged snapshot is never served: it is checked against its seal, and verify reports it."""

from __future__ import annotations

from uuid import UUID

import psycopg
import pytest
from psycopg.sql import SQL, Identifier

from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.settings import Settings
from tests.conftest import DATABASE_URL
from tests.stories import enrolled, pay
from tests.test_audit_support import audited, server_time_zone, settings, verify  # noqa: F401

pytestmark = pytest.mark.postgres

MONTHS = [f"{y}-{m:02d}" for y in (2023, 2024, 2025, 2026, 2027) for m in range(1, 13)]


def long_case(app: AuditedCaseWork) -> UUID:
    """A case paid 47 months: over 50 events, a snapshot at version 50."""
    case_id = enrolled(app)
    for month in MONTHS[3:50]:
        pay(app, case_id, month)
    return case_id


def forge_snapshot_total(app: AuditedCaseWork, case_id: UUID) -> None:
    snapshots = Identifier(app.audit.schema, app.audit.snapshots_table)
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        updated = conn.execute(
            SQL(
                "UPDATE {0} SET state = convert_to(regexp_replace(convert_from(state, 'UTF8'),"
                " '\"paid_total_fen\":[0-9]+', '\"paid_total_fen\":99900000'), 'UTF8')"
                " WHERE originator_id = %s"
            ).format(snapshots),
            (case_id,),
        )
        assert updated.rowcount == 1


def test_a_forged_snapshot_is_not_served_and_verify_reports_it(
    audited: AuditedCaseWork,  # noqa: F811
    settings: Settings,  # noqa: F811
) -> None:
    case_id = long_case(audited)
    now = audited.get_case(case_id)
    true_total = now.paid_total_fen
    assert verify(audited, settings).ok
    assert audited.snapshots is not None
    assert [s.originator_version for s in audited.snapshots.get(case_id)] == [50]

    forge_snapshot_total(audited, case_id)

    assert list(audited.snapshots.get(case_id)) == []  # not trusted: folded from events
    assert audited.get_case(case_id).paid_total_fen == true_total
    assert (
        audited.get_case(case_id, version=now.version - 2).paid_total_fen == true_total - 2 * 50000
    )
    report = verify(audited, settings)
    assert [(f.kind, f.case_id, f.version) for f in report.findings] == [
        ("snapshot", str(case_id), 50)
    ], report.findings
    assert "altered" in report.findings[0].detail
    by_case = verify(audited, settings, case_id=case_id)
    assert [(f.kind, f.version) for f in by_case.findings] == [("snapshot", 50)]

    # Without its seal (removed, or a snapshot inserted by hand) it is not used either.
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(
            SQL("DELETE FROM {0}").format(
                Identifier(audited.audit.schema, audited.audit.seals_table)
            )
        )
    assert audited.get_case(case_id).paid_total_fen == true_total
    unsealed = verify(audited, settings).findings
    assert [(f.kind, f.version) for f in unsealed] == [("snapshot", 50)]
    assert "no seal" in unsealed[0].detail
