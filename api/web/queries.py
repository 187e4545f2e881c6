"""What the pages read from the read models (never from the event store, except a case)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier, Literal

from projections import funnel, headline, time_to_support, verification_tasks
from projections.regions import Criteria, Level, region_matches

__all__ = ["Dashboard", "Inbox", "approvals", "dashboard", "inbox"]

# How far ahead a task counts as "due" in the inbox.
HORIZON_DAYS = 30
LIMIT = 50


@dataclass
class Inbox:
    """A person's open tasks by kind, overdue ones first."""

    visits: list[dict[str, Any]] = field(default_factory=list)
    notices: list[dict[str, Any]] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    referrals: list[dict[str, Any]] = field(default_factory=list)
    grants: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing waits."""
        return not (self.visits or self.notices or self.reviews or self.referrals or self.grants)


def _rows(curs: Cursor[DictRow], query: SQL, **parts: Any) -> list[dict[str, Any]]:
    curs.execute(query.format(**parts))
    return [dict(row) for row in curs.fetchall()]


def inbox(curs: Cursor[DictRow], schema: str, actor: str, role: str, today: date) -> Inbox:
    """Visits assigned to the actor, and the notices, reviews, referrals and grants waiting."""
    s, t = Identifier(schema), Literal(today)
    soon = Literal(today + timedelta(days=HORIZON_DAYS))
    result = Inbox()
    if role == "caseworker":
        result.visits = _rows(
            curs,
            SQL(
                "SELECT v.case_id, w.household_id, v.region, v.assignee, v.due_on, "
                "v.due_on < {t} AS overdue, v.escalated_at IS NOT NULL AS escalated "
                "FROM {s}.verification_task v "
                "LEFT JOIN {s}.worklist_case w USING (case_id) "
                "WHERE v.assignee = {actor} AND v.verified_at IS NULL AND v.closed_at IS NULL "
                "ORDER BY v.due_on < {t} DESC, v.due_on LIMIT {n}"
            ),
            s=s, t=t, actor=Literal(actor), n=Literal(LIMIT),
        )  # fmt: skip
        result.referrals = _rows(
            curs,
            SQL(
                "SELECT r.case_id, w.household_id, w.region, r.referral_id, r.organisation, "
                "r.need, r.referred_at, r.referred_at < {t} - 14 AS overdue "
                "FROM {s}.stacked_referral r JOIN {s}.worklist_case w USING (case_id) "
                "WHERE r.answered_at IS NULL AND w.closed_at IS NULL "
                "ORDER BY r.referred_at LIMIT {n}"
            ),
            s=s, t=t, n=Literal(LIMIT),
        )  # fmt: skip
    if role in ("caseworker", "approver"):
        result.notices = _rows(
            curs,
            SQL(
                "SELECT case_id, household_id, region, notice_ends_on, objection_open, "
                "notice_ends_on <= {t} AS overdue FROM {s}.worklist_case "
                "WHERE closed_at IS NULL AND notice_ends_on IS NOT NULL "
                "AND notice_ends_on <= {soon} "
                "AND NOT enrolled && ARRAY['urban_dibao', 'rural_dibao'] "
                "ORDER BY notice_ends_on LIMIT {n}"
            ),
            s=s, t=t, soon=soon, n=Literal(LIMIT),
        )  # fmt: skip
        result.reviews = _rows(
            curs,
            SQL(
                "SELECT p.case_id, w.household_id, w.region, p.programme, p.review_due, "
                "p.review_due < {t} AS overdue FROM {s}.programme_roll p "
                "JOIN {s}.worklist_case w USING (case_id) "
                "WHERE p.ended_on IS NULL AND p.review_due <= {soon} AND w.closed_at IS NULL "
                "ORDER BY p.review_due LIMIT {n}"
            ),
            s=s, t=t, soon=soon, n=Literal(LIMIT),
        )  # fmt: skip
    if role == "approver":
        result.grants = _grants(curs, s, today)
    return result


def _grants(curs: Cursor[DictRow], s: Identifier, today: date) -> list[dict[str, Any]]:
    return _rows(
        curs,
        SQL(
            "SELECT case_id, household_id, region, emergency_open, emergency_since, "
            "emergency_since < {t} - 30 AS overdue FROM {s}.worklist_case "
            "WHERE closed_at IS NULL AND cardinality(emergency_open) > 0 "
            "ORDER BY emergency_since LIMIT {n}"
        ),
        s=s, t=Literal(today), n=Literal(LIMIT),
    )  # fmt: skip


def approvals(curs: Cursor[DictRow], schema: str, today: date) -> dict[str, list[dict[str, Any]]]:
    """Enrolments decided and not yet made, and emergency grants awaiting regularisation."""
    s = Identifier(schema)
    enrolments = _rows(
        curs,
        SQL(
            "SELECT case_id, household_id, region, pending_programmes, assessed_by, assessed_at, "
            "notice_ends_on, objection_open, consent, "
            "(notice_ends_on IS NOT NULL AND notice_ends_on <= {t} AND NOT objection_open) "
            "AS notice_done FROM {s}.worklist_case "
            "WHERE closed_at IS NULL AND cardinality(pending_programmes) > 0 "
            "ORDER BY assessed_at LIMIT {n}"
        ),
        s=s, t=Literal(today), n=Literal(LIMIT),
    )  # fmt: skip
    return {"enrolments": enrolments, "grants": _grants(curs, s, today)}


@dataclass
class Dashboard:
    """The figures of one region, rolled up to the next level down."""

    region: str | None
    level: Level
    funnel: list[dict[str, Any]]
    funnel_totals: list[tuple[str, int]]
    payments: list[dict[str, Any]]
    overdue: list[dict[str, Any]]
    time_to_support: list[dict[str, Any]]
    headline: dict[str, int]


def _next_level(region: str | None) -> Level:
    return {None: Level.PROVINCE, 2: Level.CITY}.get(
        None if region is None else len(region), Level.COUNTY
    )


def dashboard(curs: Cursor[DictRow], schema: str, region: str | None, today: date) -> Dashboard:
    """The dashboard of a region (None: every province), each figure by the next level down."""
    level = _next_level(region)
    criteria = Criteria(region=region, level=level, today=today)
    funnel_report = funnel.report(curs, schema, criteria)
    tasks = verification_tasks.report(curs, schema, criteria)
    by_region: dict[str, dict[str, int]] = {}
    for row in tasks.rows:
        entry = by_region.setdefault(row["region"], {"open": 0, "overdue": 0, "done": 0})
        for key in entry:
            entry[key] += int(row[key] or 0)
    overdue = [{"region": r, **v} for r, v in sorted(by_region.items())]
    support = time_to_support.report(curs, schema, Criteria(region=region, level=level))
    head = headline.report(curs, schema, Criteria(region=region, level=level, today=today))
    totals: dict[str, int] = {}
    for row in head.rows:
        for key, value in row.items():
            if key != "region":
                totals[key] = totals.get(key, 0) + int(value or 0)
    payments = _rows(
        curs,
        SQL(
            "SELECT month, programme, sum(amount_fen)::bigint AS amount_fen "
            "FROM {s}.payments_ledger WHERE {region} GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        s=Identifier(schema), region=region_matches("region", region),
    )  # fmt: skip
    return Dashboard(
        region=region,
        level=level,
        funnel=funnel_report.rows,
        funnel_totals=funnel_report.bars,
        payments=payments,
        overdue=overdue,
        time_to_support=support.rows,
        headline=totals,
    )
