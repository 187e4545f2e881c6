"""Stacked relief (叠加救助): programmes and departments per case, referrals, services.

One application, several departments' benefits: each case row lists the programmes it
was ever enrolled in or granted (emergency relief is temporary relief) and their
departments, its referrals to social organisations and their answers, and the
services delivered. Referrals have a row each; services are counted by month and kind.
"""

from __future__ import annotations

from typing import ClassVar

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from domain.case import Case
from domain.values import Programme
from projections.folding import Batch, FoldingReadModel, Table, folds
from projections.regions import Criteria, Report, business_month

__all__ = ["StackedRelief", "report"]

# A referral's `need` is free text upstream systems fill with names, so the event store
# seals it per household (jiuzhu.privacy.mapper.FREE_TEXT); read models hold no personal
# data, so the row keeps only that there was one. The decrypting and the sealed decoders
# then fold to the same row, as replay demands.
NEED_WITHHELD = "[sealed]"

CASES = Table(
    "stacked_relief",
    (
        ("case_id", "uuid"),
        ("region", "text"),
        ("programmes", "text[]"),
        ("departments", "text[]"),
        ("emergency_grants", "integer"),
        ("referrals", "integer"),
        ("referrals_answered", "integer"),
        ("referrals_accepted", "integer"),
        ("social_aid_fen", "bigint"),
        ("services_delivered", "integer"),
    ),
    loaded_by=frozenset(
        {
            Case.Enrolled,
            Case.EmergencyReliefGranted,
            Case.Referred,
            Case.ReferralAnswered,
            Case.ServiceDelivered,
        }
    ),
)
REFERRALS = Table(
    "stacked_referral",
    (
        ("case_id", "uuid"),
        ("referral_id", "text"),
        ("organisation", "text"),
        ("need", "text"),
        ("referred_at", "timestamptz"),
        ("answered_at", "timestamptz"),
        ("accepted", "boolean"),
        ("amount_fen", "bigint"),
    ),
    key=("case_id", "referral_id"),
    loaded_by=frozenset({Case.ReferralAnswered}),
)
SERVICES = Table(
    "stacked_service",
    (("region", "text"), ("month", "text"), ("service", "text"), ("deliveries", "bigint")),
    key=("region", "month", "service"),
    counter=True,
)
_DEPARTMENT = {programme.value: programme.department.value for programme in Programme}


class StackedRelief(FoldingReadModel):
    """Measures stacked on each case, with its referrals and services."""

    name = "stacked_relief"
    tables: ClassVar = ("stacked_relief", "stacked_referral", "stacked_service")
    state_tables: ClassVar = (CASES, REFERRALS)
    counter_tables: ClassVar = (SERVICES,)
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS {schema}.stacked_relief (case_id uuid PRIMARY KEY, "
        "region text NOT NULL, programmes text[] NOT NULL, departments text[] NOT NULL, "
        "emergency_grants integer NOT NULL, referrals integer NOT NULL, "
        "referrals_answered integer NOT NULL, referrals_accepted integer NOT NULL, "
        "social_aid_fen bigint NOT NULL, services_delivered integer NOT NULL)",
        "CREATE TABLE IF NOT EXISTS {schema}.stacked_referral (case_id uuid NOT NULL, "
        "referral_id text NOT NULL, organisation text NOT NULL, need text NOT NULL, "
        "referred_at timestamptz NOT NULL, answered_at timestamptz, accepted boolean, "
        "amount_fen bigint NOT NULL, PRIMARY KEY (case_id, referral_id))",
        "CREATE TABLE IF NOT EXISTS {schema}.stacked_service (region text NOT NULL, "
        "month text NOT NULL, service text NOT NULL, deliveries bigint NOT NULL, "
        "PRIMARY KEY (region, month, service))",
    )

    @folds(Case.Discovered)
    def _discovered(self, event: Case.Discovered, batch: Batch) -> None:
        batch.put(
            CASES,
            {
                "case_id": event.originator_id,
                "region": event.region,
                "programmes": [],
                "departments": [],
                "emergency_grants": 0,
                "referrals": 0,
                "referrals_answered": 0,
                "referrals_accepted": 0,
                "social_aid_fen": 0,
                "services_delivered": 0,
            },
        )

    def _stack(self, batch: Batch, event: Case.Event, programme: str) -> None:
        case = batch.row(CASES, event.originator_id)
        if case is None:
            return
        # Kept sorted and distinct so a row is the same whatever order measures came in.
        case["programmes"] = sorted({*case["programmes"], programme})
        department = _DEPARTMENT.get(programme, "unknown")
        case["departments"] = sorted({*case["departments"], department})
        batch.touch(CASES, event.originator_id)

    @folds(Case.Enrolled)
    def _enrolled(self, event: Case.Enrolled, batch: Batch) -> None:
        self._stack(batch, event, event.programme)

    @folds(Case.EmergencyReliefGranted)
    def _emergency(self, event: Case.EmergencyReliefGranted, batch: Batch) -> None:
        self._stack(batch, event, event.programme)
        case = batch.row(CASES, event.originator_id)
        if case is not None:
            case["emergency_grants"] += 1

    @folds(Case.Referred)
    def _referred(self, event: Case.Referred, batch: Batch) -> None:
        case = batch.row(CASES, event.originator_id)
        if case is None:
            return
        case["referrals"] += 1
        batch.touch(CASES, event.originator_id)
        batch.put(
            REFERRALS,
            {
                "case_id": event.originator_id,
                "referral_id": event.referral_id,
                "organisation": event.organisation,
                "need": NEED_WITHHELD,
                "referred_at": event.occurred_at,
                "answered_at": None,
                "accepted": None,
                "amount_fen": 0,
            },
        )

    @folds(Case.ReferralAnswered)
    def _answered(self, event: Case.ReferralAnswered, batch: Batch) -> None:
        case = batch.row(CASES, event.originator_id)
        referral = batch.row(REFERRALS, (event.originator_id, event.referral_id))
        if case is None or referral is None:
            return
        referral.update(
            answered_at=event.occurred_at, accepted=event.accepted, amount_fen=event.amount_fen
        )
        batch.touch(REFERRALS, (event.originator_id, event.referral_id))
        case["referrals_answered"] += 1
        if event.accepted:
            case["referrals_accepted"] += 1
            case["social_aid_fen"] += event.amount_fen
        batch.touch(CASES, event.originator_id)

    @folds(Case.ServiceDelivered)
    def _service(self, event: Case.ServiceDelivered, batch: Batch) -> None:
        case = batch.row(CASES, event.originator_id)
        if case is None:
            return
        case["services_delivered"] += 1
        batch.touch(CASES, event.originator_id)
        batch.add(SERVICES, (case["region"], business_month(event.occurred_at), event.service), 1)


def report(curs: Cursor[DictRow], schema: str, criteria: Criteria) -> Report:
    """Per region: cases supported, how many with stacked measures, referrals, services."""
    curs.execute(
        SQL(
            "SELECT {group} AS region, "
            "count(*) FILTER (WHERE cardinality(programmes) > 0) AS supported, "
            "count(*) FILTER (WHERE cardinality(programmes) + referrals_accepted >= 2) "
            "AS stacked, "
            "count(*) FILTER (WHERE cardinality(departments) + "
            "(referrals_accepted > 0)::int >= 2) AS several_departments, "
            "sum(emergency_grants)::bigint AS emergency_grants, "
            "sum(referrals)::bigint AS referrals, "
            "sum(referrals_answered)::bigint AS referrals_answered, "
            "sum(referrals_accepted)::bigint AS referrals_accepted, "
            "sum(social_aid_fen)::bigint AS social_aid_fen, "
            "sum(services_delivered)::bigint AS services_delivered "
            "FROM {schema}.stacked_relief WHERE {region} GROUP BY 1 ORDER BY 1"
        ).format(
            group=criteria.group_sql(), schema=Identifier(schema), region=criteria.region_sql()
        )
    )
    return Report(
        title="Stacked relief (叠加救助): measures per case",
        columns=[
            "region", "supported", "stacked", "several_departments", "emergency_grants",
            "referrals", "referrals_answered", "referrals_accepted", "social_aid_fen",
            "services_delivered",
        ],
        rows=[dict(row) for row in curs.fetchall()],
        notes=[
            "Stacked: two or more measures (programmes, plus accepted referrals to social "
            "organisations); cases of every month (per-case totals)."
        ],
    )  # fmt: skip
