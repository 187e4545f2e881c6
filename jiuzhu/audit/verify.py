"""Recompute the chain and checkpoints from the stored rows; name every row that differs."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.utils import get_topic
from psycopg.rows import TupleRow, tuple_row

from domain.household import Household
from jiuzhu.audit.chain import GENESIS, event_hash, running_hash
from jiuzhu.audit.checkpoints import list_checkpoints
from jiuzhu.audit.signing import Checkpoint, verify_signature
from jiuzhu.audit.snapshots import seal_from_row, state_hash
from jiuzhu.audit.tables import AuditTables

__all__ = ["Finding", "VerifyReport", "count_rows", "verify_log"]

_FETCH = 10_000
_CASE_OPENED = get_topic(Household.CaseOpened)


@dataclass(frozen=True)
class Finding:
    """One discrepancy: what kind, which case and version, where in the log."""

    kind: str  # changed | deleted | inserted | moved | reordered | chain | checkpoint | signature
    # | snapshot | vanished
    case_id: str | None
    version: int | None
    notification_id: int | None
    detail: str

    def __str__(self) -> str:
        where = f"case {self.case_id} version {self.version}" if self.case_id else "log"
        position = f" (notification {self.notification_id})" if self.notification_id else ""
        return f"{self.kind}: {where}{position}: {self.detail}"


@dataclass
class VerifyReport:
    """What verification covered and what it found."""

    events: int = 0
    checkpoints: int = 0
    unverified_signatures: int = 0
    external_checkpoints: int = 0  # checkpoints read from the copy outside the database
    last_position: int = 0  # the log's last notification id
    covered: int = 0  # the last notification id a checkpoint vouches for
    uncovered: int = 0  # events after it: nothing outside the database vouches for them yet
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No discrepancy at all."""
        return not self.findings


def count_rows(datastore: PostgresDatastore, tables: AuditTables) -> int:
    """An upper bound of the rows verification reads (for a progress bar)."""
    with datastore.transaction(commit=False) as curs:
        curs.execute(
            tables.sql(
                "SELECT greatest((SELECT max(notification_id) FROM {events}),"
                " (SELECT max(notification_id) FROM {chain})) AS n"
            )
        )
        row = curs.fetchone()
        return int(row["n"] or 0) if row else 0


def verify_log(
    datastore: PostgresDatastore,
    tables: AuditTables,
    *,
    case_id: UUID | str | None = None,
    public_keys: Mapping[str, Ed25519PublicKey] | None = None,
    progress: Callable[[int], None] | None = None,
    external: Sequence[Checkpoint] | None = None,
) -> VerifyReport:
    """Compare every events row with its chain row, walk the chains and the checkpoints.

    `public_keys`: the keys checkpoints and snapshot seals must be signed with; one signed
    by any other key is a finding. None: signatures are not checked, only counted
    (`unverified_signatures`), for callers that check structure alone.

    `external`: checkpoints from a copy kept outside the database (the broker, a witness
    file); those of this store must all be in the database, and the log must match them.
    """
    walk = _Walk(case_id, public_keys or {}, check_signatures=public_keys is not None)
    if case_id is None:
        stored = list_checkpoints(datastore, tables)
        walk.load_checkpoints(stored)
        if external is not None:
            walk.compare_external([c for c in external if c.store == tables.store], stored)
        if walk.last_checkpoint is not None:
            walk.report.covered = walk.last_checkpoint.last_notification_id
    with datastore.get_connection() as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        events = _stream(conn, "audit_events", tables, _EVENTS, case_id)
        chain = _stream(conn, "audit_chain", tables, _CHAIN, case_id)
        e, c = next(events, None), next(chain, None)
        seen = 0
        while e is not None or c is not None:
            if c is None or (e is not None and e[0] < c[0]):
                assert e is not None
                walk.event_only(e)
                e = next(events, None)
            elif e is None or c[0] < e[0]:
                walk.chain_only(c)
                c = next(chain, None)
            else:
                walk.both(e, c)
                e, c = next(events, None), next(chain, None)
            seen += 1
            if progress is not None and seen % _FETCH == 0:
                progress(_FETCH)
        if progress is not None:
            progress(seen % _FETCH)
    walk.finish()
    walk.report.last_position = walk.last_position
    if case_id is not None and not walk.heads and not walk.report.events:
        _vanished_case(datastore, tables, walk, case_id)
    _check_snapshots(datastore, tables, walk, case_id)
    return walk.report


def _vanished_case(
    datastore: PostgresDatastore, tables: AuditTables, walk: _Walk, case_id: object
) -> None:
    """A case with no rows at all: deleted whole (its household lists it), or never known."""
    with datastore.transaction(commit=False) as curs:
        curs.execute(
            tables.sql(
                "SELECT originator_id FROM {events} WHERE topic = %s"
                " AND position(%s::bytea IN state) > 0 LIMIT 1"
            ),
            (_CASE_OPENED, UUID(str(case_id)).hex.encode()),
        )
        listed = curs.fetchone()
    if listed is not None:
        walk.vanished(case_id, listed["originator_id"])
    else:
        walk.report.findings.append(
            Finding(
                "unknown", str(case_id), None, None,
                "no events, chain records or household index entry: never recorded here, "
                "or deleted together with its household's index",
            )
        )  # fmt: skip


def _check_snapshots(
    datastore: PostgresDatastore, tables: AuditTables, walk: _Walk, case_id: object
) -> None:
    """Each snapshot must carry a trusted seal over its bytes and its case's chain hash."""
    with datastore.transaction(commit=False) as curs:
        curs.execute("SELECT to_regclass(%s) AS t", (f'"{tables.schema}"."{tables.seals_table}"',))
        row = curs.fetchone()
        if row is None or row["t"] is None:
            return
        where = "" if case_id is None else " WHERE s.originator_id = %s"
        curs.execute(
            tables.sql(
                "SELECT s.originator_id, s.originator_version, s.topic, s.state,"
                " x.notification_id, x.chain_hash, x.stored_hash, x.key_id, x.signature,"
                " c.originator_id AS chain_case, c.originator_version AS chain_version,"
                " c.hash AS chain_row_hash"
                " FROM {snapshots} s LEFT JOIN {seals} x USING (originator_id, originator_version)"
                " LEFT JOIN {chain} c ON c.notification_id = x.notification_id"
                + where
                + " ORDER BY s.originator_id, s.originator_version"
            ),
            () if case_id is None else (case_id,),
        )
        rows = curs.fetchall()
    for row in rows:
        snapshot = StoredEvent(
            row["originator_id"], row["originator_version"], row["topic"], bytes(row["state"])
        )
        case, version = row["originator_id"], row["originator_version"]
        if row["signature"] is None:
            walk.snapshot(case, version, None, "snapshot has no seal (inserted or seal removed)")
            continue
        seal = seal_from_row(row)
        if walk.check_signatures:
            problem = seal.holds(tables.store, snapshot, dict(walk.public_keys))
        elif state_hash(snapshot.topic, snapshot.state) != seal.stored_hash:
            problem = "the snapshot's stored bytes differ from the sealed ones (snapshot altered)"
        else:
            problem = None
        if problem is None and (
            row["chain_row_hash"] is None
            or row["chain_case"] != case
            or row["chain_version"] != version
            or bytes(row["chain_row_hash"]) != seal.chain_hash
        ):
            problem = "the chain record it was sealed to differs or is gone"
        if problem is not None:
            walk.snapshot(case, version, seal.notification_id, problem)


# One case: its own rows, and rows whose other half names it (moved in or out). A UNION
# of two index lookups: an OR across both would scan the whole table.
_EVENTS = (
    "SELECT notification_id, originator_id, originator_version, topic, state FROM {events}",
    " WHERE originator_id = %s UNION SELECT notification_id, originator_id,"
    " originator_version, topic, state FROM {events} WHERE notification_id IN"
    " (SELECT notification_id FROM {chain} WHERE originator_id = %s)",
)
_CHAIN = (
    "SELECT notification_id, originator_id, originator_version, prev_hash, hash, running_hash"
    " FROM {chain}",
    " WHERE originator_id = %s UNION SELECT notification_id, originator_id,"
    " originator_version, prev_hash, hash, running_hash FROM {chain} WHERE notification_id IN"
    " (SELECT notification_id FROM {events} WHERE originator_id = %s)",
)


def _stream(
    conn: Any, name: str, tables: AuditTables, query: tuple[str, str], case_id: object
) -> Iterator[TupleRow]:
    """Rows in notification order from a server-side cursor."""
    cursor = conn.cursor(name=name, row_factory=tuple_row)
    cursor.itersize = _FETCH
    if case_id is None:
        cursor.execute(tables.sql(query[0] + " ORDER BY notification_id"))
    else:
        cursor.execute(
            tables.sql(query[0] + query[1] + " ORDER BY notification_id"), (case_id, case_id)
        )
    return iter(cursor)


class _Walk:
    """The state of one pass in notification order."""

    def __init__(
        self,
        case_id: UUID | str | None,
        public_keys: Mapping[str, Ed25519PublicKey],
        *,
        check_signatures: bool = True,
    ) -> None:
        self.check_signatures = check_signatures
        self.case_id = None if case_id is None else str(case_id)
        self.public_keys = public_keys
        self.report = VerifyReport()
        self.heads: dict[Any, bytes] = {}
        self.running = GENESIS
        self.last_position = 0
        self.opened: dict[UUID, object] = {}  # case id -> household index listing it
        self.events_only: set[object] = set()  # cases with events but no chain records
        self.due: dict[int, list[Checkpoint]] = {}
        self.last_checkpoint: Checkpoint | None = None
        self.matched = 0  # the position of the last checkpoint the log matched

    def load_checkpoints(self, checkpoints: list[Checkpoint]) -> None:
        """The database's checkpoints: each signed by a trusted key, each chained to the last."""
        previous: Checkpoint | None = None
        for checkpoint in checkpoints:
            self.report.checkpoints += 1
            self._check_signature(checkpoint, "")
            self._check_follows(previous, checkpoint)
            previous = checkpoint
            self.due.setdefault(checkpoint.last_notification_id, []).append(checkpoint)
        self.last_checkpoint = previous

    def compare_external(self, external: list[Checkpoint], stored: list[Checkpoint]) -> None:
        """The copy kept outside the database is the authority: the database must hold it."""
        by_number = {c.number: c for c in stored}
        previous: Checkpoint | None = None
        for checkpoint in sorted(external, key=lambda c: c.number):
            self.report.external_checkpoints += 1
            if not self._check_signature(checkpoint, " (external copy)"):
                continue  # a forged publication proves nothing either way
            if previous is not None:  # the copy may begin anywhere in the chain
                self._check_follows(previous, checkpoint, " (external copy)")
            previous = checkpoint
            mine = by_number.get(checkpoint.number)
            if mine is None:
                self._find(
                    "checkpoint", None, None, checkpoint.last_notification_id,
                    f"checkpoint {checkpoint.number} (log up to notification "
                    f"{checkpoint.last_notification_id}) is in the external copy but missing "
                    "from the database (deleted)",
                )  # fmt: skip
            elif not mine.same_statement(checkpoint):
                self._find(
                    "checkpoint", None, None, checkpoint.last_notification_id,
                    f"checkpoint {checkpoint.number} in the database differs from the external "
                    "copy (replaced or re-signed)",
                )  # fmt: skip
            # Whatever the database says now, the log must match what was signed then.
            due = self.due.setdefault(checkpoint.last_notification_id, [])
            if mine is None or not mine.same_statement(checkpoint):
                due.append(checkpoint)
        if previous is not None and (
            self.last_checkpoint is None or previous.number > self.last_checkpoint.number
        ):
            self.last_checkpoint = previous

    def _check_signature(self, checkpoint: Checkpoint, where: str) -> bool:
        key = self.public_keys.get(checkpoint.key_id)
        if key is None:
            self.report.unverified_signatures += 1
            if not self.check_signatures:
                return True
            self._find(
                "signature", None, None, checkpoint.last_notification_id,
                f"checkpoint {checkpoint.number}{where} is signed by key {checkpoint.key_id}, "
                "which is not a trusted key",
            )  # fmt: skip
            return False
        if not verify_signature(key, checkpoint.signature, checkpoint.message()):
            self._find(
                "signature", None, None, checkpoint.last_notification_id,
                f"checkpoint {checkpoint.number}{where} has a bad signature",
            )  # fmt: skip
            return False
        return True

    def _check_follows(
        self, previous: Checkpoint | None, checkpoint: Checkpoint, where: str = ""
    ) -> None:
        if checkpoint.seq is None:
            return  # v1, signed before checkpoints were chained
        expected_digest = GENESIS if previous is None else previous.digest()
        expected_number = 1 if previous is None else previous.number + 1
        if checkpoint.prev_digest != expected_digest or checkpoint.seq != expected_number:
            before = "the start" if previous is None else f"checkpoint {previous.number}"
            self._find(
                "checkpoint", None, None, checkpoint.last_notification_id,
                f"checkpoint {checkpoint.number}{where} does not follow {before}: checkpoints "
                "between them were removed, or one was inserted or replaced",
            )  # fmt: skip
        elif previous is not None and (
            checkpoint.last_notification_id < previous.last_notification_id
        ):
            self._find(
                "checkpoint", None, None, checkpoint.last_notification_id,
                f"checkpoint {checkpoint.number}{where} covers less of the log than the one "
                "before it",
            )  # fmt: skip

    def _find(
        self, kind: str, case: object, version: int | None, position: int | None, detail: str
    ) -> None:
        case_id = None if case is None else str(case)
        self.report.findings.append(Finding(kind, case_id, version, position, detail))

    def snapshot(self, case: object, version: int, position: int | None, detail: str) -> None:
        self._find("snapshot", case, version, position, detail)

    def vanished(self, case: object, household: object) -> None:
        self._find(
            "vanished", case, None, None,
            f"the household index {household} lists this case, but none of its events or "
            "chain records remain (the case was deleted)",
        )  # fmt: skip

    def _opened(self, e: TupleRow) -> None:
        """Note the case a household index entry names (Household.CaseOpened)."""
        try:
            self.opened[UUID(orjson.loads(bytes(e[4]))["case_id"]["_data_"])] = e[1]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return  # sealed or unreadable: the row's own hash still vouches for it

    def event_only(self, e: TupleRow) -> None:
        self.report.events += 1
        self.events_only.add(e[1])
        if e[3] == _CASE_OPENED:
            self._opened(e)
        self._find("inserted", e[1], e[2], e[0], "stored event has no chain record")

    def chain_only(self, c: TupleRow) -> None:
        self._link(c)
        self._find("deleted", c[1], c[2], c[0], "recorded event is missing from the store")

    def both(self, e: TupleRow, c: TupleRow) -> None:
        self.report.events += 1
        self._link(c)
        if e[3] == _CASE_OPENED:
            self._opened(e)
        if e[1] != c[1]:
            self._find("moved", c[1], c[2], c[0], f"now stored under case {e[1]} version {e[2]}")
        elif e[2] != c[2]:
            self._find("reordered", c[1], c[2], c[0], f"the row now claims version {e[2]}")
        elif event_hash(bytes(c[3]), e[1], e[2], e[3], bytes(e[4])) != c[4]:
            self._find("changed", c[1], c[2], c[0], "stored bytes differ from the recorded hash")

    def _link(self, c: TupleRow) -> None:
        """Check the chain record follows its case's previous one, and the running hash."""
        position, case, version, prev_hash, hash_, stored_running = c
        if self.case_id is None or str(case) == self.case_id:
            if bytes(prev_hash) != self.heads.get(case, GENESIS):
                self._find(
                    "chain", case, version, position,
                    "chain record does not follow the case's previous record "
                    "(a record before it was removed or altered)",
                )  # fmt: skip
            self.heads[case] = bytes(hash_)
        if self.case_id is not None:
            return
        self.running = running_hash(self.running, position, bytes(hash_))
        if bytes(stored_running) != self.running:
            gap = position - self.last_position - 1
            if gap > 0:
                # Named by position, not by this row's case: the rows removed were others.
                self._find(
                    "chain", None, None, position,
                    f"running hash breaks after a gap: the records of notifications "
                    f"{self.last_position + 1}..{position - 1} were removed (or a record "
                    "before them altered)",
                )  # fmt: skip
            else:
                self._find(
                    "chain", case, version, position,
                    "running hash differs from the recomputed one",
                )  # fmt: skip
            # Go on from the stored value: each later break is found and named too.
            self.running = bytes(stored_running)
        self.last_position = position
        if position > self.report.covered:
            self.report.uncovered += 1
        for checkpoint in self.due.pop(position, ()):
            if checkpoint.running_hash == self.running:
                self.matched = position
            else:
                # Named by position: the row here is only where the signed statement ends.
                self._find(
                    "checkpoint", None, None, position,
                    f"the log up to here differs from signed checkpoint {checkpoint.number}: "
                    f"a record between notifications {self.matched + 1} and {position} was "
                    "rewritten (the last checkpoint that matched ends at "
                    f"{self.matched or 'the start'})",
                )  # fmt: skip

    def finish(self) -> None:
        if self.case_id is None:
            for case, household in self.opened.items():
                if case not in self.heads and case not in self.events_only:
                    self.vanished(case, household)
        for position, checkpoints in sorted(self.due.items()):
            for checkpoint in checkpoints:
                self._find(
                    "checkpoint", None, None, position,
                    f"signed checkpoint {checkpoint.number} covers notification "
                    f"{position}, which is no longer in the log (tail removed)",
                )  # fmt: skip
