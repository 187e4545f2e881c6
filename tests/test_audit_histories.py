"""Histories, traces and exports as an auditor gets them, and checkpoints on the broker."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import nats
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.audit.checkpoints import list_checkpoints
from jiuzhu.audit.histories import case_history, household_history, trace
from jiuzhu.audit.publish import publish_checkpoints
from jiuzhu.audit.signing import Signer
from jiuzhu.cli import app as cli
from jiuzhu.settings import Settings
from tests.conftest import DATABASE_URL
from tests.stories import by, enrolled, opened, pay
from tests.test_audit_support import audited, server_time_zone, settings  # noqa: F401

pytestmark = pytest.mark.postgres


@pytest.fixture
def runner(
    pg_schema: str,
    settings: Settings,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> CliRunner:
    """The CLI on the test's schema and keys, acting as an auditor."""
    monkeypatch.setenv("JIUZHU_DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("JIUZHU_DB_SCHEMA", pg_schema)
    monkeypatch.setenv("JIUZHU_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("JIUZHU_ACTOR", "auditor-7")
    monkeypatch.setenv("JIUZHU_ROLE", "auditor")
    return CliRunner()


def test_a_case_history_records_who_why_cause_and_both_times(
    audited: AuditedCaseWork,  # noqa: F811
) -> None:
    case_id = enrolled(audited)
    entries = case_history(audited, case_id, personal=True)
    assert [e.version for e in entries] == list(range(1, 7))
    assert entries[0].type == "Case.Discovered"
    enrol = entries[-1]
    assert (enrol.type, enrol.actor, enrol.role) == ("Case.Enrolled", "approver-1", "approver")
    assert enrol.occurred_at is not None
    assert enrol.occurred_at.year == 2023
    assert enrol.recorded_at > enrol.occurred_at
    assert enrol.causation_id.startswith("command:")
    assert enrol.data["amount_fen"] == 50000
    assert len(enrol.hash) == 64
    earlier = case_history(audited, case_id, personal=True, known_at=entries[2].recorded_at)
    assert [e.version for e in earlier] == [1, 2, 3]


def test_household_chain_spans_its_cases_and_trace_spans_one_conversation(
    audited: AuditedCaseWork,  # noqa: F811
) -> None:
    first = opened(audited, household="HH-CHAIN")
    audited.close_case({"case_id": first, "by": by("approver", reason="risk eliminated")})
    second = opened(audited, household="HH-CHAIN")
    entries = household_history(audited, "HH-CHAIN", personal=False)
    assert {e.aggregate_id for e in entries} >= {str(first), str(second)}
    assert [e.notification_id for e in entries] == sorted(e.notification_id for e in entries)

    message = f"monitoring/{uuid4()}"
    with audited.handling_message(message):
        case_id = uuid4()
        audited.open_case(
            {
                "case_id": case_id,
                "household_id": "HH-TRACE",
                "region": "610523",
                "channel": "monitoring_alert",
                "by": by("upstream_system", causation_id=message, correlation_id=message),
            }
        )
    traced = trace(audited, message, personal=False)
    # The case, the household index and the message receipt saved with it.
    assert {e.type.partition(".")[0] for e in traced} == {"Case", "Household", "MessageReceipt"}


def test_export_verifies_and_any_edit_is_caught(
    audited: AuditedCaseWork,  # noqa: F811
    settings: Settings,  # noqa: F811
    runner: CliRunner,
    tmp_path: Path,
) -> None:
    case_id = enrolled(audited)
    pay(audited, case_id, "2023-04")
    out = tmp_path / "case.jsonl"
    made = runner.invoke(cli, ["audit", "export", str(case_id), "--out", str(out)])
    assert made.exit_code == 0, made.output
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + 7 + 1
    public = str(settings.data_dir / "keys" / "audit-signing.pem.pub")
    checked = runner.invoke(cli, ["audit", "verify-export", str(out), "--public-key", public])
    assert checked.exit_code == 0, checked.output
    assert "7 events" in checked.output
    assert "signed by trusted key" in checked.output
    # The key inside the file proves nothing: refused unless asked for, and said loudly.
    refused = runner.invoke(cli, ["audit", "verify-export", str(out)])
    assert refused.exit_code == 1
    assert "no --public-key given" in refused.output
    own_key = runner.invoke(cli, ["audit", "verify-export", str(out), "--trust-file-key"])
    assert own_key.exit_code == 0, own_key.output
    assert "NOT AUTHENTICATED" in own_key.output
    stranger = Signer(Ed25519PrivateKey.generate())
    (tmp_path / "stranger.pub").write_bytes(stranger.public_pem())
    untrusted = runner.invoke(
        cli, ["audit", "verify-export", str(out), "--public-key", str(tmp_path / "stranger.pub")]
    )
    assert untrusted.exit_code == 1
    assert "not a trusted key" in untrusted.output

    edited = out.read_text(encoding="utf-8").replace('"amount_fen":50000', '"amount_fen":90000')
    out.write_text(edited, encoding="utf-8")
    caught = runner.invoke(cli, ["audit", "verify-export", str(out), "--public-key", public])
    assert caught.exit_code == 1
    assert "digest differs" in caught.output


def test_region_export_and_history_commands(
    audited: AuditedCaseWork,  # noqa: F811
    runner: CliRunner,
    tmp_path: Path,
) -> None:
    inside = opened(audited, region="610523")
    opened(audited, region="610102")
    out = tmp_path / "region.jsonl"
    made = runner.invoke(
        cli,
        ["audit", "export", "--region", "610500", "--from", "2023-01-01", "--to", "2023-12-31",
         "-o", str(out)],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    events = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()[1:-1]]
    assert {e["aggregate_id"] for e in events} == {str(inside)}

    shown = runner.invoke(cli, ["audit", "history", str(inside), "--format", "json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)[0]["data"]["personal"]["name"] == "王某"
    masked = runner.invoke(
        cli, ["audit", "history", str(inside), "--format", "csv", "--role", "analyst"]
    )
    assert masked.exit_code == 0
    assert "[redacted]" in masked.output
    assert "王某" not in masked.output
    refused = runner.invoke(
        cli, ["audit", "export", str(inside), "-o", str(out), "--role", "analyst"]
    )
    assert refused.exit_code == 1
    assert "may not export audit trail" in refused.output


def test_erase_command_refuses_an_auditor_and_works_for_an_approver(
    audited: AuditedCaseWork,  # noqa: F811
    runner: CliRunner,
) -> None:
    case_id = opened(audited, household="HH-CLI-ERASE")
    refused = runner.invoke(cli, ["privacy", "erase", "HH-CLI-ERASE", "--reason", "request"])
    assert refused.exit_code == 1
    assert "may not erase personal data" in refused.output
    done = runner.invoke(
        cli, ["privacy", "erase", "HH-CLI-ERASE", "--reason", "PIPL art. 47", "--role", "approver"]
    )
    assert done.exit_code == 0, done.output
    shown = runner.invoke(cli, ["audit", "history", str(case_id), "--format", "json"])
    assert json.loads(shown.output)[0]["data"]["personal"]["name"] == "[erased]"


@pytest.mark.nats
def test_checkpoints_are_published_on_the_broker(
    audited: AuditedCaseWork,  # noqa: F811
) -> None:
    case_id = enrolled(audited)
    pay(audited, case_id, "2023-04")
    checkpoints = list_checkpoints(audited.datastore, audited.audit)
    assert checkpoints
    subject, stream = f"relief.audit.checkpoints.t{uuid4().hex[:8]}", f"AUDIT_T{uuid4().hex[:8]}"

    async def publish_and_read() -> dict[str, object]:
        await publish_checkpoints(
            "nats://127.0.0.1:4222", checkpoints, subject=subject, stream=stream
        )
        # Publishing again is deduplicated by message id.
        await publish_checkpoints(
            "nats://127.0.0.1:4222", checkpoints, subject=subject, stream=stream
        )
        connection = await nats.connect("nats://127.0.0.1:4222")
        try:
            js = connection.jetstream()
            info = await js.stream_info(stream)
            assert info.state.messages == len(checkpoints)
            last = await js.get_last_msg(stream, subject)
            await js.delete_stream(stream)
            body: dict[str, object] = json.loads(last.data or b"{}")
            return body
        finally:
            await connection.close()

    body = asyncio.run(publish_and_read())
    assert body["checkpoint_id"] == checkpoints[-1].checkpoint_id
    assert body["running_hash"] == checkpoints[-1].running_hash.hex()
    assert datetime.fromisoformat(str(body["signed_at"])) > datetime.now(UTC) - timedelta(hours=1)
