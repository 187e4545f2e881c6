"""The comparison itself: extracts loaded into DuckDB, then each rule's query, all in SQL.

`compare()` loads the population and every source (checked file by file, screening.load),
builds `members` (person -> household, with the household's county, category and status)
and `households` (one row each, with its size), then runs the rules; the hits land in the
table `hits`, one row per rule and household, in a fixed order (household, rule) so the
intake receives them in the same order on every run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from screening.load import FileReport, create_county_table, load_source
from screening.policy import ScreeningPolicy
from screening.rules import Rule, RuleError
from screening.sources import POPULATION, SOURCES

__all__ = ["Comparison", "PopulationError", "compare", "connect"]

# Hit columns, in the order `hits` holds them.
HIT_COLUMNS = ("rule", "household_id", "region", "size", "status", "finding", "indicators")


class PopulationError(ValueError):
    """No usable monitored population: nothing to compare against."""


@dataclass
class Comparison:
    """What a comparison read and found: per file, per rule, and how long it took."""

    files: list[FileReport] = field(default_factory=list)
    households: int = 0
    members: int = 0
    hits: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def records(self) -> dict[str, int]:
        """Department records compared, per source (accepted rows; population apart)."""
        return {f.source: f.accepted for f in self.files if f.source != POPULATION.name}


def connect(memory_limit: str = "1500MB", threads: int = 2, spill: Path | None = None) -> Any:
    """An in-process DuckDB bounded in memory (it spills to disk beyond the limit)."""
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET threads = {int(threads)}")
    con.execute("SET enable_progress_bar = false")
    if spill is not None:
        con.execute(f"SET temp_directory = '{spill}'")
    return con


def _population(con: duckdb.DuckDBPyConnection, roll_csv: Path | None) -> None:
    """members and households from the population file, or the roll's households."""
    if roll_csv is None:
        con.execute(
            "CREATE OR REPLACE TABLE members AS SELECT person_id, household_id, region, "
            "category, status FROM population"
        )
    else:
        # The programme roll says which households are watched and enrolled; the members
        # file (civil affairs' household register) maps people to them.
        con.execute(
            f"CREATE OR REPLACE TABLE roll AS SELECT * FROM read_csv('{roll_csv}', header = true, "
            "columns = {'household_id': 'VARCHAR', 'region': 'VARCHAR', 'category': 'VARCHAR', "
            "'status': 'VARCHAR'})"
        )
        con.execute(
            "CREATE OR REPLACE TABLE members AS SELECT p.person_id, r.household_id, r.region, "
            "r.category, r.status FROM population p JOIN roll r USING (household_id)"
        )
    con.execute(
        "CREATE OR REPLACE TABLE households AS SELECT household_id, any_value(region) AS region, "
        "any_value(category) AS category, any_value(status) AS status, count(*)::INTEGER AS size "
        "FROM members GROUP BY household_id"
    )


def _parameters(rule: Rule, policy: ScreeningPolicy, as_of: date) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in rule.parameters:
        if name == "as_of":
            values[name] = as_of
        elif name in policy.thresholds:
            values[name] = policy.thresholds[name]
        else:
            raise RuleError(
                f"rule {rule.name} reads ${name}, which the policy {policy.source} lacks"
            )
    return values


def run_rules(
    con: duckdb.DuckDBPyConnection, rules: Sequence[Rule], policy: ScreeningPolicy, as_of: date
) -> dict[str, int]:
    """Run each rule into `hits`; hits per rule."""
    con.execute(
        "CREATE OR REPLACE TABLE rule_hits (rule VARCHAR, household_id VARCHAR, "
        "finding VARCHAR, indicators VARCHAR)"
    )
    for rule in rules:
        query = rule.sql.strip().rstrip(";")
        # One hit per household and rule, whatever the query returns.
        con.execute(
            f"INSERT INTO rule_hits SELECT '{rule.name}', household_id, finding, "
            f"CAST(indicators AS VARCHAR) FROM (\n{query}\n) "
            "QUALIFY row_number() OVER (PARTITION BY household_id ORDER BY finding) = 1",
            _parameters(rule, policy, as_of),
        )
    con.execute(
        "CREATE OR REPLACE TABLE hits AS SELECT r.rule, r.household_id, h.region, h.size, "
        "h.status, r.finding, r.indicators FROM rule_hits r JOIN households h USING (household_id) "
        "ORDER BY r.household_id, r.rule"
    )
    counts = dict(con.execute("SELECT rule, count(*) FROM hits GROUP BY rule").fetchall())
    return {rule.name: int(counts.get(rule.name, 0)) for rule in rules}


def compare(
    con: duckdb.DuckDBPyConnection,
    directory: Path,
    rules: Sequence[Rule],
    policy: ScreeningPolicy,
    as_of: date,
    *,
    roll_csv: Path | None = None,
    progress: Callable[[FileReport], None] | None = None,
) -> Comparison:
    """Load the batch in `directory` and run the rules on it (PopulationError if unusable)."""
    result = Comparison()
    started = time.perf_counter()
    create_county_table(con)
    for source in (POPULATION, *SOURCES):
        report = load_source(con, directory, source)
        result.files.append(report)
        if progress is not None:
            progress(report)
        if source is POPULATION and (report.error or report.accepted == 0):
            raise PopulationError(
                f"no monitored population to compare against: {report.describe()}"
            )
    result.seconds["load"] = time.perf_counter() - started
    _population(con, roll_csv)
    counted = con.execute("SELECT count(*), count(DISTINCT household_id) FROM members").fetchone()
    result.members, result.households = (int(counted[0]), int(counted[1])) if counted else (0, 0)
    started = time.perf_counter()
    result.hits = run_rules(con, rules, policy, as_of)
    result.seconds["rules"] = time.perf_counter() - started
    return result
