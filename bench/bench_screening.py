"""Benchmark: data comparison batches, beside a raw DuckDB baseline in the same run.

Run: .venv/bin/python -m bench.bench_screening [--records 3770000] [--batches 8]
     [--datasets 2] [--handover-batches 1] [--data /tmp/jiuzhu-screening-bench]

Generates `--datasets` seed-sized batches (3.77 million department records each, in
child processes so their memory is not counted; kept in --data for the next run), then:

1. screens `--batches` batches (the seed's year: 8, cycling over the datasets) with
   jiuzhu's comparison (screening.engine.compare: every file checked row by row for
   missing values, types, county codes and duplicates, then the rule files), and beside
   each the raw baseline: the same joins written by hand in DuckDB on the same files, no
   jiuzhu code and no checks; both must find the same hits;
2. hands the hits of `--handover-batches` batches to the intake (screening.run.run_batch:
   the batch recorded once, hits through consumers.intake.apply_batch) on a fresh schema,
   beside the intake's own batched rate for as many monitoring alerts (same function);
3. reports the year end to end: compare for every batch, hand-over extrapolated from the
   batches handed over when there are fewer of them than batches (said so in the output).

Peak memory is this process's peak RSS (DuckDB runs in it, memory_limit 1500MB, 2 threads).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import duckdb
import psycopg

from bench.common import (
    Row,
    Target,
    base_arguments,
    console,
    fresh_schema,
    machine,
    print_table,
    print_targets,
    rate,
)
from consumers.contracts import MonitoringAlertEvent
from consumers.intake import apply_batch
from jiuzhu.bootstrap import casework
from screening.engine import compare, connect
from screening.policy import load_policy
from screening.rules import load_rules
from screening.run import run_batch

AS_OF = date(2023, 6, 30)
# A scratch schema, dropped afterwards: keys generated in the data directory will do.
os.environ.setdefault("JIUZHU_ALLOW_GENERATED_KEYS", "1")
SEED_BATCH_SECONDS = 20.0
SEED_YEAR_SECONDS = 180.0
PEAK_MIB = 2048.0

# The raw baseline: the same comparisons written by hand, straight on the files.
RAW = """
CREATE OR REPLACE TABLE members AS SELECT person_id, household_id, status FROM read_parquet('{d}/population.parquet');
CREATE OR REPLACE TABLE sizes AS SELECT household_id, count(*) AS size FROM members GROUP BY 1;
CREATE OR REPLACE TABLE raw_hits AS
WITH spent AS (SELECT m.household_id, sum(c.self_pay_fen) AS s FROM read_parquet('{d}/medical.parquet') c
               JOIN members m USING (person_id) WHERE c.settled_on > DATE '{as_of}' - 365
               AND c.settled_on <= DATE '{as_of}' GROUP BY 1),
     earned AS (SELECT m.household_id, sum(i.prev_annual_fen) AS p, sum(i.annual_fen) AS a
                FROM read_parquet('{d}/income.parquet') i JOIN members m USING (person_id) GROUP BY 1)
SELECT 'medical_self_pay' AS rule, household_id FROM spent LEFT JOIN earned USING (household_id)
 WHERE s >= 2000000 OR (a > 0 AND s > 0.5 * a)
UNION ALL SELECT 'income_drop', household_id FROM earned WHERE p > 0 AND p - a > 0.3 * p
UNION ALL SELECT DISTINCT 'newly_disabled', m.household_id FROM read_parquet('{d}/disability.parquet') x
 JOIN members m USING (person_id) WHERE x.certified_on > DATE '{as_of}' - 45 AND x.certified_on <= DATE '{as_of}'
UNION ALL SELECT DISTINCT 'sole_member_death', m.household_id FROM read_parquet('{d}/deaths.parquet') x
 JOIN members m USING (person_id) JOIN sizes USING (household_id) WHERE size = 1 AND x.date_of_death <= DATE '{as_of}'
UNION ALL SELECT DISTINCT 'vehicle_registered', m.household_id FROM read_parquet('{d}/property.parquet') x
 JOIN members m USING (person_id) WHERE m.status = 'enrolled' AND x.kind = 'vehicle' AND x.value_fen >= 5000000
UNION ALL SELECT 'property_registered', m.household_id FROM read_parquet('{d}/property.parquet') x
 JOIN members m USING (person_id) WHERE m.status = 'enrolled' AND x.kind IN ('residence', 'commercial')
 GROUP BY 2 HAVING count(*) >= 2
UNION ALL SELECT DISTINCT 'business_registered', m.household_id FROM read_parquet('{d}/business.parquet') x
 JOIN members m USING (person_id) WHERE m.status = 'enrolled' AND x.status = 'active' AND x.capital_fen >= 10000000;
"""  # noqa: E501


def peak_mib() -> float:
    """This process's peak resident memory (DuckDB included), MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def datasets(root: Path, records: int, count: int) -> list[Path]:
    """Seed-sized batches, generated in child processes once and kept."""
    made = []
    for seed in range(1, count + 1):
        out = root / f"seed{seed}-{records}"
        if not (out / "manifest.json").exists():
            console.print(f"generating {records:,} records (seed {seed}) into {out} ...")
            jiuzhu = str(Path(sys.executable).with_name("jiuzhu"))
            subprocess.run(
                [jiuzhu, "screen", "generate", "--out", str(out), "--records", str(records),
                 "--seed", str(seed), "--as-of", AS_OF.isoformat()],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        made.append(out)
    return made


def raw_compare(directory: Path) -> tuple[int, float]:
    """Hits and seconds of the hand-written baseline."""
    con = duckdb.connect()
    con.execute("SET memory_limit = '1500MB'; SET threads = 2; SET enable_progress_bar = false")
    started = time.perf_counter()
    con.execute(RAW.format(d=directory, as_of=AS_OF.isoformat()))
    found = con.execute("SELECT count(*) FROM raw_hits").fetchone()
    seconds = time.perf_counter() - started
    con.close()
    return (int(found[0]) if found else 0), seconds


def jiuzhu_compare(directory: Path) -> tuple[int, int, float]:
    """Records compared, hits and seconds of jiuzhu's comparison."""
    con = connect()
    started = time.perf_counter()
    result = compare(con, directory, load_rules(), load_policy(), AS_OF)
    seconds = time.perf_counter() - started
    con.close()
    return sum(result.records.values()), sum(result.hits.values()), seconds


def alerts(count: int) -> list[MonitoringAlertEvent]:
    """Monitoring alerts for new households: the intake's own batched path, as baseline."""
    moment = datetime(2023, 6, 30, 1, tzinfo=UTC)
    return [
        MonitoringAlertEvent.model_validate(
            {
                "specversion": "1.0",
                "id": f"alert-{i}",
                "source": "/bench/monitoring",
                "type": "monitoring.alert",
                "time": moment.isoformat(),
                "correlationid": "bench",
                "data": {
                    "household_id": f"HH-BENCH-{i:08d}",
                    "region": "610523",
                    "signals": ["income fell"],
                    "indicators": {"drop_pct": 40},
                },
            }
        )
        for i in range(count)
    ]


def intake_rate(database_url: str, count: int) -> float:
    """Monitoring alerts per second through consumers.intake.apply_batch, 200 per save."""
    events = alerts(count)
    with fresh_schema(database_url, "bench_alerts") as schema:
        app = casework(database_url, schema=schema)
        try:
            started = time.perf_counter()
            for start in range(0, len(events), 200):
                apply_batch(app, events[start : start + 200])
            return rate(len(events), time.perf_counter() - started)
        finally:
            app.close()


def main() -> None:
    parser = base_arguments(__doc__ or "")
    parser.add_argument("--records", type=int, default=3_770_000)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--datasets", type=int, default=2)
    parser.add_argument("--handover-batches", type=int, default=1)
    parser.add_argument("--data", type=Path, default=Path("/tmp/jiuzhu-screening-bench"))
    args = parser.parse_args()
    console.print(machine(args.database_url))
    console.print("[dim]The machine is shared with other engineers' tests: figures vary.[/]")
    data = datasets(args.data, args.records, args.datasets)

    runs: list[dict[str, Any]] = []
    for index in range(args.batches):
        directory = data[index % len(data)]
        raw_hits, raw_s = raw_compare(directory)
        records, hits, seconds = jiuzhu_compare(directory)
        same = "same hits" if hits == raw_hits else f"DIFFERENT: raw found {raw_hits:,}"
        console.print(
            f"batch {index + 1}: {records:,} records, {hits:,} hits in {seconds:.1f}s "
            f"(raw {raw_s:.1f}s, {same}); peak {peak_mib():,.0f} MiB"
        )
        runs.append({"records": records, "hits": hits, "seconds": seconds, "raw": raw_s})

    handed: list[dict[str, Any]] = []
    try:
        handed, alert_rate = handover(args, data)
    except psycopg.OperationalError as error:  # the shared server ran out of connections
        console.print(f"[red]hand-over not measured: {error}[/]")
        alert_rate = 0.0
    report(args, runs, handed, alert_rate)


def handover(args: Any, data: list[Path]) -> tuple[list[dict[str, Any]], float]:
    """Hits of the first batches handed to the intake; the intake's rate for alerts."""
    handed: list[dict[str, Any]] = []
    with fresh_schema(args.database_url, "bench_screening") as schema:
        app = casework(args.database_url, schema=schema)
        try:
            for index in range(min(args.handover_batches, args.batches)):
                run = run_batch(
                    app, f"bench-{index + 1}-{uuid4().hex[:6]}", data[index % len(data)],
                    as_of=AS_OF, policy=load_policy(), rules=load_rules(), actor="bench",
                    chunk=200,
                )  # fmt: skip
                summary = run.summary()
                handed.append(summary)
                console.print(
                    f"hand-over {index + 1}: {summary['hits']:,} hits, {summary['intake']} in "
                    f"{run.seconds['handover']:.1f}s; end to end {sum(run.seconds.values()):.1f}s"
                )
        finally:
            app.close()
    hits_handed = sum(s["hits"] for s in handed)
    return handed, intake_rate(args.database_url, min(max(hits_handed, 1000), 20_000))


def report(
    args: Any, runs: list[dict[str, Any]], handed: list[dict[str, Any]], alert_rate: float
) -> None:
    """The figures beside their baselines, and the issue's targets."""
    hits_handed = sum(s["hits"] for s in handed)
    handover_s = sum(s["seconds"]["handover"] for s in handed)

    batch_s = statistics.median(r["seconds"] for r in runs)
    raw_batch_s = statistics.median(r["raw"] for r in runs)
    year_s = sum(r["seconds"] for r in runs)
    raw_year_s = sum(r["raw"] for r in runs)
    year_records = sum(r["records"] for r in runs)
    year_hits = sum(r["hits"] for r in runs)
    per_hit = handover_s / hits_handed if hits_handed else 0.0
    end_to_end = year_s + per_hit * year_hits
    extrapolated = len(handed) < len(runs)
    print_table(
        f"Data comparison, {len(runs)} batches of ~{args.records:,} records (2 DuckDB threads)",
        [
            Row("one batch screened (median)", batch_s, "s", raw_batch_s, "raw DuckDB joins"),
            Row("records per second", rate(year_records, year_s), "rec/s",
                rate(year_records, raw_year_s), "raw DuckDB joins"),
            Row(f"the year screened ({len(runs)} batches)", year_s, "s", raw_year_s,
                "raw DuckDB joins"),
            Row("hits handed to the intake", rate(hits_handed, handover_s) if handed else 0.0,
                "hits/s", alert_rate, "intake apply_batch, monitoring alerts"),
            Row("the year end to end" + (" (hand-over extrapolated)" if extrapolated else ""),
                end_to_end, "s"),
            Row("peak memory (this process)", peak_mib(), "MiB"),
        ],
    )  # fmt: skip
    if extrapolated:
        console.print(
            f"[dim]hand-over measured on {len(handed)} of {len(runs)} batches "
            f"({hits_handed:,} hits) and extrapolated to the year's {year_hits:,} hits.[/]"
        )
    year_8, raw_year_8 = year_s * 8 / len(runs), raw_year_s * 8 / len(runs)
    print_targets(
        [
            Target("one seed-sized batch screened < 20 s", batch_s < SEED_BATCH_SECONDS,
                   f"{batch_s:.1f}s (raw {raw_batch_s:.1f}s)"),
            Target("the seed's year (8 batches) screened < 3 min", year_8 < SEED_YEAR_SECONDS,
                   f"{year_8:.0f}s (raw {raw_year_8:.0f}s)" + (
                       f", extrapolated from {len(runs)} batches" if len(runs) != 8 else
                       f", {year_records / 1e6:.2f} M records")),
            Target("peak memory < 2 GiB", peak_mib() < PEAK_MIB, f"{peak_mib():,.0f} MiB"),
        ]
    )  # fmt: skip


if __name__ == "__main__":
    main()
