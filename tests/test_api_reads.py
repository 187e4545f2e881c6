"""The API's reads: reports (JSON and CSV), tasks, search by id-card, erasure, audit."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from psycopg.sql import SQL

from domain.application import CaseWork
from domain.roles import Role
from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.bootstrap import casework
from jiuzhu.settings import Settings
from projections.feed import catch_up
from tests.api_support import api_client, bearer, settings_in
from tests.conftest import DATABASE_URL
from tests.report_stories import province, report_models
from tests.stories import by, opened

pytestmark = pytest.mark.postgres

ID_CARD = "610523198001011234"  # the member of tests.stories.opened


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_in(tmp_path)


@pytest.fixture
def app(pg_schema: str, settings: Settings) -> Iterator[CaseWork]:
    """CaseWork signing with the key the API trusts (an untrusted signature is a finding)."""
    application = casework(DATABASE_URL, schema=pg_schema, settings=settings)
    try:
        yield application
    finally:
        application.close()


@pytest.fixture
def client(settings: Settings, app: CaseWork) -> Iterator[httpx.Client]:
    with api_client(settings, app) as client:
        yield client


def staff(settings: Settings, role: Role = Role.CASEWORKER) -> dict[str, str]:
    return bearer(settings, f"{role.value}-7", role)


def test_reports_answer_json_and_csv(
    client: httpx.Client, settings: Settings, app: CaseWork, pg_schema: str
) -> None:
    cases = province(app)
    models = report_models(pg_schema)
    for model in models:
        catch_up(model, app)
    models[0].datastore.close()
    analyst = staff(settings, Role.ANALYST)
    funnel = client.get("/reports/funnel", params={"by": "province"}, headers=analyst)
    assert funnel.status_code == 200, funnel.text
    [row] = funnel.json()["rows"]
    assert (row["region"], row["discovered"], row["paid"]) == ("61", 5, 3)
    payments = client.get(
        "/reports/payments",
        params={"region": "610500", "from": "2023-05", "to": "2023-05"},
        headers={**analyst, "Accept": "text/csv"},
    )
    assert payments.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(payments.text)))
    assert [(r["region"], r["programme"], r["amount_fen"]) for r in rows] == [
        ("610523", "rural_dibao", "50000")
    ]
    bad = client.get("/reports/funnel", params={"from": "2023-13"}, headers=analyst)
    assert bad.status_code == 422
    assert bad.json()["detail"] == "from '2023-13' is not a month like 2023-06"
    tasks = client.get(
        "/verification-tasks",
        params={"assignee": "lianhu-team", "overdue": "true", "on": "2023-03-11"},
        headers=staff(settings),
    ).json()
    assert [(t["case_id"], t["overdue"]) for t in tasks] == [(str(cases["d"]), True)]
    on_time = client.get(
        "/verification-tasks", params={"on": "2023-03-09", "region": "6101"}, headers=analyst
    ).json()
    assert [t["overdue"] for t in on_time] == [False]


def test_households_are_found_by_id_card_until_erased(
    client: httpx.Client, settings: Settings, app: AuditedCaseWork
) -> None:
    case_id = opened(app, household="HH-SEARCH-1")
    worker = staff(settings)
    spaced = "6105 2319 8001 0112 34"  # as typed from the card: spaces are normalised away
    found = client.get("/households", params={"id_card": spaced}, headers=worker).json()
    assert found == {
        "households": [
            {
                "household_id": "HH-SEARCH-1",
                "case_ids": [str(case_id)],
                "open_case_id": str(case_id),
            }
        ]
    }
    with app.datastore.transaction(commit=False) as curs:
        curs.execute(
            SQL("SELECT digest::text || household_id AS row FROM {0}").format(app.blind_index.table)
        )
        stored = " ".join(r["row"] for r in curs.fetchall())
    assert ID_CARD not in stored
    assert "HH-SEARCH-1" in stored
    analyst = client.get(
        "/households", params={"id_card": ID_CARD}, headers=staff(settings, Role.ANALYST)
    )
    assert analyst.status_code == 403
    assert analyst.json()["detail"] == "analyst-7 (analyst) may not read personal data"
    erased = client.post(
        "/households/HH-SEARCH-1/erasure",
        json={"reason": "PIPL art. 47"},
        headers=staff(settings, Role.APPROVER),
    )
    assert erased.status_code == 200, erased.text
    assert client.get("/households", params={"id_card": ID_CARD}, headers=worker).json() == {
        "households": []
    }
    chain = client.get("/households/HH-SEARCH-1", headers=worker).json()
    assert chain["case_ids"] == [str(case_id)]
    history = client.get("/households/HH-SEARCH-1/history", headers=worker).json()
    assert history[-1]["type"] == "Household.PersonalDataErased"


def test_auditors_verify_and_export(
    client: httpx.Client, settings: Settings, app: CaseWork, tmp_path: Path
) -> None:
    case_id = opened(app)
    auditor = staff(settings, Role.AUDITOR)
    verified = client.get("/audit/verification", headers=auditor)
    assert verified.status_code == 200, verified.text
    assert verified.json()["ok"] is True, verified.json()
    export = client.post("/audit/exports", json={"case_id": str(case_id)}, headers=auditor)
    assert export.status_code == 200, export.text
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert [line["kind"] for line in lines] == ["header", "event", "digest"]
    assert export.headers["X-Export-Digest"] == f"sha256={lines[-1]['digest']}"
    from jiuzhu.audit.export import verify_export

    path = tmp_path / "export.jsonl"
    path.write_text(export.text, encoding="utf-8")
    assert verify_export(path).ok
    refused = client.post("/audit/exports", json={"case_id": str(case_id)}, headers=staff(settings))
    assert refused.status_code == 403
    assert refused.json()["detail"] == "caseworker-7 (caseworker) may not export audit trail"
    neither = client.post("/audit/exports", json={}, headers=auditor)
    assert neither.status_code == 422


def test_cases_recorded_before_the_index_are_added_by_reindex(
    client: httpx.Client, settings: Settings, app: AuditedCaseWork
) -> None:
    from jiuzhu.privacy.blind_index import rebuild_blind_index

    opened(app, household="HH-OLD-1")
    opened(app, household="HH-OLD-2")
    with app.datastore.transaction(commit=True) as curs:  # as before the index existed
        curs.execute(SQL("DELETE FROM {0}").format(app.blind_index.table))
    app.erase_personal_data(
        {"household_id": "HH-OLD-2", "by": by("approver", reason="PIPL art. 47")}
    )
    assert rebuild_blind_index(app) == 1  # the erased household stays out
    assert rebuild_blind_index(app) == 0  # and again: nothing new
    found = client.get("/households", params={"id_card": ID_CARD}, headers=staff(settings))
    assert [h["household_id"] for h in found.json()["households"]] == ["HH-OLD-1"]
