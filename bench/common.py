"""Shared helpers for the benchmarks: timing, percentiles, a scratch schema, peak RSS, tables."""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar
from uuid import UUID, uuid4

import psycopg
from psycopg.sql import SQL, Identifier
from rich.console import Console
from rich.table import Table

__all__ = [
    "DEFAULT_DATABASE_URL",
    "RawEventsTable",
    "Row",
    "Stopwatch",
    "Target",
    "base_arguments",
    "console",
    "fresh_schema",
    "machine",
    "median",
    "peak_rss_mib",
    "percentile",
    "print_table",
    "print_targets",
    "rate",
    "timed",
]

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"

# Wide enough for the tables when piped into a file (rich assumes 80 columns then).
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
T = TypeVar("T")


# -- timing ---------------------------------------------------------------------------


@dataclass
class Stopwatch:
    """Accumulates wall time over several timed sections."""

    seconds: float = 0.0
    count: int = 0

    @contextmanager
    def section(self, items: int = 1) -> Iterator[None]:
        """Time one section that handles `items` things (rows, events, commands)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - started
            self.count += items

    @property
    def per_second(self) -> float:
        """Things handled per second of timed wall time."""
        return rate(self.count, self.seconds)


def timed(call: Callable[[], T]) -> tuple[T, float]:
    """Call and return its result with the wall time it took, in seconds."""
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def rate(count: float, seconds: float) -> float:
    """Count per second, 0 when no time passed."""
    return count / seconds if seconds > 0 else 0.0


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    """The median of some repeated measurements."""
    return statistics.median(values)


# -- environment ----------------------------------------------------------------------


@contextmanager
def fresh_schema(database_url: str, prefix: str = "bench") -> Iterator[str]:
    """A new, uniquely named schema, dropped with everything in it afterwards."""
    schema = f"{prefix}_{uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SQL("CREATE SCHEMA {0}").format(Identifier(schema)))
    try:
        yield schema
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(SQL("DROP SCHEMA IF EXISTS {0} CASCADE").format(Identifier(schema)))


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine(database_url: str) -> str:
    """One line naming what the figures were measured on."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    server = row[0] if row else "?"
    return (
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"PostgreSQL {server.split()[0]}, load average {os.getloadavg()[0]:.1f}"
    )


def base_arguments(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark shares."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("JIUZHU_BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL to run on; a fresh schema is created and dropped (default: %(default)s)",
    )
    return parser


class RawEventsTable:
    """The raw baseline: a table shaped like the event store's, written with plain psycopg."""

    def __init__(self, database_url: str, schema: str, payload_bytes: int) -> None:
        self.conn = psycopg.connect(database_url)
        self.table = SQL("{0}.raw_events").format(Identifier(schema))
        # Same columns, primary key and notification-id index as eventsourcing's events table.
        self.conn.execute(
            SQL(
                "CREATE TABLE {0} (originator_id uuid NOT NULL, originator_version bigint NOT NULL,"
                " topic text, state bytea, notification_id bigserial,"
                " PRIMARY KEY (originator_id, originator_version));"
                " CREATE UNIQUE INDEX ON {0} (notification_id)"
            ).format(self.table)
        )
        self.conn.commit()
        self.insert = SQL(
            "INSERT INTO {0} (originator_id, originator_version, topic, state)"
            " VALUES (%s, %s, %s, %s)"
        ).format(self.table)
        self.payload = b"x" * payload_bytes

    def rows(self, count: int) -> list[tuple[UUID, int, str, bytes]]:
        """New rows, made before any timing starts."""
        return [(uuid4(), 1, "raw:Event", self.payload) for _ in range(count)]

    def single_row_transactions(self, count: int) -> list[float]:
        """Insert rows one per transaction; each transaction's latency in seconds."""
        latencies = []
        for row in self.rows(count):
            started = time.perf_counter()
            self.conn.execute(self.insert, row, prepare=True)
            self.conn.commit()
            latencies.append(time.perf_counter() - started)
        return latencies

    def executemany(self, count: int, per_transaction: int) -> float:
        """Insert about `count` rows by executemany, `per_transaction` per commit; rows/s."""
        batches = [self.rows(per_transaction) for _ in range(max(1, count // per_transaction))]
        started = time.perf_counter()
        for batch in batches:
            with self.conn.cursor() as curs:
                curs.executemany(self.insert, batch)
            self.conn.commit()
        return rate(len(batches) * per_transaction, time.perf_counter() - started)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


# -- reporting ------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One figure beside the raw baseline measured in the same run."""

    what: str
    figure: float
    unit: str
    baseline: float | None = None
    baseline_what: str = ""

    @property
    def ratio(self) -> float | None:
        """Figure divided by baseline."""
        if self.baseline is None or self.baseline == 0:
            return None
        return self.figure / self.baseline


@dataclass(frozen=True)
class Target:
    """A target from the issue and whether this run met it."""

    what: str
    met: bool
    detail: str


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}"


def print_table(title: str, rows: Sequence[Row]) -> None:
    """Print figures with their baselines and ratios as a rich table."""
    table = Table(title=title, title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("baseline (raw, same run)")
    table.add_column("value", justify="right")
    table.add_column("ratio", justify="right")
    for row in rows:
        ratio = row.ratio
        table.add_row(
            row.what,
            f"{_number(row.figure)} {row.unit}",
            row.baseline_what,
            "" if row.baseline is None else f"{_number(row.baseline)} {row.unit}",
            "" if ratio is None else f"{ratio:.2f}×",
        )
    console.print(table)


def print_targets(targets: Sequence[Target]) -> None:
    """Print PASS/MISS per target; a MISS is reported, never turned into an exit code."""
    for target in targets:
        verdict = "[bold green]PASS[/]" if target.met else "[bold red]MISS[/]"
        console.print(f"{verdict}  {target.what}: {target.detail}")
