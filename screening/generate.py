"""Synthetic batches: department extracts and a monitored population with planted hits.

Everything is made inside DuckDB from `range()` and a seeded hash (no Python loop over
rows), so a seed-sized batch of 3.77 million records takes seconds. Distributions are
skewed as the real ones are (household sizes, counties, costs, incomes). Most department
records concern people outside the monitored population, as a province-wide extract does.
Records about monitored people who were not planted are kept clear of every rule under
the shipped thresholds (screening/policy.toml), so the default rules find exactly the
planted households, whose number per rule is written to manifest.json (and the
households themselves to planted.csv).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import duckdb

from screening.regions import SHAANXI_COUNTIES
from screening.sources import POPULATION, SOURCES

__all__ = ["PLANTED_RULES", "Manifest", "generate"]

# Rules planted, by the households they need: any, one-member, enrolled.
PLANTED_RULES = (
    "medical_self_pay",
    "income_drop",
    "newly_disabled",
    "sole_member_death",
    "vehicle_registered",
    "property_registered",
    "business_registered",
)
# Shares of the department records by source (medical settlements dominate).
_SHARES = {
    "medical": 0.45,
    "income": 0.25,
    "property": 0.12,
    "business": 0.06,
    "disability": 0.06,
    "deaths": 0.06,
}
_POPULATION_SHARE = 0.3  # of background records, the share about monitored people
RECORDS_PER_HOUSEHOLD = 12  # department records per monitored household (seed: ~314k)
HIT_RATE = 0.0125  # the seed's 380,000 tasks for 30.18 million records


@dataclass
class Manifest:
    """What a generated batch holds and what the rules must find in it."""

    seed: int
    as_of: str
    format: str
    records: int  # department records written, all sources
    files: dict[str, int] = field(default_factory=dict)  # rows per file, population included
    households: int = 0
    members: int = 0
    planted: dict[str, int] = field(default_factory=dict)

    def write(self, out: Path) -> None:
        """Write manifest.json beside the extracts."""
        (out / "manifest.json").write_text(json.dumps(asdict(self), indent=2) + "\n")


def _setup(con: duckdb.DuckDBPyConnection, seed: int, as_of: date) -> None:
    codes = list(SHAANXI_COUNTIES)
    # Zipf-like weights over the counties, in an order shuffled by the seed: a few large.
    order = sorted(codes, key=lambda code: zlib.crc32(f"{seed}:{code}".encode()))
    weights = [1.0 / (rank + 1) ** 0.8 for rank in range(len(order))]
    total, low, rows = sum(weights), 0.0, []
    for code, weight in zip(order, weights, strict=True):
        rows.append((code, low, low + weight / total))
        low += weight / total
    rows[-1] = (rows[-1][0], rows[-1][1], 1.0000001)
    con.execute("CREATE TABLE regions (code VARCHAR, lo DOUBLE, hi DOUBLE)")
    con.executemany("INSERT INTO regions VALUES (?, ?, ?)", rows)
    codes_sql = ", ".join(f"'{code}'" for code in codes)
    con.execute(f"CREATE MACRO u(i, tag) AS (hash(i, tag, {int(seed)}) % 1000003) / 1000003.0")
    con.execute(
        f"CREATE MACRO any_county(i) AS "
        f"[{codes_sql}][(1 + hash(i, 'county') % {len(codes)})::BIGINT]"
    )
    con.execute(f"CREATE MACRO as_of() AS DATE '{as_of.isoformat()}'")
    con.execute("CREATE MACRO days_before(n) AS (as_of() - CAST(n AS INTEGER))")


def _population(con: duckdb.DuckDBPyConnection, households: int) -> None:
    con.execute(
        f"""
        CREATE TABLE hh AS
        SELECT i AS h, r.code AS region,
               'HH-' || r.code || '-' || lpad(i::VARCHAR, 8, '0') AS household_id,
               CASE WHEN us < 0.30 THEN 1 WHEN us < 0.55 THEN 2 WHEN us < 0.75 THEN 3
                    WHEN us < 0.90 THEN 4 WHEN us < 0.97 THEN 5 ELSE 6 END AS size,
               CASE WHEN uc < 0.35 THEN 'dibao' WHEN uc < 0.40 THEN 'special_hardship'
                    WHEN uc < 0.80 THEN 'edge_of_poverty' ELSE 'sudden_hardship' END AS category
        FROM (SELECT i, u(i, 'region') AS ur, u(i, 'size') AS us, u(i, 'category') AS uc
              FROM range({households}) t(i)) p
        JOIN regions r ON p.ur >= r.lo AND p.ur < r.hi
        """
    )
    con.execute(
        "ALTER TABLE hh ADD COLUMN status VARCHAR; "
        "UPDATE hh SET status = CASE WHEN category IN ('dibao', 'special_hardship') "
        "THEN 'enrolled' ELSE 'monitored' END"
    )
    con.execute(
        """
        CREATE TABLE mem AS
        SELECT (row_number() OVER (ORDER BY h, m) - 1)::BIGINT AS k, h, m,
               region || lpad((h * 8 + m)::VARCHAR, 12, '0') AS person_id
        FROM hh CROSS JOIN range(6) t(m) WHERE m < size
        """
    )


def _plant(con: duckdb.DuckDBPyConnection, per_rule: int) -> None:
    k = int(per_rule)
    con.execute(
        f"""
        CREATE TABLE planted AS
        WITH ranked AS (SELECT h, size, status, hash(h, 'plant') AS o FROM hh),
        death AS (SELECT h, 'sole_member_death' AS rule, 0 AS n FROM ranked
                  WHERE size = 1 ORDER BY o LIMIT {k}),
        enrolled AS (SELECT h, row_number() OVER (ORDER BY o) - 1 AS n FROM (
                     SELECT * FROM ranked WHERE status = 'enrolled'
                     AND h NOT IN (SELECT h FROM death) ORDER BY o LIMIT {3 * k})),
        taken AS (SELECT h FROM death UNION ALL SELECT h FROM enrolled),
        others AS (SELECT h, row_number() OVER (ORDER BY o) - 1 AS n FROM (
                   SELECT * FROM ranked WHERE h NOT IN (SELECT h FROM taken)
                   ORDER BY o LIMIT {3 * k}))
        SELECT h, rule, n FROM death
        UNION ALL SELECT h, ['vehicle_registered', 'property_registered',
                             'business_registered'][(1 + n % 3)::BIGINT], n // 3 FROM enrolled
        UNION ALL SELECT h, ['medical_self_pay', 'income_drop',
                             'newly_disabled'][(1 + n % 3)::BIGINT], n // 3 FROM others
        """
    )
    # Where a planted household's records go: its first member.
    con.execute(
        "CREATE TABLE target AS SELECT p.h, p.rule, p.n, m.person_id, hh.household_id "
        "FROM planted p JOIN mem m ON m.h = p.h AND m.m = 0 JOIN hh ON hh.h = p.h"
    )


def _background(con: duckdb.DuckDBPyConnection, source: str, count: int) -> None:
    """Records of one source: a share about monitored people (kept clear of every rule)."""
    share = _POPULATION_SHARE
    con.execute(
        f"""
        CREATE TABLE who_{source} AS
        SELECT i, u(i, '{source}:v') AS v, u(i, '{source}:w') AS w,
               CASE WHEN p.h IS NULL AND x.k IS NOT NULL THEN x.person_id
                    ELSE any_county(i) || lpad((900000000000 + i)::VARCHAR, 12, '0') END
                 AS person_id,
               p.h IS NULL AND x.k IS NOT NULL AS monitored,
               coalesce(hh.status, '') AS status, coalesce(hh.size, 0) AS size
        FROM range({count}) t(i)
        LEFT JOIN mem x ON u(i, '{source}:pop') < {share}
             AND x.k = hash(i, '{source}:who') % (SELECT count(*) FROM mem)
        LEFT JOIN hh ON hh.h = x.h
        LEFT JOIN planted p ON p.h = x.h
        """
    )


def _sources(con: duckdb.DuckDBPyConnection, counts: dict[str, int]) -> None:
    for source, count in counts.items():
        _background(con, source, count)
    con.execute(
        """
        CREATE TABLE medical AS
        SELECT 'MC' || lpad(i::VARCHAR, 10, '0') AS claim_id, person_id,
               days_before(v * 364) AS settled_on,
               (self_pay * (1.5 + 3 * w))::BIGINT AS total_fen, self_pay AS self_pay_fen
        FROM (SELECT *, CASE WHEN monitored THEN (1000 + w * 39000)::BIGINT
                             ELSE (100 * pow(10, 1 + 4 * v * v))::BIGINT END AS self_pay
              FROM who_medical)
        UNION ALL
        SELECT 'MP' || lpad(h::VARCHAR, 10, '0'), person_id, days_before(u(h, 'md') * 300),
               ((CASE WHEN n % 2 = 0 THEN 2000000 + (u(h, 'mv') * 3000000)::BIGINT
                      ELSE 800000 END) * 2.5)::BIGINT,
               CASE WHEN n % 2 = 0 THEN 2000000 + (u(h, 'mv') * 3000000)::BIGINT
                    ELSE 800000 END
        FROM target WHERE rule = 'medical_self_pay'
        """
    )
    con.execute(
        """
        CREATE TABLE income AS
        SELECT person_id, 'EMP-' || lpad(i::VARCHAR, 9, '0') AS employer,
               prev AS prev_annual_fen, (prev * (0.85 + 0.3 * w))::BIGINT AS annual_fen
        FROM (SELECT *, CASE WHEN monitored THEN (2000000 + v * 6000000)::BIGINT
                             ELSE (1000000 + pow(v, 3) * 30000000)::BIGINT END AS prev
              FROM who_income)
        UNION ALL
        SELECT person_id, 'EMP-P' || lpad(h::VARCHAR, 8, '0'), prev,
               (prev * (0.2 + 0.4 * u(h, 'id')))::BIGINT
        FROM (SELECT *, (3600000 + u(h, 'ip') * 2400000)::BIGINT AS prev FROM target)
        WHERE rule = 'income_drop'
        UNION ALL  -- the households planted for the share-of-income branch earn little
        SELECT person_id, 'EMP-Q' || lpad(h::VARCHAR, 8, '0'), 1200000, 1200000
        FROM target WHERE rule = 'medical_self_pay' AND n % 2 = 1
        """
    )
    con.execute(
        """
        CREATE TABLE disability AS
        SELECT 'DC' || lpad(i::VARCHAR, 10, '0') AS certificate_id, person_id,
               1 + (w * 4)::INTEGER % 4 AS grade,
               days_before(CASE WHEN monitored THEN 200 + v * 3000 ELSE v * 3000 END)
                 AS certified_on
        FROM who_disability
        UNION ALL
        SELECT 'DP' || lpad(h::VARCHAR, 10, '0'), person_id, 1 + (u(h, 'dg') * 4)::INTEGER % 4,
               days_before(u(h, 'dd') * 30)
        FROM target WHERE rule = 'newly_disabled'
        """
    )
    con.execute(
        """
        CREATE TABLE deaths AS
        SELECT 'DR' || lpad(i::VARCHAR, 10, '0') AS registration_ref,
               CASE WHEN monitored AND size = 1
                    THEN any_county(i) || lpad((900000000000 + i)::VARCHAR, 12, '0')
                    ELSE person_id END AS person_id,
               days_before(v * 364) AS date_of_death
        FROM who_deaths
        UNION ALL
        SELECT 'DRP' || lpad(h::VARCHAR, 9, '0'), person_id, days_before(u(h, 'xd') * 40)
        FROM target WHERE rule = 'sole_member_death'
        """
    )
    con.execute(
        """
        CREATE TABLE property AS
        SELECT 'RG' || lpad(i::VARCHAR, 10, '0') AS registration_ref, person_id, kind,
               CASE WHEN kind = 'vehicle' AND monitored AND status = 'enrolled'
                    THEN (200000 + w * 1500000)::BIGINT
                    WHEN kind IN ('vehicle', 'farm_vehicle')
                    THEN (500000 + pow(w, 2) * 40000000)::BIGINT
                    ELSE (10000000 + pow(w, 2) * 300000000)::BIGINT END AS value_fen,
               days_before(v * 7000) AS registered_on
        FROM (SELECT *, CASE WHEN monitored AND status = 'enrolled'
                             THEN CASE WHEN v < 0.5 THEN 'farm_vehicle' ELSE 'vehicle' END
                             WHEN v < 0.50 THEN 'residence' WHEN v < 0.60 THEN 'commercial'
                             WHEN v < 0.95 THEN 'vehicle' ELSE 'farm_vehicle' END AS kind
              FROM who_property)
        UNION ALL
        SELECT 'RV' || lpad(h::VARCHAR, 10, '0'), person_id, 'vehicle',
               (6000000 + u(h, 'vv') * 24000000)::BIGINT, days_before(u(h, 'vd') * 400)
        FROM target WHERE rule = 'vehicle_registered'
        UNION ALL
        SELECT 'RP' || lpad(h::VARCHAR, 9, '0') || t.j, person_id,
               CASE WHEN t.j = 1 AND n % 2 = 1 THEN 'commercial' ELSE 'residence' END,
               (30000000 + u(h * 2 + t.j, 'pv') * 100000000)::BIGINT,
               days_before(u(h * 2 + t.j, 'pd') * 3000)
        FROM target CROSS JOIN range(2) t(j) WHERE rule = 'property_registered'
        """
    )
    con.execute(
        """
        CREATE TABLE business AS
        SELECT '91610' || lpad(i::VARCHAR, 13, '0') AS credit_code, person_id,
               CASE WHEN monitored AND status = 'enrolled' THEN 'deregistered'
                    WHEN w < 0.85 THEN 'active' ELSE 'deregistered' END AS status,
               (1000000 + pow(v, 3) * 1000000000)::BIGINT AS capital_fen,
               days_before(w * 5000) AS registered_on
        FROM who_business
        UNION ALL
        SELECT '91619' || lpad(h::VARCHAR, 13, '0'), person_id, 'active',
               (10000000 + u(h, 'bc') * 190000000)::BIGINT, days_before(u(h, 'bd') * 600)
        FROM target WHERE rule = 'business_registered'
        """
    )


def generate(
    out: Path,
    *,
    records: int,
    seed: int = 1,
    as_of: date = date(2023, 6, 30),
    hits_per_rule: int | None = None,
    file_format: str = "parquet",
    households: int | None = None,
) -> Manifest:
    """Write a batch's extracts (one file per source), population, manifest and planted list."""
    if file_format not in ("parquet", "csv"):
        raise ValueError(f"format {file_format!r} is neither parquet nor csv")
    if records < 1:
        raise ValueError(f"records {records} must be at least 1")
    out.mkdir(parents=True, exist_ok=True)
    per_rule = hits_per_rule
    if per_rule is None:
        per_rule = max(1, round(records * HIT_RATE / len(PLANTED_RULES)))
    household_count = households or max(100, records // RECORDS_PER_HOUSEHOLD, 12 * per_rule)
    con = duckdb.connect()
    try:
        con.execute(
            "SET threads = 2; SET memory_limit = '1500MB'; SET preserve_insertion_order = false"
        )
        con.execute("SET enable_progress_bar = false")
        _setup(con, seed, as_of)
        _population(con, household_count)
        _plant(con, per_rule)
        planted_rows = {
            "medical": per_rule, "income": per_rule + per_rule // 2, "disability": per_rule,
            "deaths": per_rule, "property": 3 * per_rule, "business": per_rule,
        }  # fmt: skip
        background = max(0, records - sum(planted_rows.values()))
        counts = {name: int(background * share) for name, share in _SHARES.items()}
        _sources(con, counts)
        manifest = Manifest(seed=seed, as_of=as_of.isoformat(), format=file_format, records=0)
        options = "(FORMAT parquet)" if file_format == "parquet" else "(FORMAT csv, HEADER)"
        con.execute(
            "CREATE VIEW population AS SELECT m.person_id, hh.household_id, hh.region, "
            "hh.category, hh.status FROM mem m JOIN hh USING (h)"
        )
        for source in (POPULATION, *SOURCES):
            path = out / f"{source.name}.{file_format}"
            columns = ", ".join(source.column_names)
            # Rows in a seeded order: the planted ones are not all at the end.
            con.execute(
                f"COPY (SELECT {columns} FROM {source.name} "
                f"ORDER BY hash({source.key[0]}, 'order')) TO '{path}' {options}"
            )
            rows = con.execute(f"SELECT count(*) FROM {source.name}").fetchone()
            manifest.files[source.name] = int(rows[0]) if rows else 0
        manifest.records = sum(n for name, n in manifest.files.items() if name != POPULATION.name)
        manifest.households = household_count
        manifest.members = manifest.files[POPULATION.name]
        planted = con.execute("SELECT rule, count(*) FROM planted GROUP BY rule").fetchall()
        manifest.planted = dict.fromkeys(PLANTED_RULES, 0) | {r: int(n) for r, n in planted}
        con.execute(
            f"COPY (SELECT t.household_id, t.rule FROM target t ORDER BY 1) "
            f"TO '{out / 'planted.csv'}' (FORMAT csv, HEADER)"
        )
        manifest.write(out)
        return manifest
    finally:
        con.close()
