"""Replay and rebuild: read models rebuilt from the notification log into a scratch schema.

`replay` rebuilds into a scratch schema up to the live tables' own positions and compares
them row by row (the proof that a report follows from the history). `rebuild` builds the
scratch tables up to the head of the log and swaps them in, in one transaction that locks
the live tables (the projector waits, intake never stops), catches the scratch tables up
to the head once more, then replaces the live tables, tracking record included.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import psycopg
from eventsourcing.application import Application
from psycopg.sql import SQL, Identifier

from projections.base import Parked, Positioned, ReadModel, parked_events, read_model_datastore
from projections.compare import Difference, compare_tables
from projections.funnel import Funnel
from projections.headline import Headline
from projections.log_reader import SKIPPED, LogReader
from projections.payments_ledger import PaymentsLedger
from projections.programme_roll import ProgrammeRoll
from projections.stacked_relief import StackedRelief
from projections.time_to_support import TimeToSupport
from projections.verification_tasks import VerificationTasks

__all__ = [
    "REPORT_MODELS",
    "ReplayResult",
    "feed",
    "read_model_classes",
    "rebuild",
    "replay",
    "select_models",
]

REPORT_MODELS: tuple[type[ReadModel], ...] = (
    Funnel,
    VerificationTasks,
    PaymentsLedger,
    TimeToSupport,
    StackedRelief,
    ProgrammeRoll,
    Headline,
)
Progress = Callable[[int], None]
# Read models applied at once by feed(): PostgreSQL writes while Python decodes and folds.
WORKERS = 3


def read_model_classes() -> list[type[ReadModel]]:
    """Every read model the projector feeds (the registry's), the reports' included."""
    try:
        from projections.registry import READ_MODELS  # the projector's list, when it exists
    except ImportError:
        registered: list[type[ReadModel]] = []
    else:
        registered = list(READ_MODELS)
    names = {model.name for model in registered}
    return registered + [model for model in REPORT_MODELS if model.name not in names]


def select_models(names: Sequence[str]) -> list[type[ReadModel]]:
    """Read models by name (all of them when no name is given); ValueError names unknowns."""
    known = {model.name: model for model in read_model_classes()}
    unknown = [name for name in names if name not in known]
    if unknown:
        msg = f"unknown read model(s) {', '.join(unknown)}; known: {', '.join(known)}"
        raise ValueError(msg)
    return [known[name] for name in names] if names else list(known.values())


@contextmanager
def rare_collections(allocations: int = 200_000) -> Iterator[None]:
    """Run the cyclic garbage collector rarely while a block churns through short-lived events.

    A batch holds tens of thousands of live event dicts; with the default threshold the
    collector walks them every few hundred allocations (40% of decoding time). The events
    form no cycles, so collecting rarely costs no memory. Objects alive before the block
    (modules, classes) are frozen out of the collector's walks meanwhile.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(allocations, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def feed(
    models: Sequence[ReadModel],
    app: Application[Any],
    *,
    stops: dict[str, int] | None = None,
    batch_size: int = 10_000,
    progress: Progress | None = None,
    workers: int = WORKERS,
) -> int:
    """Apply the log to read models from their positions (each up to its stop, if given).

    One scan and one decode serve every read model. Returns how many notifications were read.
    """
    if not models:
        return 0
    positions = {model.name: model.position(app.name) for model in models}
    limits = {m.name: (stops or {}).get(m.name) for m in models}
    bounded = [limit for limit in limits.values() if limit is not None]
    stop = max(bounded) if stops is not None and len(bounded) == len(models) else None
    reader = LogReader(app, [type(model) for model in models])
    read = 0
    # One worker per read model: PostgreSQL writes one batch while Python decodes the next
    # (two cores do twice the work); each read model still applies its batches in order.
    with (
        rare_collections(),
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rebuild") as pool,
    ):
        running: dict[str, Future[int]] = {}
        for batch, spanned in reader.batches(
            after=min(positions.values()), stop=stop, batch_size=batch_size
        ):
            last = batch[-1][1]
            for model in models:
                events = _up_to(batch, last, limits[model.name])
                if events and events[-1][1] > positions[model.name]:
                    if (previous := running.pop(model.name, None)) is not None:
                        previous.result()
                    running[model.name] = pool.submit(
                        model.apply, events, application_name=app.name
                    )
            read += spanned
            if progress is not None:
                progress(spanned)
        for future in running.values():
            future.result()
    return read


def _up_to(batch: list[Positioned], last: int, limit: int | None) -> list[Positioned]:
    """The part of a batch up to a read model's limit (all of it without one)."""
    if limit is None or last <= limit:
        return batch
    events = [item for item in batch if item[1] <= limit]
    if not events or events[-1][1] < limit:
        # Everything up to the limit was read: track the limit itself.
        events.append((SKIPPED, limit))
    return events


@dataclass
class ReplayResult:
    """What a replay found: positions compared and each difference, per read model."""

    positions: dict[str, int] = field(default_factory=dict)
    differences: dict[str, list[Difference]] = field(default_factory=dict)
    events_read: int = 0
    # Events the rebuilt read models could not fold, parked as the live ones park them.
    parked: list[Parked] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        """Whether every rebuilt table equals its live table."""
        return not any(self.differences.values())


def _scratch(database_url: str, live_schema: str, purpose: str) -> str:
    name = f"{live_schema[:40]}_{purpose}_{uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SQL("CREATE SCHEMA {0}").format(Identifier(name)))
    return name


def _drop_schema(database_url: str, schema: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SQL("DROP SCHEMA IF EXISTS {0} CASCADE").format(Identifier(schema)))


def _models(
    classes: Iterable[type[ReadModel]], database_url: str, schema: str, *, pool_size: int
) -> list[ReadModel]:
    datastore = read_model_datastore(database_url, schema=schema, pool_size=pool_size)
    return [cls(datastore) for cls in classes]


def _set_logged(database_url: str, models: Sequence[ReadModel], logged: bool) -> None:
    """Scratch tables skip the write-ahead log while they are built; swapped-in ones keep it."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for model in models:
            for relation in (model.tracking_table_name, *model.tables):
                conn.execute(
                    SQL("ALTER TABLE {0} SET {1}").format(
                        Identifier(model.datastore.schema, relation),
                        SQL("LOGGED" if logged else "UNLOGGED"),
                    )
                )


def _close(models: Sequence[ReadModel]) -> None:
    for datastore in {id(m.datastore): m.datastore for m in models}.values():
        datastore.close()


def _live_positions(
    conn: psycopg.Connection[Any], schema: str, models: Sequence[ReadModel], app_name: str
) -> dict[str, int]:
    positions = {}
    for model in models:
        try:
            with conn.transaction():
                row = conn.execute(
                    SQL(
                        "SELECT max(notification_id) FROM {0}.{1} WHERE application_name = %s"
                    ).format(Identifier(schema), Identifier(model.tracking_table_name)),
                    (app_name,),
                ).fetchone()
        except psycopg.errors.UndefinedTable:
            positions[model.name] = -1  # no live tables at all
        else:
            positions[model.name] = (row[0] if row else None) or 0
    return positions


def replay(
    app: Application[Any],
    classes: Sequence[type[ReadModel]],
    *,
    database_url: str,
    schema: str,
    batch_size: int = 10_000,
    progress: Progress | None = None,
    attempts: int = 5,
) -> ReplayResult:
    """Rebuild read models in a scratch schema and compare them with the live tables."""
    scratch_schema = _scratch(database_url, schema, "replay")
    scratch = _models(classes, database_url, scratch_schema, pool_size=WORKERS + 1)
    result = ReplayResult()
    try:
        for model in scratch:
            model.create_table()
        _set_logged(database_url, scratch, logged=False)  # dropped afterwards anyway
        with psycopg.connect(database_url, autocommit=True) as conn:
            for _ in range(attempts):
                # Compare in one snapshot, at the positions the live tables have in it.
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
                try:
                    live = _live_positions(conn, schema, scratch, app.name)
                    behind = {
                        m.name: p
                        for m, p in zip(scratch, live.values(), strict=True)
                        if m.position(app.name) < p
                    }
                    if not behind:
                        result.positions = live
                        result.parked = parked_events(scratch[0].datastore, app.name)
                        for model in scratch:
                            result.differences[model.name] = compare_tables(
                                conn,
                                model.tables,
                                live_schema=schema,
                                rebuilt_schema=scratch_schema,
                                missing=live[model.name] < 0,
                            )
                        return result
                finally:
                    conn.execute("COMMIT")
                lagging = [m for m in scratch if m.name in behind]
                result.events_read += feed(
                    lagging, app, stops=behind, batch_size=batch_size, progress=progress
                )
            msg = f"the live read models kept moving: no stable position in {attempts} attempts"
            raise RuntimeError(msg)
    finally:
        _close(scratch)
        _drop_schema(database_url, scratch_schema)


def rebuild(
    app: Application[Any],
    classes: Sequence[type[ReadModel]],
    *,
    database_url: str,
    schema: str,
    batch_size: int = 10_000,
    progress: Progress | None = None,
    lock_timeout_s: int = 30,
) -> dict[str, int]:
    """Replace live read models with ones rebuilt from the log; their new positions."""
    scratch_schema = _scratch(database_url, schema, "rebuild")
    scratch = _models(classes, database_url, scratch_schema, pool_size=WORKERS + 1)
    live = _models(classes, database_url, schema, pool_size=1)
    try:
        for model in (*scratch, *live):
            model.create_table()
        _set_logged(database_url, scratch, logged=False)
        feed(scratch, app, batch_size=batch_size, progress=progress)
        _set_logged(database_url, scratch, logged=True)
        with psycopg.connect(database_url) as conn:
            conn.execute(SQL("SET lock_timeout = {0}").format(f"{lock_timeout_s}s"))
            # In the projector's order (by name: one transaction writes them all, one after
            # another), each tracking table first (it reads that first): no deadlock.
            for model in sorted(live, key=lambda m: m.name):
                relations = (model.tracking_table_name, *model.tables)
                conn.execute(
                    SQL("LOCK TABLE {0} IN ACCESS EXCLUSIVE MODE").format(
                        SQL(", ").join(Identifier(schema, r) for r in relations)
                    )
                )
            frozen = _live_positions(conn, schema, live, app.name)
            # Events that arrived meanwhile: the live side is frozen, the log is not.
            feed(scratch, app, batch_size=batch_size, progress=progress)
            positions = {m.name: m.position(app.name) for m in scratch}
            for model in scratch:
                if positions[model.name] < frozen[model.name]:
                    msg = (
                        f"{model.name}: rebuilt position {positions[model.name]} "
                        f"is behind the live {frozen[model.name]}"
                    )
                    raise RuntimeError(msg)
            for model in scratch:
                for relation in (model.tracking_table_name, *model.tables):
                    conn.execute(SQL("DROP TABLE {0}").format(Identifier(schema, relation)))
                    conn.execute(
                        SQL("ALTER TABLE {0} SET SCHEMA {1}").format(
                            Identifier(scratch_schema, relation), Identifier(schema)
                        )
                    )
        return positions
    finally:
        _close(scratch)
        _close(live)
        with suppress(psycopg.Error):
            _drop_schema(database_url, scratch_schema)
