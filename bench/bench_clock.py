"""Benchmark: the clock computing deadlines for many open cases and recording the due ones.

Run: .venv/bin/python -m bench.bench_clock [--cases N] [--fire-batch N]

Same run, same store (bootstrap.casework: hash chain, sealed personal data):
- baseline: the cases' own events appended by app.save(*aggregates), 500 cases per save
  (the batched append the intake does);
- compute: the clock folding the log into clock_deadline (4 deadlines per case);
- fire: the clock moved to 2030, recording every due deadline (one event per deadline,
  many cases per save) and reading its own events back (exactly once needs it).
Memory: the process's resident set is sampled at every page; the clock keeps no case in
memory, so it must not grow with the number of cases. 1,000,000 cases are extrapolated
from N linearly (every step is a page of an index scan and one save): say so beside it.
"""

from __future__ import annotations

import os
import time
from datetime import date, datetime, timedelta, timezone
from typing import Any
from uuid import uuid4

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
from domain.case import Case
from domain.provenance import Provenance
from domain.roles import Role
from jiuzhu.bootstrap import casework
from jiuzhu.settings import Settings
from processes.clock import Clock, ControlledClock
from projections.base import read_model_datastore

CST = timezone(timedelta(hours=8))
START = datetime(2024, 1, 8, 9, 0, tzinfo=CST)
TARGET_FIRE_RATE = 5000.0


def rss_mib() -> float:
    """This process's resident set now, in MiB."""
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_cases(count: int) -> list[Case]:
    """Cases discovered by a hotline, each with a visit due two weeks later."""
    cases = []
    for n in range(count):
        at = START + timedelta(minutes=n % 5000)
        by = Provenance(actor="hotline", role=Role.UPSTREAM_SYSTEM, reason="call", occurred_at=at)
        case = Case.discover(
            case_id=uuid4(), household_id=f"HH-B{n}", region="610523", channel="hotline",
            signals=[], household_size=3, personal={}, by=by,
        )  # fmt: skip
        staff = Provenance(actor="w", role=Role.CASEWORKER, reason="visit", occurred_at=at)
        case.assign_verification("team", date(2024, 1, 22), by=staff)
        cases.append(case)
    return cases


def append_cases(app: Any, count: int, per_save: int) -> tuple[int, float]:
    """Save new open cases, `per_save` per app.save(); events saved and seconds in save()."""
    appended, seconds = 0, 0.0
    for first in range(0, count, per_save):
        cases = open_cases(min(per_save, count - first))
        started = time.perf_counter()
        appended += len(app.save(*cases))
        seconds += time.perf_counter() - started
    return appended, seconds


def main() -> None:
    parser = base_arguments(__doc__ or "")
    parser.add_argument(
        "--cases", type=int, default=50_000, help="open cases (default %(default)s)"
    )
    parser.add_argument("--fire-batch", type=int, default=1000, help="deadlines per save")
    parser.add_argument("--per-save", type=int, default=500, help="cases per baseline save")
    args = parser.parse_args()
    console.print(f"[bold]bench_clock[/] on {machine(args.database_url)}")
    console.print("[dim]The machine is shared with other engineers' tests: figures vary.[/]")
    with fresh_schema(args.database_url, "bclock") as schema:
        settings = Settings(
            database_url=args.database_url, db_schema=schema, allow_generated_keys=True
        )  # a bench's throw-away keys
        app = casework(args.database_url, schema=schema, settings=settings)
        datastore = read_model_datastore(args.database_url, schema=schema, pool_size=2)
        try:
            # Baseline: batched appends of the cases' own events (timed again after the
            # fire, on as many new cases up to 10,000: the load of a shared machine moves).
            appended, append_seconds = append_cases(app, args.cases, args.per_save)

            now = ControlledClock(START)
            clock = Clock(app, datastore, now=now, fire_batch=args.fire_batch)
            rss_start = rss_mib()
            started = time.perf_counter()
            clock.catch_up()
            compute_seconds = time.perf_counter() - started
            deadlines = args.cases * 4
            rss_after_compute = rss_mib()

            now.set(datetime(2030, 1, 1, tzinfo=CST))
            samples: list[float] = []
            original = clock.catch_up

            def sampled() -> int:
                samples.append(rss_mib())
                return original()

            clock.catch_up = sampled  # type: ignore[method-assign]
            started = time.perf_counter()
            recorded = clock.tick()
            fire_seconds = time.perf_counter() - started
            rss_end = rss_mib()
            after, after_seconds = append_cases(app, min(args.cases, 10_000), args.per_save)
            append_rate = rate(appended + after, append_seconds + after_seconds)
        finally:
            datastore.close()
            app.close()
    fire_rate = rate(recorded, fire_seconds)
    compute_rate = rate(deadlines, compute_seconds)
    print_table(
        f"The clock over {args.cases:,} open cases ({deadlines:,} deadlines)",
        [
            Row("deadlines computed (log folded)", compute_rate, "/s",
                append_rate, "batched append (events, before + after)"),
            Row("deadline events recorded (fire + marked)", fire_rate, "/s",
                append_rate, "batched append (events, before + after)"),
        ],
    )  # fmt: skip
    saving = clock.stats.saving_seconds
    console.print(
        f"Of the fire's {fire_seconds:.1f} s, {saving:.1f} s inside CaseWork.record_deadlines "
        f"(the audited save: {rate(recorded, saving):,.0f} events/s, "
        f"{rate(recorded, saving) / append_rate:.2f}x the batched append); the rest reads "
        "due pages, the cases' heads and marks the rows passed."
    )
    million = 1_000_000
    console.print(
        f"Extrapolated to {million:,} open cases (linear: pages of an index scan, one save "
        f"per page): compute {million * 4 / compute_rate / 60:.1f} min, fire "
        f"{million * 4 / fire_rate / 60:.1f} min for {million * 4:,} deadline events."
    )
    growth = max(samples or [rss_end]) - min(samples or [rss_start])
    console.print(
        f"Resident set: {rss_start:.0f} MiB before, {rss_after_compute:.0f} after computing, "
        f"{rss_end:.0f} after firing; range while firing {growth:.1f} MiB over "
        f"{len(samples)} pages; peak {peak_rss_mib():.0f} MiB."
    )
    print_targets(
        [
            Target(
                f"fire rate >= {TARGET_FIRE_RATE:,.0f} deadline events/s",
                fire_rate >= TARGET_FIRE_RATE,
                f"{fire_rate:,.0f}/s ({recorded:,} in {fire_seconds:.1f} s; "
                f"{fire_rate / append_rate:.2f}x the batched append)",
            ),
            Target(
                "memory flat while firing (< 50 MiB range)",
                growth < 50,
                f"{growth:.1f} MiB",
            ),
            Target(
                "every deadline recorded",
                recorded == deadlines,
                f"{recorded:,} of {deadlines:,}",
            ),
        ]
    )


if __name__ == "__main__":
    main()
