"""Who is at the workbench: a session cookie holding a token the API would accept.

The cookie carries a bearer token (HttpOnly, SameSite=Lax): one the embedded default signed
for a demo staff member, or the identity provider's access token after the OpenID Connect
sign-in. Every page checks it with the same verifier as the API, so a page and an API call
of the same person act with the same actor and role.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request, Response

from api.auth import Principal, TokenError, TokenVerifier
from api.web.i18n import LANGUAGES

__all__ = [
    "LANG_COOKIE",
    "SESSION_COOKIE",
    "LoginRequiredError",
    "Viewer",
    "language_of",
    "set_session",
    "viewer_of",
]

SESSION_COOKIE = "jiuzhu_session"
LANG_COOKIE = "jiuzhu_lang"


class LoginRequiredError(Exception):
    """No valid session: the browser is sent to the sign-in page (the reason shown there)."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Viewer:
    """The signed-in person, their role, and the language they read."""

    principal: Principal
    lang: str

    @property
    def actor(self) -> str:
        """Who acts."""
        return self.principal.actor

    @property
    def role(self) -> str:
        """The role they act in."""
        return self.principal.role.value


def language_of(request: Request) -> str:
    """The chosen language (cookie or ?lang=), Chinese by default."""
    chosen = request.query_params.get("lang") or request.cookies.get(LANG_COOKIE) or "zh"
    return chosen if chosen in LANGUAGES else "zh"


def viewer_of(request: Request) -> Viewer:
    """The signed-in viewer of a request; LoginRequiredError when there is none."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise LoginRequiredError()
    verifier: TokenVerifier = request.app.state.tokens
    try:
        principal = verifier.principal(token)
    except TokenError as error:
        raise LoginRequiredError(str(error)) from None
    return Viewer(principal=principal, lang=language_of(request))


def set_session(response: Response, token: str, *, secure: bool) -> None:
    """Put the token in the session cookie: never readable by scripts, not sent cross-site."""
    response.set_cookie(
        SESSION_COOKIE, token, httponly=True, samesite="lax", secure=secure, path="/"
    )
