"""Copies of the checkpoints kept outside the database: the broker's stream, a witness file.

An administrator who can write every table can rewrite events and chain consistently and
delete or re-sign the checkpoints in PostgreSQL. What they cannot reach is a copy taken
earlier and kept elsewhere: `audit verify --against nats|FILE` checks the log against it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import nats
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from consumers.brokers import BrokerKind, broker_kind
from jiuzhu.audit.publish import CHECKPOINTS_STREAM, CHECKPOINTS_SUBJECT
from jiuzhu.audit.signing import Checkpoint, verify_signature

__all__ = ["WitnessError", "append_witness", "published_checkpoints", "read_witness"]

_FETCH = 500


class WitnessError(ValueError):
    """A copy of the checkpoints that cannot be read or disagrees with itself."""


async def published_checkpoints(
    url: str, *, subject: str = CHECKPOINTS_SUBJECT, stream: str = CHECKPOINTS_STREAM
) -> list[Checkpoint]:
    """Every checkpoint on the broker's stream, oldest first (NATS JetStream only)."""
    if broker_kind(url) is not BrokerKind.NATS:
        raise WitnessError(f"reading published checkpoints needs a NATS broker, not {url!r}")
    connection = await nats.connect(url)
    try:
        js = connection.jetstream()
        try:
            await js.stream_info(stream)
        except NotFoundError:
            return []
        reader = await js.pull_subscribe(
            subject,
            stream=stream,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
        )
        found: list[Checkpoint] = []
        try:
            pending = (await reader.consumer_info()).num_pending or 0
            while pending > 0:
                messages = await reader.fetch(min(_FETCH, pending), timeout=5)
                for message in messages:
                    found.append(_parse(message.data, f"stream {stream}"))
                pending -= len(messages)
        finally:
            await reader.unsubscribe()
        return found
    finally:
        await connection.close()


def _parse(line: bytes | str, where: str) -> Checkpoint:
    try:
        return Checkpoint.from_json(json.loads(line))
    except (ValueError, KeyError, TypeError) as error:
        raise WitnessError(f"{where}: not a checkpoint ({error})") from None


def read_witness(path: Path) -> list[Checkpoint]:
    """The checkpoints in a witness file (JSON Lines), oldest first."""
    if not path.exists():
        raise WitnessError(f"witness file {path} does not exist")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [_parse(line, f"{path} line {n}") for n, line in enumerate(lines, 1) if line.strip()]


def append_witness(
    path: Path,
    store: str,
    checkpoints: Iterable[Checkpoint],
    trusted: Mapping[str, Ed25519PublicKey],
) -> int:
    """Append the store's checkpoints newer than the file's; how many were appended.

    Each must be signed by a trusted key and follow the one before it; one that differs
    from what the file already witnessed is refused (the source was rewritten).
    """
    kept = read_witness(path) if path.exists() else []
    mine = {c.number: c for c in kept if c.store == store}
    last = max(mine.values(), key=lambda c: c.number, default=None)
    new: list[Checkpoint] = []
    for checkpoint in sorted((c for c in checkpoints if c.store == store), key=_number):
        key = trusted.get(checkpoint.key_id)
        if key is None or not verify_signature(key, checkpoint.signature, checkpoint.message()):
            raise WitnessError(
                f"checkpoint {checkpoint.number} is not signed by a trusted key "
                f"({checkpoint.key_id}): nothing appended"
            )
        seen = mine.get(checkpoint.number)
        if seen is not None:
            if not seen.same_statement(checkpoint):
                raise WitnessError(
                    f"checkpoint {checkpoint.number} differs from the one this file witnessed "
                    "earlier: the source was rewritten; nothing appended"
                )
            continue
        if last is not None and checkpoint.number <= last.number:
            continue
        # The first one witnessed may be anywhere in the chain (the broker keeps a window).
        if (
            checkpoint.seq is not None
            and last is not None
            and last.seq is not None
            and (checkpoint.prev_digest != last.digest() or checkpoint.seq != last.seq + 1)
        ):
            raise WitnessError(
                f"checkpoint {checkpoint.number} does not follow the last one witnessed "
                f"({last.number}): nothing appended"
            )
        new.append(checkpoint)
        last = checkpoint
    if new:
        with path.open("a", encoding="utf-8") as file:
            for checkpoint in new:
                file.write(json.dumps(checkpoint.as_json(), sort_keys=True) + "\n")
    return len(new)


def _number(checkpoint: Checkpoint) -> int:
    return checkpoint.number
