"""`jiuzhu screen`: data comparison batches (generate, rules, run)."""

from __future__ import annotations

import json
import re
import time
from datetime import date
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from consumers.intake import BATCH_SIZE
from domain.screening import HIT_SOURCE, validate_batch_name
from jiuzhu.cli_common import console, err_console, fail, load_settings, print_json
from jiuzhu.runtime import endpoints, open_casework
from projections.regions import today_in_china
from screening.engine import PopulationError
from screening.generate import generate
from screening.handover import BrokerError
from screening.load import FileReport
from screening.policy import PolicyError, load_policy
from screening.rules import RuleError, load_rules
from screening.run import roll_population, run_batch

__all__ = ["app"]

_PARAMETER = re.compile(r"\$([a-z_]+)")

app = typer.Typer(
    help="Data comparison (数据比对): department extracts screened against the monitored "
    "population; hits become verification work through the intake.",
    no_args_is_help=True,
)

PolicyOpt = Annotated[
    Path | None, typer.Option("--policy", help="Policy TOML (default: screening/policy.toml)")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a threshold for this run: NAME=VALUE (repeatable)"),
]


def _value(values: dict[str, Any], match: re.Match[str]) -> str:
    return str(values.get(match.group(1), match.group(0)))


def _date(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise fail(f"{option} {text!r} is not a date (YYYY-MM-DD)") from None


@app.command("generate")
def generate_command(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the batch into")],
    records: Annotated[
        int, typer.Option("--records", help="Department records, all sources")
    ] = 100_000,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same batch")] = 1,
    as_of: Annotated[str, typer.Option("--as-of", help="The batch's date")] = "2023-06-30",
    hits_per_rule: Annotated[
        int | None, typer.Option("--hits-per-rule", help="Planted hits per rule (default ~1.25%)")
    ] = None,
    file_format: Annotated[str, typer.Option("--format", help="parquet or csv")] = "parquet",
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON")] = False,
) -> None:
    """Write a synthetic batch: one extract per source, the population, planted hits."""
    day = _date(as_of, "--as-of")
    assert day is not None
    try:
        manifest = generate(
            out, records=records, seed=seed, as_of=day, hits_per_rule=hits_per_rule,
            file_format=file_format,
        )  # fmt: skip
    except ValueError as error:
        raise fail(str(error)) from None
    if as_json:
        print_json(manifest.__dict__)
        return
    console.print(
        f"wrote {manifest.records:,} department records and {manifest.members:,} members of "
        f"{manifest.households:,} households to {out} ({file_format})"
    )
    for rule, count in manifest.planted.items():
        console.print(f"  planted {count:>7,} {rule}")


@app.command("rules")
def rules_command(
    policy_file: PolicyOpt = None,
    overrides: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
) -> None:
    """List the rules: name, what they find, legal basis, sources and thresholds."""
    try:
        policy = load_policy(policy_file, overrides or [])
        rules = load_rules()
    except (PolicyError, RuleError) as error:
        raise fail(str(error)) from None
    listed: list[dict[str, Any]] = [
        {
            "rule": rule.name,
            "title": rule.title,
            "legal_basis": rule.legal_basis,
            "sources": list(rule.sources),
            "thresholds": {
                name: policy.thresholds[name] for name in rule.parameters if name != "as_of"
            },
            "finds": rule.description,
            "file": str(rule.path),
        }
        for rule in rules
    ]
    if as_json:
        print_json({"policy": policy.source, "rules": listed})
        return
    console.print(f"[bold]{len(listed)} rules[/] (thresholds from {policy.source})")
    for item in listed:
        values: dict[str, Any] = item["thresholds"]
        finds = _PARAMETER.sub(partial(_value, values), item["finds"])
        thresholds = ", ".join(f"{k}={v}" for k, v in values.items())
        console.print(f"\n[bold cyan]{item['rule']}[/]: {item['title']}", highlight=False)
        console.print(f"  finds: {finds}", highlight=False)
        console.print(f"  sources: {', '.join(item['sources'])}; thresholds: {thresholds}")
        console.print(f"  legal basis: {item['legal_basis']}", highlight=False)


def _as_of(data: Path, text: str | None) -> date:
    """The batch's date: --as-of, else the generator's manifest, else today (China time)."""
    if text is not None:
        day = _date(text, "--as-of")
        assert day is not None
        return day
    manifest = data / "manifest.json"
    if manifest.exists():
        try:
            return date.fromisoformat(json.loads(manifest.read_text())["as_of"])
        except (ValueError, KeyError):
            pass
    return today_in_china()


@app.command("run")
def run_command(
    batch: Annotated[
        str, typer.Argument(help="The batch's name, e.g. 2023-06 (its correlation id)")
    ],
    data: Annotated[Path, typer.Option("--data", help="Directory of the batch's extracts")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="The batch's date (default: manifest, or today)")
    ] = None,
    population: Annotated[
        str, typer.Option("--population", help="file (population.* in --data) or roll")
    ] = "file",
    policy_file: PolicyOpt = None,
    overrides: SetOpt = None,
    only: Annotated[
        list[str] | None, typer.Option("--rule", help="Run only this rule (repeatable)")
    ] = None,
    via: Annotated[str, typer.Option("--via", help="intake (direct) or broker")] = "intake",
    chunk: Annotated[int, typer.Option("--chunk", help="Hits per intake save")] = BATCH_SIZE,
    actor: Annotated[str, typer.Option("--actor", help="Who runs the batch")] = HIT_SOURCE,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON")] = False,
) -> None:
    """Screen a batch of extracts; hand each hit to the intake exactly once."""
    if population not in ("file", "roll"):
        raise fail(f"--population {population!r} is neither file nor roll")
    if via not in ("intake", "broker"):
        raise fail(f"--via {via!r} is neither intake nor broker")
    if not data.is_dir():
        raise fail(f"--data {data} is not a directory")
    try:
        validate_batch_name(batch)
        policy = load_policy(policy_file, overrides or [])
        rules = load_rules(only=tuple(only or ()))
    except (PolicyError, RuleError, ValueError) as error:
        raise fail(str(error)) from None
    day = _as_of(data, as_of)
    settings = load_settings()
    started = time.perf_counter()

    def on_file(report: FileReport) -> None:
        elapsed = time.perf_counter() - started
        err_console.print(f"[dim]{elapsed:6.1f}s[/] {report.describe()}", highlight=False)

    with (
        endpoints(settings, broker=via == "broker") as ends,
        open_casework(settings, ends.database_url) as app,
        Progress(
            TextColumn("hits to the intake"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
            console=err_console, transient=False,
        ) as bar,
    ):  # fmt: skip
        task = bar.add_task("hits", total=None, rate="")
        handing = [time.perf_counter()]

        def progress(done: int, total: int) -> None:
            if done == 0:
                handing[0] = time.perf_counter()
            seconds = max(time.perf_counter() - handing[0], 1e-6)
            bar.update(task, completed=done, total=total, rate=f"{done / seconds:,.0f} hits/s")

        def roll(out: Path) -> Path:
            try:
                with psycopg.connect(ends.database_url) as conn:
                    return roll_population(conn, settings.db_schema, out)
            except psycopg.errors.UndefinedTable:
                raise fail(
                    f"no programme roll in schema {settings.db_schema!r}: run the projector "
                    "(jiuzhu serve projector) or `jiuzhu rebuild programme_roll` first"
                ) from None

        try:
            run = run_batch(
                app, batch, data, as_of=day, policy=policy, rules=rules, actor=actor,
                roll=roll if population == "roll" else None,
                broker_url=ends.broker_url if via == "broker" else None,
                chunk=chunk, on_file=on_file, progress=progress,
            )  # fmt: skip
        except (PopulationError, RuleError, BrokerError) as error:
            raise fail(str(error)) from None
    summary = run.summary()
    if as_json:
        print_json(summary)
        return
    _print_summary(summary)


def _print_summary(summary: dict[str, Any]) -> None:
    seconds = summary["seconds"]
    console.print(
        f"batch [bold]{summary['batch']}[/] ({summary['as_of']}): "
        f"{summary['records_compared']:,} records compared against {summary['members']:,} "
        f"members of {summary['households']:,} households in {seconds.get('compare', 0):.1f}s "
        f"({summary['records_per_second'] or 0:,} records/s); batch {summary['batch_record']}",
        highlight=False,
    )
    for rule, hits in summary["hits_by_rule"].items():
        console.print(f"  {hits:>8,} {rule}")
    intake = ", ".join(f"{count:,} {outcome}" for outcome, count in summary["intake"].items())
    console.print(
        f"{summary['hits']:,} hits handed over in {seconds.get('handover', 0):.1f}s: "
        f"{intake or 'none'}",
        highlight=False,
    )
    for error in summary["intake_errors"] + summary["invalid_hits"]:
        err_console.print(f"[red]hit refused:[/] {error}", highlight=False)
