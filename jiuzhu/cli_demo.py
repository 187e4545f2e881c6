"""`jiuzhu demo`: the seed's stories and synthetic households, end to end."""

from __future__ import annotations

import logging
from contextlib import ExitStack, closing
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from consumers.brokers import BrokerKind, broker_kind
from domain.application import CaseWork
from jiuzhu.cli_common import console, fail, load_settings, print_json, user_errors
from jiuzhu.demo import FUNNEL, DemoReport, run_demo
from jiuzhu.demo_pipeline import running_pipeline
from jiuzhu.demo_upstream import Upstream
from jiuzhu.logging import configure_logging
from jiuzhu.narrate import yuan
from jiuzhu.runtime import endpoints, open_casework
from jiuzhu.serve import ServeSettings
from jiuzhu.settings import Settings

__all__ = ["demo"]


@user_errors
def demo(
    households: Annotated[
        int, typer.Option(min=0, max=1_000_000, help="Synthetic households besides the stories")
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed of the synthetic households")] = 2023,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables")] = False,
    direct: Annotated[
        bool, typer.Option("--direct", help="Call CaseWork directly instead of via the broker")
    ] = False,
    serve: Annotated[
        bool, typer.Option("--serve", help="Then keep serving the API and workbench until Ctrl-C")
    ] = False,
) -> None:
    """Run the seed's three stories and N synthetic households; print the funnel and totals.

    By default the demo runs the whole pipeline: upstream systems publish alerts,
    applications, visit reports and payments on the broker, the intake turns them into
    events, the relay and projector carry the events into the case_status read model.
    """
    # The storytellers run concurrently: give each a connection of its own.
    settings = load_settings().model_copy(update={"pool_size": 12})
    # The demo prints its own report: the pipeline's per-message logs would drown it.
    configure_logging(settings.log_json, level=logging.WARNING)
    for noisy in ("faststream", "faststream.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with ExitStack() as stack:
        ends = stack.enter_context(endpoints(settings, broker=not direct))
        app = stack.enter_context(open_casework(settings, ends.database_url))
        upstream, pipeline = None, None
        if not direct:
            assert ends.broker_url is not None
            if broker_kind(ends.broker_url) is not BrokerKind.NATS:
                raise fail("the demo's upstream systems publish on NATS: use nats:// or --direct")
            pipeline = stack.enter_context(
                running_pipeline(
                    database_url=ends.database_url, broker_url=ends.broker_url, settings=settings
                )
            )
            prefix = ServeSettings().upstream_prefix  # where a running deployment listens
            upstream = stack.enter_context(closing(Upstream(ends.broker_url, app, prefix=prefix)))
            if pipeline.elsewhere and not as_json:
                console.print(
                    f"Using the running deployment's {', '.join(sorted(pipeline.elsewhere))}"
                )
        report = _record(app, households, seed, upstream, quiet=as_json)
        if pipeline is not None:
            try:
                pipeline.caught_up(app)
            except RuntimeError as error:
                raise fail(str(error)) from None
            report.read_model = pipeline.case_status_totals(report.case_ids)
        if as_json:
            print_json(report.as_json())
        else:
            _print(report)
        if report.read_model and (disagreement := read_model_disagreement(report)):
            raise fail(f"the read model disagrees with the event store: {disagreement}")
        _invite(settings, app, serve=serve, quiet=as_json)


def _invite(settings: Settings, app: CaseWork, *, serve: bool, quiet: bool) -> None:
    """Say where the API and workbench are (and serve them with --serve)."""
    from api.app import create_app
    from api.server import demo_invitation, serve_until_stopped
    from api.settings import ApiSettings

    api = ApiSettings()
    if not quiet:
        for line in demo_invitation(settings, api, serving=serve):
            console.print(line, highlight=False, soft_wrap=True)
    if serve:
        serve_until_stopped(create_app(settings, casework=app, api_settings=api), api)


def read_model_disagreement(report: DemoReport) -> str:
    """Where case_status differs from what the event store says about the demo's cases."""
    expected = {
        "cases": len(report.case_ids),
        "enrolled": report.funnel["enrolled"],
        "paid_total_fen": report.paid_total_fen,
    }
    return ", ".join(
        f"{key} {report.read_model.get(key)} (store: {value})"
        for key, value in expected.items()
        if report.read_model.get(key) != value
    )


def _record(
    app: CaseWork, households: int, seed: int, upstream: Upstream | None, *, quiet: bool
) -> DemoReport:
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=quiet,
    ) as bar:
        task = bar.add_task("recording cases", total=households + 3)
        return run_demo(
            app, households, seed=seed, upstream=upstream, progress=lambda n: bar.advance(task, n)
        )


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
    if report.read_model:
        console.print(
            f"Through the broker: {report.upstream_messages:,} upstream messages; read model "
            f"case_status: {report.read_model['cases']:,} cases, "
            f"{report.read_model['enrolled']:,} enrolled, "
            f"{yuan(report.read_model['paid_total_fen'])} paid"
        )
    console.print(
        f"{report.households + len(report.stories):,} cases, {report.events:,} events recorded; "
        f"verdicts {dict(report.verdicts)}; status {dict(report.status)}"
    )
    for name, case_id in report.stories.items():
        console.print(f"  story {name}: jiuzhu case history {case_id} --actor me --role auditor")
