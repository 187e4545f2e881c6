"""What every CLI command shares: the console, settings, errors as one line, JSON output."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from functools import wraps
from typing import Annotated, Any, ParamSpec, TypeVar
from uuid import UUID

import typer
from eventsourcing.persistence import IntegrityError
from pydantic import ValidationError
from rich.console import Console

from domain.errors import CaseWorkError
from jiuzhu.bootstrap import MissingKeysError
from jiuzhu.narrate import moment_from_text
from jiuzhu.settings import Settings

__all__ = [
    "ActorOpt",
    "RoleOpt",
    "Who",
    "console",
    "err_console",
    "fail",
    "load_settings",
    "parse_case_id",
    "parse_moment",
    "print_json",
    "user_errors",
    "who",
]

console = Console()
err_console = Console(stderr=True)

ActorOpt = Annotated[
    str | None, typer.Option("--actor", help="Who runs the command (default JIUZHU_ACTOR)")
]
RoleOpt = Annotated[str | None, typer.Option("--role", help="Role acted in (default JIUZHU_ROLE)")]

P = ParamSpec("P")
R = TypeVar("R")


def fail(message: str) -> typer.Exit:
    """Print a one-line error and return the exit to raise (status 1)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def parse_case_id(text: str) -> UUID:
    """A case id from the command line, or a one-line error."""
    try:
        return UUID(text)
    except ValueError:
        raise fail(f"CASE_ID {text!r} is not a case id (a UUID)") from None


def parse_moment(text: str, option: str = "--as-of") -> datetime:
    """A date (end of that day, China time) or an ISO date-time, or a one-line error."""
    try:
        return moment_from_text(text)
    except ValueError as error:
        raise fail(f"{option} {error}") from None


def load_settings() -> Settings:
    """The service settings, or a one-line error naming the bad setting."""
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"JIUZHU_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in error.errors()
        )
        raise fail(f"bad settings: {problems}") from None


@dataclass(frozen=True)
class Who:
    """The person or system running a command, and the role they act in."""

    actor: str
    role: str


def who(settings: Settings, actor: str | None, role: str | None) -> Who:
    """Actor and role from the options, else from settings; a one-line error if missing."""
    actor = actor or settings.actor
    role = role or settings.role
    if not actor or not role:
        raise fail("say who acts: --actor and --role (or JIUZHU_ACTOR and JIUZHU_ROLE)")
    return Who(actor, role)


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except CaseWorkError as error:
        raise fail(str(error)) from None
    except MissingKeysError as error:
        raise fail(str(error)) from None
    except IntegrityError:
        # Another writer saved the same case first (optimistic concurrency): nothing was written.
        raise fail("the case changed meanwhile; nothing was saved, try again") from None


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn the workflow's own errors into a one-line message and exit status 1."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with _user_errors():
            return command(*args, **kwargs)

    return wrapper


def _default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def print_json(data: Any) -> None:
    """Print data as JSON on stdout, nothing else (for scripts and jq)."""
    typer.echo(json.dumps(data, default=_default, ensure_ascii=False, indent=2))
