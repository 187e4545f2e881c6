"""Benchmark: rebuild of the read models from the log, beside a raw ordered scan, same run.

Run: .venv/bin/python -m bench.bench_rebuild [--events 1000000] [--schema EXISTING]

Generates realistic interleaved case histories (bench/rebuild_histories.py, in a child
process so its memory is not counted), then times `projections.rebuild.rebuild` (scratch
schema, one scan, one decode for every read model, COPY + merge per batch, atomic swap)
for the reporting read models, and for every registered read model (case_status too).
The raw baseline is an ordered scan of the same events table with a server-side cursor.
Peak RSS is this process's; RSS is also sampled as the rebuild goes, to show it flat.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

from bench.common import (
    Row,
    Target,
    base_arguments,
    console,
    fresh_schema,
    machine,
    peak_rss_mib,
    print_table,
    print_targets,
    rate,
)
from domain.application import CaseWork
from jiuzhu.bootstrap import eventstore_env
from projections.base import ReadModel
from projections.rebuild import REPORT_MODELS, read_model_classes, rebuild

TARGET_RATE = 30_000
TARGET_RSS_MIB = 300


def raw_scan(database_url: str, schema: str) -> tuple[int, float]:
    """Rows and seconds of an ordered scan of the events table (the rebuild reads the same)."""
    statement = SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state "
        "FROM {0}.casework_events ORDER BY notification_id"
    ).format(Identifier(schema))
    started = time.perf_counter()
    rows = 0
    with psycopg.connect(database_url) as conn, conn.transaction():
        cursor = conn.cursor(name="raw_scan")
        cursor.itersize = 10_000
        cursor.execute(statement, binary=True)
        for _ in cursor:
            rows += 1
    return rows, time.perf_counter() - started


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@contextmanager
def rss_samples(every: float = 0.5) -> Iterator[list[float]]:
    """RSS in MiB sampled in the background while the block runs."""
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(_rss_mib())
            stop.wait(every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield samples
    finally:
        stop.set()
        sampler.join()


def timed_rebuild(
    app: CaseWork,
    classes: Sequence[type[ReadModel]],
    database_url: str,
    schema: str,
    batch_size: int,
) -> tuple[float, float, list[float]]:
    """Wall and CPU seconds of a full rebuild with swap, and RSS samples along the way."""
    cpu = time.process_time()
    started = time.perf_counter()
    with rss_samples() as samples:
        rebuild(app, classes, database_url=database_url, schema=schema, batch_size=batch_size)
    return time.perf_counter() - started, time.process_time() - cpu, samples


def _generate(database_url: str, schema: str, events: int) -> None:
    console.print(f"generating {events:,} events of interleaved case histories in {schema} …")
    done = subprocess.run(
        [sys.executable, "-m", "bench.rebuild_histories", database_url, schema, str(events)],
        check=True,
        capture_output=True,
        text=True,
    )
    appended, seconds = done.stdout.split()
    console.print(f"generated {int(appended):,} events in {float(seconds):.0f} s")


def run(args: Any, schema: str) -> None:
    """Measure on a schema holding the events."""
    app = CaseWork(env=eventstore_env(args.database_url, schema=schema, pool_size=2))
    events = app.recorder.max_notification_id() or 0
    console.print(machine(args.database_url))
    console.print(f"{events:,} events in {schema}; batches of {args.batch_size:,}")
    scans: list[float] = []
    rows: list[Row] = []
    targets: list[Target] = []
    suites: list[tuple[str, Sequence[type[ReadModel]]]] = [("reporting", REPORT_MODELS)]
    if not args.reporting_only:
        suites.append(("all registered", read_model_classes()))
    for label, classes in suites:
        scanned, scan_seconds = raw_scan(args.database_url, schema)
        scans.append(rate(scanned, scan_seconds))
        wall, cpu, samples = timed_rebuild(app, classes, args.database_url, schema, args.batch_size)
        figure = rate(events, wall)
        names = ", ".join(c.name for c in classes)
        console.print(
            f"{label}: {names}\n  {wall:.1f} s wall, {cpu:.1f} s CPU in this process "
            f"({rate(events, cpu):,.0f} events per CPU second); RSS quartiles "
            + " / ".join(
                f"{samples[int(q * (len(samples) - 1))]:.0f}" for q in (0.25, 0.5, 0.75, 1)
            )
            + " MiB"
        )
        rows.append(
            Row(f"rebuild, {label} read models", figure, "events/s", scans[-1], "ordered scan")
        )
        targets.append(
            Target(
                f"rebuild of the {label} read models ≥ {TARGET_RATE:,} events/s",
                figure >= TARGET_RATE,
                f"{figure:,.0f} events/s",
            )
        )
    scanned, scan_seconds = raw_scan(args.database_url, schema)
    scans.append(rate(scanned, scan_seconds))
    peak = peak_rss_mib()
    print_table(f"Rebuild from the log, {events:,} events", rows)
    console.print("ordered scans (events/s): " + ", ".join(f"{s:,.0f}" for s in scans))
    targets += [
        Target("over ≥ 1,000,000 events", events >= 1_000_000, f"{events:,} events"),
        Target(f"peak RSS < {TARGET_RSS_MIB} MB", peak < TARGET_RSS_MIB, f"{peak:.0f} MiB"),
    ]
    print_targets(targets)
    app.close()


def main() -> None:
    """Parse arguments, generate the events unless a schema is given, measure."""
    parser = base_arguments(__doc__ or "")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=25_000)
    parser.add_argument("--schema", help="measure on events already in this schema (kept)")
    parser.add_argument("--reporting-only", action="store_true", help="skip case_status")
    args = parser.parse_args()
    if args.schema:
        run(args, args.schema)
        return
    with fresh_schema(args.database_url, prefix="bench_rebuild") as schema:
        _generate(args.database_url, schema, args.events)
        run(args, schema)


if __name__ == "__main__":
    main()
