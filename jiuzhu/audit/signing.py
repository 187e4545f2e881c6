"""Ed25519 signatures on checkpoints and exports; the key lives in a file, never in the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from jiuzhu.privacy.secrets import read_or_create_secret
from jiuzhu.settings import Settings

__all__ = [
    "Checkpoint",
    "Signer",
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


def checkpoint_message(
    store: str, last_notification_id: int, running_hash: bytes, signed_at: datetime
) -> bytes:
    """The exact bytes a checkpoint signature covers (store name included: no replay).

    The time is encoded in UTC whatever the session's time zone gave back: the signed
    bytes may not depend on how the row was read (v1 signed `now(UTC).isoformat()`).
    """
    return (
        f"jiuzhu-audit-checkpoint/v1\n{store}\n{last_notification_id}\n"
        f"{running_hash.hex()}\n{signed_at.astimezone(UTC).isoformat()}"
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

    def message(self) -> bytes:
        """The bytes the signature covers."""
        return checkpoint_message(
            self.store, self.last_notification_id, self.running_hash, self.signed_at
        )

    def as_json(self) -> dict[str, object]:
        """The checkpoint as published and printed."""
        return {
            "checkpoint_id": self.checkpoint_id,
            "store": self.store,
            "last_notification_id": self.last_notification_id,
            "running_hash": self.running_hash.hex(),
            "signed_at": self.signed_at.astimezone(UTC).isoformat(),
            "key_id": self.key_id,
            "signature": self.signature.hex(),
        }


def signing_key_path(settings: Settings) -> Path:
    """Where the checkpoint signing key is: JIUZHU_SIGNING_KEY_FILE, else in the data dir."""
    return settings.signing_key_file or settings.data_dir / "keys" / "audit-signing.pem"


def signer_from_settings(settings: Settings) -> Signer:
    """The checkpoint signer; the data-dir default key is generated on first use."""
    path = signing_key_path(settings)
    return Signer.from_file(path, create=settings.signing_key_file is None)
