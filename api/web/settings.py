"""Settings of the workbench's sign-in through an identity provider (JIUZHU_OIDC_*).

Tokens are checked with the API's settings (JIUZHU_API_ISSUER, _AUDIENCE, _JWKS_URL,
_ROLE_CLAIM): these add what the browser's authorisation-code flow needs besides.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["OidcSettings"]


class OidcSettings(BaseSettings):
    """The workbench as an OpenID Connect client; no authorization URL: demo sign-in page."""

    model_config = SettingsConfigDict(env_prefix="JIUZHU_OIDC_", extra="ignore")

    authorization_url: str | None = Field(
        default=None, description="The provider's authorization endpoint; set: OIDC sign-in"
    )
    token_url: str | None = Field(default=None, description="The provider's token endpoint")
    client_id: str = Field(default="jiuzhu-workbench", description="This client's id")
    client_secret: SecretStr | None = Field(default=None, description="This client's secret")
    redirect_url: str | None = Field(
        default=None,
        description="Where the provider sends the browser back (…/web/oidc/callback); "
        "empty: worked out from the request",
    )
    scopes: str = Field(default="openid profile", description="Scopes asked for")
    secure_cookies: bool = Field(
        default=False, description="Mark cookies Secure (set behind HTTPS)"
    )

    @property
    def enabled(self) -> bool:
        """Whether sign-in goes through the identity provider."""
        return bool(self.authorization_url and self.token_url)
