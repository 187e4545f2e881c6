"""The HTTP API through a real uvicorn and PostgreSQL: a case worked step by step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.application import CaseWork
from domain.roles import Role
from jiuzhu.settings import Settings
from tests.api_support import api_client, bearer, settings_in

pytestmark = pytest.mark.postgres

CASEWORKER, APPROVER = ("li-caseworker", Role.CASEWORKER), ("zhao-approver", Role.APPROVER)
ANALYST = ("qian-analyst", Role.ANALYST)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_in(tmp_path)


@pytest.fixture
def client(settings: Settings, app: CaseWork) -> Iterator[httpx.Client]:
    with api_client(settings, app) as client:
        yield client


def as_(settings: Settings, who: tuple[str, Role]) -> dict[str, str]:
    return bearer(settings, *who)


def open_case(client: httpx.Client, settings: Settings, **extra: Any) -> dict[str, Any]:
    body = {
        "household_id": "HH-610523-0001",
        "region": "610523",
        "channel": "hotline",
        "household_size": 3,
        "personal": {"name": "王某某", "id_card": "610523198001011234"},
        "reason": "hotline call about a sick child",
        **extra,
    }
    response = client.post("/cases", json=body, headers=as_(settings, CASEWORKER))
    assert response.status_code == 201, response.text
    return response.json()


def test_a_case_is_worked_from_opening_to_enrolment(
    client: httpx.Client, settings: Settings
) -> None:
    case = open_case(client, settings)
    case_id = case["case_id"]
    assert case["version"] == 1
    assert case["personal"]["id_card"] == "6105**********1234"  # masked even for staff
    worker, approver = as_(settings, CASEWORKER), as_(settings, APPROVER)
    steps: list[tuple[str, dict[str, Any], dict[str, str]]] = [
        ("verification-assignments", {"assignee": "anren-team", "due_on": "2024-03-10"}, worker),
        ("consent", {"given_by": "王某某"}, worker),
        (
            "verifications",
            {"verdict": "needs_support", "household_size": 3, "monthly_income_fen": 50000},
            worker,
        ),
        ("assessments", {"measures": [{"programme": "medical_relief", "amount_fen": 200000}]},
         approver),
    ]  # fmt: skip
    for path, body, headers in steps:
        response = client.post(
            f"/cases/{case_id}/{path}", json={**body, "reason": "visit"}, headers=headers
        )
        assert response.status_code == 200, response.text
    assert response.headers["ETag"] == '"5"'
    enrol = {"programme": "medical_relief", "amount_fen": 200000, "effective_from": "2024-03-15"}
    enrolled = client.post(
        f"/cases/{case_id}/enrolments",
        json={**enrol, "reason": "panel decision"},
        headers={**as_(settings, ("qian-approver", Role.APPROVER)), "If-Match": '"5"'},
    )
    assert enrolled.status_code == 200, enrolled.text
    assert enrolled.json()["enrolments"]["medical_relief"]["amount_fen"] == 200000
    history = client.get(f"/cases/{case_id}/history", headers=worker).json()
    assert [row["type"] for row in history][-2:] == ["Assessed", "Enrolled"]
    assert history[-1]["actor"] == "qian-approver"
    past = client.get(f"/cases/{case_id}", params={"version": 2}, headers=worker)
    assert (past.json()["assignee"], past.headers["ETag"]) == ("anren-team", '"2"')


def test_requests_without_a_valid_token_are_401(client: httpx.Client) -> None:
    assert client.post("/cases", json={}).status_code == 401
    bad = client.get("/households/HH-1", headers={"Authorization": "Bearer not.a.token"})
    assert bad.status_code == 401
    assert bad.headers["content-type"] == "application/problem+json"
    assert "not valid" in bad.json()["detail"]


def test_a_role_that_may_not_is_403_with_the_cli_words_and_nothing_appended(
    client: httpx.Client, settings: Settings, app: CaseWork
) -> None:
    case = open_case(client, settings)
    refused = client.post(
        f"/cases/{case['case_id']}/assessments",
        json={"measures": [{"programme": "medical_relief", "amount_fen": 1}], "reason": "x"},
        headers=as_(settings, ANALYST),
    )
    assert refused.status_code == 403
    assert refused.json()["detail"] == "qian-analyst (analyst) may not assess"
    assert len(app.history(case["case_id"])) == 1


def test_the_same_idempotency_key_twice_has_one_effect_and_the_first_answer(
    client: httpx.Client, settings: Settings, app: CaseWork
) -> None:
    case = open_case(client, settings)
    headers = {**as_(settings, CASEWORKER), "Idempotency-Key": "signal-7"}
    body = {"signal": "electricity cut", "reason": "grid alert"}
    first = client.post(f"/cases/{case['case_id']}/signals", json=body, headers=headers)
    second = client.post(f"/cases/{case['case_id']}/signals", json=body, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == {**second.json(), "replayed": False}
    assert second.headers["Idempotent-Replayed"] == "true"
    assert len(app.history(case["case_id"])) == 2
    other = client.post(
        f"/cases/{case['case_id']}/signals", json={**body, "signal": "other"}, headers=headers
    )
    assert other.status_code == 422
    assert other.json()["type"].endswith("idempotency-key-reused")


def test_opening_twice_with_one_key_opens_one_case(
    client: httpx.Client, settings: Settings
) -> None:
    headers = {**as_(settings, CASEWORKER), "Idempotency-Key": "open-1"}
    body = {"household_id": "HH-9", "region": "610523", "channel": "hotline", "reason": "call"}
    first = client.post("/cases", json=body, headers=headers)
    second = client.post("/cases", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json()["case_id"] == second.json()["case_id"]
    assert first.headers["Location"].endswith(f"/cases/{first.json()['case_id']}")


def test_if_match_on_a_case_that_moved_on_is_412(
    client: httpx.Client, settings: Settings, app: CaseWork
) -> None:
    case = open_case(client, settings)
    stale = client.post(
        f"/cases/{case['case_id']}/signals",
        json={"signal": "late", "reason": "x"},
        headers={**as_(settings, CASEWORKER), "If-Match": '"7"'},
    )
    assert stale.status_code == 412
    assert "version 1, not 7" in stale.json()["detail"]
    assert len(app.history(case["case_id"])) == 1


def test_a_refused_step_names_the_rule_and_the_case(
    client: httpx.Client, settings: Settings
) -> None:
    case = open_case(client, settings)
    refused = client.post(
        f"/cases/{case['case_id']}/enrolments",
        json={"programme": "rural_dibao", "amount_fen": 1000, "effective_from": "2024-01-01",
              "reason": "x"},
        headers=as_(settings, APPROVER),
    )  # fmt: skip
    assert refused.status_code == 409
    problem = refused.json()
    assert problem["rule"] == "enrolment-requires-positive-verification"
    assert problem["case_id"] == case["case_id"]
    assert problem["detail"].startswith(f"case {case['case_id']}:")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/cases", {"household_id": "H", "region": "12", "channel": "hotline", "reason": "r"},
         "region"),
        ("/cases", {"household_id": "H", "region": "610523", "channel": "fax", "reason": "r"},
         "channel"),
        ("/cases", {"household_id": "H", "region": "610523", "channel": "hotline"}, "reason"),
        ("/cases", {"household_id": "H", "region": "610523", "channel": "hotline", "reason": "r",
                    "actor": "someone-else"}, "actor"),
        ("/cases/not-a-uuid/signals", {"signal": "s", "reason": "r"}, "path.case_id"),
    ],
)  # fmt: skip
def test_bad_fields_are_named_in_a_problem(
    client: httpx.Client, settings: Settings, path: str, body: dict[str, Any], field: str
) -> None:
    response = client.post(path, json=body, headers=as_(settings, CASEWORKER))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in response.json()["errors"]]


def test_malformed_requests_never_yield_500(client: httpx.Client, settings: Settings) -> None:
    headers = {**as_(settings, CASEWORKER), "Content-Type": "application/json"}
    for content in (b"{", b"[]", b"null", b'"x"', b"\xff\xfe", b"{" * 10_000):
        response = client.post("/cases", content=content, headers=headers)
        assert 400 <= response.status_code < 500, (content[:10], response.text)
    huge = client.post("/cases", content=b" " * 2_000_000, headers=headers)
    assert huge.status_code == 413
    dates = client.get(
        "/cases/00000000-0000-0000-0000-000000000000",
        params={"as_of": "2024-13-45"},
        headers=headers,
    )
    assert dates.status_code == 422


def test_a_store_that_cannot_be_reached_is_503_and_nothing_else(
    client: httpx.Client, settings: Settings, app: CaseWork, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eventsourcing.persistence import OperationalError

    case = open_case(client, settings)

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("connection refused")

    monkeypatch.setattr(app, "get_case", unreachable)
    response = client.get(f"/cases/{case['case_id']}", headers=as_(settings, CASEWORKER))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "nothing was saved" in response.json()["detail"]


def test_racing_retries_with_one_key_have_one_effect(
    client: httpx.Client, settings: Settings, app: CaseWork
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    case = open_case(client, settings)
    headers = {**as_(settings, CASEWORKER), "Idempotency-Key": "race-1"}
    body = {"signal": "flood warning", "reason": "county alert"}

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=client.base_url, timeout=30) as own:
            return own.post(f"/cases/{case['case_id']}/signals", json=body, headers=headers)

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(post, range(4)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["version"] for a in answers}) == 1
    assert len(app.history(case["case_id"])) == 2  # opened, and one signal
