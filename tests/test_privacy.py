"""Personal data is sealed per household; erasure shreds the key and leaves the chain verifiable."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from psycopg.sql import SQL, Identifier

from domain.errors import PermissionDeniedError
from domain.roles import PERMISSIONS, Role
from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.audit.export import export_case, write_export
from jiuzhu.audit.histories import REDACTED, case_history, household_history
from jiuzhu.bootstrap import casework
from jiuzhu.privacy.mapper import ERASED
from jiuzhu.settings import Settings
from tests.conftest import DATABASE_URL
from tests.stories import by, enrolled, opened, pay
from tests.test_audit_support import audited, server_time_zone, settings, verify  # noqa: F401

pytestmark = pytest.mark.postgres

NAME, ID_CARD = "王某", "610523198001011234"


def raw_rows(app: AuditedCaseWork, table: str) -> list[tuple[object, ...]]:
    with psycopg.connect(DATABASE_URL) as conn:
        return conn.execute(
            SQL("SELECT * FROM {0}").format(Identifier(app.audit.schema, table))
        ).fetchall()


def stored_text(app: AuditedCaseWork) -> str:
    """Everything the event and snapshot tables hold, as text."""
    rows = raw_rows(app, "casework_events") + raw_rows(app, "casework_snapshots")
    return "\n".join(bytes(r[3]).decode() for r in rows)  # type: ignore[arg-type]


def household_of(app: AuditedCaseWork, case_id: UUID) -> str:
    return app.get_case(case_id).household_id


def paid_total(app: AuditedCaseWork) -> int:
    """A report total rebuilt from the log: every Paid amount."""
    total = 0
    for case_id in {UUID(str(r[0])) for r in raw_rows(app, "casework_events")}:
        for event in app.events.get(case_id):
            total += getattr(event, "amount_fen", 0) if type(event).__name__ == "Paid" else 0
    return total


def erase(app: AuditedCaseWork, household: str, role: str = "approver") -> int:
    return app.erase_personal_data(
        {"household_id": household, "by": by(role, reason="PIPL art. 47 request", days=90)}
    )


def test_personal_values_are_ciphertext_at_rest_and_the_rest_stays_readable_json(
    audited: AuditedCaseWork,  # noqa: F811
) -> None:
    case_id = enrolled(audited)
    text = stored_text(audited)
    assert NAME not in text
    assert ID_CARD not in text
    discovered = json.loads(bytes(raw_rows(audited, "casework_events")[0][3]).decode())  # type: ignore[arg-type]
    assert discovered["region"] == "610523"
    assert all(v.startswith("enc:v1:") for v in discovered["personal"].values())
    assert audited.get_case(case_id).personal["id_card"] == ID_CARD


def test_after_erasure_no_path_reads_the_personal_data_and_totals_stay(
    audited: AuditedCaseWork,  # noqa: F811
    settings: Settings,  # noqa: F811
    tmp_path: Path,
) -> None:
    case_id = enrolled(audited)
    # Enough payments for a snapshot (every 50 events): the snapshot path is checked too.
    months = [f"{y}-{m:02d}" for y in (2023, 2024, 2025, 2026, 2027) for m in range(1, 13)]
    for month in months[3:50]:
        pay(audited, case_id, month)
    kept = opened(audited)
    total_before = paid_total(audited)
    assert raw_rows(audited, "casework_snapshots")
    household = household_of(audited, case_id)

    erase(audited, household)

    other_process = casework(DATABASE_URL, schema=audited.audit.schema, settings=settings)
    try:
        for app in (audited, other_process):
            assert set(app.get_case(case_id).personal.values()) == {ERASED}
            assert app.history(case_id)[0].personal["name"] == ERASED  # type: ignore[attr-defined]
            entries = household_history(app, household, personal=True)  # type: ignore[arg-type]
            assert NAME not in json.dumps([e.as_json() for e in entries], ensure_ascii=False)
        out = tmp_path / "export.jsonl"
        with out.open("w", encoding="utf-8") as file:
            write_export(
                file,
                export_case(audited, case_id, personal=True),
                scope={},
                store="s",
                signer=None,
            )
        assert NAME not in out.read_text(encoding="utf-8")
        assert ID_CARD not in out.read_text(encoding="utf-8")
        # Other households keep theirs; the totals do not move; the chain still verifies.
        assert other_process.get_case(kept).personal["name"] == NAME
        assert paid_total(other_process) == total_before
    finally:
        other_process.close()
    assert all(
        row[2] is None for row in raw_rows(audited, "casework_data_keys") if row[0] == household
    )
    report = verify(audited, settings)
    assert report.ok, report.findings
    erased = [
        e
        for e in household_history(audited, household, personal=True)
        if e.type.endswith("PersonalDataErased")
    ]
    assert erased
    assert erased[0].actor == "approver-1"
    assert "PIPL" in erased[0].reason


def test_a_household_opening_a_case_after_erasure_gets_a_new_key(
    audited: AuditedCaseWork,  # noqa: F811
) -> None:
    first = opened(audited, household="HH-ERASE-1")
    erase(audited, "HH-ERASE-1")
    audited.close_case({"case_id": first, "by": by("approver", reason="erased, closing")})
    second = opened(audited, household="HH-ERASE-1")
    assert audited.get_case(second).personal["name"] == NAME
    assert audited.get_case(first).personal["name"] == ERASED
    assert [g.generation for g in audited.data_keys.generations("HH-ERASE-1")] == [1, 2]


@pytest.mark.parametrize("role", ["caseworker", "auditor", "analyst", "upstream_system"])
def test_only_approvers_may_erase_and_a_refusal_appends_nothing(
    audited: AuditedCaseWork,  # noqa: F811
    role: str,
) -> None:
    case_id = opened(audited)
    before = audited.recorder.max_notification_id()
    with pytest.raises(PermissionDeniedError, match=f"\\({role}\\) may not erase personal data"):
        erase(audited, household_of(audited, case_id), role=role)
    assert audited.recorder.max_notification_id() == before
    assert audited.get_case(case_id).personal["name"] == NAME


def test_auditors_and_analysts_cannot_change_anything(
    audited: AuditedCaseWork,  # noqa: F811
) -> None:
    for allowed in PERMISSIONS.values():
        assert Role.AUDITOR not in allowed
        assert Role.ANALYST not in allowed
    case_id = enrolled(audited)
    before = audited.recorder.max_notification_id()
    with pytest.raises(PermissionDeniedError, match="auditor-1 \\(auditor\\) may not pay"):
        audited.pay(
            {
                "case_id": case_id,
                "programme": "rural_dibao",
                "period": "2023-04",
                "amount_fen": 50000,
                "payment_ref": "X",
                "by": by("auditor"),
            }
        )
    assert audited.recorder.max_notification_id() == before


def test_reads_are_checked_and_analysts_see_personal_fields_masked(
    audited: AuditedCaseWork,  # noqa: F811
) -> None:
    case_id = opened(audited)
    with pytest.raises(PermissionDeniedError, match="may not read history"):
        audited.authorise_read("feed-1", "upstream_system", "read_history")
    with pytest.raises(PermissionDeniedError):
        audited.authorise_read("x", "superuser", "read_history")
    analyst = audited.authorise_read("analyst-1", "analyst", "read_history")
    assert analyst is Role.ANALYST
    entries = case_history(audited, case_id, personal=False)
    assert entries[0].data["personal"]["name"] == REDACTED
    assert case_history(audited, case_id, personal=True)[0].data["personal"]["name"] == NAME


def test_free_text_upstream_fills_with_names_is_sealed_and_erased(
    audited: AuditedCaseWork,  # noqa: F811
) -> None:
    case_id = opened(audited)
    audited.give_consent({"case_id": case_id, "given_by": "head of household", "by": by()})
    audited.verify(
        {
            "case_id": case_id,
            "verdict": "needs_support",
            "household_size": 3,
            "monthly_income_fen": 120000,
            "facts": {"illness": f"{NAME}'s son has epilepsy"},
            "by": by(days=3),
        }
    )
    audited.refer(
        {
            "case_id": case_id,
            "referral_id": "R-1",
            "organisation": "Red Cross",
            "need": f"dialysis for {NAME}",
            "by": by(days=4),
        }
    )
    assert NAME not in stored_text(audited)
    verified, referred = audited.history(case_id)[-2:]
    assert verified.facts == {"illness": f"{NAME}'s son has epilepsy"}  # type: ignore[attr-defined]
    assert referred.need == f"dialysis for {NAME}"  # type: ignore[attr-defined]
    for_analysts = json.dumps(
        [e.as_json() for e in case_history(audited, case_id, personal=False)], ensure_ascii=False
    )
    assert NAME not in for_analysts
    assert REDACTED in for_analysts

    erase(audited, household_of(audited, case_id))

    verified, referred = audited.history(case_id)[-2:]
    assert verified.facts == {"illness": ERASED}  # type: ignore[attr-defined]
    assert referred.need == ERASED  # type: ignore[attr-defined]
