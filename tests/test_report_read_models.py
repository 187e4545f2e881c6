"""Each reporting read model against figures worked out by hand from tests/report_stories.py.

The stories start on 1 March 2023 at 09:00 China time; "day N" is N days later. Figures
below come from reading the story, not from the projections' code.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from domain.application import CaseWork
from projections.base import ReadModel
from projections.feed import catch_up, log_batches
from tests.report_stories import province, report_models, rows, snapshot
from tests.stories import START

pytestmark = pytest.mark.postgres


def day(n: int) -> datetime:
    return START + timedelta(days=n)


@pytest.fixture
def built(app: CaseWork, pg_schema: str) -> tuple[dict[str, Any], dict[str, ReadModel]]:
    cases = province(app)
    models = report_models(pg_schema)
    for model in models:
        catch_up(model, app, batch_size=7)  # small batches: rows cross batch boundaries
    yield cases, {model.name: model for model in models}
    models[0].datastore.close()


def test_funnel_counts_each_case_once_per_stage_in_its_business_month(built: Any) -> None:
    _, models = built
    funnel = [
        (r["region"], r["month"], *(r[s] for s in ("discovered", "verification_assigned",
         "verified", "risk_eliminated", "not_eligible", "enrolled", "paid", "closed")))
        for r in rows(models["funnel"], "funnel")
    ]  # fmt: skip
    assert sorted(funnel) == [
        ("610104", "2023-03", 1, 1, 0, 0, 0, 0, 1, 0),  # emergency relief is money on day 0
        ("610523", "2023-03", 3, 2, 2, 1, 0, 1, 0, 1),
        ("610523", "2023-04", 0, 0, 0, 0, 0, 0, 1, 0),  # a's first payment; May's is no stage
        ("610630", "2023-03", 1, 1, 1, 0, 0, 1, 1, 0),  # two enrolments, one case enrolled
    ]


def test_verification_tasks_keep_assignee_due_date_and_outcome(built: Any) -> None:
    cases, models = built
    tasks = {r["case_id"]: r for r in rows(models["verification_tasks"], "verification_task")}
    a, b, d, e = (tasks[cases[k]] for k in "abde")
    assert (a["assignee"], a["due_on"], a["assignments"]) == ("anren-team", date(2023, 3, 10), 1)
    assert (a["verified_at"], a["verdict"], a["closed_at"]) == (day(3), "needs_support", None)
    assert (b["verdict"], b["closed_at"]) == ("risk_eliminated", day(5))
    assert (d["assignee"], d["assigned_at"], d["verified_at"]) == ("lianhu-team", day(1), None)
    assert (e["assignee"], e["assignments"], e["region"]) == (None, 0, "610523")


def test_payments_ledger_keeps_months_programmes_and_kinds_apart(built: Any) -> None:
    _, models = built
    ledger = [tuple(r.values()) for r in rows(models["payments_ledger"], "payments_ledger")]
    assert sorted(ledger) == [
        ("610104", "2023-03", "temporary_relief", "civil_affairs", "emergency", 1, 200000),
        ("610523", "2023-04", "rural_dibao", "civil_affairs", "monthly", 1, 50000),
        ("610523", "2023-05", "rural_dibao", "civil_affairs", "monthly", 1, 50000),
        ("610630", "2023-03", "temporary_relief", "civil_affairs", "one_off", 1, 300000),
        ("610630", "2023-04", "rural_dibao", "civil_affairs", "monthly", 1, 60000),
    ]


def test_time_to_support_counts_days_from_discovery(built: Any) -> None:
    cases, models = built
    times = {r["case_id"]: r for r in rows(models["time_to_support"], "time_to_support")}
    days = {
        name: (times[cases[name]]["days_to_enrolment"], times[cases[name]]["days_to_payment"])
        for name in "abcde"
    }
    assert days == {
        "a": (Decimal(20), Decimal(40)),
        "b": (None, None),
        "c": (Decimal(20), Decimal(21)),
        "d": (None, Decimal(0)),
        "e": (None, None),
    }
    assert times[cases["e"]]["channel"] == "hotline"


def test_stacked_relief_lists_programmes_departments_referrals_services(built: Any) -> None:
    cases, models = built
    model = models["stacked_relief"]
    stacked = {r["case_id"]: r for r in rows(model, "stacked_relief")}
    c, d = stacked[cases["c"]], stacked[cases["d"]]
    assert c["programmes"] == ["rural_dibao", "temporary_relief"]
    assert c["departments"] == ["civil_affairs"]
    assert (c["referrals"], c["referrals_answered"], c["referrals_accepted"]) == (1, 1, 1)
    assert (c["social_aid_fen"], c["services_delivered"]) == (500000, 1)
    assert (d["programmes"], d["emergency_grants"]) == (["temporary_relief"], 1)
    assert stacked[cases["b"]]["programmes"] == []
    [referral] = rows(model, "stacked_referral")
    assert (referral["organisation"], referral["answered_at"], referral["accepted"]) == (
        "Red Cross",
        day(30),
        True,
    )
    services = [tuple(r.values()) for r in rows(model, "stacked_service")]
    assert services == [("610630", "2023-04", "companionship visit", 1)]


def test_programme_roll_has_enrolments_reviews_and_household_sizes(built: Any) -> None:
    cases, models = built
    model = models["programme_roll"]
    roll = {(r["case_id"], r["programme"]): r for r in rows(model, "programme_roll")}
    assert set(roll) == {
        (cases["a"], "rural_dibao"),
        (cases["c"], "rural_dibao"),
        (cases["c"], "temporary_relief"),
    }
    # "changing" households are reviewed every 6 months, "stable" ones every 12.
    assert roll[cases["a"], "rural_dibao"]["review_due"] == date(2023, 10, 1)
    assert roll[cases["c"], "rural_dibao"]["review_due"] == date(2024, 4, 1)
    assert roll[cases["c"], "temporary_relief"]["basis"] == "one_off"
    sizes = {r["case_id"]: r["household_size"] for r in rows(model, "roll_case")}
    assert (sizes[cases["a"]], sizes[cases["c"]]) == (3, 4)


def test_headline_figures_tasks_risks_and_people_under_the_guarantee(built: Any) -> None:
    cases, models = built
    model = models["headline"]
    flows = [tuple(r.values()) for r in rows(model, "headline_flow")]
    assert sorted(flows) == [
        ("610104", "2023-03", 1, 1, 1, 0, 1, 200000),
        ("610523", "2023-03", 3, 2, 2, 1, 0, 0),
        ("610630", "2023-03", 1, 1, 1, 0, 1, 300000),
    ]
    guarantee = {r["case_id"]: r for r in rows(model, "headline_case")}
    under = {
        k: guarantee[v]["household_size"] for k, v in cases.items() if guarantee[v]["guarantee"]
    }
    assert under == {"a": 3, "c": 4}  # 7 people in 2 households


def test_no_personal_data_reaches_any_read_model(built: Any) -> None:
    _, models = built
    everything = str([snapshot([model]) for model in models.values()])
    assert "张某" not in everything
    assert "13800000000" not in everything


def test_redelivered_and_duplicated_batches_change_nothing(app: CaseWork, built: Any) -> None:
    _, models = built
    before = snapshot(list(models.values()))
    for model in models.values():
        for batch in log_batches(app, batch_size=5):
            assert model.apply(batch, application_name=app.name) == 0
            assert model.apply(batch + batch, application_name=app.name) == 0
    assert snapshot(list(models.values())) == before
