"""The screening policy: the rules' thresholds and how tasks are issued, read from TOML."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_POLICY_FILE", "PolicyError", "ScreeningPolicy", "load_policy"]

DEFAULT_POLICY_FILE = Path(__file__).with_name("policy.toml")


class PolicyError(ValueError):
    """A policy file or override that cannot be used; the message names it."""


@dataclass(frozen=True)
class ScreeningPolicy:
    """Thresholds the rules read as $name, and the verification task's due days and assignee."""

    thresholds: Mapping[str, int | float]
    verification_days: int = 15
    assignee: str = "civil-affairs-{region}"
    source: str = field(default=str(DEFAULT_POLICY_FILE))

    def assignee_for(self, region: str) -> str:
        """Who receives a verification task for a household of this county."""
        return self.assignee.format(region=region)


def _number(name: str, value: Any, where: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"{where}: threshold {name} = {value!r} is not a number")
    if value < 0:
        raise PolicyError(f"{where}: threshold {name} = {value!r} is negative")
    return value


def load_policy(path: Path | None = None, overrides: Iterable[str] = ()) -> ScreeningPolicy:
    """The policy from a TOML file (the shipped one by default), with NAME=VALUE overrides."""
    source = path or DEFAULT_POLICY_FILE
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise PolicyError(f"policy {source}: {error}") from None
    given = raw.get("thresholds", {})
    if not isinstance(given, dict):
        raise PolicyError(f"policy {source}: [thresholds] is not a table")
    thresholds = {name: _number(name, value, str(source)) for name, value in given.items()}
    for override in overrides:
        name, sep, text = override.partition("=")
        name = name.strip()
        if not sep or name not in thresholds:
            known = ", ".join(sorted(thresholds))
            raise PolicyError(f"--set {override!r}: expected NAME=VALUE with NAME one of {known}")
        try:
            value: int | float = int(text) if text.strip().lstrip("-").isdigit() else float(text)
        except ValueError:
            raise PolicyError(f"--set {override!r}: {text!r} is not a number") from None
        thresholds[name] = _number(name, value, "--set")
    tasks = raw.get("tasks", {})
    days = tasks.get("verification_days", 15)
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise PolicyError(f"policy {source}: tasks.verification_days = {days!r} is not a day count")
    assignee = str(tasks.get("assignee", "civil-affairs-{region}"))
    return ScreeningPolicy(thresholds, days, assignee, str(source))
