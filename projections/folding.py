"""Read models that fold a whole batch in memory: touched rows are loaded once, written once.

One SQL statement per event cannot keep up with a rebuild of a million events. A folding
read model only collects the batch's events as they come (process_event), then in
flush_batch loads the per-case rows those events touch with one SELECT per table, folds
the events into them in order, and writes each changed row and each counter delta with a
binary COPY into a session's staging table and one INSERT ... ON CONFLICT per table.
Per-case state lives in the read model's own tables, so a restart or a rebuild folds
exactly the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress
from operator import and_, itemgetter
from typing import Any, ClassVar, NamedTuple, TypeVar
from uuid import UUID
from weakref import WeakKeyDictionary, WeakSet

from psycopg import Connection, Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from domain.case import Case
from projections.base import Columns, LogBatch, Positioned, ReadModel

__all__ = ["Batch", "FoldingReadModel", "Row", "Table", "folds"]

Row = dict[str, Any]
Key = Any  # a case id, or a tuple of key values for tables keyed by more than the case
F = TypeVar("F", bound=Callable[..., None])


@dataclass(frozen=True)
class Table:
    """A table as the fold writes it: its key, its typed columns, how rows combine."""

    name: str
    # (column, SQL type) in table order, key columns included; generated columns left out.
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...] = ("case_id",)
    # Counters add a batch's deltas to the stored values; other tables replace whole rows.
    counter: bool = False
    # Events whose cases' rows must be loaded before folding (state tables only).
    loaded_by: frozenset[type] = field(default_factory=frozenset)
    _getter: Callable[[Row], tuple[Any, ...]] = field(init=False, repr=False, compare=False)
    _rest: Callable[[Row], tuple[Any, ...]] | None = field(init=False, repr=False, compare=False)

    def key_of(self, row: Row) -> Key:
        """The row's key in a batch: the case id's integer, with the other key values."""
        if self._rest is None:
            return row["case_id"].int
        return (row["case_id"].int, *self._rest(row))

    def load_statement(self, schema: str) -> Composed:
        """SELECT the rows of some cases."""
        return SQL("SELECT {columns} FROM {schema}.{table} WHERE case_id = ANY(%b)").format(
            columns=SQL(", ").join(Identifier(c) for c, _ in self.columns),
            schema=Identifier(schema),
            table=Identifier(self.name),
        )

    def staging_name(self, schema: str) -> str:
        """The session's temporary table a batch's rows are copied into before merging."""
        return (
            f"fold_{hashlib.sha1(f'{schema}.{self.name}'.encode()).hexdigest()[:12]}_{self.name}"[
                :63
            ]
        )

    def staging_statement(self, schema: str) -> Composed:
        """CREATE the session's staging table (emptied by each merge, see empty_statement)."""
        return SQL(
            "CREATE TEMPORARY TABLE IF NOT EXISTS {staging} ({columns}) ON COMMIT PRESERVE ROWS"
        ).format(
            staging=Identifier(self.staging_name(schema)),
            columns=SQL(", ").join(
                SQL("{0} {1}").format(Identifier(c), SQL(kind)) for c, kind in self.columns
            ),
        )

    def empty_statement(self, schema: str, *, truncate: bool) -> Composed:
        """Empty the staging table after a merge, in the same transaction.

        Not ON COMMIT DELETE ROWS: that truncates every such table of the session at each
        commit that touched any temporary table, and a pooled connection ends up holding
        the staging tables of every read model: ~20 file truncations per commit, which
        made a live batch of 40 events take 4x as long here. A DELETE of a few rows is
        cheap, but leaves them as dead rows (temporary tables are never vacuumed): once
        TRUNCATE_FROM_ROWS rows went through, a TRUNCATE clears them.
        """
        empty = "TRUNCATE {staging}" if truncate else "DELETE FROM {staging}"
        return SQL(empty).format(staging=Identifier(self.staging_name(schema)))

    def copy_statement(self, schema: str) -> Composed:
        """COPY rows into the staging table, in binary (the fastest way in)."""
        return SQL("COPY {staging} ({columns}) FROM STDIN (FORMAT BINARY)").format(
            staging=Identifier(self.staging_name(schema)),
            columns=SQL(", ").join(Identifier(c) for c, _ in self.columns),
        )

    def merge_statement(self, schema: str) -> Composed:
        """Upsert the staged rows: replace state rows, add counter deltas."""
        names = [c for c, _ in self.columns]
        values = [c for c in names if c not in self.key]
        if self.counter:
            update = SQL(", ").join(
                SQL("{0} = t.{0} + excluded.{0}").format(Identifier(c)) for c in values
            )
        else:
            update = SQL(", ").join(SQL("{0} = excluded.{0}").format(Identifier(c)) for c in values)
        return SQL(
            "INSERT INTO {schema}.{table} AS t ({columns}) SELECT {columns} FROM {staging} "
            "ON CONFLICT ({key}) DO UPDATE SET {update}"
        ).format(
            schema=Identifier(schema),
            table=Identifier(self.name),
            staging=Identifier(self.staging_name(schema)),
            columns=SQL(", ").join(Identifier(c) for c in names),
            key=SQL(", ").join(Identifier(c) for c in self.key),
            update=update,
        )

    @property
    def types(self) -> list[str]:
        """The columns' PostgreSQL types, for a binary COPY."""
        return [kind for _, kind in self.columns]

    def values_of(self, row: Row) -> tuple[Any, ...]:
        """A row's values in column order."""
        return self._getter(row)

    def __post_init__(self) -> None:
        assert len(self.columns) > 1, "a table has a key and at least one value column"
        object.__setattr__(self, "_getter", itemgetter(*(c for c, _ in self.columns)))
        rest = self.key[1:]
        # itemgetter of one name returns the value, not a 1-tuple: wrap it.
        getter = itemgetter(*rest) if len(rest) > 1 else (lambda row: (row[rest[0]],))
        object.__setattr__(self, "_rest", getter if rest else None)


@dataclass(frozen=True)
class _Statements:
    staging: Composed
    copy: Composed
    merge: Composed
    delete: Composed
    truncate: Composed


_DISCOVERED = frozenset({Case.Discovered})
# A staging table is truncated after its merge, not DELETEd from, once this many rows went
# through it since the last truncation (each passes as a dead row the next scans read).
TRUNCATE_FROM_ROWS = 5_000


class _Picked(NamedTuple):
    """A batch's columns, and which of its events a read model folds.

    Only the chosen events themselves are ever looked at (see LogBatch.columns).
    """

    columns: Columns
    chosen: list[bool]

    def among(self, kinds: frozenset[type]) -> list[bool]:
        """Which events are chosen and of one of some classes."""
        return list(map(and_, self.chosen, map(kinds.__contains__, self.columns.kinds)))


def _key(key: UUID | tuple[Any, ...]) -> Key:
    # UUID hashing runs in Python and costs a microsecond; its integer hashes in C.
    return key.int if isinstance(key, UUID) else (key[0].int, *key[1:])


class Batch:
    """What one batch changes: rows of state tables, and counter deltas.

    Rows are addressed by case id, or (case id, other key values) for wider keys.
    """

    def __init__(self) -> None:
        self.rows: dict[str, dict[Key, Row]] = {}
        self.dirty: dict[str, set[Key]] = {}
        self.deltas: dict[str, dict[tuple[Any, ...], list[int]]] = {}

    def row(self, table: Table, key: UUID | tuple[Any, ...]) -> Row | None:
        """A row loaded or written during this batch, or None if there is none."""
        return self.rows[table.name].get(key.int if key.__class__ is UUID else _key(key))

    def changing(self, table: Table, key: UUID | tuple[Any, ...]) -> Row | None:
        """A row about to change (marked to be written), or None if there is none."""
        index = key.int if key.__class__ is UUID else _key(key)
        row = self.rows[table.name].get(index)
        if row is not None:
            self.dirty[table.name].add(index)
        return row

    def put(self, table: Table, row: Row) -> Row:
        """Add or replace a row; it will be written at the end of the batch."""
        key = table.key_of(row)
        self.rows[table.name][key] = row
        self.dirty[table.name].add(key)
        return row

    def touch(self, table: Table, key: UUID | tuple[Any, ...]) -> None:
        """Mark a loaded row as changed."""
        self.dirty[table.name].add(key.int if key.__class__ is UUID else _key(key))

    def add(self, table: Table, key: tuple[Any, ...], *deltas: int) -> None:
        """Add to a counter row's values (in column order after the key)."""
        self.add_all(table, key, deltas)

    def add_all(self, table: Table, key: tuple[Any, ...], deltas: Sequence[int]) -> None:
        """Add to a counter row's values, given as one sequence (folds keep constant ones)."""
        counters = self.deltas[table.name]
        current = counters.get(key)
        if current is None:
            counters[key] = list(deltas)
        else:
            for index, delta in enumerate(deltas):
                current[index] += delta


def folds(*event_types: type) -> Callable[[F], F]:
    """Mark a method as the fold of some event types (one method per event, as usual)."""

    def mark(method: F) -> F:
        method.__dict__["folded_events"] = event_types
        return method

    return mark


class FoldingReadModel(ReadModel):
    """A read model whose events are folded per batch by methods marked with @folds."""

    # State tables (loaded and rewritten per case) and counter tables (deltas added).
    state_tables: ClassVar[Sequence[Table]] = ()
    counter_tables: ClassVar[Sequence[Table]] = ()
    # Event class -> fold method, collected from @folds methods when the class is made.
    folders: ClassVar[dict[type, Callable[..., None]]] = {}
    # Event classes of which only those `keeps` accepts are folded.
    filtered: ClassVar[frozenset[type]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        folders: dict[type, Callable[..., None]] = {}
        for klass in reversed(cls.__mro__):
            for attribute in vars(klass).values():
                for event_type in getattr(attribute, "folded_events", ()):
                    folders[event_type] = attribute
        cls.folders = folders

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._events: list[Any] = []  # kept one by one (not straight from the log)
        self._picked: _Picked | None = None  # picked out of a batch straight from the log
        schema = self.datastore.schema
        self._loads = {t.name: t.load_statement(schema) for t in self.state_tables}
        self._statements = {
            t.name: _Statements(
                t.staging_statement(schema),
                t.copy_statement(schema),
                t.merge_statement(schema),
                t.empty_statement(schema, truncate=False),
                t.empty_statement(schema, truncate=True),
            )
            for t in (*self.state_tables, *self.counter_tables)
        }
        # Connections whose session already has the staging tables.
        self._staged_on: WeakSet[Connection[DictRow]] = WeakSet()
        # Rows through each staging table since it was last truncated, per connection.
        self._through_staging: WeakKeyDictionary[Connection[DictRow], dict[str, int]] = (
            WeakKeyDictionary()
        )

    @classmethod
    def handled_events(cls) -> frozenset[type]:
        """The event classes this read model folds (others are never even decoded)."""
        return frozenset(cls.folders)

    def begin_batch(self) -> None:
        self._events = []
        self._picked = None

    def keeps(self, event: Any) -> bool:
        """Whether to fold an event of a type in `filtered` (some need only a few of them)."""
        return True

    def process_event(self, event: object, curs: Cursor[DictRow]) -> None:
        """Keep the events this read model folds; they are folded together at the flush."""
        kind = type(event)
        if kind in self.folders and (kind not in self.filtered or self.keeps(event)):
            self._events.append(event)

    def process_batch(
        self, events: Iterable[Positioned], position: int, curs: Cursor[DictRow]
    ) -> tuple[int, int]:
        """process_event for a whole batch in one pass: a rebuild calls it a million times."""
        folders, filtered, keeps = self.folders, self.filtered, self.keeps
        if isinstance(events, LogBatch) and events and events[0][1] > position:
            # Straight from the log, all new and in order: picked by class from its columns.
            self._picked = self._pick(events.columns())
            return len(events), events[-1][1]
        keep = self._events.append
        applied, last = 0, position
        for event, notification_id in events:
            if notification_id > last:
                last = notification_id
                applied += 1
                kind = type(event)
                if kind in folders and (kind not in filtered or keeps(event)):
                    keep(event)
        return applied, last

    def _pick(self, columns: Columns) -> _Picked:
        """Which of a batch's events this read model folds (the loops run in C)."""
        chosen = list(map(self.folders.__contains__, columns.kinds))
        if self.filtered:
            events, keeps = columns.events, self.keeps
            for index in compress(
                range(len(chosen)), map(self.filtered.__contains__, columns.kinds)
            ):
                chosen[index] = chosen[index] and keeps(events[index])
        return _Picked(columns, chosen)

    def flush_batch(self, curs: Cursor[DictRow]) -> None:
        picked, self._picked = self._picked, None
        if picked is None:
            picked = _Picked(Columns.of(self._events), [True] * len(self._events))
        self._events = []
        if not any(picked.chosen):
            return
        batch = Batch()
        for table in (*self.state_tables, *self.counter_tables):
            batch.rows[table.name] = {}
            batch.dirty[table.name] = set()
            batch.deltas[table.name] = {}
        self._load(curs, batch, picked)
        folders, columns, chosen = self.folders, picked.columns, picked.chosen
        events, kinds = compress(columns.events, chosen), compress(columns.kinds, chosen)
        for event, kind in zip(events, kinds, strict=True):
            folders[kind](self, event, batch)
        self._write(curs, batch)

    def _load(self, curs: Cursor[DictRow], batch: Batch, picked: _Picked) -> None:
        keys, ids = picked.columns.case_keys, picked.columns.case_ids
        # A case discovered in this batch has no rows yet: nothing to load for it.
        created = set(compress(keys, picked.among(_DISCOVERED)))
        for table in self.state_tables:
            touching = picked.among(table.loaded_by)
            # One id per case: keyed by the ids' integers, which hash in C.
            wanted = dict(zip(compress(keys, touching), compress(ids, touching), strict=True))
            for known in created.intersection(wanted):
                del wanted[known]
            if not wanted:
                continue
            curs.execute(self._loads[table.name], (list(wanted.values()),), binary=True)
            rows = batch.rows[table.name]
            key_of = table.key_of
            for row in curs.fetchall():
                rows[key_of(row)] = row  # dict_row rows are plain dicts

    def _write(self, curs: Cursor[DictRow], batch: Batch) -> None:
        staged = False
        for table in self.state_tables:
            dirty = batch.dirty[table.name]
            if dirty:
                rows = batch.rows[table.name]
                staged = self._stage(curs, staged)
                self._merge(curs, table, [table.values_of(rows[key]) for key in dirty])
        for table in self.counter_tables:
            deltas = batch.deltas[table.name]
            if deltas:
                staged = self._stage(curs, staged)
                self._merge(curs, table, [key + tuple(values) for key, values in deltas.items()])

    def rolled_back(self, connection: Connection[DictRow]) -> None:
        # Staging tables created in that transaction went with it.
        self._staged_on.discard(connection)

    def _stage(self, curs: Cursor[DictRow], staged: bool) -> bool:
        """Create this session's staging tables once per connection."""
        if not staged and curs.connection not in self._staged_on:
            for table in (*self.state_tables, *self.counter_tables):
                curs.execute(self._statements[table.name].staging)
            self._staged_on.add(curs.connection)
        return True

    def _merge(self, curs: Cursor[DictRow], table: Table, rows: list[tuple[Any, ...]]) -> None:
        statements = self._statements[table.name]
        with curs.copy(statements.copy) as copy:
            copy.set_types(table.types)
            for row in rows:
                copy.write_row(row)
        curs.execute(statements.merge)
        # Temporary tables are never vacuumed: DELETEd rows stay as dead space the next
        # COPY and merge scan, so after enough rows through it a table is truncated.
        counts = self._through_staging.setdefault(curs.connection, {})
        passed = counts.get(table.name, 0) + len(rows)
        if passed >= TRUNCATE_FROM_ROWS:
            curs.execute(statements.truncate)
            passed = 0
        else:
            curs.execute(statements.delete)
        counts[table.name] = passed
