"""An administrator who can write every table: each tampering is caught and located.

One small store is built once for the module (with the server's sessions in China's time
zone); each test tampers with it as a superuser would (triggers and constraints off),
verifies against the checkpoints an auditor copied beforehand (the witness), and the
store is restored from a backup afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier

from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.audit.chain import GENESIS, chain_events
from jiuzhu.audit.checkpoints import insert_checkpoint, list_checkpoints
from jiuzhu.audit.signing import Checkpoint, Signer, signer_from_settings
from jiuzhu.audit.tables import AuditTables
from jiuzhu.audit.verify import Finding, verify_log
from jiuzhu.bootstrap import casework
from tests.conftest import DATABASE_URL
from tests.stories import enrolled, opened, pay
from tests.test_audit_support import audit_settings

pytestmark = pytest.mark.postgres

MONTHS = [f"{y}-{m:02d}" for y in (2023, 2024, 2025, 2026, 2027) for m in range(1, 13)]


@dataclass
class Store:
    """The module's store: a long case C (snapshot at 50), a paid case A, a new case B."""

    app: AuditedCaseWork
    tables: AuditTables
    signer: Signer
    a: UUID
    b: UUID
    c: UUID
    witness: list[Checkpoint]  # the checkpoints as an auditor copied them

    def position(self, case: UUID, version: int) -> int:
        with psycopg.connect(DATABASE_URL) as conn:
            row = conn.execute(
                self.tables.sql(
                    "SELECT notification_id FROM {events}"
                    " WHERE originator_id = %s AND originator_version = %s"
                ),
                (case, version),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def verify(self, *, external: bool = True, case: UUID | None = None) -> list[Finding]:
        report = verify_log(
            self.app.datastore,
            self.tables,
            public_keys={self.signer.key_id: self.signer.public_key},
            external=self.witness if external else None,
            case_id=case,
        )
        return report.findings


_TABLES = ("events", "chain", "checkpoints", "seals", "snapshots")


def _table(tables: AuditTables, name: str) -> Identifier:
    real = {
        "events": tables.events_table,
        "chain": tables.chain_table,
        "checkpoints": tables.checkpoints_table,
        "seals": tables.seals_table,
        "snapshots": tables.snapshots_table,
    }[name]
    return Identifier(tables.schema, real)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    schema = f"t_tamper_{datetime.now(UTC).strftime('%H%M%S%f')}"
    settings = audit_settings(tmp_path_factory.mktemp("keys"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGTZ", "Asia/Shanghai")
        app = casework(DATABASE_URL, schema=schema, settings=settings)
        assert isinstance(app, AuditedCaseWork)
        try:
            c = enrolled(app)
            with app.batch():
                for month in MONTHS[3:50]:
                    pay(app, c, month)
            a = enrolled(app)
            for month in ("2023-04", "2023-05", "2023-06"):
                pay(app, a, month)
            b = opened(app)
            tables = app.audit
            built = Store(
                app,
                tables,
                signer_from_settings(settings),
                a,
                b,
                c,
                list_checkpoints(app.datastore, tables),
            )
            assert built.verify() == []
            with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
                for name in _TABLES:
                    conn.execute(
                        SQL("CREATE TABLE {0} AS SELECT * FROM {1}").format(
                            Identifier(schema, f"backup_{name}"), _table(tables, name)
                        )
                    )
            yield built
        finally:
            app.close()
            with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
                conn.execute(SQL("DROP SCHEMA {0} CASCADE").format(Identifier(schema)))


@pytest.fixture
def admin(store: Store) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    """A superuser's session with triggers and constraints off; the store restored after."""
    with psycopg.connect(DATABASE_URL, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("SET session_replication_role = replica")
        yield conn
        for name in _TABLES:
            conn.execute(SQL("DELETE FROM {0}").format(_table(store.tables, name)))
            conn.execute(
                SQL("INSERT INTO {0} SELECT * FROM {1}").format(
                    _table(store.tables, name),
                    Identifier(store.tables.schema, f"backup_{name}"),
                )
            )


Admin = psycopg.Connection[dict[str, Any]]


def sql(admin: Admin, store: Store, statement: str, *params: object) -> None:
    admin.execute(store.tables.sql(statement), params)


def rechain(admin: Admin, store: Store) -> None:
    """Recompute every chain row from the events as they now are (the project's own code)."""
    rows = admin.execute(
        store.tables.sql(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM {events} ORDER BY notification_id"
        )
    ).fetchall()
    events = [
        (r["notification_id"], r["originator_id"], r["originator_version"], r["topic"],
         bytes(r["state"]))
        for r in rows
    ]  # fmt: skip
    sql(admin, store, "DELETE FROM {chain}")
    for (position, case, version, _, _), (prev, hash_, running) in zip(
        events, chain_events({}, GENESIS, events), strict=True
    ):
        sql(
            admin, store,
            "INSERT INTO {chain} (notification_id, originator_id, originator_version,"
            " prev_hash, hash, running_hash) VALUES (%s, %s, %s, %s, %s, %s)",
            position, case, version, prev, hash_, running,
        )  # fmt: skip


def resign(admin: Admin, store: Store, signer: Signer) -> None:
    """Replace every checkpoint by one over the log as it now is, signed by `signer`."""
    positions = [c.last_notification_id for c in store.witness]
    sql(admin, store, "DELETE FROM {checkpoints}")
    with admin.cursor() as curs:
        for position in positions:
            curs.execute(
                store.tables.sql("SELECT running_hash FROM {chain} WHERE notification_id = %s"),
                (position,),
            )
            row = curs.fetchone()
            running = bytes(row["running_hash"]) if row else GENESIS
            insert_checkpoint(curs, store.tables, signer, position, running, datetime.now(UTC))


def alter_amount(admin: Admin, store: Store) -> None:
    sql(
        admin, store,
        "UPDATE {events} SET state = convert_to(replace(convert_from(state, 'UTF8'),"
        " '\"amount_fen\":50000', '\"amount_fen\":90000'), 'UTF8')"
        " WHERE originator_id = %s AND originator_version = 7",
        store.a,
    )  # fmt: skip


def first_checkpoint_after(store: Store, position: int) -> Checkpoint:
    return next(c for c in store.witness if c.last_notification_id >= position)


# -- each tampering: what it does, and where verify must say it happened ----------------

Expect = Callable[[Store], set[tuple[str, str | None, int | None]]]


def t_alter(admin: Admin, s: Store) -> None:
    alter_amount(admin, s)


def t_delete(admin: Admin, s: Store) -> None:
    sql(admin, s, "DELETE FROM {events} WHERE originator_id = %s AND originator_version = 3", s.a)


def t_insert(admin: Admin, s: Store) -> None:
    sql(
        admin, s,
        "INSERT INTO {events} (originator_id, originator_version, topic, state)"
        " SELECT originator_id, 10, topic, state FROM {events}"
        " WHERE originator_id = %s AND originator_version = 9",
        s.a,
    )  # fmt: skip


def t_reorder(admin: Admin, s: Store) -> None:
    for old, new in ((6, -6), (7, 6), (-6, 7)):
        sql(
            admin, s,
            "UPDATE {events} SET originator_version = %s"
            " WHERE originator_id = %s AND originator_version = %s",
            new, s.a, old,
        )  # fmt: skip


def t_move(admin: Admin, s: Store) -> None:
    sql(
        admin, s,
        "UPDATE {events} SET originator_id = %s, originator_version = 2"
        " WHERE originator_id = %s AND originator_version = 9",
        s.b, s.a,
    )  # fmt: skip


def t_truncate_case(admin: Admin, s: Store) -> None:
    sql(admin, s, "DELETE FROM {events} WHERE originator_id = %s AND originator_version >= 8", s.a)


def t_delete_case(admin: Admin, s: Store) -> None:
    sql(admin, s, "DELETE FROM {events} WHERE originator_id = %s", s.b)
    sql(admin, s, "DELETE FROM {chain} WHERE originator_id = %s", s.b)


def t_alter_snapshot(admin: Admin, s: Store) -> None:
    sql(
        admin, s,
        "UPDATE {snapshots} SET state = convert_to(regexp_replace(convert_from(state, 'UTF8'),"
        " '\"paid_total_fen\":[0-9]+', '\"paid_total_fen\":99900000'), 'UTF8')"
        " WHERE originator_id = %s",
        s.c,
    )  # fmt: skip


def t_alter_chain_row(admin: Admin, s: Store) -> None:
    sql(
        admin, s,
        "UPDATE {chain} SET hash = sha256(hash)"
        " WHERE originator_id = %s AND originator_version = 5",
        s.a,
    )  # fmt: skip


def t_delete_chain_row(admin: Admin, s: Store) -> None:
    sql(admin, s, "DELETE FROM {chain} WHERE originator_id = %s AND originator_version = 5", s.a)


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (t_alter, lambda s: {("changed", str(s.a), 7)}),
        (t_delete, lambda s: {("deleted", str(s.a), 3)}),
        (t_insert, lambda s: {("inserted", str(s.a), 10)}),
        (t_reorder, lambda s: {("reordered", str(s.a), 6), ("reordered", str(s.a), 7)}),
        (t_move, lambda s: {("moved", str(s.a), 9)}),
        (t_truncate_case, lambda s: {("deleted", str(s.a), 8), ("deleted", str(s.a), 9)}),
        (t_delete_case, lambda s: {("vanished", str(s.b), None)}),
        (t_alter_snapshot, lambda s: {("snapshot", str(s.c), 50)}),
        (t_alter_chain_row, lambda s: {("changed", str(s.a), 5)}),
        (t_delete_chain_row, lambda s: {("inserted", str(s.a), 5)}),
    ],
    ids=lambda v: v.__name__[2:] if callable(v) and v.__name__.startswith("t_") else "",
)
def test_row_tampering_is_located_by_case_and_version(
    store: Store, admin: Admin, tamper: Callable[[Admin, Store], None], expected: Expect
) -> None:
    tamper(admin, store)
    found = {(f.kind, f.case_id, f.version) for f in store.verify()}
    assert expected(store) <= found, found
    case = UUID(next(iter(expected(store)))[1] or "")
    by_case = {(f.kind, f.case_id, f.version) for f in store.verify(case=case, external=False)}
    assert expected(store) <= by_case, by_case


def checkpoint_findings(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.kind in ("checkpoint", "signature")]


def test_truncating_the_log_tail_and_its_checkpoints_is_caught_by_the_witness(
    store: Store, admin: Admin
) -> None:
    cut = store.position(store.b, 1) - 1  # B's events and the household rows after them
    sql(admin, store, "DELETE FROM {events} WHERE notification_id >= %s", cut)
    sql(admin, store, "DELETE FROM {chain} WHERE notification_id >= %s", cut)
    sql(admin, store, "DELETE FROM {checkpoints} WHERE last_notification_id >= %s", cut)
    assert store.verify(external=False) == []  # the database alone cannot tell
    lost = [c for c in store.witness if c.last_notification_id >= cut]
    found = store.verify()
    assert lost
    assert {f.notification_id for f in found} >= {c.last_notification_id for c in lost}
    assert any("no longer in the log" in f.detail for f in found), found
    assert any("missing from the database" in f.detail for f in found), found


def test_deleting_a_checkpoint_breaks_the_checkpoint_chain(store: Store, admin: Admin) -> None:
    middle = store.witness[len(store.witness) // 2]
    sql(admin, store, "DELETE FROM {checkpoints} WHERE seq = %s", middle.seq)
    alone = checkpoint_findings(store.verify(external=False))
    assert [f"does not follow checkpoint {middle.number - 1}" in f.detail for f in alone] == [
        True
    ], alone
    found = checkpoint_findings(store.verify())
    assert any(
        f.notification_id == middle.last_notification_id and "missing" in f.detail for f in found
    ), found


def test_re_signed_checkpoints_are_untrusted_and_differ_from_the_witness(
    store: Store, admin: Admin
) -> None:
    resign(admin, store, Signer(Ed25519PrivateKey.generate()))
    alone = checkpoint_findings(store.verify(external=False))
    assert alone
    assert all("not a trusted key" in f.detail for f in alone)
    found = store.verify()
    assert any("differs from the external copy" in f.detail for f in found), found


@pytest.mark.parametrize("checkpoints", ["deleted", "re-signed"])
def test_a_consistent_rewrite_is_located_by_the_witnessed_checkpoint(
    store: Store, admin: Admin, checkpoints: str
) -> None:
    alter_amount(admin, store)
    rechain(admin, store)
    changed = store.position(store.a, 7)
    if checkpoints == "deleted":
        sql(admin, store, "DELETE FROM {checkpoints} WHERE last_notification_id >= %s", changed)
    else:
        resign(admin, store, Signer(Ed25519PrivateKey.generate()))
    covering = first_checkpoint_after(store, changed)

    found = store.verify()

    located = [
        f for f in found
        if f.kind == "checkpoint" and f.notification_id == covering.last_notification_id
        and f"differs from signed checkpoint {covering.number}" in f.detail
    ]  # fmt: skip
    assert located, found
    # The first witnessed checkpoint after the rewritten row is where the log stops matching.
    mismatches = [f.notification_id or 0 for f in found if "differs from signed" in f.detail]
    assert min(mismatches) == covering.last_notification_id, found
    assert not [f for f in found if f.case_id is not None], "each row is consistent in itself"


def test_the_witness_file_round_trip_through_the_cli(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from jiuzhu.cli import app as cli

    monkeypatch.setenv("JIUZHU_DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("JIUZHU_DB_SCHEMA", store.tables.schema)
    monkeypatch.setenv("JIUZHU_ACTOR", "auditor-7")
    monkeypatch.setenv("JIUZHU_ROLE", "auditor")
    public = tmp_path / "service.pub"
    public.write_bytes(store.signer.public_pem())
    monkeypatch.setenv("JIUZHU_DATA_DIR", str(tmp_path / "auditor"))  # holds no key
    witness = tmp_path / "witness.jsonl"
    runner = CliRunner()

    made = runner.invoke(
        cli, ["audit", "witness", str(witness), "--source", "db", "--public-key", str(public)]
    )
    assert made.exit_code == 0, made.output
    assert f"witnessed {len(store.witness)} new checkpoints" in made.output
    again = runner.invoke(
        cli, ["audit", "witness", str(witness), "--source", "db", "--public-key", str(public)]
    )
    assert "witnessed 0 new" in again.output

    clean = runner.invoke(
        cli, ["audit", "verify", "--against", str(witness), "--public-key", str(public)]
    )
    assert clean.exit_code == 0, clean.output
    assert "events after the last checkpoint" in clean.output
