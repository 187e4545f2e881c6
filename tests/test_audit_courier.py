"""While the relay runs, signed checkpoints are carried to the broker: a copy outside PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from uuid import uuid4

import nats
import psycopg
import pytest
from psycopg.sql import SQL, Identifier
from typer.testing import CliRunner

from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.audit.checkpoints import list_checkpoints, unpublished_checkpoints
from jiuzhu.audit.courier import carry_checkpoints
from jiuzhu.audit.signing import Checkpoint, signer_from_settings
from jiuzhu.audit.witness import published_checkpoints
from jiuzhu.cli import app as cli
from jiuzhu.settings import Settings
from tests.conftest import DATABASE_URL
from tests.stories import enrolled, pay
from tests.test_audit_support import audited, server_time_zone, settings, verify  # noqa: F401

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

NATS_URL = "nats://127.0.0.1:4222"


def test_new_checkpoints_reach_the_broker_once_and_vouch_for_the_log(
    audited: AuditedCaseWork,  # noqa: F811
    settings: Settings,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case_id = enrolled(audited)
    pay(audited, case_id, "2023-04")
    signed = list_checkpoints(audited.datastore, audited.audit)
    assert signed, "the store signs a checkpoint every 4 events"
    subject, stream = f"relief.audit.checkpoints.t{uuid4().hex[:8]}", f"AUDIT_T{uuid4().hex[:8]}"

    async def carry_until_published() -> list[Checkpoint]:
        stopping = asyncio.Event()
        courier = asyncio.create_task(
            carry_checkpoints(
                audited, NATS_URL, stopping, every=0.05, subject=subject, stream=stream
            )
        )
        async with asyncio.timeout(30):
            while await asyncio.to_thread(
                unpublished_checkpoints, audited.datastore, audited.audit
            ):
                # Give the courier a round; this returns early only if the courier ended.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(courier), 0.05)
        stopping.set()
        await courier
        return await published_checkpoints(NATS_URL, subject=subject, stream=stream)

    try:
        published = asyncio.run(carry_until_published())
        # An auditor keeps a witness file from the broker's copy, with the key they hold.
        witness = tmp_path / "witness.jsonl"
        public = tmp_path / "service.pub"
        public.write_bytes(signer_from_settings(settings).public_pem())
        monkeypatch.setenv("JIUZHU_DATABASE_URL", DATABASE_URL)
        monkeypatch.setenv("JIUZHU_DB_SCHEMA", audited.audit.schema)
        monkeypatch.setenv("JIUZHU_BROKER_URL", NATS_URL)
        monkeypatch.setenv("JIUZHU_DATA_DIR", str(settings.data_dir))
        monkeypatch.setenv("JIUZHU_ACTOR", "auditor-7")
        monkeypatch.setenv("JIUZHU_ROLE", "auditor")
        places = ["--stream", stream, "--subject", subject, "--public-key", str(public)]
        kept = CliRunner().invoke(cli, ["audit", "witness", str(witness), *places])
        assert kept.exit_code == 0, kept.output
        assert f"witnessed {len(published)} new checkpoints" in kept.output
        against_nats = CliRunner().invoke(cli, ["audit", "verify", "--against", "nats", *places])
        assert against_nats.exit_code == 0, against_nats.output
    finally:

        async def drop() -> None:
            connection = await nats.connect(NATS_URL)
            await connection.jetstream().delete_stream(stream)
            await connection.close()

        asyncio.run(drop())
    # Stopping, the courier signed the events after the last checkpoint too, and sent it.
    everything = list_checkpoints(audited.datastore, audited.audit)
    assert everything[-1].last_notification_id == audited.recorder.max_notification_id()
    assert [c.number for c in published] == [c.number for c in everything]
    assert verify(audited, settings, external=published).ok

    # Deleting the checkpoints in PostgreSQL does not delete the broker's copy.
    with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
        conn.execute(
            SQL("DELETE FROM {0}").format(
                Identifier(audited.audit.schema, audited.audit.checkpoints_table)
            )
        )
    assert verify(audited, settings).ok, "the database alone cannot tell"
    missing = verify(audited, settings, external=published).findings
    assert len(missing) == len(published)
    assert all("missing from the database" in f.detail for f in missing)
    caught = CliRunner().invoke(cli, ["audit", "verify", "--against", str(witness)])
    assert caught.exit_code == 1
    assert "missing from the database (deleted)" in caught.output
