"""Benchmark: workbench page times (p50/p99) beside a static file from the same server.

A demo is recorded in a fresh schema and its read models fed; the app runs on uvicorn (one
worker) in this process; one client on a kept-alive connection asks each page in turn.
The raw baseline is a small static file (/static/workbench.css) from the same server and
connection: what HTTP, uvicorn and the client cost before any page work; the page's own
server time is roughly the difference. Target (issue 9): a page under 50 ms at p99.
Run: .venv/bin/python -m bench.bench_workbench [--households N] [--requests N]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import httpx

from api.app import create_app
from api.server import running_in_thread
from bench.common import (
    Row,
    Target,
    base_arguments,
    console,
    fresh_schema,
    machine,
    percentile,
    print_table,
    print_targets,
)
from jiuzhu.bootstrap import casework
from jiuzhu.demo import run_demo
from jiuzhu.settings import Settings
from projections.base import read_model_datastore
from projections.feed import catch_up
from projections.registry import READ_MODELS

TARGET_P99_MS = 50.0


def feed(app: object, database_url: str, schema: str) -> None:
    """Every read model up to the head of the log (the projector's work, done here once)."""
    datastore = read_model_datastore(database_url, schema=schema, pool_size=1)
    try:
        for model_class in READ_MODELS:
            model = model_class(datastore)
            model.create_table()
            catch_up(model, app)  # type: ignore[arg-type]
    finally:
        datastore.close()


def latencies(
    client: httpx.Client, path: str, count: int, cpu: dict[str, float], name: str
) -> tuple[list[float], list[float]]:
    """Milliseconds per request as the server (Server-Timing) and the client saw them.

    Also this process's CPU milliseconds per request (client and server: both live here),
    a figure the other engineers' load on the machine barely moves, unlike wall time.
    """
    for _ in range(5):
        client.get(path).raise_for_status()
    server, seen = [], []
    cpu_started = time.process_time()
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(path)
        seen.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        server.append(float(response.headers["server-timing"].split("dur=")[1]))
    cpu[name] = (time.process_time() - cpu_started) * 1000 / count
    return server, seen


def main() -> None:
    """Record a demo, serve it, time the pages against the static file."""
    parser = base_arguments(__doc__ or "")
    parser.add_argument("--households", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    console.print(machine(args.database_url))
    console.print("[dim]the machine is shared with other engineers' runs: figures are noisy[/]")
    with fresh_schema(args.database_url, "bench_web") as schema, tempfile.TemporaryDirectory() as d:
        # A scratch schema with throwaway keys: generated ones are fine here.
        settings = Settings(data_dir=Path(d), allow_generated_keys=True)
        app = casework(args.database_url, schema=schema, settings=settings)
        try:
            report = run_demo(app, args.households, seed=2023)
            feed(app, args.database_url, schema)
            story = next(iter(report.stories.values()))
            household = app.get_case(story).household_id
            console.print(f"demo: {report.households} households, {report.events} events")
            server = create_app(settings, casework=app)
            with running_in_thread(server) as url, httpx.Client(base_url=url) as client:
                pages = {
                    "static file (raw baseline)": "/static/workbench.css",
                    "inbox (caseworker)": "/web/inbox",
                    "case (story, steps tried on copies)": f"/web/cases/{story}",
                    "search (household id)": f"/web/search?q={household}",
                    "dashboard (all provinces)": "/web/dashboard",
                    "dashboard (county)": "/web/dashboard?region=610523",
                }
                timings: dict[str, list[float]] = {}
                round_trips: dict[str, list[float]] = {}
                cpu: dict[str, float] = {}
                for actor, names in (
                    ("wang.fang", list(pages)[:4]),
                    ("zhao.min", ["approvals (approver)"]),
                    ("liu.yang", list(pages)[4:]),
                ):
                    client.post("/web/login", data={"actor": actor})
                    for name in names:
                        path = pages.get(name, "/web/approvals")
                        timings[name], round_trips[name] = latencies(
                            client, path, args.requests, cpu, name
                        )
        finally:
            app.close()
    for title, figures in (("server time (Server-Timing)", timings), ("round trip", round_trips)):
        raw = figures.pop("static file (raw baseline)")
        raw_p50, raw_p99 = percentile(raw, 50), percentile(raw, 99)
        rows = [Row("static file p50", raw_p50, "ms"), Row("static file p99", raw_p99, "ms")]
        for name, samples in figures.items():
            rows.append(Row(f"{name} p50", percentile(samples, 50), "ms", raw_p50, "static p50"))
            rows.append(Row(f"{name} p99", percentile(samples, 99), "ms", raw_p99, "static p99"))
        print_table(f"Workbench pages, {title}, {args.requests} requests each, one client", rows)
    raw_cpu = cpu.pop("static file (raw baseline)")
    cpu_rows = [Row("static file", raw_cpu, "ms CPU")]
    cpu_rows += [Row(name, spent, "ms CPU", raw_cpu, "static file") for name, spent in cpu.items()]
    print_table("Workbench pages, this process's CPU per request (client + server)", cpu_rows)
    worst = max(timings, key=lambda name: percentile(timings[name], 99))
    worst_p99 = percentile(timings[worst], 99)
    print_targets(
        [
            Target(
                f"every page under {TARGET_P99_MS:.0f} ms at p99",
                worst_p99 < TARGET_P99_MS,
                f"slowest {worst}: server time p99 {worst_p99:.1f} ms",
            )
        ]
    )


if __name__ == "__main__":
    main()
