"""Synthetic households with a realistic mix of channels, verdicts, programmes and payments."""

from __future__ import annotations

import random
from datetime import date, timedelta
from uuid import UUID

from domain.application import CaseWork
from jiuzhu.demo_teller import Teller
from jiuzhu.demo_upstream import Upstream

__all__ = ["REGIONS", "synthetic_household"]

# Counties and districts of Shaanxi (GB/T 2260): the seed's and their neighbours.
REGIONS = {
    "610523": "Dali county",
    "610526": "Pucheng county",
    "610528": "Fuping county",
    "610630": "Yichuan county",
    "610104": "Lianhu district",
    "610116": "Chang'an district",
    "610425": "Liquan county",
    "610723": "Yang county",
}
_DISTRICTS = {"610104", "610116"}

_CHANNELS = (
    ("monitoring_alert", 55),
    ("hotline", 10),
    ("application_online", 15),
    ("application_hall", 10),
    ("field_team", 10),
)
_SIGNALS = (
    "medical spending jump",
    "income drop",
    "utility arrears",
    "disability registered",
    "elderly living alone",
    "child dropped out of school",
    "unemployment registered",
)
_VERDICTS = (("needs_support", 55), ("risk_eliminated", 30), ("not_eligible", 15))
_LAST_MONTH = date(2023, 12, 1)


def _pick(rng: random.Random, weighted: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


def _months(start: date, end: date) -> list[str]:
    months, day = [], date(start.year, start.month, 1)
    while day <= end:
        months.append(f"{day.year:04d}-{day.month:02d}")
        day = (day + timedelta(days=32)).replace(day=1)
    return months


def synthetic_household(
    app: CaseWork, rng: random.Random, run: str, number: int, upstream: Upstream | None = None
) -> UUID:
    """Take one synthetic household as far through the workflow as its draw goes."""
    region = rng.choice(list(REGIONS))
    channel = _pick(rng, _CHANNELS)
    size = rng.choice((1, 1, 2, 3, 3, 4, 4, 5, 6))
    found = date(2023, 1, 1) + timedelta(days=rng.randrange(0, 180))
    t = Teller(app, f"demo-{run}-{number}", upstream)
    source = "low-income-monitoring-platform" if channel == "monitoring_alert" else channel
    t.open(
        t.by(source, "upstream_system", found, f"{channel.replace('_', ' ')} received"),
        household_id=f"HH-{region}-{run}-{number:06d}",
        region=region,
        channel=channel,
        signals=rng.sample(_SIGNALS, rng.randint(1, 2)),
        household_size=size,
        personal={"name": f"Household head {number}", "phone": f"139{number:08d}"},
        asked=(rng.choice(("rural_dibao", "temporary_relief", "medical_relief")),),
    )
    worker = f"{region}-township"
    emergency = rng.random() < 0.03
    if emergency:  # a fire, a flood: relief first, paperwork after
        t.step(
            "grant_emergency_relief",
            t.by(worker, "caseworker", found, "emergency: pay first"),
            grant_id=f"EG-{number}",
            amount_fen=rng.randint(5, 30) * 10000,
        )
    if rng.random() < 0.08:  # still waiting for a visit
        t.flush()
        return t.case_id
    visit = found + timedelta(days=rng.randint(1, 12))
    t.step(
        "assign_verification",
        t.by(worker, "caseworker", found + timedelta(days=1), "verify the report"),
        assignee=f"{worker}-team-{rng.randint(1, 4)}",
        due_on=found + timedelta(days=10),
    )
    if rng.random() < 0.06:  # the household declined the visit
        return t.case_id
    verdict = _pick(rng, _VERDICTS)
    income = (
        rng.randint(0, 40) * 10000 if verdict == "needs_support" else rng.randint(30, 90) * 10000
    )
    t.visit(
        t.by(f"{worker}-team", "caseworker", visit, "door-to-door verification"),
        given_by="head of household",
        verdict=verdict,
        household_size=size,
        monthly_income_fen=income,
    )
    if emergency:
        t.step(
            "regularise_emergency_relief",
            t.by(
                f"{region}-civil-affairs",
                "approver",
                visit + timedelta(days=2),
                "paperwork after emergency relief",
            ),
            grant_id=f"EG-{number}",
        )
    if verdict != "needs_support":
        t.step(
            "close_case",
            t.by(
                f"{region}-civil-affairs",
                "approver",
                visit + timedelta(days=3),
                f"verification: {verdict.replace('_', ' ')}",
            ),
        )
        return t.case_id
    _support(t, rng, region, worker, visit, size)
    t.flush()
    return t.case_id


def _support(
    t: Teller, rng: random.Random, region: str, worker: str, visit: date, size: int
) -> None:
    """Assess, notice, enrol, pay monthly, deliver services, refer, exit some."""
    dibao = "urban_dibao" if region in _DISTRICTS else "rural_dibao"
    monthly = rng.randint(3, 9) * 10000 * min(size, 3)
    measures: list[dict[str, object]] = []
    if rng.random() < 0.75:
        measures.append(
            {
                "programme": dibao,
                "amount_fen": monthly,
                "category": rng.choice(("stable", "changing")),
            }
        )
    if rng.random() < 0.4 or not measures:
        measures.append(
            {"programme": "temporary_relief", "amount_fen": rng.randint(10, 50) * 10000}
        )
    if rng.random() < 0.12:
        measures.append({"programme": "medical_relief", "amount_fen": rng.randint(20, 200) * 10000})
    if size == 1 and rng.random() < 0.5:
        measures.append({"programme": "care_services", "amount_fen": 30000, "category": "stable"})
    panel = t.by(f"{region}-panel", "approver", visit + timedelta(days=5), "panel assessment")
    t.step("assess", panel, measures=measures)
    decided = visit + timedelta(days=rng.randint(14, 30))
    if any(m["programme"] == dibao for m in measures):
        t.step(
            "publish_notice",
            t.by(
                f"{region}-civil-affairs",
                "caseworker",
                visit + timedelta(days=6),
                "7-day public notice",
            ),
            starts_on=visit + timedelta(days=6),
        )
    approver = t.by(f"{region}-civil-affairs", "approver", decided, "panel decision")
    start = (decided + timedelta(days=31)).replace(day=1)
    for m in measures:
        t.step(
            "enrol",
            approver,
            programme=m["programme"],
            amount_fen=m["amount_fen"],
            category=m.get("category", ""),
            effective_from=start,
        )
    ended = _LAST_MONTH
    if rng.random() < 0.1:
        ended = start + timedelta(days=rng.randint(60, 150))
    for m in measures:
        programme, amount = str(m["programme"]), int(str(m["amount_fen"]))
        if programme == "care_services":
            continue
        periods = (
            ["one-off"]
            if programme in ("temporary_relief", "medical_relief")
            else _months(start, ended)
        )
        for period in periods:
            pay_day = start if period == "one-off" else date.fromisoformat(f"{period}-10")
            t.pay(
                t.by(f"{region}-finance", "upstream_system", pay_day, "disbursement"),
                programme=programme,
                period=period,
                amount_fen=amount,
                payment_ref=f"{region}-{programme[:3]}-{period}-{t.case_id.hex[:6]}",
            )
    if size == 1 and rng.random() < 0.4:
        t.step(
            "deliver_service",
            t.by(
                "social-work-centre",
                "caseworker",
                start + timedelta(days=9),
                "purchased care service",
            ),
            service=rng.choice(
                ("companionship visit", "psychological counselling", "home cleaning")
            ),
            provider="social work centre",
        )
    if rng.random() < 0.1:
        referral = f"RF-{t.case_id.hex[:10]}"
        t.step(
            "refer",
            t.by(worker, "caseworker", decided, "needs beyond government relief"),
            referral_id=referral,
            organisation=rng.choice(("Red Cross", "Charity Federation")),
            need="major illness",
        )
        accepted = rng.random() < 0.7
        t.step(
            "answer_referral",
            t.by("social-organisation", "upstream_system", decided + timedelta(days=10), "answer"),
            referral_id=referral,
            accepted=accepted,
            amount_fen=rng.randint(5, 50) * 100000 if accepted else 0,
        )
    if ended != _LAST_MONTH:
        exit_by = t.by(f"{region}-civil-affairs", "approver", ended, "income above the line")
        for m in measures:
            if m["programme"] in ("temporary_relief", "medical_relief"):
                continue  # a one-off grant's enrolment ended with its payment
            t.step("exit_programme", exit_by, programme=m["programme"], ended_on=ended)
        t.step(
            "close_case",
            t.by(f"{region}-civil-affairs", "approver", ended, "no longer in hardship"),
        )
