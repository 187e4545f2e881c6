"""One active instance per role: PostgreSQL advisory locks held on a dedicated connection.

Every `serve` role may run twice (a rolling update, `replicas: 2`): the instance holding
the role's lease works, the others wait hot and take over within about a second when the
active one dies. PostgreSQL is the record, so it is also the referee: a session advisory
lock is released by the server the moment the holder's session ends (a SIGKILLed process's
socket is closed by its kernel at once; a vanished host is found by TCP keepalives within
seconds). The holder checks its own lease connection every CHECK_SECONDS and stops working
as soon as it cannot prove it still holds the lease.

Locks are keyed by the event store's schema and the role (and partition, when there are
some): two deployments in two schemas of one database never block each other.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
from collections.abc import Callable, Coroutine, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import psycopg
import structlog
from psycopg.conninfo import make_conninfo

__all__ = ["UNLEASED_ROLES", "Lease", "LeaseState", "lease_key", "run_leased"]

log = structlog.get_logger("jiuzhu.lease")

# A standby asks for the locks this often: the bulk of a takeover's time after a crash.
POLL_SECONDS = 0.5
# The holder proves it still holds the lease this often (a round trip on its connection).
CHECK_SECONDS = 1.0
# A check or a connection attempt that takes longer than this counts as a lost lease.
TIMEOUT_SECONDS = 3.0
# Server and client TCP keepalives on the lease connection: a holder whose host vanished
# (no FIN, no RST) is dropped, and its locks released, after about 5 + 2 * 2 seconds.
_KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
}


def lease_key(scope: str, role: str) -> int:
    """The advisory lock's 64-bit key for a role within a scope (the store's schema)."""
    digest = hashlib.blake2b(f"jiuzhu-lease:{scope}:{role}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass
class LeaseState:
    """What /health and /metrics say about the lease."""

    roles: list[str]
    # starting (not asked yet), standby (another holds it), active (holding every lock)
    state: str = "starting"
    since: float = field(default_factory=time.time)
    takeovers: int = 0  # times this instance became active
    lost: int = 0  # times it lost the lease while active
    reachable: bool = True  # whether the last attempt reached PostgreSQL at all
    holder: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    def as_dict(self) -> dict[str, object]:
        """The state as JSON data."""
        return {
            "state": self.state,
            "roles": self.roles,
            "since": self.since,
            "takeovers": self.takeovers,
            "lost": self.lost,
            "reachable": self.reachable,
            "holder": self.holder,
        }


class Lease:
    """The advisory locks of some roles, all or none, on one connection of their own."""

    def __init__(self, database_url: str, *, scope: str, roles: Iterable[str]) -> None:
        self.database_url = database_url
        self.scope = scope
        names = sorted(set(roles))
        self.keys = {role: lease_key(scope, role) for role in names}
        self.status = LeaseState(roles=names)
        self._conn: psycopg.AsyncConnection[tuple[Any, ...]] | None = None

    @property
    def active(self) -> bool:
        """Whether this instance holds the lease (as of the last check)."""
        return self.status.state == "active"

    async def try_acquire(self) -> bool:
        """Take every role's lock now if none is held elsewhere; whether this one is active."""
        if self.active:
            return True
        try:
            conn = await self._connection()
            self.status.reachable = True
            taken: list[int] = []
            for key in self.keys.values():
                row = await (
                    await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
                ).fetchone()
                if not (row and row[0]):
                    break
                taken.append(key)
            else:
                self._become("active")
                self.status.takeovers += 1
                return True
            # All or none: holding some while waiting for others could deadlock two
            # instances that each run several roles.
            for key in taken:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        except (psycopg.Error, OSError, TimeoutError) as error:
            if self.status.reachable:  # once per outage, not at every poll
                log.warning("lease connection failed", error=str(error))
            self.status.reachable = False
            await self._drop()
        return False

    async def acquire(self, stopping: asyncio.Event) -> bool:
        """Wait as a hot standby until the lease is held (True) or stopping is set (False)."""
        announced = False
        while not stopping.is_set():
            if await self.try_acquire():
                log.info("lease taken: active", roles=self.status.roles)
                return True
            self._become("standby")
            if not announced:
                log.info("another instance holds the lease: standby", roles=self.status.roles)
                announced = True
            with suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), POLL_SECONDS)
        return False

    async def still_held(self) -> bool:
        """One check on the lease connection: False once it cannot be proved (then standby)."""
        if not self.active or self._conn is None:
            return False
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                await self._conn.execute("SELECT 1")
            return True
        except (psycopg.Error, OSError, TimeoutError) as error:
            log.error("lease lost: stopping work", roles=self.status.roles, error=str(error))
            self.status.lost += 1
            self._become("standby")
            await self._drop()
            return False

    async def watch(self, stopping: asyncio.Event) -> None:
        """Return when the lease is lost (or stopping is set); the caller stops working then."""
        while not stopping.is_set() and await self.still_held():
            with suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), CHECK_SECONDS)

    async def release(self) -> None:
        """Give the lease up (a clean stop): a standby takes over at its next poll."""
        self._become("standby")
        await self._drop()

    async def _connection(self) -> psycopg.AsyncConnection[tuple[Any, ...]]:
        if self._conn is None or self._conn.closed:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                conninfo = make_conninfo(
                    self.database_url,
                    application_name=f"jiuzhu lease {','.join(self.status.roles)}"[:63],
                    connect_timeout=int(TIMEOUT_SECONDS),
                    **_KEEPALIVE,
                )
                conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
                # The server side drops a silent client as fast as the client side does.
                await conn.execute("SET tcp_keepalives_idle = 5")
                await conn.execute("SET tcp_keepalives_interval = 2")
                await conn.execute("SET tcp_keepalives_count = 2")
            self._conn = conn
        return self._conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(Exception):  # closing ends the session: the server frees the locks
                await conn.close()

    def _become(self, state: str) -> None:
        if self.status.state != state:
            self.status.state = state
            self.status.since = time.time()


# Roles any number of instances may run at once (stateless: each request stands alone).
UNLEASED_ROLES = frozenset({"api"})


async def run_leased(
    lease: Lease, stopping: asyncio.Event, work: Callable[[asyncio.Event], Coroutine[Any, Any, int]]
) -> int:
    """Standby until the lease is held, then `work` until it ends or the lease is lost.

    `work` gets an event that asks it to stop (set on stopping or a lost lease) and returns
    an exit status. After a lost lease the instance goes back to standby; when the work
    ends by itself (a clean stop, or a failure) its status is returned.
    """
    status = 0
    try:
        while not stopping.is_set():
            if lease.keys and not await lease.acquire(stopping):
                break
            halt = asyncio.Event()
            working = asyncio.create_task(work(halt))
            waiters: list[asyncio.Task[Any]] = [asyncio.create_task(stopping.wait())]
            if lease.keys:
                waiters.append(asyncio.create_task(lease.watch(halt)))
            try:
                await asyncio.wait([working, *waiters], return_when=asyncio.FIRST_COMPLETED)
            finally:
                halt.set()
                for waiter in waiters:
                    waiter.cancel()
            status = await working
            if not lease.keys or lease.active or stopping.is_set():
                break
            log.warning("back to standby after losing the lease", roles=lease.status.roles)
    finally:
        await lease.release()
    return status
