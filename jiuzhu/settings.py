"""One Settings object for the whole service, read from JIUZHU_* variables at start."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
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
