"""The hash chain: what each stored event's hash covers, and the running hash over the log."""

from __future__ import annotations

from hashlib import sha256
from uuid import UUID

__all__ = ["GENESIS", "event_hash", "running_hash"]

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
