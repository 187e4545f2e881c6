"""Settings of the HTTP API (JIUZHU_API_* variables, beside jiuzhu.settings.Settings)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ApiSettings"]


class ApiSettings(BaseSettings):
    """Where the API listens and whose tokens it trusts.

    With no identity provider configured (no JWKS URL) the API signs and checks its own
    tokens (HS256) with a key kept in <data_dir>/keys/api-token.key, like the audit keys;
    `jiuzhu token --actor A --role R` prints one. In production set the issuer, audience and
    JWKS URL of the identity provider and the claim that carries the role.
    """

    model_config = SettingsConfigDict(env_prefix="JIUZHU_API_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Address `jiuzhu serve api` listens on")
    port: int = Field(default=8080, ge=0, le=65535, description="Port of the API and workbench")
    workers: int = Field(
        default=1, ge=1, le=64, description="uvicorn worker processes of `jiuzhu serve api`"
    )
    # -- tokens --------------------------------------------------------------------------
    token_key: SecretStr | None = Field(
        default=None,
        description="Secret signing the embedded default's tokens (HS256); empty: "
        "<data_dir>/keys/api-token.key, generated on first use",
    )
    token_ttl_seconds: int = Field(
        default=8 * 3600,
        ge=60,
        le=30 * 86400,
        description="Lifetime of tokens `jiuzhu token` signs",
    )
    issuer: str | None = Field(default=None, description="Expected `iss` of tokens")
    audience: str | None = Field(default=None, description="Expected `aud` of tokens")
    jwks_url: str | None = Field(
        default=None,
        description="The identity provider's JWKS URL; set: only its tokens are accepted",
    )
    algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256", "EdDSA"],
        description="Signature algorithms accepted from the identity provider",
    )
    role_claim: str = Field(
        default="role",
        description="Claim holding the role (a string or a list; dotted path for nested claims)",
    )
    actor_claim: str = Field(default="sub", description="Claim naming who acts")
    # -- requests ------------------------------------------------------------------------
    max_body_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Larger request bodies are refused (413)"
    )
