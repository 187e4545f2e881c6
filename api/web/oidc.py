"""OpenID Connect authorisation-code flow (with PKCE) for the workbench's sign-in.

The browser goes to the identity provider with a fresh state, nonce and code challenge
(kept in a short-lived HttpOnly cookie); the provider sends it back with a code, which the
server exchanges for tokens. The ID token is checked against the provider's keys (JWKS),
issuer, this client's id and the nonce; the access token must then pass the API's own
check (same issuer, audience, JWKS and role claim), and becomes the session's token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt

from api.auth import Principal, TokenError, TokenVerifier
from api.web.settings import OidcSettings

__all__ = ["FLOW_COOKIE", "Flow", "SignInError", "begin", "finish"]

FLOW_COOKIE = "jiuzhu_oidc"


class SignInError(Exception):
    """The sign-in through the identity provider failed; the message says where."""


@dataclass(frozen=True)
class Flow:
    """One sign-in attempt: what the callback must find again."""

    state: str
    nonce: str
    verifier: str

    def cookie(self) -> str:
        """The flow as a cookie value."""
        raw = json.dumps({"s": self.state, "n": self.nonce, "v": self.verifier})
        return base64.urlsafe_b64encode(raw.encode()).decode()

    @classmethod
    def from_cookie(cls, value: str | None) -> Flow:
        """The flow a cookie holds; SignInError if there is none."""
        if not value:
            raise SignInError("the sign-in was not started here (no flow cookie): start again")
        try:
            data = json.loads(base64.urlsafe_b64decode(value.encode()))
            return cls(state=str(data["s"]), nonce=str(data["n"]), verifier=str(data["v"]))
        except (ValueError, KeyError, TypeError):
            raise SignInError("the sign-in flow cookie is damaged: start again") from None


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def begin(oidc: OidcSettings, redirect_url: str) -> tuple[str, Flow]:
    """The provider's authorisation URL for a new flow, and the flow to keep."""
    assert oidc.authorization_url
    flow = Flow(secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48))
    query = urlencode(
        {
            "response_type": "code",
            "client_id": oidc.client_id,
            "redirect_uri": redirect_url,
            "scope": oidc.scopes,
            "state": flow.state,
            "nonce": flow.nonce,
            "code_challenge": _challenge(flow.verifier),
            "code_challenge_method": "S256",
        }
    )
    separator = "&" if "?" in oidc.authorization_url else "?"
    return f"{oidc.authorization_url}{separator}{query}", flow


def finish(
    oidc: OidcSettings,
    tokens: TokenVerifier,
    flow: Flow,
    *,
    code: str,
    state: str,
    redirect_url: str,
    transport: httpx.BaseTransport | None = None,
) -> tuple[Principal, str]:
    """Exchange the code, check the ID token and the access token: who signed in, and the token."""
    if not secrets.compare_digest(state, flow.state):
        raise SignInError("the state returned by the identity provider does not match")
    assert oidc.token_url
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_url,
        "client_id": oidc.client_id,
        "code_verifier": flow.verifier,
    }
    if oidc.client_secret is not None:
        form["client_secret"] = oidc.client_secret.get_secret_value()
    try:
        with httpx.Client(timeout=10, transport=transport) as client:
            answer = client.post(oidc.token_url, data=form)
    except httpx.HTTPError as error:
        raise SignInError(f"the identity provider cannot be reached: {error}") from None
    if answer.status_code != 200:
        raise SignInError(
            f"the identity provider refused the code ({answer.status_code}): {answer.text[:200]}"
        )
    try:
        body: dict[str, Any] = answer.json()
        id_token, access_token = str(body["id_token"]), str(body["access_token"])
    except (ValueError, KeyError, TypeError):
        raise SignInError("the identity provider's answer lacks id_token or access_token") from None
    _check_id_token(oidc, tokens, id_token, flow.nonce)
    try:
        principal = tokens.principal(access_token)
    except TokenError as error:
        raise SignInError(f"the access token is not accepted: {error}") from None
    return principal, access_token


def _check_id_token(oidc: OidcSettings, tokens: TokenVerifier, id_token: str, nonce: str) -> None:
    api = tokens.api
    if not api.jwks_url:
        raise SignInError("JIUZHU_API_JWKS_URL must be set for the OpenID Connect sign-in")
    try:
        key = jwt.PyJWKClient(api.jwks_url).get_signing_key_from_jwt(id_token).key
        claims = jwt.decode(
            id_token,
            key,
            algorithms=api.algorithms,
            audience=oidc.client_id,
            issuer=api.issuer,
            options={"require": ["exp", "iat", "nonce"], "verify_iss": bool(api.issuer)},
        )
    except jwt.PyJWKClientError as error:
        raise SignInError(f"the identity provider's keys cannot be read: {error}") from None
    except jwt.InvalidTokenError as error:
        raise SignInError(f"the ID token is not valid: {error}") from None
    if not secrets.compare_digest(str(claims.get("nonce")), nonce):
        raise SignInError("the ID token's nonce does not match this sign-in")
