"""`jiuzhu serve [intake|relay|projector|all]`: the pipeline's long-running processes."""

from __future__ import annotations

import asyncio
import importlib.util
from enum import StrEnum
from typing import Annotated

import typer

from jiuzhu.cli_common import err_console, fail, load_settings
from jiuzhu.logging import configure_logging
from jiuzhu.runtime import endpoints
from jiuzhu.serve import ServeSettings, serve

__all__ = ["Component", "serve_command"]


class Component(StrEnum):
    """What to run: one process of the pipeline, or all of them in one."""

    INTAKE = "intake"
    RELAY = "relay"
    PROJECTOR = "projector"
    ALL = "all"


def _intake_available() -> bool:
    if importlib.util.find_spec("consumers.intake") is None:
        return False
    from consumers import intake

    return hasattr(intake, "build_intake")


def serve_command(
    component: Annotated[
        Component, typer.Argument(help="intake, relay, projector, or all of them")
    ] = Component.ALL,
) -> None:
    """Run the pipeline until SIGTERM: relay (event store -> broker), projector, intake."""
    settings = load_settings()
    try:
        options = ServeSettings()
    except ValueError as error:
        raise fail(f"bad settings: {error}") from None
    components = {component.value} if component is not Component.ALL else set()
    if component is Component.ALL:
        components = {"relay", "projector"}
        if _intake_available():
            components.add("intake")
        else:
            err_console.print("intake is not available yet: serving relay and projector only")
    elif component is Component.INTAKE and not _intake_available():
        raise fail("intake is not available: consumers.intake.build_intake is missing")
    configure_logging(settings.log_json)
    with endpoints(settings, broker=True) as ends:
        assert ends.broker_url is not None  # endpoints(broker=True) always gives one
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


if __name__ == "__main__":  # `python -m jiuzhu.cli_serve relay`
    typer.run(serve_command)
