"""One Settings object for the whole service, read from JIUZHU_* variables at start."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]

_BROKER_SCHEMES = ("nats", "amqp", "amqps", "redis", "rediss", "kafka")


class Settings(BaseSettings):
    """Service settings; with no URLs the CLI runs embedded PostgreSQL and NATS servers."""

    model_config = SettingsConfigDict(env_prefix="JIUZHU_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL, e.g. postgresql://jiuzhu@db:5432/jiuzhu; empty: embedded",
    )
    db_schema: str = Field(default="public", description="Schema holding the event store")
    pool_size: int = Field(default=5, ge=1, le=100)
    broker_url: str | None = Field(
        default=None,
        description="nats:// (default), amqp://, redis:// or kafka:// URL; empty: embedded NATS",
    )
    data_dir: Path = Field(
        default=Path(".jiuzhu"), description="Where the embedded servers keep their data"
    )
    log_json: bool | None = Field(
        default=None, description="JSON logs; by default pretty on a terminal, JSON otherwise"
    )

    # -- audit trail and personal data (jiuzhu.audit, jiuzhu.privacy) ------------------------
    master_key: SecretStr | None = Field(
        default=None,
        description="Base64 32-byte key wrapping the per-household data keys; empty: "
        "<data_dir>/keys/master.key, generated on first use (embedded/demo default)",
    )
    signing_key_file: Path | None = Field(
        default=None,
        description="Ed25519 private key (PEM) signing audit checkpoints and exports; empty: "
        "<data_dir>/keys/audit-signing.pem, generated on first use (embedded/demo default)",
    )
    checkpoint_every: int = Field(
        default=1_000, ge=0, description="Sign a checkpoint every N events (0: not by count)"
    )
    key_cache_seconds: float = Field(
        default=5.0, ge=0, le=300, description="How long a process may cache a data key"
    )
    actor: str | None = Field(default=None, description="Who runs CLI commands, unless --actor")
    role: str | None = Field(default=None, description="Role of CLI commands, unless --role")
    four_eyes: bool = Field(
        default=True,
        description="Whoever assessed a case may not enrol it or grant it relief, and whoever "
        "granted emergency relief may not regularise it (Policy.four_eyes)",
    )

    @field_validator("master_key")
    @classmethod
    def _master_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is None or not key.get_secret_value():
            return None
        try:
            raw = base64.b64decode(key.get_secret_value(), validate=True)
        except binascii.Error:
            raw = b""
        if len(raw) != 32:
            raise ValueError("JIUZHU_MASTER_KEY must be 32 bytes in base64 (44 characters)")
        return key

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, url: str | None) -> str | None:
        if url and not url.startswith(("postgresql://", "postgres://")):
            msg = f"JIUZHU_DATABASE_URL must start with postgresql://, got {url.split(':')[0]}:"
            raise ValueError(msg)
        return url or None

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, url: str | None) -> str | None:
        if url and url.split("://")[0] not in _BROKER_SCHEMES:
            msg = f"JIUZHU_BROKER_URL scheme must be one of {', '.join(_BROKER_SCHEMES)}: {url!r}"
            raise ValueError(msg)
        return url or None

    # -- appended by issue 10 (audit trail against the database's administrator) ------------
    checkpoint_seconds: float = Field(
        default=60.0,
        ge=0,
        description="Sign a checkpoint at most every N seconds while events arrive, and the "
        "relay's courier signs the last events when they stop (0: by count only)",
    )
    allow_generated_keys: bool = Field(
        default=False,
        description="Let keys be generated in the data directory although JIUZHU_DATABASE_URL "
        "is set (tests and demos only: the embedded database always may)",
    )
