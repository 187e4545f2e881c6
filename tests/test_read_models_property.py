"""Property: whatever valid case histories happen, live read models equal their rebuild.

Hypothesis draws households and how far each case goes (verdict, programmes, payments,
emergency relief, referrals, services, reviews, exits), interleaves the cases' steps
the way a real log interleaves them, and feeds the live read models in random batch
sizes as events arrive (the mapper path, as the projector does). A replay then rebuilds
every read model from the log (the rebuild reader) and compares row by row.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.application import CaseWork
from jiuzhu.bootstrap import casework
from projections.base import ReadModel
from projections.feed import catch_up
from projections.rebuild import REPORT_MODELS, replay
from tests.conftest import DATABASE_URL
from tests.report_stories import report_models
from tests.stories import START, by

pytestmark = pytest.mark.postgres

Step = Callable[[CaseWork], object]

plans = st.fixed_dictionaries(
    {
        "region": st.sampled_from(["610523", "610526", "610630", "610104"]),
        "channel": st.sampled_from(["monitoring_alert", "hotline", "application_online"]),
        "size": st.integers(1, 6),
        "start": st.integers(0, 300),
        "emergency": st.booleans(),
        "assigned": st.booleans(),
        "verdict": st.sampled_from([None, "needs_support", "risk_eliminated", "not_eligible"]),
        "programmes": st.lists(
            st.sampled_from(["rural_dibao", "temporary_relief", "medical_relief"]),
            unique=True,
            max_size=3,
        ),
        "months": st.integers(0, 4),
        "referral": st.sampled_from([None, True, False]),
        "services": st.integers(0, 2),
        "reviewed": st.booleans(),
        "ends": st.booleans(),
    }
)


def case_steps(plan: dict[str, Any]) -> list[Step]:
    """The commands of one case, in order, each valid after the ones before it."""
    case_id, day0 = uuid4(), plan["start"]

    def at(days: int, role: str = "caseworker", reason: str = "per procedure") -> dict[str, Any]:
        return by(role, days=day0 + days, reason=reason)

    def command(name: str, **fields: Any) -> Step:
        return lambda app: getattr(app, name)({"case_id": case_id, **fields})

    steps: list[Step] = [
        lambda app: app.open_case(
            {
                "case_id": case_id,
                "household_id": f"HH-{case_id.hex[:10]}",
                "region": plan["region"],
                "channel": plan["channel"],
                "household_size": plan["size"],
                "by": at(0, "upstream_system"),
            }
        )
    ]
    if plan["emergency"]:
        steps.append(command("grant_emergency_relief", grant_id="EG", amount_fen=90000, by=at(0)))
    if plan["assigned"]:
        due = (START + timedelta(days=day0 + 9)).date()
        steps.append(command("assign_verification", assignee="team", due_on=due, by=at(1)))
    verdict, enrolled = plan["verdict"], []
    if verdict is not None:
        steps.append(command("give_consent", given_by="head", by=at(2)))
        steps.append(
            command(
                "verify",
                verdict=verdict,
                household_size=plan["size"],
                monthly_income_fen=10000,
                by=at(3),
            )
        )
        if plan["emergency"]:
            steps.append(
                command("regularise_emergency_relief", grant_id="EG", by=at(4, "approver"))
            )
        if plan["referral"] is not None:
            accepted = plan["referral"]
            steps.append(
                command("refer", referral_id="R", organisation="Red Cross", need="x", by=at(4))
            )
            steps.append(
                command(
                    "answer_referral",
                    referral_id="R",
                    accepted=accepted,
                    amount_fen=70000 if accepted else 0,
                    by=at(6),
                )
            )
    if verdict == "needs_support":
        enrolled = plan["programmes"]
        effective = (START + timedelta(days=day0 + 40)).date().replace(day=1)
        for programme in enrolled:
            if programme.endswith("dibao"):
                starts = (START + timedelta(days=day0 + 4)).date()
                steps.append(command("publish_notice", starts_on=starts, by=at(4)))
            steps.append(
                command(
                    "enrol",
                    programme=programme,
                    amount_fen=40000,
                    category="changing",
                    effective_from=effective,
                    by=at(12, "approver"),
                )
            )
        for programme in enrolled:
            periods = [_month(effective, i) for i in range(plan["months"])]
            if not programme.endswith("dibao"):
                periods = ["one-off"] if plan["months"] else []
            for index, period in enumerate(periods):
                steps.append(
                    command(
                        "pay",
                        programme=programme,
                        period=period,
                        amount_fen=40000,
                        payment_ref=f"P{index}",
                        by=at(45 + 30 * index, "approver"),
                    )
                )
        if "rural_dibao" in enrolled and plan["reviewed"]:
            steps.append(command("review", programme="rural_dibao", outcome="continue", by=at(170)))
    steps += [
        command("deliver_service", service="visit", provider="org", by=at(20 + n))
        for n in range(plan["services"])
    ]
    if plan["ends"] and (verdict is not None or not plan["emergency"]):
        steps += [
            command(
                "exit_programme", programme=p, ended_on=date(2024, 6, 1), by=at(200, "approver")
            )
            for p in enrolled
            # A one-off grant's enrolment ended with its payment.
            if p.endswith("dibao") or not plan["months"]
        ]
        steps.append(command("close_case", by=at(201, "approver", "income above the line")))
    return steps


def _month(first: date, offset: int) -> str:
    index = first.month - 1 + offset
    return f"{first.year + index // 12:04d}-{index % 12 + 1:02d}"


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[CaseWork, str]]:
    """One event store for every example (each example adds cases and fresh read models)."""
    schema = f"t_prop_{uuid4().hex[:10]}"
    app = casework(DATABASE_URL, schema=schema, pool_size=2)
    yield app, schema
    app.close()
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    cases=st.lists(plans, min_size=1, max_size=6),
    order=st.randoms(use_true_random=False),
    batch_sizes=st.lists(st.integers(1, 40), min_size=1, max_size=5),
)
def test_live_read_models_equal_their_rebuild(
    shared: tuple[CaseWork, str],
    cases: list[dict[str, Any]],
    order: random.Random,
    batch_sizes: list[int],
) -> None:
    app, event_schema = shared
    live_schema = f"{event_schema}_{uuid4().hex[:6]}"
    models: list[ReadModel] = report_models(live_schema)
    try:
        pending = [case_steps(plan) for plan in cases]
        feeds = 0
        while pending:
            steps = order.choice(pending)
            steps.pop(0)(app)
            if not steps:
                pending.remove(steps)
            if order.random() < 0.3:  # the projector catches up now and then, in odd batches
                for model in models:
                    catch_up(model, app, batch_size=batch_sizes[feeds % len(batch_sizes)])
                feeds += 1
        for model in models:
            catch_up(model, app, batch_size=batch_sizes[0])
        result = replay(app, REPORT_MODELS, database_url=DATABASE_URL, schema=live_schema)
        assert result.equal, result.differences
    finally:
        models[0].datastore.close()
        with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{live_schema}" CASCADE')
