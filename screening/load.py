"""Loading a batch's extracts into DuckDB, checked file by file; bad rows reported, not fatal.

A file that cannot be used at all (absent, unreadable, a required column missing) is
refused whole and its source left empty; in a usable file each row is checked: a required
value missing, a value that does not cast to the column's type, a county code that is not
one of Shaanxi's (GB/T 2260), or a key already seen (a duplicate: the first row is kept).
The report names the file, the rows read and accepted, and the rejected rows by reason,
with the first few line numbers of each. The rest of the batch goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from screening.regions import SHAANXI_COUNTIES
from screening.sources import Source

__all__ = ["FileReport", "find_file", "load_source"]

_EXAMPLES = 3


@dataclass
class FileReport:
    """What became of one extract: rows read, accepted, rejected by reason."""

    source: str
    path: str | None
    rows: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[int]] = field(default_factory=dict)  # reason -> first line numbers
    error: str | None = None  # the whole file refused, and why

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "source": self.source,
            "path": self.path,
            "rows": self.rows,
            "accepted": self.accepted,
            "rejected": dict(self.rejected),
            "examples": {k: list(v) for k, v in self.examples.items()},
            "error": self.error,
        }

    def describe(self) -> str:
        """One line for the terminal."""
        name = Path(self.path).name if self.path else f"{self.source}.*"
        if self.error:
            return f"{name}: refused: {self.error}"
        problems = ", ".join(
            f"{count} {reason.replace('_', ' ')} (line {_lines(self.examples.get(reason, []))})"
            for reason, count in sorted(self.rejected.items())
        )
        return f"{name}: {self.accepted:,} of {self.rows:,} rows accepted" + (
            f"; rejected: {problems}" if problems else ""
        )


def _lines(lines: list[int]) -> str:
    return ", ".join(map(str, lines)) + ("…" if len(lines) == _EXAMPLES else "")


def find_file(directory: Path, source: Source) -> Path | None:
    """The source's file in a batch directory (Parquet preferred), or None."""
    for suffix in (".parquet", ".csv"):
        path = directory / f"{source.name}{suffix}"
        if path.exists():
            return path
    return None


def _empty(con: duckdb.DuckDBPyConnection, source: Source) -> None:
    columns = ", ".join(f"{name} {kind}" for name, kind in source.columns)
    con.execute(f"CREATE OR REPLACE TABLE {source.name} ({columns})")


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def load_source(con: duckdb.DuckDBPyConnection, directory: Path, source: Source) -> FileReport:
    """Load one source into table `source.name` (empty if refused); its report."""
    path = find_file(directory, source)
    report = FileReport(source=source.name, path=str(path) if path else None)
    if path is None:
        _empty(con, source)
        report.error = f"no {source.name}.parquet or {source.name}.csv in {directory}"
        return report
    reader = (
        f"read_parquet({_quote(path)})"
        if path.suffix == ".parquet"
        else f"read_csv({_quote(path)}, header = true, all_varchar = true)"
    )
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE raw_rows AS SELECT * FROM {reader}")
    except duckdb.Error as error:
        _empty(con, source)
        report.error = f"unreadable: {str(error).splitlines()[0]}"
        return report
    present = {row[0] for row in con.execute("DESCRIBE raw_rows").fetchall()}
    missing = [name for name in source.column_names if name not in present]
    if missing:
        _empty(con, source)
        report.error = f"missing column(s) {', '.join(missing)}"
        con.execute("DROP TABLE raw_rows")
        return report
    casts = ", ".join(f"TRY_CAST({name} AS {kind}) AS {name}" for name, kind in source.columns)
    missing_value = " OR ".join(f"{name} IS NULL" for name in source.column_names)
    wrong_type = " OR ".join(f"TRY_CAST({name} AS {kind}) IS NULL" for name, kind in source.columns)
    region = source.region_column
    bad_region = (
        f"WHEN CAST({region} AS VARCHAR) NOT IN (SELECT code FROM shaanxi_counties) "
        "THEN 'bad_region' "
        if region
        else ""
    )
    key = ", ".join(source.key)
    # Line numbers: the table keeps the file's order, so rowid is the row's ordinal; in a
    # CSV file the header is line 1.
    first_line = 2 if path.suffix == ".csv" else 1
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE checked AS
        SELECT rowid + {first_line} AS line, {casts},
               CASE WHEN {missing_value} THEN 'missing_value'
                    WHEN {wrong_type} THEN 'wrong_type'
                    {bad_region}ELSE NULL END AS problem
        FROM raw_rows
        """
    )
    con.execute("DROP TABLE raw_rows")
    # Duplicates: keys seen more than once (a hash aggregate, cheap when there are none);
    # of each, the first row by line is kept.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE repeated AS SELECT {key} FROM checked "
        f"WHERE problem IS NULL GROUP BY {key} HAVING count(*) > 1"
    )
    con.execute(
        f"""
        UPDATE checked SET problem = 'duplicate' WHERE line IN (
            SELECT line FROM checked JOIN repeated USING ({key}) WHERE problem IS NULL
            QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY line) > 1)
        """
    )
    columns = ", ".join(source.column_names)
    con.execute(
        f"CREATE OR REPLACE TABLE {source.name} AS "
        f"SELECT {columns} FROM checked WHERE problem IS NULL"
    )
    counts = con.execute(
        f"SELECT problem, count(*), list(line ORDER BY line)[1:{_EXAMPLES}] "
        "FROM checked GROUP BY problem"
    ).fetchall()
    con.execute("DROP TABLE checked; DROP TABLE repeated")
    for verdict, count, lines in counts:
        report.rows += int(count)
        if verdict is None:
            report.accepted = int(count)
        else:
            report.rejected[str(verdict)] = int(count)
            report.examples[str(verdict)] = [int(line) for line in lines]
    return report


def create_county_table(con: duckdb.DuckDBPyConnection) -> None:
    """The table of Shaanxi's county codes that region checks read."""
    con.execute("CREATE OR REPLACE TABLE shaanxi_counties (code VARCHAR PRIMARY KEY)")
    con.executemany("INSERT INTO shaanxi_counties VALUES (?)", [[c] for c in SHAANXI_COUNTIES])
