"""Benchmark: the HTTP API's command and read endpoints beside the same calls in-process.

Open loop at a fixed rate (100 and 300 requests/s): each request is due at its slot and its
latency is counted from that slot, so a server falling behind shows as queueing, not as
fewer requests. The baseline is the same CaseWork command (attach_signal on one of many
cases) called in-process at the same rate by a pool of threads, in the same run.

The API runs as `uvicorn --factory api.asgi:app_from_env --workers W` (W: --workers,
default 2, as docs/api.md recommends on two cores). The machine is shared with other
engineers' tests: the load average is printed beside the figures.

Run: .venv/bin/python -m bench.bench_api [--seconds 10] [--workers 2] [--cases 400]
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any
from uuid import UUID, uuid4

import httpx
import psutil
from eventsourcing.persistence import IntegrityError

from api.auth import TokenVerifier
from api.settings import ApiSettings
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
from jiuzhu.embedded import free_port
from jiuzhu.narrate import CHINA_TIME
from jiuzhu.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
RATES = (100, 300)


def by() -> dict[str, Any]:
    return {
        "actor": "bench-caseworker",
        "role": "caseworker",
        "reason": "bench",
        "occurred_at": datetime.now(CHINA_TIME),
    }


def open_cases(app: Any, count: int) -> list[UUID]:
    """Cases to act on: spread so that concurrent commands rarely touch the same one."""
    ids = []
    for number in range(count):
        case_id = uuid4()
        app.open_case(
            {
                "case_id": case_id,
                "household_id": f"HH-BENCH-{number}",
                "region": "610523",
                "channel": "hotline",
                "personal": {"name": "王某", "id_card": f"61052319800101{number:04d}"},
                "by": by(),
            }
        )
        ids.append(case_id)
    return ids


def paced_in_process(call: Callable[[int], None], rate: int, seconds: float) -> list[float]:
    """Latencies (s) of call(i) made at `rate` per second by a pool of threads, open loop."""
    total = int(rate * seconds)
    latencies: list[float] = [0.0] * total
    start = time.perf_counter() + 0.2

    def one(i: int) -> None:
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        call(i)
        latencies[i] = time.perf_counter() - due

    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(one, range(total)))
    return latencies


async def paced_http(
    request: Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]],
    url: str,
    rate: int,
    seconds: float,
) -> tuple[list[float], int]:
    """Latencies (s) of request(client, i) sent at `rate` per second, open loop; errors."""
    total = int(rate * seconds)
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    timeout = httpx.Timeout(30, pool=60)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.2

        async def one(i: int) -> None:
            nonlocal errors
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - loop.time()))
            try:
                response = await request(client, i)
                failed = response.status_code >= 400
            except httpx.HTTPError:  # overloaded: the latency still counts, as a failure
                failed = True
            latencies.append(loop.time() - due)
            errors += failed

        await asyncio.gather(*(one(i) for i in range(total)))
    return latencies, errors


class Server:
    """uvicorn with W workers on the bench schema, stopped at the end."""

    def __init__(self, env: dict[str, str], workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(os.devnull, "wb")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "--factory", "api.asgi:app_from_env",
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers),
                "--log-level", "warning", "--no-access-log",
            ],
            env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the API did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def cpu_seconds(process: psutil.Process) -> float:
    """CPU time of a process and its children (the uvicorn workers)."""
    total = 0.0
    for each in (process, *process.children(recursive=True)):
        times = each.cpu_times()
        total += times.user + times.system
    return total


def own_cpu_seconds() -> float:
    """CPU time of this process (the in-process baseline runs here)."""
    times = os.times()
    return times.user + times.system


def cpu_per_call(measure: Callable[[], float], calls: Callable[[], None], count: int) -> float:
    """Milliseconds of CPU per call: a figure the other engineers' load barely moves."""
    before = measure()
    calls()
    return (measure() - before) / count * 1000


def ms(samples: list[float], q: float) -> float:
    return percentile(samples, q) * 1000


def main() -> None:
    parser = base_arguments(__doc__ or "")
    parser.add_argument("--seconds", type=float, default=10.0, help="Per rate (default 10)")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers (default 2)")
    parser.add_argument("--cases", type=int, default=400, help="Cases acted on (default 400)")
    args = parser.parse_args()
    console.print(f"[bold]API benchmark[/] on {machine(args.database_url)}")
    with fresh_schema(args.database_url, "bench_api") as schema, TemporaryDirectory() as data:
        token_key = base64.b64encode(os.urandom(32)).decode()
        settings = Settings(
            database_url=args.database_url,
            db_schema=schema,
            data_dir=Path(data),
            allow_generated_keys=True,  # the bench's throw-away keys
        )
        app = casework(args.database_url, schema=schema, pool_size=16, settings=settings)
        try:
            run(app, settings, token_key, args)
        finally:
            app.close()


def run(app: Any, settings: Settings, token_key: str, args: Any) -> None:
    cases = open_cases(app, args.cases)
    env = {
        **os.environ,
        "JIUZHU_DATABASE_URL": args.database_url,
        "JIUZHU_DB_SCHEMA": settings.db_schema,
        "JIUZHU_DATA_DIR": str(settings.data_dir),
        "JIUZHU_API_TOKEN_KEY": token_key,
        "JIUZHU_POOL_SIZE": "16",
        "JIUZHU_LOG_JSON": "true",
        "JIUZHU_ALLOW_GENERATED_KEYS": "1",
    }
    api = ApiSettings(token_key=token_key)  # type: ignore[arg-type]
    headers = {
        "Authorization": f"Bearer {TokenVerifier(settings, api).issue('bench', 'caseworker')}"
    }

    def in_process(i: int) -> None:
        # Two threads on one case: the store refuses one (the API answers it with 409).
        with contextlib.suppress(IntegrityError):
            app.attach_signal({"case_id": cases[i % len(cases)], "signal": f"s{i}", "by": by()})

    def in_process_read(i: int) -> None:
        app.get_case(cases[i % len(cases)])

    async def command(client: httpx.AsyncClient, i: int) -> httpx.Response:
        body = {"signal": f"h{i}", "reason": "bench"}
        return await client.post(
            f"/cases/{cases[i % len(cases)]}/signals", json=body, headers=headers
        )

    async def keyed(client: httpx.AsyncClient, i: int) -> httpx.Response:
        body = {"signal": f"k{i}", "reason": "bench"}
        keyed_headers = {**headers, "Idempotency-Key": f"bench-{i}-{uuid4().hex[:6]}"}
        return await client.post(
            f"/cases/{cases[i % len(cases)]}/signals", json=body, headers=keyed_headers
        )

    async def read(client: httpx.AsyncClient, i: int) -> httpx.Response:
        return await client.get(f"/cases/{cases[i % len(cases)]}", headers=headers)

    server = Server(env, args.workers)
    rows: list[Row] = []
    targets: list[Target] = []
    try:
        count = min(200, len(cases))
        workers = psutil.Process(server.process.pid)
        with httpx.Client(base_url=server.url, timeout=60) as client:
            post_cpu = cpu_per_call(
                lambda: cpu_seconds(workers),
                lambda: [
                    client.post(
                        f"/cases/{cases[i]}/signals",
                        json={"signal": "cpu", "reason": "bench"},
                        headers=headers,
                    )
                    for i in range(count)
                ],
                count,
            )
            get_cpu = cpu_per_call(
                lambda: cpu_seconds(workers),
                lambda: [client.get(f"/cases/{cases[i]}", headers=headers) for i in range(count)],
                count,
            )
        rows.append(
            Row(
                "POST /cases/{id}/signals: server CPU per request",
                post_cpu,
                "ms",
                cpu_per_call(own_cpu_seconds, lambda: [in_process(i) for i in range(count)], count),
                "attach_signal in-process: CPU per call",
            )
        )
        rows.append(
            Row(
                "GET /cases/{id}: server CPU per request",
                get_cpu,
                "ms",
                cpu_per_call(
                    own_cpu_seconds, lambda: [in_process_read(i) for i in range(count)], count
                ),
                "get_case in-process: CPU per call",
            )
        )
        for rate in RATES:
            base = paced_in_process(in_process, rate, args.seconds)
            http, errors = asyncio.run(paced_http(command, server.url, rate, args.seconds))
            load = os.getloadavg()[0]
            for q in (50, 99):
                rows.append(
                    Row(
                        f"POST /cases/{{id}}/signals at {rate}/s p{q} ({errors} errors)",
                        ms(http, q),
                        "ms",
                        ms(base, q),
                        f"attach_signal in-process, {rate}/s p{q}",
                    )
                )
            console.print(
                f"  {rate}/s: http p50 {ms(http, 50):.1f} p99 {ms(http, 99):.1f} ms, in-process"
                f" p50 {ms(base, 50):.1f} p99 {ms(base, 99):.1f} ms, {errors} errors,"
                f" load average {load:.1f}"
            )
            if rate == 100:
                targets.append(
                    Target("command p99 < 25 ms at 100 req/s", ms(http, 99) < 25,
                           f"{ms(http, 99):.1f} ms")
                )  # fmt: skip
                overhead = ms(http, 50) - ms(base, 50)
                targets.append(
                    Target("HTTP overhead < 2 ms p50", overhead < 2, f"{overhead:.1f} ms")
                )
        keyed_http, errors = asyncio.run(paced_http(keyed, server.url, 100, args.seconds))
        rows.append(
            Row(
                f"same, with Idempotency-Key, 100/s p50 ({errors} errors)",
                ms(keyed_http, 50),
                "ms",
                ms(paced_in_process(in_process, 100, args.seconds), 50),
                "attach_signal in-process, 100/s p50",
            )
        )
        base_read = paced_in_process(in_process_read, 100, args.seconds)
        http_read, errors = asyncio.run(paced_http(read, server.url, 100, args.seconds))
        for q in (50, 99):
            rows.append(
                Row(
                    f"GET /cases/{{id}} at 100/s p{q} ({errors} errors)",
                    ms(http_read, q),
                    "ms",
                    ms(base_read, q),
                    f"get_case in-process, 100/s p{q}",
                )
            )
        targets.append(
            Target("read p99 < 10 ms", ms(http_read, 99) < 10, f"{ms(http_read, 99):.1f} ms")
        )
    finally:
        server.stop()
    print_table(
        f"HTTP API, {args.workers} uvicorn workers, open loop "
        f"(machine shared: load average {os.getloadavg()[0]:.1f})",
        rows,
    )
    print_targets(targets)


if __name__ == "__main__":
    main()
