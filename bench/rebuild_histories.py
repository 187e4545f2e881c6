"""Realistic case histories for the rebuild benchmark, built on the aggregates and saved in bulk.

Cases run in cohorts whose steps interleave (a month's payments for the whole cohort land
together), the way a live log looks, not one case's history after another.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from domain.application import CaseWork
from domain.case import Case
from domain.household import Household
from domain.provenance import Provenance
from domain.roles import Role
from domain.values import Programme, Verdict

__all__ = ["REGIONS", "generate"]

CST = timezone(timedelta(hours=8))
REGIONS = (
    "610523", "610526", "610528", "610630", "610104", "610116", "610425", "610723",
    "610502", "610581", "610602", "610632", "610102", "610113", "610302", "610324",
)  # fmt: skip
_CHANNELS = ("monitoring_alert",) * 6 + ("hotline", "application_online", "field_team")
_END = date(2025, 6, 30)

Story = Iterator[list[Aggregate]]


def _by(role: Role, moment: datetime, reason: str) -> Provenance:
    # model_construct: the generator's own input is valid by construction; skip validation cost.
    return Provenance.model_construct(
        actor=f"{role.value}-7",
        role=role,
        reason=reason,
        occurred_at=moment,
        causation_id="bench",
        correlation_id="bench",
    )


def _months(first: date, count: int) -> list[date]:
    months, day = [], first.replace(day=10)
    for _ in range(count):
        if day > _END:
            break
        months.append(day)
        day = (day + timedelta(days=31)).replace(day=10)
    return months


def case_story(rng: random.Random, number: int) -> Story:
    """One household's case, a step per iteration: discovery, visit, support, payments, exit."""
    case_id: UUID = uuid4()
    region = rng.choice(REGIONS)
    found = datetime(2023, 1, 1, 9, tzinfo=CST) + timedelta(days=rng.randrange(0, 540))
    size = rng.choice((1, 2, 3, 3, 4, 5))
    household = Household.register(f"HH-{region}-{number:07d}")
    household.open_case(case_id)
    case = Case.discover(
        case_id=case_id,
        household_id=household.household_id,
        region=region,
        channel=rng.choice(_CHANNELS),
        signals=["income drop"],
        household_size=size,
        personal={"name": f"head {number}"},
        by=_by(Role.UPSTREAM_SYSTEM, found, "monitoring alert"),
    )
    yield [case, household]

    def at(days: float) -> datetime:
        return found + timedelta(days=days)

    worker, approver = Role.CASEWORKER, Role.APPROVER
    emergency = rng.random() < 0.05
    if emergency:
        case.grant_emergency_relief("EG-1", rng.randint(10, 40) * 10000, by=_by(worker, at(1), "x"))
        yield [case]
    if rng.random() < 0.05:
        return  # still waiting for a visit
    case.assign_verification(
        f"{region}-team-{rng.randint(1, 5)}", at(10).date(), by=_by(worker, at(1), "visit")
    )
    yield [case]
    if rng.random() < 0.04:
        return  # the visit is overdue
    visit = rng.randint(3, 16)
    case.give_consent("head of household", by=_by(worker, at(visit), "consent"))
    yield [case]
    verdict = rng.choices(list(Verdict), (55, 30, 15))[0]
    case.verify(verdict, size, rng.randint(0, 90) * 10000, {}, by=_by(worker, at(visit), "visit"))
    yield [case]
    if emergency:
        case.regularise_emergency_relief("EG-1", by=_by(approver, at(visit + 1), "papers"))
        yield [case]
    if verdict != Verdict.NEEDS_SUPPORT:
        case.close(by=_by(approver, at(visit + 2), verdict.value))
        household.close_case(case_id)
        yield [case, household]
        return
    yield from _support(case, household, rng, region, at, visit)


def _support(
    case: Case,
    household: Household,
    rng: random.Random,
    region: str,
    at: Callable[[float], datetime],
    visit: int,
) -> Story:
    approver = Role.APPROVER
    dibao = Programme.URBAN_DIBAO if region[4] == "0" else Programme.RURAL_DIBAO
    case.publish_notice(at(visit + 1).date(), 7, by=_by(Role.CASEWORKER, at(visit + 1), "notice"))
    yield [case]
    decided = at(visit + 10)
    start = (decided.date() + timedelta(days=31)).replace(day=1)
    monthly = rng.randint(3, 9) * 10000
    case.enrol(
        dibao, monthly, rng.choice(("stable", "changing")), start, by=_by(approver, decided, "d")
    )
    yield [case]
    for extra, chance in ((Programme.TEMPORARY_RELIEF, 0.3), (Programme.MEDICAL_RELIEF, 0.1)):
        if rng.random() < chance:
            case.enrol(
                extra, rng.randint(10, 50) * 10000, "", start, by=_by(approver, decided, "d")
            )
            yield [case]
            paid = datetime.combine(start, datetime.min.time(), CST) + timedelta(hours=10)
            case.pay(
                extra,
                "one-off",
                case.enrolments[extra.value]["amount_fen"],
                "P",
                by=_by(approver, paid, "p"),
            )
            yield [case]
    if rng.random() < 0.2:
        case.refer("RF-1", "Red Cross", "major illness", by=_by(Role.CASEWORKER, decided, "r"))
        yield [case]
        accepted = rng.random() < 0.7
        case.answer_referral(
            "RF-1",
            accepted,
            300000 if accepted else 0,
            by=_by(Role.CASEWORKER, at(visit + 30), "a"),
        )
        yield [case]
    months = _months(start, rng.randint(1, 30))
    for index, day in enumerate(months):
        paid = datetime.combine(day, datetime.min.time(), CST) + timedelta(hours=10)
        case.pay(
            dibao,
            f"{day.year:04d}-{day.month:02d}",
            monthly,
            f"P{index}",
            by=_by(approver, paid, "m"),
        )
        yield [case]
        if index % 6 == 5:
            case.review(dibao, "continue", by=_by(Role.CASEWORKER, paid, "review"))
            yield [case]
        if rng.random() < 0.05:
            case.deliver_service(
                "companionship visit", "social org", by=_by(Role.CASEWORKER, paid, "s")
            )
            yield [case]
    if months and rng.random() < 0.3:
        ended = months[-1] + timedelta(days=5)
        moment = datetime.combine(ended, datetime.min.time(), CST) + timedelta(hours=11)
        for programme in case.active_programmes:
            case.exit_programme(Programme(programme), ended, by=_by(approver, moment, "income up"))
            yield [case]
        case.close(by=_by(approver, moment, "income above the line"))
        household.close_case(case.id)
        yield [case, household]


def generate(
    app: CaseWork, events: int, *, seed: int = 7, cohort: int = 2000, save_every: int = 1000
) -> int:
    """Append at least `events` events of interleaved case histories; how many were appended.

    Saves stay modest: one huge executemany in pipeline mode can deadlock psycopg
    (psycopg/psycopg#685: the server waits in ClientRead, the client in poll).
    """
    rng = random.Random(seed)
    appended = number = 0
    while appended < events:
        stories = [case_story(rng, number + i) for i in range(cohort)]
        number += cohort
        pending: dict[object, Aggregate] = {}
        while stories:
            alive = []
            for story in stories:
                step = next(story, None)
                if step is None:
                    continue
                alive.append(story)
                for aggregate in step:
                    pending[aggregate.id] = aggregate
                if len(pending) >= save_every // 2:
                    appended += _save(app, pending)
            stories = alive
        appended += _save(app, pending)
    return appended


def _save(app: CaseWork, pending: dict[object, Aggregate]) -> int:
    recordings = app.save(*pending.values())
    pending.clear()
    return len(recordings)


def main() -> None:
    """Generate histories into a schema: python -m bench.rebuild_histories URL SCHEMA EVENTS."""
    import sys
    import time

    from jiuzhu.bootstrap import eventstore_env

    database_url, schema, events = sys.argv[1], sys.argv[2], int(sys.argv[3])
    # The plain application: the audit chain and sealing only slow the writing down, and
    # the rebuild reads the events table the same way whichever wrote it.
    app = CaseWork(env=eventstore_env(database_url, schema=schema))
    started = time.perf_counter()
    appended = generate(app, events)
    seconds = time.perf_counter() - started
    print(f"{appended} {seconds:.1f}")
    app.close()


if __name__ == "__main__":
    main()
