"""Who acts: actor and role from a bearer token (JWT), never from the request body.

The embedded default signs its own tokens (HS256, key in <data_dir>/keys/api-token.key or
JIUZHU_API_TOKEN_KEY). With JIUZHU_API_JWKS_URL set, only the identity provider's tokens are
accepted, checked against its keys, issuer and audience; the role comes from a configurable
claim.
"""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.settings import ApiSettings
from domain.roles import Role
from jiuzhu.settings import Settings

__all__ = [
    "Principal",
    "TokenError",
    "TokenVerifier",
    "current_principal",
    "issue_token",
    "principal_from_token",
]

_EMBEDDED_ISSUER = "jiuzhu"
_EMBEDDED_AUDIENCE = "jiuzhu-api"


class TokenError(Exception):
    """A token that cannot be trusted; the message says why (shown to the caller, 401)."""


@dataclass(frozen=True)
class Principal:
    """The person or system a request acts for, and the role they act in."""

    actor: str
    role: Role


def _embedded_key(settings: Settings, api: ApiSettings) -> bytes:
    from jiuzhu.privacy.secrets import read_or_create_secret

    if api.token_key is not None and api.token_key.get_secret_value():
        return api.token_key.get_secret_value().encode()
    path = settings.data_dir / "keys" / "api-token.key"
    encoded = read_or_create_secret(path, lambda: base64.b64encode(os.urandom(32)) + b"\n")
    return base64.b64decode(encoded.strip())


class TokenVerifier:
    """Checks tokens for one app: its key (or JWKS client) is read once, not per request."""

    def __init__(self, settings: Settings, api: ApiSettings | None = None) -> None:
        self.settings = settings
        self.api = api if api is not None else ApiSettings()

    @cached_property
    def _key(self) -> bytes:
        return _embedded_key(self.settings, self.api)

    @cached_property
    def _jwks(self) -> jwt.PyJWKClient:
        assert self.api.jwks_url
        return jwt.PyJWKClient(self.api.jwks_url, cache_keys=True, lifespan=600)

    def issue(self, actor: str, role: Role | str, *, ttl_seconds: int | None = None) -> str:
        """A token of the embedded default for an actor in a role."""
        if self.api.jwks_url:
            raise TokenError(
                "tokens come from the identity provider (JIUZHU_API_JWKS_URL is set), "
                "not from jiuzhu"
            )
        if not actor:
            raise TokenError("a token needs an actor")
        try:
            checked = Role(role)
        except ValueError:
            raise TokenError(
                f"unknown role {role!r}; choose one of {', '.join(r.value for r in Role)}"
            ) from None
        now = int(time.time())
        ttl = ttl_seconds if ttl_seconds is not None else self.api.token_ttl_seconds
        claims = {
            "iss": self.api.issuer or _EMBEDDED_ISSUER,
            "aud": self.api.audience or _EMBEDDED_AUDIENCE,
            self.api.actor_claim: actor,
            self.api.role_claim: checked.value,
            "iat": now,
            "exp": now + ttl,
        }
        return jwt.encode(claims, self._key, algorithm="HS256")

    def principal(self, token: str) -> Principal:
        """The principal a token names, or TokenError saying why it is not trusted."""
        try:
            if self.api.jwks_url:
                key: Any = self._jwks.get_signing_key_from_jwt(token).key
                algorithms = self.api.algorithms
            else:
                key, algorithms = self._key, ["HS256"]
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                issuer=self.api.issuer or (None if self.api.jwks_url else _EMBEDDED_ISSUER),
                audience=self.api.audience or (None if self.api.jwks_url else _EMBEDDED_AUDIENCE),
                options={
                    "require": ["exp"],
                    "verify_aud": bool(self.api.audience) or not self.api.jwks_url,
                },
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("the token has expired") from None
        except jwt.PyJWKClientError as error:
            raise TokenError(f"the identity provider's keys cannot be read: {error}") from None
        except jwt.InvalidTokenError as error:
            raise TokenError(f"the token is not valid: {error}") from None
        actor = _claim(claims, self.api.actor_claim)
        if not isinstance(actor, str) or not actor:
            raise TokenError(f"the token names no actor (claim {self.api.actor_claim!r})")
        return Principal(actor=actor, role=_role(_claim(claims, self.api.role_claim), self.api))


def _claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _role(value: Any, api: ApiSettings) -> Role:
    candidates = value if isinstance(value, list) else [value]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate in Role.__members__.values():
            return Role(candidate)
    raise TokenError(f"the token carries no known role in claim {api.role_claim!r}")


def issue_token(
    actor: str, role: Role | str, settings: Settings, *, ttl_seconds: int | None = None
) -> str:
    """A token of the embedded default (TokenError if an identity provider is configured)."""
    return TokenVerifier(settings).issue(actor, role, ttl_seconds=ttl_seconds)


def principal_from_token(token: str, settings: Settings) -> Principal:
    """The principal a token names; TokenError saying why when it cannot be trusted."""
    return TokenVerifier(settings).principal(token)


_bearer = HTTPBearer(auto_error=False, description="A JWT: `jiuzhu token` or the identity provider")


async def current_principal(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
) -> Principal:
    """FastAPI dependency: the principal of the request's bearer token, else 401.

    Async, so that it runs on the event loop: a worker-thread hop per request costs more
    than checking an HS256 signature (the identity provider's keys are cached).
    """
    from api.problems import ProblemError

    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ProblemError(
            401,
            "unauthenticated",
            "send a bearer token: Authorization: Bearer <token> (`jiuzhu token` prints one)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    verifier: TokenVerifier = request.app.state.tokens
    try:
        return verifier.principal(credentials.credentials)
    except TokenError as error:
        raise ProblemError(
            401,
            "invalid-token",
            str(error),
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None
