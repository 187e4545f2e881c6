"""Row-by-row comparison of live read-model tables with rebuilt ones, in PostgreSQL.

EXCEPT ALL finds the rows one side has and the other lacks (duplicates included); rows
with the same primary key on both sides are then paired as "changed", naming the columns
that differ, so a reader sees which figure moved, not two unrelated rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier

__all__ = ["Difference", "compare_tables"]


@dataclass(frozen=True)
class Difference:
    """One row that differs: changed, only in the live table, or only in the rebuilt one."""

    table: str
    kind: str  # "changed", "only live", "only rebuilt", "missing table"
    key: dict[str, Any] = field(default_factory=dict)
    live: dict[str, Any] | None = None
    rebuilt: dict[str, Any] | None = None

    @property
    def columns(self) -> list[str]:
        """The columns whose values differ, for a changed row."""
        if self.live is None or self.rebuilt is None:
            return []
        return [c for c in self.live if self.live[c] != self.rebuilt.get(c)]


def _primary_key(conn: psycopg.Connection[Any], schema: str, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
        "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = %s::regclass AND i.indisprimary "
        "ORDER BY array_position(i.indkey::int2[], a.attnum)",
        (f'"{schema}"."{table}"',),
    ).fetchall()
    return [row[0] for row in rows]


def _one_sided(
    conn: psycopg.Connection[Any], table: str, first: str, second: str, limit: int
) -> list[dict[str, Any]]:
    query = SQL("SELECT * FROM {0} EXCEPT ALL SELECT * FROM {1}").format(
        Identifier(first, table), Identifier(second, table)
    )
    with conn.cursor(row_factory=dict_row) as curs:
        curs.execute(SQL("{0} LIMIT {1}").format(query, limit))
        return curs.fetchall()


def compare_tables(
    conn: psycopg.Connection[Any],
    tables: Sequence[str],
    *,
    live_schema: str,
    rebuilt_schema: str,
    missing: bool = False,
    limit: int = 50,
) -> list[Difference]:
    """Differences between the live and rebuilt copies of some tables (empty when equal).

    Runs on the caller's connection, so a caller holding a snapshot compares within it.
    At most `limit` rows per side per table are paired and listed.
    """
    if missing:
        return [Difference(table, "missing table") for table in tables]
    differences: list[Difference] = []
    for table in tables:
        live = _one_sided(conn, table, live_schema, rebuilt_schema, limit)
        rebuilt = _one_sided(conn, table, rebuilt_schema, live_schema, limit)
        key = _primary_key(conn, rebuilt_schema, table)

        def key_of(row: dict[str, Any], key: list[str] = key) -> tuple[Any, ...]:
            return tuple(row[c] for c in key) if key else tuple(row.values())

        rebuilt_by_key = {key_of(row): row for row in rebuilt}
        for row in live:
            other = rebuilt_by_key.pop(key_of(row), None) if key else None
            kind = "only live" if other is None else "changed"
            differences.append(
                Difference(table, kind, dict(zip(key, key_of(row), strict=False)), row, other)
            )
        for row in rebuilt_by_key.values():
            differences.append(
                Difference(
                    table, "only rebuilt", dict(zip(key, key_of(row), strict=False)), None, row
                )
            )
    return differences
