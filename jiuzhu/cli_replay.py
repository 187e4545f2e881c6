"""`jiuzhu replay` proves the read models from the history; `jiuzhu rebuild` replaces them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, TypeVar

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from jiuzhu.cli_common import console, err_console, fail, load_settings
from jiuzhu.runtime import endpoints, open_casework
from projections.compare import Difference
from projections.rebuild import ReplayResult, rebuild, replay, select_models

__all__ = ["rebuild_command", "replay_command"]

T = TypeVar("T")

Names = Annotated[
    list[str] | None,
    typer.Argument(help="Read models to replay (default: all)", show_default=False),
]
Schema = Annotated[
    str | None, typer.Option(help="Schema of the read models (default: JIUZHU_DB_SCHEMA)")
]
BatchSize = Annotated[int, typer.Option(min=100, help="Events per batch and transaction")]


class _Rate(ProgressColumn):
    """Events per second since the start."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(
            f"{speed:,.0f} events/s" if speed else "– events/s", style="progress.data.speed"
        )


@contextmanager
def _progress(total: int) -> Iterator[Progress]:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as progress:
        yield progress


def replay_command(
    names: Names = None, schema: Schema = None, batch_size: BatchSize = 10_000
) -> None:
    """Rebuild read models from the event log in a scratch schema and compare row by row.

    Exits 0 only when every rebuilt table equals the live one; prints each difference.
    """
    result = _from_the_log(replay, "replaying", names, schema, batch_size)
    _print_result(result)
    if not result.equal:
        raise typer.Exit(1)


def rebuild_command(
    names: Names = None, schema: Schema = None, batch_size: BatchSize = 10_000
) -> None:
    """Rebuild read models from the event log and swap them in atomically; intake goes on."""
    positions = _from_the_log(rebuild, "rebuilding", names, schema, batch_size)
    for name, position in positions.items():
        console.print(f"[green]rebuilt[/] {name} up to event {position:,}")


def _from_the_log(
    work: Callable[..., T], label: str, names: list[str] | None, schema: str | None, batch_size: int
) -> T:
    """Run replay or rebuild over the whole notification log, with a progress bar."""
    try:
        classes = select_models(names or [])
    except ValueError as error:
        raise fail(str(error)) from None
    settings = load_settings()
    with endpoints(settings) as ends, open_casework(settings, ends.database_url) as app:
        total = app.recorder.max_notification_id() or 0
        with _progress(total) as progress:
            task = progress.add_task(label, total=total)
            return work(
                app,
                classes,
                database_url=ends.database_url,
                schema=schema or settings.db_schema,
                batch_size=batch_size,
                progress=lambda n: progress.advance(task, n),
            )


def _print_result(result: ReplayResult) -> None:
    for parked in result.parked:
        console.print(
            f"[yellow]parked[/]  {parked.read_model}: event {parked.notification_id:,} "
            f"({parked.event_type}) could not be folded: {parked.error}",
            soft_wrap=True,
            highlight=False,
        )
    for name, differences in result.differences.items():
        position = result.positions.get(name, 0)
        if not differences:
            console.print(f"[green]equal[/]   {name} (at event {position:,})")
            continue
        where = "no live tables" if position < 0 else f"at event {position:,}"
        console.print(f"[bold red]differs[/] {name} ({where}): {len(differences)} row(s)")
        for difference in differences:
            console.print(f"  {_describe(difference)}", soft_wrap=True, highlight=False)


def _describe(difference: Difference) -> str:
    """One line per difference: which table, which row, what the live and rebuilt rows say."""
    head = f"{difference.table} {difference.kind}"
    key = _show(difference.key)
    if difference.kind == "missing table":
        return head
    if difference.kind == "changed" and difference.live and difference.rebuilt:
        changes = "; ".join(
            f"{c}: live={difference.live[c]} rebuilt={difference.rebuilt[c]}"
            for c in difference.columns
        )
        return f"{head} [{key}] {changes}"
    row = difference.live if difference.live is not None else difference.rebuilt
    return f"{head} [{key}] {_show(row or {})}"


def _show(values: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items()) or "—"
