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


def _expose(con: duckdb.DuckDBPyConnection, source: Source) -> None:
    """The source's accepted rows under its own name: a view, not another copy."""
    columns = ", ".join(source.column_names)
    con.execute(
        f"CREATE OR REPLACE VIEW {source.name} AS "
        f"SELECT {columns} FROM checked_{source.name} WHERE problem IS NULL"
    )


def _empty(con: duckdb.DuckDBPyConnection, source: Source) -> None:
    columns = ", ".join(f"{name} {kind}" for name, kind in source.columns)
    con.execute(
        f"CREATE OR REPLACE TABLE checked_{source.name} (line BIGINT, {columns}, problem VARCHAR)"
    )
    _expose(con, source)


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def load_source(con: duckdb.DuckDBPyConnection, directory: Path, source: Source) -> FileReport:
    """Load one source (view `source.name` of its accepted rows; empty if refused)."""
    path = find_file(directory, source)
    report = FileReport(source=source.name, path=str(path) if path else None)
    if path is None:
        _empty(con, source)
        report.error = f"no {source.name}.parquet or {source.name}.csv in {directory}"
        return report
    # Line numbers: Parquet rows by their ordinal in the file; a CSV file is read into a
    # table first (its rowid is then the row's ordinal) and its header is line 1.
    if path.suffix == ".parquet":
        rows, line = f"read_parquet({_quote(path)}, file_row_number = true)", "file_row_number + 1"
        describe = f"DESCRIBE SELECT * FROM read_parquet({_quote(path)})"
    else:
        rows, line = f"raw_{source.name}", "rowid + 2"
        describe = f"DESCRIBE {rows}"
    try:
        if path.suffix != ".parquet":
            con.execute(
                f"CREATE OR REPLACE TABLE {rows} AS SELECT * FROM "
                f"read_csv({_quote(path)}, header = true, all_varchar = true)"
            )
        present = {row[0] for row in con.execute(describe).fetchall()}
    except duckdb.Error as error:
        _empty(con, source)
        report.error = f"unreadable: {str(error).splitlines()[0]}"
        return report
    missing = [name for name in source.column_names if name not in present]
    if missing:
        _empty(con, source)
        report.error = f"missing column(s) {', '.join(missing)}"
        con.execute(f"DROP TABLE IF EXISTS raw_{source.name}")
        return report
    casts = ", ".join(f"TRY_CAST({name} AS {kind}) AS {name}" for name, kind in source.columns)
    missing_value = " OR ".join(f"{name} IS NULL" for name in source.column_names)
    wrong_type = " OR ".join(
        f"TRY_CAST({name} AS {kind}) IS NULL" for name, kind in source.columns if kind != "VARCHAR"
    )
    region = source.region_column
    bad_region = (
        f"WHEN CAST({region} AS VARCHAR) NOT IN (SELECT code FROM shaanxi_counties) "
        "THEN 'bad_region' "
        if region
        else ""
    )
    checked = f"checked_{source.name}"
    # The checks are a view: each reader of the source reads the file (Parquet: columnar,
    # fast) with them; only duplicates, found once, are kept in a table.
    con.execute(
        f"""
        CREATE OR REPLACE VIEW {checked}_rows AS
        SELECT {line} AS line, {casts},
               CASE WHEN {missing_value} THEN 'missing_value'
                    {f"WHEN {wrong_type} THEN 'wrong_type'" if wrong_type else ""}
                    {bad_region}ELSE NULL END AS problem
        FROM {rows}
        """
    )
    # Duplicates: rows whose key was seen before (the first row by line is kept). Keys
    # are grouped by their hash (one pass); only if a hash was seen twice are those rows
    # read again and compared exactly.
    key = ", ".join(source.key)
    repeated = con.execute(
        f"SELECT list(h) FROM (SELECT hash({key}) AS h FROM {checked}_rows "
        "WHERE problem IS NULL GROUP BY 1 HAVING count(*) > 1)"
    ).fetchone()
    duplicate = "FALSE"
    if repeated and repeated[0]:
        con.execute(
            f"""
            CREATE OR REPLACE TABLE {checked}_duplicates AS
            SELECT line FROM {checked}_rows
            WHERE problem IS NULL AND list_contains($hashes::UBIGINT[], hash({key}))
            QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY line) > 1
            """,
            {"hashes": repeated[0]},
        )
        duplicate = f"line IN (SELECT line FROM {checked}_duplicates)"
    con.execute(
        f"""
        CREATE OR REPLACE VIEW {checked} AS
        SELECT * EXCLUDE (problem), CASE WHEN problem IS NULL AND {duplicate}
                   THEN 'duplicate' ELSE problem END AS problem
        FROM {checked}_rows
        """
    )
    for problem, count in con.execute(
        f"SELECT problem, count(*) FROM {checked} GROUP BY 1"
    ).fetchall():
        report.rows += int(count)
        if problem is None:
            report.accepted = int(count)
        else:
            report.rejected[str(problem)] = int(count)
    if report.rejected:
        examples = con.execute(
            f"SELECT problem, list(line ORDER BY line)[1:{_EXAMPLES}] FROM {checked} "
            "WHERE problem IS NOT NULL GROUP BY problem"
        ).fetchall()
        report.examples = {str(p): [int(n) for n in lines] for p, lines in examples}
    if report.rejected:
        _expose(con, source)
    else:
        # Nothing refused: the rules read the file as it is (no checks on every read).
        plain = ", ".join(f"TRY_CAST({name} AS {kind}) AS {name}" for name, kind in source.columns)
        con.execute(f"CREATE OR REPLACE VIEW {source.name} AS SELECT {plain} FROM {rows}")
    return report


def create_county_table(con: duckdb.DuckDBPyConnection) -> None:
    """The table of Shaanxi's county codes that region checks read."""
    con.execute("CREATE OR REPLACE TABLE shaanxi_counties (code VARCHAR PRIMARY KEY)")
    con.executemany("INSERT INTO shaanxi_counties VALUES (?)", [[c] for c in SHAANXI_COUNTIES])
