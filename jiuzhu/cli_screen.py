"""`jiuzhu screen`: data comparison batches (generate, rules, run)."""

from __future__ import annotations

import re
from datetime import date
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from jiuzhu.cli_common import console, fail, print_json
from screening.generate import generate
from screening.policy import PolicyError, load_policy
from screening.rules import RuleError, load_rules

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
