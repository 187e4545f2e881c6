"""The seed's headline figures: tasks issued, risks eliminated, people under the guarantee.

"下达核查任务38万人次, 消除风险点12887条, 纳入兜底保障88.46万人": verification tasks
issued count every assignment (person-times); a risk eliminated is a case whose
verification first found the risk gone; people under the guarantee (兜底保障) are the
members of households currently enrolled in dibao or special hardship support.
Flows are counted by county and business month; the guarantee is a per-case stock.
"""

from __future__ import annotations

from typing import Any, ClassVar

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from domain.case import Case
from domain.values import Channel, Programme
from projections.folding import Batch, FoldingReadModel, Table, folds
from projections.regions import Criteria, Report, business_month

__all__ = ["FLOWS", "GUARANTEE", "Headline", "report"]

# Programmes of the guarantee (兜底保障): minimum living guarantee and special hardship.
GUARANTEE = frozenset(
    {Programme.URBAN_DIBAO.value, Programme.RURAL_DIBAO.value, Programme.SPECIAL_HARDSHIP.value}
)
TEMPORARY_RELIEF = Programme.TEMPORARY_RELIEF.value
FLOWS = (
    "cases_discovered",
    "monitoring_alerts",
    "verification_tasks_issued",
    "risks_eliminated",
    "temporary_relief_grants",
    "temporary_relief_fen",
)

CASES = Table(
    "headline_case",
    (
        ("case_id", "uuid"),
        ("region", "text"),
        ("household_size", "integer"),
        ("risk_eliminated", "boolean"),
        ("guarantee", "text[]"),
    ),
    loaded_by=frozenset(
        {
            Case.VerificationAssigned,
            Case.Verified,
            Case.Enrolled,
            Case.Exited,
            Case.Paid,
            Case.EmergencyReliefGranted,
        }
    ),
)


def _flows(**flows: int) -> tuple[int, ...]:
    """Deltas of the flows, in column order (flows not named add nothing)."""
    return tuple(flows.get(flow, 0) for flow in FLOWS)


# Deltas that never vary, made once: a million events fold through here.
_TASK_ISSUED = _flows(verification_tasks_issued=1)
_RISK_ELIMINATED = _flows(risks_eliminated=1)

COUNTS = Table(
    "headline_flow",
    (("region", "text"), ("month", "text"), *((flow, "bigint") for flow in FLOWS)),
    key=("region", "month"),
    counter=True,
)


class Headline(FoldingReadModel):
    """The seed's KPIs by county and month, and who is under the guarantee now."""

    name = "headline"
    tables: ClassVar = ("headline_flow", "headline_case")
    state_tables: ClassVar = (CASES,)
    counter_tables: ClassVar = (COUNTS,)
    ddl: ClassVar = (
        "CREATE TABLE IF NOT EXISTS {schema}.headline_case (case_id uuid PRIMARY KEY, "
        "region text NOT NULL, household_size integer NOT NULL, "
        "risk_eliminated boolean NOT NULL, guarantee text[] NOT NULL)",
        "CREATE TABLE IF NOT EXISTS {schema}.headline_flow (region text NOT NULL, "
        "month text NOT NULL, cases_discovered bigint NOT NULL, "
        "monitoring_alerts bigint NOT NULL, verification_tasks_issued bigint NOT NULL, "
        "risks_eliminated bigint NOT NULL, temporary_relief_grants bigint NOT NULL, "
        "temporary_relief_fen bigint NOT NULL, PRIMARY KEY (region, month))",
    )

    # Only temporary relief payments matter here: monthly ones are not even loaded for.
    filtered: ClassVar = frozenset({Case.Paid})

    def keeps(self, event: Case.Paid) -> bool:
        return event.programme == TEMPORARY_RELIEF

    def _add(self, batch: Batch, event: Case.Event, region: str, deltas: tuple[int, ...]) -> None:
        batch.add_all(COUNTS, (region, business_month(event.occurred_at)), deltas)

    def _case(self, batch: Batch, event: Case.Event) -> dict[str, Any] | None:
        return batch.row(CASES, event.originator_id)

    @folds(Case.Discovered)
    def _discovered(self, event: Case.Discovered, batch: Batch) -> None:
        batch.put(
            CASES,
            {
                "case_id": event.originator_id,
                "region": event.region,
                "household_size": event.household_size,
                "risk_eliminated": False,
                "guarantee": [],
            },
        )
        alert = int(event.channel == Channel.MONITORING_ALERT.value)
        self._add(batch, event, event.region, _flows(cases_discovered=1, monitoring_alerts=alert))

    @folds(Case.VerificationAssigned)
    def _assigned(self, event: Case.VerificationAssigned, batch: Batch) -> None:
        if (case := self._case(batch, event)) is not None:
            self._add(batch, event, case["region"], _TASK_ISSUED)

    @folds(Case.Verified)
    def _verified(self, event: Case.Verified, batch: Batch) -> None:
        if (case := self._case(batch, event)) is None:
            return
        case["household_size"] = event.household_size
        if event.verdict == "risk_eliminated" and not case["risk_eliminated"]:
            case["risk_eliminated"] = True
            self._add(batch, event, case["region"], _RISK_ELIMINATED)
        batch.touch(CASES, event.originator_id)

    @folds(Case.Enrolled)
    def _enrolled(self, event: Case.Enrolled, batch: Batch) -> None:
        if event.programme in GUARANTEE and (case := self._case(batch, event)) is not None:
            case["guarantee"] = sorted({*case["guarantee"], event.programme})
            batch.touch(CASES, event.originator_id)

    @folds(Case.Exited)
    def _exited(self, event: Case.Exited, batch: Batch) -> None:
        if event.programme in GUARANTEE and (case := self._case(batch, event)) is not None:
            case["guarantee"] = [p for p in case["guarantee"] if p != event.programme]
            batch.touch(CASES, event.originator_id)

    @folds(Case.Paid, Case.EmergencyReliefGranted)
    def _temporary_relief(self, event: Case.Paid, batch: Batch) -> None:
        if (case := self._case(batch, event)) is not None:
            grant = _flows(temporary_relief_grants=1, temporary_relief_fen=event.amount_fen)
            self._add(batch, event, case["region"], grant)


def report(curs: Cursor[DictRow], schema: str, criteria: Criteria) -> Report:
    """The headline figures per region: flows over the months, the guarantee as it is now."""
    sums = SQL(", ").join(SQL("sum({0})::bigint AS {0}").format(Identifier(f)) for f in FLOWS)
    curs.execute(
        SQL(
            "WITH flows AS (SELECT {group} AS region, {sums} FROM {schema}.headline_flow "
            "WHERE {region} AND {months} GROUP BY 1), "
            "guarantee AS (SELECT {group} AS region, "
            "count(*) FILTER (WHERE cardinality(guarantee) > 0) AS households_under_guarantee, "
            "coalesce(sum(household_size) FILTER (WHERE cardinality(guarantee) > 0), 0)::bigint "
            "AS people_under_guarantee FROM {schema}.headline_case WHERE {region} GROUP BY 1) "
            "SELECT region, {flows}, coalesce(households_under_guarantee, 0) "
            "AS households_under_guarantee, coalesce(people_under_guarantee, 0) "
            "AS people_under_guarantee FROM flows FULL JOIN guarantee USING (region) ORDER BY 1"
        ).format(
            group=criteria.group_sql(),
            sums=sums,
            schema=Identifier(schema),
            region=criteria.region_sql(),
            months=criteria.months_sql("month"),
            flows=SQL(", ").join(
                SQL("coalesce({0}, 0) AS {0}").format(Identifier(f)) for f in FLOWS
            ),
        )
    )
    rows = [dict(row) for row in curs.fetchall()]
    columns = ["region", *FLOWS, "households_under_guarantee", "people_under_guarantee"]
    return Report(
        title="Headline figures (the seed's KPIs)",
        columns=columns,
        rows=rows,
        bars=[(c, sum(int(r[c]) for r in rows)) for c in columns[1:] if not c.endswith("_fen")],
        notes=[
            "Tasks issued count every assignment (人次); the guarantee (兜底保障) is dibao and "
            "special hardship, now, whatever the months."
        ],
    )
