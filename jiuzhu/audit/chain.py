"""The hash chain: what each stored event's hash covers, and the running hash over the log."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from hashlib import sha256
from typing import Any
from uuid import UUID

__all__ = ["GENESIS", "chain_events", "event_hash", "running_hash"]

# The "previous hash" of a case's first event, and of the log's first running hash.
GENESIS = bytes(32)


def event_hash(
    prev_hash: bytes, originator_id: UUID | str, version: int, topic: str, state: bytes
) -> bytes:
    """H(previous hash in the case || the event's stored bytes): id, version, topic, state.

    The header is length-delimited so no two different rows hash the same bytes; the state
    is hashed as stored (ciphertext where personal data is encrypted), so erasing a key
    leaves the chain verifiable.
    """
    digest = sha256(prev_hash)
    digest.update(f"{originator_id}\x1f{version}\x1f{topic}\x1f{len(state)}\x1e".encode())
    digest.update(state)
    return digest.digest()


def running_hash(prev_running: bytes, notification_id: int, hash_: bytes) -> bytes:
    """H(previous running hash || notification id || event hash): the log in its order."""
    return sha256(prev_running + notification_id.to_bytes(8, "big") + hash_).digest()


def chain_events(
    heads: dict[Any, bytes],
    running: bytes,
    events: Iterable[tuple[int, UUID | str, int, str, bytes]],
) -> Iterator[tuple[bytes, bytes, bytes]]:
    """(prev hash, hash, running hash) of each (notification id, id, version, topic, state).

    The events in notification order; `heads` (each case's last hash, updated here) and
    `running` are where the chain stood before them. Same hashes as event_hash and
    running_hash, computed in one loop for a whole insert.
    """
    names: dict[UUID | str, str] = {}  # str(UUID) is slow in Python 3.11: once per case
    for notification_id, originator_id, version, topic, state in events:
        prev = heads.get(originator_id, GENESIS)
        name = names.get(originator_id)
        if name is None:
            name = names[originator_id] = str(originator_id)
        digest = sha256(prev)
        digest.update(f"{name}\x1f{version}\x1f{topic}\x1f{len(state)}\x1e".encode())
        digest.update(state)
        hash_ = digest.digest()
        running = sha256(running + notification_id.to_bytes(8, "big") + hash_).digest()
        heads[originator_id] = hash_
        yield prev, hash_, running
