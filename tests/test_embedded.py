"""Real embedded PostgreSQL and NATS servers start, serve, keep data and stop cleanly."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from pathlib import Path

import nats
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from jiuzhu.embedded import (
    EmbeddedServerError,
    _pid_alive,
    embedded_nats,
    embedded_postgres,
    free_port,
)

pytestmark = pytest.mark.slow


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postgres" / "postmaster.pid").read_text().splitlines()[0])


def _socket_file(url: str) -> Path:
    params = conninfo_to_dict(url)
    return Path(str(params["host"])) / f".s.PGSQL.{params['port']}"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))


def test_postgres_serves_queries_and_stops_cleanly(server_tmp_path: Path) -> None:
    with embedded_postgres(server_tmp_path) as url:
        assert url.startswith("postgresql://")
        with psycopg.connect(url) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
            assert conn.execute("select current_database()").fetchone() == ("jiuzhu",)
        pid = _postmaster_pid(server_tmp_path)
        socket_file = _socket_file(url)
        assert _pid_alive(pid)
        assert socket_file.is_socket()

    assert not _pid_alive(pid)
    assert not socket_file.exists()
    assert not (server_tmp_path / "postgres" / "postmaster.pid").exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)


def test_postgres_keeps_data_across_restarts(server_tmp_path: Path) -> None:
    with embedded_postgres(server_tmp_path) as url, psycopg.connect(url) as conn:
        conn.execute("create table kept (id int primary key, note text)")
        conn.execute("insert into kept values (1, '救助')")

    with embedded_postgres(server_tmp_path) as url, psycopg.connect(url) as conn:
        assert conn.execute("select id, note from kept").fetchall() == [(1, "救助")]


def test_postgres_stops_when_the_body_raises(server_tmp_path: Path) -> None:
    seen: list[int] = []

    def run() -> None:
        with embedded_postgres(server_tmp_path):
            seen.append(_postmaster_pid(server_tmp_path))
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run()
    assert len(seen) == 1
    assert not _pid_alive(seen[0])


def test_postgres_stops_despite_a_handle_left_by_a_killed_run(server_tmp_path: Path) -> None:
    with embedded_postgres(server_tmp_path):
        pass
    # A run killed with SIGKILL leaves its pid in the library's handle list.
    handles = server_tmp_path / "postgres" / ".handle_pids.json"
    handles.write_text(json.dumps([_dead_pid()]))

    with embedded_postgres(server_tmp_path) as url, psycopg.connect(url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        pid = _postmaster_pid(server_tmp_path)
    assert not _pid_alive(pid)


async def _jetstream_roundtrip(url: str, publish: bool) -> tuple[int, int]:
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        if publish:
            await js.add_stream(name="KEPT", subjects=["kept.>"])
            await js.publish("kept.one", b"hello")
        account = await js.account_info()
        stream = await js.stream_info("KEPT")
        return account.streams, stream.state.messages
    finally:
        await nc.close()


def test_nats_serves_jetstream_keeps_streams_and_stops(server_tmp_path: Path) -> None:
    with embedded_nats(server_tmp_path) as url:
        assert url.startswith("nats://127.0.0.1:")
        port = int(url.rsplit(":", 1)[1])
        pid = int((server_tmp_path / "nats" / "nats-server.pid").read_text())
        assert asyncio.run(_jetstream_roundtrip(url, publish=True)) == (1, 1)

    assert not _pid_alive(pid)
    assert not _port_open(port)

    with embedded_nats(server_tmp_path) as url:
        assert asyncio.run(_jetstream_roundtrip(url, publish=False)) == (1, 1)


def test_nats_start_failure_reports_the_server_log(server_tmp_path: Path) -> None:
    # A file where the JetStream store directory should be makes the server fail.
    (server_tmp_path / "nats").mkdir()
    (server_tmp_path / "nats" / "jetstream").write_text("not a directory")

    def run() -> None:
        with embedded_nats(server_tmp_path):
            pytest.fail("the server should not have started")

    with pytest.raises(EmbeddedServerError, match="nats-server exited") as failure:
        run()
    assert "nats-server.log" in str(failure.value)
