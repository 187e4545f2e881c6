"""Ed25519 signatures on checkpoints and exports; the key lives in a file, never in the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from jiuzhu.privacy.secrets import read_or_create_secret
from jiuzhu.settings import Settings

__all__ = [
    "Checkpoint",
    "Signer",
    "canonical_time",
    "chained_checkpoint_message",
    "checkpoint_message",
    "key_id",
    "load_public_key",
    "signer_from_settings",
    "signing_key_path",
    "verify_signature",
]


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short fingerprint naming a public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return sha256(raw).hexdigest()[:16]


def load_public_key(path: Path) -> Ed25519PublicKey:
    """A public key from a PEM file (a private key file gives its public half)."""
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        private = serialization.load_pem_private_key(data, password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 key")
        return private.public_key()
    public = serialization.load_pem_public_key(data)
    if not isinstance(public, Ed25519PublicKey):
        raise ValueError(f"{path} is not an Ed25519 public key")
    return public


def verify_signature(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    """Whether the signature over the message is the key's."""
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


class Signer:
    """Signs with one Ed25519 private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self.private_key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def from_file(cls, path: Path, *, create: bool = True) -> Signer:
        """The key in a PEM file; created (with its .pub beside it) on first use if allowed."""
        data = read_or_create_secret(path, _new_private_pem) if create else path.read_bytes()
        private = serialization.load_pem_private_key(data, password=None)
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        signer = cls(private)
        public_path = path.with_name(path.name + ".pub")
        if create and not public_path.exists():
            public_path.write_bytes(signer.public_pem())
        return signer

    def sign(self, message: bytes) -> bytes:
        """The signature over the message."""
        return self.private_key.sign(message)

    def public_pem(self) -> bytes:
        """The public key as PEM, to hand to auditors."""
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _new_private_pem() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def canonical_time(moment: datetime) -> str:
    """A time as signed: UTC, microseconds, "Z", whatever zone the session read it in."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def checkpoint_message(
    store: str, last_notification_id: int, running_hash: bytes, signed_at: datetime
) -> bytes:
    """The bytes a v1 (unchained) checkpoint signature covers (store name included: no replay).

    The time is encoded in UTC whatever the session's time zone gave back: the signed
    bytes may not depend on how the row was read (v1 signed `now(UTC).isoformat()`).
    """
    return (
        f"jiuzhu-audit-checkpoint/v1\n{store}\n{last_notification_id}\n"
        f"{running_hash.hex()}\n{signed_at.astimezone(UTC).isoformat()}"
    ).encode()


def chained_checkpoint_message(
    store: str,
    seq: int,
    last_notification_id: int,
    running_hash: bytes,
    signed_at: datetime,
    prev_digest: bytes,
) -> bytes:
    """The bytes a v2 checkpoint signature covers: its place in the chain of checkpoints too.

    `seq` numbers the store's checkpoints 1, 2, 3...; `prev_digest` is the digest of the
    one before (GENESIS for the first): removing, inserting or replacing one breaks the next.
    """
    return (
        f"jiuzhu-audit-checkpoint/v2\n{store}\n{seq}\n{last_notification_id}\n"
        f"{running_hash.hex()}\n{canonical_time(signed_at)}\n{prev_digest.hex()}"
    ).encode()


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement: the log up to a notification id has this running hash."""

    checkpoint_id: int
    store: str
    last_notification_id: int
    running_hash: bytes
    signed_at: datetime
    key_id: str
    signature: bytes
    seq: int | None = None  # None: a v1 checkpoint, signed before checkpoints were chained
    prev_digest: bytes | None = None

    @property
    def number(self) -> int:
        """Its place among the store's checkpoints (v1: its row id)."""
        return self.checkpoint_id if self.seq is None else self.seq

    def message(self) -> bytes:
        """The bytes the signature covers."""
        if self.seq is None or self.prev_digest is None:
            return checkpoint_message(
                self.store, self.last_notification_id, self.running_hash, self.signed_at
            )
        return chained_checkpoint_message(
            self.store,
            self.seq,
            self.last_notification_id,
            self.running_hash,
            self.signed_at,
            self.prev_digest,
        )

    def digest(self) -> bytes:
        """What the next checkpoint's prev_digest must be."""
        return sha256(self.message()).digest()

    def same_statement(self, other: Checkpoint) -> bool:
        """Whether two copies say the same thing under the same signature."""
        return self.message() == other.message() and self.signature == other.signature

    def as_json(self) -> dict[str, object]:
        """The checkpoint as published and printed."""
        return {
            "checkpoint_id": self.checkpoint_id,
            "store": self.store,
            "seq": self.seq,
            "last_notification_id": self.last_notification_id,
            "running_hash": self.running_hash.hex(),
            "signed_at": canonical_time(self.signed_at)
            if self.seq is not None
            else self.signed_at.astimezone(UTC).isoformat(),
            "prev_digest": None if self.prev_digest is None else self.prev_digest.hex(),
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        """A checkpoint as published (ValueError, KeyError or TypeError if malformed)."""
        prev = data.get("prev_digest")
        return cls(
            checkpoint_id=int(data["checkpoint_id"]),
            store=str(data["store"]),
            seq=None if data.get("seq") is None else int(data["seq"]),
            last_notification_id=int(data["last_notification_id"]),
            running_hash=bytes.fromhex(data["running_hash"]),
            signed_at=datetime.fromisoformat(str(data["signed_at"]).replace("Z", "+00:00")),
            prev_digest=None if prev is None else bytes.fromhex(prev),
            key_id=str(data["key_id"]),
            signature=bytes.fromhex(data["signature"]),
        )


def signing_key_path(settings: Settings) -> Path:
    """Where the checkpoint signing key is: JIUZHU_SIGNING_KEY_FILE, else in the data dir."""
    return settings.signing_key_file or settings.data_dir / "keys" / "audit-signing.pem"


def signer_from_settings(settings: Settings) -> Signer:
    """The checkpoint signer; the data-dir default key is generated on first use."""
    path = signing_key_path(settings)
    return Signer.from_file(path, create=settings.signing_key_file is None)
