"""Screening without the servers: generated batches, rules as data, bad extracts reported."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import duckdb
import pytest

from screening.engine import compare, connect
from screening.generate import PLANTED_RULES, generate
from screening.policy import PolicyError, load_policy
from screening.rules import load_rules

AS_OF = date(2023, 6, 30)


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("batch")
    generate(out, records=20_000, seed=7, as_of=AS_OF, hits_per_rule=6, file_format="csv")
    return out


def _planted(directory: Path) -> set[tuple[str, str]]:
    with (directory / "planted.csv").open() as f:
        return {(row["rule"], row["household_id"]) for row in csv.DictReader(f)}


def test_each_rule_finds_exactly_its_planted_households(batch: Path) -> None:
    con = connect()
    result = compare(con, batch, load_rules(), load_policy(), AS_OF)
    found = set(con.execute("SELECT rule, household_id FROM hits").fetchall())
    assert found == _planted(batch)
    assert result.hits == dict.fromkeys(PLANTED_RULES, 6)
    assert sum(result.records.values()) > 19_000


def test_parquet_and_csv_batches_of_one_seed_find_the_same(batch: Path, tmp_path: Path) -> None:
    generate(tmp_path, records=20_000, seed=7, as_of=AS_OF, hits_per_rule=6)
    assert (tmp_path / "medical.parquet").exists()
    con = connect()
    compare(con, tmp_path, load_rules(), load_policy(), AS_OF)
    found = set(con.execute("SELECT rule, household_id FROM hits").fetchall())
    assert found == _planted(batch)


def test_thresholds_come_from_policy_and_can_be_overridden(batch: Path) -> None:
    strict = load_policy(overrides=["vehicle_value_yuan=100000000"])
    assert strict.thresholds["vehicle_value_yuan"] == 100_000_000
    result = compare(connect(), batch, load_rules(only=("vehicle_registered",)), strict, AS_OF)
    assert result.hits == {"vehicle_registered": 0}
    with pytest.raises(PolicyError, match="NAME one of"):
        load_policy(overrides=["no_such_threshold=1"])


def test_every_rule_names_its_legal_basis_and_sources() -> None:
    rules = load_rules()
    assert {rule.name for rule in rules} == set(PLANTED_RULES)
    for rule in rules:
        assert rule.legal_basis
        assert rule.title
        assert rule.sources
        assert set(rule.parameters) - {"as_of"} <= set(load_policy().thresholds)


def test_bad_extracts_are_reported_per_file_and_the_batch_goes_on(
    batch: Path, tmp_path: Path
) -> None:
    for path in batch.glob("*.csv"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    # business: a required column missing -> the file is refused whole.
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT * EXCLUDE (capital_fen) FROM read_csv('{batch / 'business.csv'}')) "
        f"TO '{tmp_path / 'business.csv'}' (FORMAT csv, HEADER)"
    )
    # medical: two amounts that are not numbers, one row twice.
    lines = (batch / "medical.csv").read_text().splitlines()
    bad = lines[1].split(",")
    bad[4] = "twelve"
    lines[1] = ",".join(bad)
    lines[2] = lines[2].replace(lines[2].split(",")[3], "1.5e", 1)
    lines.append(lines[5])
    (tmp_path / "medical.csv").write_text("\n".join(lines) + "\n")
    # population: a county that is not Shaanxi's.
    people = (batch / "population.csv").read_text().splitlines()
    fields = people[3].split(",")
    fields[2] = "110101"
    people[3] = ",".join(fields)
    (tmp_path / "population.csv").write_text("\n".join(people) + "\n")
    # deaths: absent.
    (tmp_path / "deaths.csv").unlink()

    result = compare(connect(), tmp_path, load_rules(), load_policy(), AS_OF)
    reports = {f.source: f for f in result.files}
    assert reports["business"].error == "missing column(s) capital_fen"
    assert "no deaths.parquet" in str(reports["deaths"].error)
    medical = reports["medical"]
    assert medical.rejected == {"wrong_type": 2, "duplicate": 1}
    assert medical.examples["wrong_type"] == [2, 3]
    assert medical.accepted == medical.rows - 3 == len(lines) - 1 - 3
    assert reports["population"].rejected == {"bad_region": 1}
    assert reports["population"].examples["bad_region"] == [4]
    assert "rejected: 1 duplicate" in medical.describe()
    # The rest of the batch went on: the rules on intact sources still find their hits.
    assert result.hits["business_registered"] == 0
    assert result.hits["sole_member_death"] == 0
    assert result.hits["vehicle_registered"] == 6
    assert result.hits["income_drop"] >= 5  # a rejected member may take one household out
