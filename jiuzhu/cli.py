"""The jiuzhu command line: demo, cases, and the service's other tools."""

from __future__ import annotations

import typer

from jiuzhu import (
    cli_api,
    cli_audit,
    cli_case,
    cli_deadletter,
    cli_demo,
    cli_payroll,
    cli_privacy,
    cli_replay,
    cli_report,
    cli_screen,
    cli_serve,
)

__all__ = ["app", "main"]

app = typer.Typer(
    name="jiuzhu",
    help="Event-sourced case workflow for social assistance (救助).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(cli_case.app, name="case")
app.add_typer(cli_audit.app, name="audit")
app.add_typer(cli_privacy.app, name="privacy")
app.command("demo")(cli_demo.demo)
app.command("report")(cli_report.report)
app.command("replay")(cli_replay.replay_command)
app.command("rebuild")(cli_replay.rebuild_command)
app.command("serve")(cli_serve.serve_command)
app.command("token")(cli_api.token)
app.add_typer(cli_payroll.app, name="payroll")
app.add_typer(cli_screen.app, name="screen")
# Each tool registers its own command group here, one line each.
app.add_typer(cli_deadletter.app, name="deadletter")


def main() -> None:
    """Entry point of the `jiuzhu` console script."""
    app()
