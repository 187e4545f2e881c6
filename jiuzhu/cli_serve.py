"""`jiuzhu serve [intake|relay|projector|all]`: the pipeline's long-running processes."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Annotated

import typer

from jiuzhu.bootstrap import MissingKeysError, check_keys
from jiuzhu.cli_common import fail, load_settings
from jiuzhu.logging import configure_logging
from jiuzhu.runtime import endpoints
from jiuzhu.serve import COMPONENTS, ServeSettings, serve

__all__ = ["Component", "serve_command", "with_health_host"]


class Component(StrEnum):
    """What to run: one process of the pipeline, or all of them in one."""

    INTAKE = "intake"
    RELAY = "relay"
    PROJECTOR = "projector"
    CLOCK = "clock"
    API = "api"
    ALL = "all"


def serve_command(
    component: Annotated[
        Component, typer.Argument(help="intake, relay, projector, or all of them")
    ] = Component.ALL,
) -> None:
    """Run the pipeline until SIGTERM: intake, relay (event store -> broker), projector."""
    settings = load_settings()
    try:
        options = ServeSettings()
    except ValueError as error:
        raise fail(f"bad settings: {error}") from None
    try:  # before any server starts: a database of record needs keys kept elsewhere
        check_keys(settings, embedded=settings.database_url is None)
    except MissingKeysError as error:
        raise fail(str(error)) from None
    components = set(COMPONENTS) if component is Component.ALL else {component.value}
    configure_logging(settings.log_json)
    with endpoints(settings, broker=True) as ends:
        assert ends.broker_url is not None  # endpoints(broker=True) always gives one
        options = with_health_host(options, embedded=ends.embedded)
        status = asyncio.run(
            serve(
                components,
                database_url=ends.database_url,
                broker_url=ends.broker_url,
                settings=settings,
                options=options,
            )
        )
    raise typer.Exit(status)


def with_health_host(options: ServeSettings, *, embedded: bool) -> ServeSettings:
    """/health on loopback when everything is embedded (a laptop), else on every interface
    (a container's probe comes from outside it), unless JIUZHU_HEALTH_HOST says."""
    if options.health_host:
        return options
    return options.model_copy(update={"health_host": "127.0.0.1" if embedded else "0.0.0.0"})


if __name__ == "__main__":  # `python -m jiuzhu.cli_serve relay`
    typer.run(serve_command)
