"""`jiuzhu demo`: the seed's stories and synthetic households, end to end."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from jiuzhu.cli_common import console, load_settings, print_json, user_errors
from jiuzhu.demo import FUNNEL, DemoReport, run_demo
from jiuzhu.narrate import yuan
from jiuzhu.runtime import endpoints, open_casework

__all__ = ["demo"]


@user_errors
def demo(
    households: Annotated[
        int, typer.Option(min=0, max=1_000_000, help="Synthetic households besides the stories")
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed of the synthetic households")] = 2023,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables")] = False,
) -> None:
    """Run the seed's three stories and N synthetic households; print the funnel and totals."""
    settings = load_settings()
    with (
        endpoints(settings) as ends,
        open_casework(settings, ends.database_url) as app,
        Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=as_json,
        ) as bar,
    ):
        task = bar.add_task("recording cases", total=households + 3)
        report = run_demo(app, households, seed=seed, progress=lambda n: bar.advance(task, n))
    if as_json:
        print_json(report.as_json())
    else:
        _print(report)


def _print(report: DemoReport) -> None:
    top = report.funnel["discovered"] or 1
    funnel = Table(title="Funnel: policies look for people")
    funnel.add_column("stage")
    funnel.add_column("cases", justify="right")
    funnel.add_column("")
    for stage in FUNNEL:
        count = report.funnel[stage]
        funnel.add_row(stage.replace("_", " "), f"{count:,}", "█" * round(40 * count / top))
    console.print(funnel)
    money = Table(title="Paid by programme")
    money.add_column("programme")
    money.add_column("paid", justify="right")
    for programme, fen in report.paid_fen_by_programme.most_common():
        money.add_row(programme, yuan(fen))
    money.add_row("[bold]total", f"[bold]{yuan(report.paid_total_fen)}")
    console.print(money)
    console.print(
        f"{report.households + len(report.stories):,} cases, {report.events:,} events recorded; "
        f"verdicts {dict(report.verdicts)}; status {dict(report.status)}"
    )
    for name, case_id in report.stories.items():
        console.print(f"  story {name}: jiuzhu case history {case_id} --actor me --role auditor")
