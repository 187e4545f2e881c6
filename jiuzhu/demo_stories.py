"""The three stories of the seed article, told as commands to CaseWork."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from uuid import UUID

from domain.application import CaseWork
from jiuzhu.demo_teller import Teller
from jiuzhu.demo_upstream import Upstream

# A story: told on CaseWork for one demo run, through upstream messages where it can.
Story = Callable[[CaseWork, str, Upstream | None], UUID]

__all__ = ["STORIES", "Story"]


def dali_county(app: CaseWork, run: str, upstream: Upstream | None) -> UUID:
    """Anren town, Dali county: an alert, a visit, consent, rural dibao and 4,000 yuan."""
    t = Teller(app, f"dali-alert-{run}", upstream)
    t.open(
        t.by(
            "low-income-monitoring-platform",
            "upstream_system",
            date(2023, 2, 20),
            "spending jumped against the monitored household's baseline",
        ),
        household_id=f"HH-610523-ANREN-{run}",
        region="610523",
        channel="monitoring_alert",
        signals=["medical spending jump", "income drop: carer for sick family"],
        household_size=3,
        personal={
            "name": "Wang (head of household)",
            "id_card": "610523197501011234",
            "address": "Anren town, Dali county",
        },
    )
    t.step(
        "assign_verification",
        t.by("anren-township", "caseworker", date(2023, 2, 21), "verify monitoring alert"),
        assignee="anren-township-team",
        due_on=date(2023, 3, 3),
    )
    t.visit(
        t.by(
            "anren-township",
            "caseworker",
            date(2023, 2, 24),
            "door-to-door visit; village committee helps the household apply",
        ),
        given_by="head of household",
        verdict="needs_support",
        household_size=3,
        monthly_income_fen=110000,
        facts={
            "illness": "son with epilepsy; wife diagnosed with serious disease in February",
            "income": "husband earns less while caring for them",
        },
    )
    t.step(
        "assess",
        t.by(
            "dali-county-panel",
            "approver",
            date(2023, 5, 10),
            "Social Assistance Interim Measures art. 9, 47",
        ),
        measures=[
            {"programme": "rural_dibao", "amount_fen": 65000, "category": "changing"},
            {"programme": "temporary_relief", "amount_fen": 400000},
        ],
    )
    t.step(
        "publish_notice",
        t.by(
            "dali-civil-affairs",
            "caseworker",
            date(2023, 5, 15),
            "7-day public notice in the village",
        ),
        starts_on=date(2023, 5, 15),
    )
    approver = t.by("dali-civil-affairs", "approver", date(2023, 6, 1), "panel decision")
    t.step(
        "enrol",
        approver,
        programme="rural_dibao",
        amount_fen=65000,
        category="changing",
        effective_from=date(2023, 6, 1),
    )
    t.step(
        "enrol",
        approver,
        programme="temporary_relief",
        amount_fen=400000,
        effective_from=date(2023, 6, 1),
    )
    finance = t.by("dali-finance", "upstream_system", date(2023, 6, 10), "disbursement")
    t.pay(
        finance,
        programme="temporary_relief",
        period="one-off",
        amount_fen=400000,
        payment_ref="DL-TR-2023-0611",
    )
    t.pay(
        finance,
        programme="rural_dibao",
        period="2023-06",
        amount_fen=65000,
        payment_ref="DL-DB-2023-06",
    )
    t.flush()
    return t.case_id


def lianhu_district(app: CaseWork, run: str, upstream: Upstream | None) -> UUID:
    """Lianhu district: an 84-year-old dibao recipient living alone receives services too."""
    t = Teller(app, f"lianhu-hall-{run}", upstream)
    t.open(
        t.by("lianhu-one-window-hall", "caseworker", date(2023, 1, 5), "application at the hall"),
        household_id=f"HH-610104-ELDER-{run}",
        region="610104",
        channel="application_hall",
        signals=["84 years old, living alone"],
        household_size=1,
        personal={"name": "Li (recipient)", "address": "Lianhu district, Xi'an"},
        asked=("urban_dibao", "care_services"),
    )
    worker = t.by("lianhu-community", "caseworker", date(2023, 1, 9), "home visit")
    t.step("assign_verification", worker, assignee="lianhu-community", due_on=date(2023, 1, 20))
    t.visit(
        worker,
        given_by="recipient",
        verdict="needs_support",
        household_size=1,
        monthly_income_fen=0,
        facts={"living": "alone, no income, limited mobility"},
    )
    t.step(
        "publish_notice",
        t.by("lianhu-civil-affairs", "caseworker", date(2023, 1, 12), "7-day public notice"),
        starts_on=date(2023, 1, 12),
    )
    approver = t.by("lianhu-civil-affairs", "approver", date(2023, 1, 20), "urban dibao rules")
    t.step(
        "enrol",
        approver,
        programme="urban_dibao",
        amount_fen=78000,
        category="stable",
        effective_from=date(2023, 2, 1),
    )
    t.step(
        "enrol",
        approver,
        programme="care_services",
        amount_fen=30000,
        category="stable",
        effective_from=date(2023, 2, 1),
    )
    for month in range(2, 8):
        finance = t.by("xian-finance", "upstream_system", date(2023, month, 10), "monthly benefit")
        t.pay(
            finance,
            programme="urban_dibao",
            period=f"2023-{month:02d}",
            amount_fen=78000,
            payment_ref=f"LH-DB-2023-{month:02d}",
        )
    for day, service in (
        (date(2023, 2, 15), "psychological counselling"),
        (date(2023, 3, 1), "companionship visit"),
        (date(2023, 3, 20), "family mediation"),
        (date(2023, 4, 2), "neighbour support network"),
        (date(2023, 5, 18), "micro-wish: a new winter quilt"),
    ):
        t.step(
            "deliver_service",
            t.by("sunshine-social-work", "caseworker", day, "purchased care service"),
            service=service,
            provider="Sunshine Social Work Centre",
        )
    t.flush()
    return t.case_id


def yichuan_county(app: CaseWork, run: str, upstream: Upstream | None) -> UUID:
    """Yichuan county: one online application, three measures from several departments."""
    t = Teller(app, f"yichuan-ejiuzhu-{run}", upstream)
    t.open(
        t.by("e-jiuzhu-online", "upstream_system", date(2023, 4, 3), "online application"),
        household_id=f"HH-610630-APPLE-{run}",
        region="610630",
        channel="application_online",
        signals=["uraemia, dialysis", "47,000 yuan medical costs, 16,800 self-paid"],
        household_size=4,
        personal={"name": "Zhang (applicant)", "phone": "13900000000"},
        asked=("rural_dibao",),
    )
    worker = t.by("yichuan-township", "caseworker", date(2023, 4, 6), "door-to-door visit")
    t.step("assign_verification", worker, assignee="yichuan-township", due_on=date(2023, 4, 13))
    t.visit(
        worker,
        given_by="applicant",
        verdict="needs_support",
        household_size=4,
        monthly_income_fen=250000,
        facts={
            "household": "wife frail, two children at school",
            "income": "about 30,000 yuan a year from apples",
        },
    )
    panel = t.by(
        "yichuan-assessment-panel",
        "approver",
        date(2023, 4, 12),
        "joint assessment (研判): stacked relief",
    )
    t.step(
        "assess",
        panel,
        measures=[
            {"programme": "rural_dibao", "amount_fen": 120000, "category": "classified provision"},
            {"programme": "temporary_relief", "amount_fen": 300000},
            {"programme": "social_org_aid", "amount_fen": 1000000},
        ],
    )
    t.step(
        "publish_notice",
        t.by("yichuan-civil-affairs", "caseworker", date(2023, 4, 13), "7-day public notice"),
        starts_on=date(2023, 4, 13),
    )
    approver = t.by("yichuan-civil-affairs", "approver", date(2023, 4, 21), "panel decision")
    t.step(
        "enrol",
        approver,
        programme="rural_dibao",
        amount_fen=120000,
        category="classified provision",
        effective_from=date(2023, 5, 1),
    )
    t.step(
        "enrol",
        approver,
        programme="temporary_relief",
        amount_fen=300000,
        effective_from=date(2023, 4, 21),
    )
    t.step(
        "refer",
        t.by(
            "yichuan-civil-affairs",
            "caseworker",
            date(2023, 4, 21),
            "major illness: humanitarian relief",
        ),
        referral_id=f"RC-{run}",
        organisation="Red Cross",
        need="humanitarian relief - major illness",
    )
    t.step(
        "answer_referral",
        t.by("red-cross-yan-an", "upstream_system", date(2023, 5, 8), "grant approved"),
        referral_id=f"RC-{run}",
        accepted=True,
        amount_fen=1000000,
    )
    finance = t.by("yichuan-finance", "upstream_system", date(2023, 5, 10), "disbursement")
    t.pay(
        finance,
        programme="temporary_relief",
        period="one-off",
        amount_fen=300000,
        payment_ref="YC-TR-2023-05",
    )
    for month in (5, 6, 7):
        t.pay(
            t.by("yichuan-finance", "upstream_system", date(2023, month, 15), "monthly benefit"),
            programme="rural_dibao",
            period=f"2023-{month:02d}",
            amount_fen=120000,
            payment_ref=f"YC-DB-2023-{month:02d}",
        )
    t.flush()
    return t.case_id


STORIES: dict[str, Story] = {
    "dali_county": dali_county,
    "lianhu_district": lianhu_district,
    "yichuan_county": yichuan_county,
}
