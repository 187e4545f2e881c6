"""Benchmark: CaseWork commands and batched appends beside raw psycopg inserts, same run.

Run: .venv/bin/python -m bench.bench_commands [--database-url URL] [--commands N]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.application import ProcessingEvent
from psycopg.sql import SQL, Identifier
from rich.table import Table

from bench.common import (
    RawEventsTable,
    Row,
    Target,
    base_arguments,
    console,
    fresh_schema,
    machine,
    median,
    peak_rss_mib,
    percentile,
    print_table,
    print_targets,
    rate,
)
from domain.application import CaseWork
from domain.case import Case
from domain.household import Household
from domain.provenance import Provenance
from domain.values import Verdict
from jiuzhu.audit.casework import AuditedCaseWork, collect_events
from jiuzhu.bootstrap import casework, eventstore_env
from jiuzhu.privacy.mapper import PersonalDataMapper
from jiuzhu.settings import Settings

START = datetime(2024, 1, 8, 9, 0, tzinfo=timezone(timedelta(hours=8)))
PAYMENT_MONTHS = 6  # each single-command case: 6 workflow steps, then 6 monthly payments
P99_TARGET_MS = 15.0
BATCH_TARGET = 0.40
# What is saved through: bootstrap.casework() as shipped (hash chain, sealed personal data),
# and for comparison plain domain CaseWork on the library's recorder, as is and with its
# rows sent binary.
SHIPPED = "audited"
CORE, CORE_FIXED = "core", "core + binary rows"
VARIANTS = (SHIPPED, CORE, CORE_FIXED)
LEGEND = (
    "audited = bootstrap.casework() as shipped (hash-chained recorder, personal data sealed"
    " per household); core = domain CaseWork on eventsourcing's PostgreSQL recorder;"
    " + binary rows = core with its event rows passed as one binary parameter (the audited"
    " recorder sends four binary arrays)"
)
RAW_100 = "executemany 100 rows/txn"
STAGES = ("collect events", "encode events (mapper)", "insert rows")

Aggregates = list[Case | Household]
Command = tuple[str, dict[str, Any]]


def by(role: str, days: int, reason: str = "per procedure") -> dict[str, Any]:
    """Provenance as a caller (CLI, broker, API) would send it."""
    return {
        "actor": f"{role}-07",
        "role": role,
        "reason": reason,
        "occurred_at": START + timedelta(days=days),
    }


def case_story() -> list[Command]:
    """The commands of one dibao case, from monitoring alert to monthly payments."""
    case = uuid4()
    steps: list[Command] = [
        ("open_case", {
            "case_id": case, "household_id": f"HH-610523-{case.hex[:12]}",
            "region": "610523", "channel": "monitoring_alert",
            "signals": ["medical spending jumped", "income fell below line"],
            "household_size": 3, "personal": {"name": "王某某", "id_card": "610523198001011234"},
            "by": by("upstream_system", 0, "monitoring alert"),
        }),
        ("assign_verification", {
            "case_id": case, "assignee": "anren-team", "due_on": date(2024, 1, 18),
            "by": by("caseworker", 0),
        }),
        ("give_consent", {
            "case_id": case, "given_by": "head of household", "by": by("caseworker", 2),
        }),
        ("verify", {
            "case_id": case, "verdict": "needs_support", "household_size": 3,
            "monthly_income_fen": 120000, "facts": {"housing": "rented", "illness": "chronic"},
            "by": by("caseworker", 3),
        }),
        ("publish_notice", {
            "case_id": case, "starts_on": date(2024, 1, 12), "by": by("caseworker", 4),
        }),
        ("enrol", {
            "case_id": case, "programme": "rural_dibao", "amount_fen": 50000,
            "category": "changing", "effective_from": date(2024, 2, 1), "by": by("approver", 20),
        }),
    ]  # fmt: skip
    for month in range(2, 2 + PAYMENT_MONTHS):
        period = f"2024-{month:02d}"
        payment = {
            "case_id": case,
            "programme": "rural_dibao",
            "period": period,
            "amount_fen": 50000,
            "payment_ref": f"PAY-{period}-{case.hex[:8]}",
            "by": by("upstream_system", 30 * month, "monthly disbursement"),
        }
        steps.append(("pay", payment))
    return steps


def opened_cases(count: int) -> Iterator[Case | Household]:
    """Cases opened, visited with consent and verified, with their households' index."""
    field_worker = Provenance.model_validate(by("caseworker", 0))
    system = Provenance.model_validate(by("upstream_system", 0, "monitoring alert"))
    for _ in range(count):
        case_id = uuid4()
        household_id = f"HH-610523-{case_id.hex[:12]}"
        household = Household.register(household_id)
        household.open_case(case_id)
        case = Case.discover(
            case_id=case_id,
            household_id=household_id,
            region="610523",
            channel="monitoring_alert",
            signals=["medical spending jumped"],
            household_size=3,
            personal={"name": "王某某", "id_card": "610523198001011234"},
            by=system,
        )
        case.assign_verification("anren-team", date(2024, 1, 18), by=field_worker)
        case.give_consent("head of household", by=field_worker)
        case.verify(Verdict.NEEDS_SUPPORT, 3, 120000, {"housing": "rented"}, by=field_worker)
        yield case
        yield household


def send_rows_binary(app: CaseWork) -> None:
    """The library's recorder with its rows passed as one binary parameter, for comparison.

    The library's insert passes the rows as `%s`, an array of its composite type that psycopg
    dumps as text (Python-level quoting of every bytea) and the server parses back; `%b` sends
    the same array in binary (jiuzhu.audit.recorder sends four binary column arrays instead).
    """
    recorder: Any = app.recorder
    with recorder.datastore.get_connection() as conn:
        statement = recorder.insert_events_statement.as_string(conn)
    assert statement.count("%s") == 1, statement
    recorder.insert_events_statement = SQL(statement.replace("%s", "%b"))


# -- single commands ------------------------------------------------------------------


@dataclass
class SingleCommands:
    """Latencies in seconds: per app and command, and of raw single-row transactions."""

    latencies: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    raw: list[float] = field(default_factory=list)

    def of(self, label: str) -> list[float]:
        """Every latency of one app's commands."""
        return [x for xs in self.latencies[label].values() for x in xs]


def run_story(app: CaseWork, story: Sequence[Command], into: dict[str, list[float]]) -> None:
    """Run one case's commands one at a time, timing each."""
    for name, given in story:
        command: Callable[[dict[str, Any]], int] = getattr(app, name)
        started = time.perf_counter()
        command(given)
        into[name].append(time.perf_counter() - started)


def single_commands(
    apps: dict[str, CaseWork], raw: RawEventsTable, args: argparse.Namespace
) -> SingleCommands:
    """Alternate rounds of raw single-row transactions and each app's commands."""
    per_case = len(case_story())
    cases = max(args.rounds, args.commands // per_case)
    result = SingleCommands()
    for r in range(args.rounds):
        round_cases = len(range(r, cases, args.rounds))
        result.raw.extend(raw.single_row_transactions(round_cases * per_case))
        for label, app in apps.items():
            for _ in range(round_cases):
                run_story(app, case_story(), result.latencies[label])
    return result


# -- batched appends ------------------------------------------------------------------


@dataclass
class BatchedAppends:
    """Per-round rates (events or rows per second) and seconds per save by stage."""

    rates: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    stages: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    events_per_save: int = 0


def save_all(app: CaseWork, batches: list[Aggregates]) -> tuple[int, float]:
    """Events saved, and events per second, by one app.save(*aggregates) per batch."""
    events, started = 0, time.perf_counter()
    for aggregates in batches:
        events += len(app.save(*aggregates))
    return events, rate(events, time.perf_counter() - started)


def time_stages(app: CaseWork, aggregates: Aggregates, label: str, into: BatchedAppends) -> None:
    """One save taken apart into the pieces app.save runs: collect, encode, insert."""
    audited = isinstance(app, AuditedCaseWork)
    started = time.perf_counter()
    processing: ProcessingEvent[UUID] = ProcessingEvent()
    if audited:
        collect_events(processing, tuple(aggregates), {})
    else:
        processing.collect_events(*aggregates)
    collected = time.perf_counter()
    mapper = app.mapper
    with (
        mapper.sealing(processing.events)
        if isinstance(mapper, PersonalDataMapper)
        else nullcontext()
    ):
        # As AuditedCaseWork._record does: one key lookup, new keys inserted with the events.
        stored = [mapper.to_stored_event(event) for event in processing.events]
        encoded = time.perf_counter()
        app.recorder.insert_events(stored)
    for stage, seconds in zip(
        STAGES,
        (collected - started, encoded - collected, time.perf_counter() - encoded),
        strict=True,
    ):
        into.stages[(stage, label)].append(seconds)


def batched_appends(
    apps: dict[str, CaseWork],
    raw: RawEventsTable,
    args: argparse.Namespace,
    profiler: cProfile.Profile | None,
) -> BatchedAppends:
    """Alternate rounds of app.save(*aggregates) per app and raw executemany of as many rows."""
    result = BatchedAppends()

    def batches(count: int) -> list[Aggregates]:
        return [list(opened_cases(args.cases_per_save)) for _ in range(count)]

    for _ in range(args.rounds):
        events = 0
        for label, app in apps.items():
            prepared = batches(args.saves)
            if profiler is not None and label == SHIPPED:
                profiler.enable()
            events, per_second = save_all(app, prepared)
            if profiler is not None:
                profiler.disable()
            result.rates[label].append(per_second)
        result.events_per_save = events // args.saves
        result.rates[RAW_100].append(raw.executemany(events, 100))
        result.rates["same rows/txn"].append(raw.executemany(events, result.events_per_save))
        started = time.perf_counter()
        batches(args.saves)
        result.rates["build"].append(rate(events, time.perf_counter() - started))
        for label, app in apps.items():
            time_stages(app, list(opened_cases(args.cases_per_save)), label, result)
    return result


# -- report ---------------------------------------------------------------------------


def average_state_bytes(app: CaseWork) -> int:
    """Mean size of the stored events so far, so that raw rows carry as much."""
    recorder: Any = app.recorder
    with recorder.datastore.get_connection() as conn:
        row = conn.execute(
            SQL("SELECT avg(length(state))::int AS size FROM {0}.{1}").format(
                Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name)
            )
        ).fetchone()
    return int(row["size"]) if row else 300


def ms(seconds: float) -> float:
    """Seconds in milliseconds."""
    return seconds * 1000


def report_single(single: SingleCommands) -> Target:
    """Print single-command figures beside single-row transactions."""
    raw = single.raw
    rows = []
    for label in single.latencies:
        xs = single.of(label)
        rows += [
            Row(f"{label}: commands/s", rate(len(xs), sum(xs)), "/s",
                rate(len(raw), sum(raw)), "1-row transactions/s"),
            Row(f"{label}: p50 latency", ms(percentile(xs, 50)), "ms",
                ms(percentile(raw, 50)), "1-row transaction p50"),
            Row(f"{label}: p99 latency", ms(percentile(xs, 99)), "ms",
                ms(percentile(raw, 99)), "1-row transaction p99"),
        ]  # fmt: skip
    print_table(
        f"Single commands ({len(raw):,} per app, one at a time: validation, read, append)", rows
    )
    by_command = Table(title="Latency by command (ms)", title_justify="left")
    by_command.add_column("command")
    by_command.add_column("count", justify="right")
    for label in single.latencies:
        for column in ("p50", "p99", "max"):
            by_command.add_column(f"{label} {column}", justify="right")
    for name, xs in single.latencies[SHIPPED].items():
        cells = [name, str(len(xs))]
        for label in single.latencies:
            ys = single.latencies[label][name]
            cells += [f"{ms(y):.2f}" for y in (percentile(ys, 50), percentile(ys, 99), max(ys))]
        by_command.add_row(*cells)
    console.print(by_command)
    p99 = {label: ms(percentile(single.of(label), 99)) for label in single.latencies}
    return Target(
        "single-command p99 < 15 ms",
        p99[SHIPPED] < P99_TARGET_MS,
        f"p99 {p99[SHIPPED]:.2f} ms as shipped; "
        + ", ".join(f"{label} {value:.2f} ms" for label, value in p99.items() if label != SHIPPED),
    )


def report_batched(batched: BatchedAppends, cases_per_save: int) -> Target:
    """Print batched-append figures beside executemany, and where a save's time goes."""
    n = batched.events_per_save
    rates = {label: median(values) for label, values in batched.rates.items()}
    raw_100 = rates[RAW_100]
    rows = [Row(f"app.save {SHIPPED}, events/s", rates[SHIPPED], "/s", raw_100, RAW_100)]
    rows.append(
        Row(
            f"app.save {SHIPPED}, events/s",
            rates[SHIPPED],
            "/s",
            rates["same rows/txn"],
            f"executemany {n} rows/txn",
        )
    )
    rows.extend(
        Row(f"app.save {x}, events/s", rates[x], "/s", raw_100, RAW_100) for x in VARIANTS[1:]
    )
    rows.append(Row("domain: building the aggregates, events/s", rates["build"], "/s"))
    print_table(
        f"Batched appends ({cases_per_save} cases = {n} events per save; "
        f"median of {len(batched.rates[RAW_100])} rounds)",
        rows,
    )  # fmt: skip
    console.print(LEGEND)
    stages = Table(title=f"Where one save of {n} events goes (ms, median)", title_justify="left")
    stages.add_column("stage")
    for label in VARIANTS:
        stages.add_column(label, justify="right")
    for stage in STAGES:
        stages.add_row(stage, *(f"{ms(median(batched.stages[(stage, x)])):.1f}" for x in VARIANTS))
    console.print(stages)
    ratio = {x: rates[x] / raw_100 for x in VARIANTS}
    return Target(
        "batched appends >= 40% of raw executemany (100 rows/txn)",
        ratio[SHIPPED] >= BATCH_TARGET,
        f"{ratio[SHIPPED]:.0%} as shipped; "
        + ", ".join(f"{x} {ratio[x]:.0%}" for x in VARIANTS[1:]),
    )


def open_apps(database_url: str, audited: str, core: str, data_dir: str) -> dict[str, CaseWork]:
    """The applications to compare."""
    # Keys are generated there, not in ./.jiuzhu (a bench's throw-away keys).
    settings = Settings(data_dir=Path(data_dir), allow_generated_keys=True)
    # One thread per app: one pooled connection each spares a server shared with other tests.
    apps = {
        SHIPPED: casework(database_url, schema=audited, settings=settings, pool_size=1),
        CORE: CaseWork(env=eventstore_env(database_url, schema=core, pool_size=1)),
        CORE_FIXED: CaseWork(env=eventstore_env(database_url, schema=core, pool_size=1)),
    }
    send_rows_binary(apps[CORE_FIXED])
    return apps


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark in fresh schemas and print figures, baselines, ratios, targets."""
    parser = base_arguments(__doc__ or "")
    parser.add_argument("--commands", type=int, default=2400, help="single commands to time")
    parser.add_argument("--saves", type=int, default=5, help="batched saves per round and app")
    parser.add_argument("--cases-per-save", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5, help="alternations of app and raw")
    parser.add_argument("--profile", action="store_true", help="cProfile the shipped saves")
    args = parser.parse_args(argv)
    console.print(f"[bold]jiuzhu bench_commands[/] on {machine(args.database_url)}")
    profiler = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    with (
        fresh_schema(args.database_url) as audited,
        fresh_schema(args.database_url) as core,
        TemporaryDirectory() as data_dir,
    ):
        apps = open_apps(args.database_url, audited, core, data_dir)
        raw: RawEventsTable | None = None
        try:
            # Warm up pools and prepared statements; check each app reads back what it saved.
            for _ in range(3):
                for label in (SHIPPED, CORE):
                    run_story(apps[label], case_story(), defaultdict(list))
            for label, app in apps.items():
                app.save(*opened_cases(args.cases_per_save))
                case = next(opened_cases(1))
                assert isinstance(case, Case)
                app.save(case)
                reader = apps[SHIPPED if label.startswith(SHIPPED) else CORE]
                assert reader.get_case(case.id).personal == case.personal, label
            raw = RawEventsTable(args.database_url, core, average_state_bytes(apps[SHIPPED]))
            raw.single_row_transactions(50)
            single = single_commands({x: apps[x] for x in (SHIPPED, CORE)}, raw, args)
            batched = batched_appends(apps, raw, args, profiler)
        finally:
            if raw is not None:
                raw.close()
            for app in apps.values():
                app.close()
    targets = [report_single(single), report_batched(batched, args.cases_per_save)]
    print_targets(targets)
    console.print(
        f"raw rows carry {len(raw.payload)} bytes (the mean stored event); "
        f"peak RSS {peak_rss_mib():.0f} MiB; wall {time.perf_counter() - started:.1f} s"
    )
    if profiler is not None:
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(20)
        stats.sort_stats("cumulative").print_stats(20)


if __name__ == "__main__":
    main()
