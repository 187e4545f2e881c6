"""`jiuzhu token`: a bearer token of the embedded default, for trying the HTTP API."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError

from api.auth import TokenError, TokenVerifier
from api.settings import ApiSettings
from domain.roles import Role
from jiuzhu.cli_common import fail, load_settings

__all__ = ["token"]


def token(
    actor: Annotated[str, typer.Option("--actor", help="Who acts, e.g. li-caseworker")],
    role: Annotated[
        str, typer.Option("--role", help=f"One of: {', '.join(r.value for r in Role)}")
    ],
    ttl: Annotated[
        int | None, typer.Option("--ttl", min=60, help="Seconds it stays valid (default 8 h)")
    ] = None,
) -> None:
    """Print a token for the API: curl -H "Authorization: Bearer $(jiuzhu token ...)" ..."""
    settings = load_settings()
    try:
        api = ApiSettings()
    except ValidationError as error:
        raise fail(f"bad settings: {error}") from None
    try:
        typer.echo(TokenVerifier(settings, api).issue(actor, role, ttl_seconds=ttl))
    except TokenError as error:
        raise fail(str(error)) from None
