"""Rules as data: each rule is a named SQL query in screening/rules/, with its legal basis.

A rule file starts with comment lines `-- key: value` (rule, title, legal basis, sources)
and then a free comment saying what it finds; the query returns one row per household hit:
`household_id`, `finding` (a sentence for the caseworker) and `indicators` (a JSON object of
the measured figures). It reads the tables `members`, `households` and the sources by name,
and the policy's thresholds as `$name` parameters (plus `$as_of`, the batch's date).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RULES_DIR", "Rule", "RuleError", "load_rules"]

RULES_DIR = Path(__file__).with_name("rules")
_HEADER = re.compile(r"^--\s*(rule|title|legal basis|sources):\s*(.+?)\s*$")
_COMMENT = re.compile(r"--[^\n]*")
_PARAMETER = re.compile(r"\$([a-z_][a-z0-9_]*)")


class RuleError(ValueError):
    """A rule file that cannot be used; the message names the file and what is missing."""


@dataclass(frozen=True)
class Rule:
    """A named comparison: its query, legal basis, the sources it reads, what it finds."""

    name: str
    title: str
    legal_basis: str
    sources: tuple[str, ...]
    description: str
    sql: str
    path: Path

    @property
    def parameters(self) -> tuple[str, ...]:
        """The $names the query uses (comments aside), in order of first use."""
        names = _PARAMETER.findall(_COMMENT.sub("", self.sql))
        return tuple(dict.fromkeys(names))

    @classmethod
    def read(cls, path: Path) -> Rule:
        """A rule from its file."""
        text = path.read_text(encoding="utf-8")
        header: dict[str, str] = {}
        description: list[str] = []
        for line in text.splitlines():
            if not line.startswith("--"):
                break
            if match := _HEADER.match(line):
                header[match.group(1)] = match.group(2)
            else:
                description.append(line.removeprefix("--").strip())
        missing = [key for key in ("rule", "title", "legal basis", "sources") if key not in header]
        if missing:
            raise RuleError(f"rule file {path}: missing header line(s) {', '.join(missing)}")
        if header["rule"] != path.stem:
            raise RuleError(f"rule file {path}: named {header['rule']!r}, not {path.stem!r}")
        return cls(
            name=header["rule"],
            title=header["title"],
            legal_basis=header["legal basis"],
            sources=tuple(s.strip() for s in header["sources"].split(",")),
            description=" ".join(description),
            sql=text,
            path=path,
        )


def load_rules(directory: Path = RULES_DIR, only: tuple[str, ...] = ()) -> list[Rule]:
    """The rules of a directory, by name; `only` keeps some (RuleError names unknown ones)."""
    rules = [Rule.read(path) for path in sorted(directory.glob("*.sql"))]
    if only:
        known = {rule.name for rule in rules}
        unknown = [name for name in only if name not in known]
        if unknown:
            raise RuleError(f"unknown rule(s) {', '.join(unknown)}; known: {', '.join(known)}")
        rules = [rule for rule in rules if rule.name in only]
    return rules
