"""Benchmark: `audit verify` over a whole log beside a raw ordered scan of the same table.

Also the chained recorder's batched inserts beside the library's recorder, same run.
Run: .venv/bin/python -m bench.bench_audit [--database-url URL] [--events N]
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import uuid4

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import tuple_row

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
from jiuzhu.audit.checkpoints import list_checkpoints
from jiuzhu.audit.recorder import ChainedApplicationRecorder
from jiuzhu.audit.signing import Signer
from jiuzhu.audit.verify import verify_log

TARGET_EVENTS_PER_SECOND = 20_000
EVENTS_PER_CASE = 12
BATCH = 1_200  # 100 cases of 12 events per insert, like app.save(*100 aggregates)


def datastore(url: str, schema: str) -> PostgresDatastore:
    params = conninfo_to_dict(url)
    return PostgresDatastore(
        dbname=str(params.get("dbname")),
        host=str(params.get("host") or "127.0.0.1"),
        port=str(params.get("port") or "5432"),
        user=str(params.get("user") or "postgres"),
        password=str(params.get("password") or ""),
        schema=schema,
        pool_size=2,
    )


def batches(total: int) -> list[list[StoredEvent]]:
    """Events shaped like CaseWork's (JSON state, ~450 bytes), 12 per case."""
    now = datetime.now(UTC).isoformat()
    out: list[list[StoredEvent]] = []
    batch: list[StoredEvent] = []
    for _ in range(total // EVENTS_PER_CASE):
        case_id = uuid4()
        correlation = f"command:{uuid4()}"
        for version in range(1, EVENTS_PER_CASE + 1):
            state = {
                "timestamp": {"_type_": "datetime_iso", "_data_": now},
                "actor": "finance-1",
                "role": "upstream_system",
                "reason": "monthly disbursement",
                "occurred_at": {"_type_": "datetime_iso", "_data_": now},
                "causation_id": correlation,
                "correlation_id": correlation,
                "programme": "rural_dibao",
                "period": f"2024-{version:02d}",
                "amount_fen": 50000,
                "payment_ref": f"PAY-{uuid4().hex}",
            }
            batch.append(
                StoredEvent(case_id, version, "domain.case:Case.Paid", json.dumps(state).encode())
            )
        if len(batch) >= BATCH:
            out.append(batch)
            batch = []
    if batch:
        out.append(batch)
    return out


def insert_rate(recorder: PostgresApplicationRecorder, data: Sequence[list[StoredEvent]]) -> float:
    started = time.perf_counter()
    for batch in data:
        recorder.insert_events(batch)
    return rate(sum(len(b) for b in data), time.perf_counter() - started)


def raw_scan_rate(store: PostgresDatastore, table: str) -> float:
    """Every row of the events table in notification order, as verify reads it."""
    started = time.perf_counter()
    count = 0
    with store.get_connection() as conn, conn.transaction():
        cursor = conn.cursor(name="raw_scan", row_factory=tuple_row)
        cursor.itersize = 10_000
        cursor.execute(
            f"SELECT notification_id, originator_id, originator_version, topic, state"
            f' FROM "{store.schema}"."{table}" ORDER BY notification_id'
        )
        for _ in cursor:
            count += 1
    return rate(count, time.perf_counter() - started)


def main(argv: Sequence[str] | None = None) -> None:
    parser = base_arguments(__doc__ or "")
    parser.add_argument("--events", type=int, default=240_000, help="events in the log")
    args = parser.parse_args(argv)
    console.print(machine(args.database_url))
    data = batches(args.events)
    insert_sample = data[: max(1, len(data) // 10)]
    with fresh_schema(args.database_url, "bench_audit") as schema:
        store = datastore(args.database_url, schema)
        plain = PostgresApplicationRecorder(store, events_table_name="plain_events")
        plain.create_table()
        signer = Signer(Ed25519PrivateKey.generate())
        trusted = {signer.key_id: signer.public_key}
        # As shipped: a checkpoint every 1,000 events and at most every 60 s.
        chained = ChainedApplicationRecorder(
            store,
            events_table_name="audited_events",
            signer=signer,
            checkpoint_every=1_000,
            checkpoint_seconds=60.0,
        )
        chained.create_table()
        plain_inserts = insert_rate(plain, insert_sample)
        chained_inserts = insert_rate(chained, insert_sample)
        for batch in data[len(insert_sample) :]:
            chained.insert_events(batch)
        events = chained.max_notification_id() or 0

        witness = list_checkpoints(store, chained.audit)
        # Warm the cache for both readers alike, then alternate them.
        raw_scan_rate(store, "audited_events")
        scans, verifies = [], []
        for _ in range(2):
            scans.append(raw_scan_rate(store, "audited_events"))
            started = time.perf_counter()
            # With the external copy (here: the checkpoints as a witness file would hold them).
            report = verify_log(store, chained.audit, public_keys=trusted, external=witness)
            verifies.append(rate(report.events, time.perf_counter() - started))
            assert report.ok, report.findings[:3]
        case_id = data[-1][-1].originator_id
        started = time.perf_counter()
        verify_log(store, chained.audit, case_id=case_id, public_keys=trusted)
        one_case_ms = (time.perf_counter() - started) * 1000
        store.close()

    scan, verified = max(scans), max(verifies)
    print_table(
        f"audit trail on {events:,} events ({report.checkpoints} checkpoints, verified"
        f" against {report.external_checkpoints} witnessed)",
        [
            Row("audit verify (whole log)", verified, "events/s", scan, "ordered scan of events"),
            Row(
                "chained insert, 1,200 events per transaction",
                chained_inserts,
                "events/s",
                plain_inserts,
                "library recorder, same batches",
            ),
            Row("audit verify --case (one case of 12 events)", one_case_ms, "ms"),
        ],
    )
    print_targets(
        [
            Target(
                f"verify >= {TARGET_EVENTS_PER_SECOND:,} events/s",
                verified >= TARGET_EVENTS_PER_SECOND,
                f"{verified:,.0f} events/s",
            )
        ]
    )


if __name__ == "__main__":
    main()
