"""The extracts a batch holds: one file per department source, plus the monitored population.

Each source names its file stem (``medical.csv`` or ``medical.parquet``), its columns with
their types (a row whose value does not cast is rejected, the rest of the file goes on), the
key that makes a row unique (further rows with the same key are duplicates) and whether its
rows carry a region code to check.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["POPULATION", "SOURCES", "Source", "source_named"]


@dataclass(frozen=True)
class Source:
    """One extract: what it holds, its columns and types, the key of a row."""

    name: str
    department: str
    description: str
    columns: tuple[tuple[str, str], ...]  # (column, DuckDB type), in file order
    key: tuple[str, ...]
    region_column: str | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        """The required columns, in order."""
        return tuple(name for name, _ in self.columns)


POPULATION = Source(
    name="population",
    department="civil affairs (low-income population monitoring)",
    description="the monitored population: one row per member, with the household's "
    "county (GB/T 2260), category and enrolment status (enrolled | monitored)",
    columns=(
        ("person_id", "VARCHAR"),
        ("household_id", "VARCHAR"),
        ("region", "VARCHAR"),
        ("category", "VARCHAR"),
        ("status", "VARCHAR"),
    ),
    key=("person_id",),
    region_column="region",
)

SOURCES: tuple[Source, ...] = (
    Source(
        name="medical",
        department="medical security bureau",
        description="medical insurance settlements: total cost and the part paid out of pocket",
        columns=(
            ("claim_id", "VARCHAR"),
            ("person_id", "VARCHAR"),
            ("settled_on", "DATE"),
            ("total_fen", "BIGINT"),
            ("self_pay_fen", "BIGINT"),
        ),
        key=("claim_id",),
    ),
    Source(
        name="income",
        department="human resources and social security",
        description="income and employment: annual income this year and the year before",
        columns=(
            ("person_id", "VARCHAR"),
            ("employer", "VARCHAR"),
            ("prev_annual_fen", "BIGINT"),
            ("annual_fen", "BIGINT"),
        ),
        key=("person_id", "employer"),
    ),
    Source(
        name="disability",
        department="disabled persons' federation",
        description="disability certifications with their grade (1 most severe to 4)",
        columns=(
            ("certificate_id", "VARCHAR"),
            ("person_id", "VARCHAR"),
            ("grade", "INTEGER"),
            ("certified_on", "DATE"),
        ),
        key=("certificate_id",),
    ),
    Source(
        name="deaths",
        department="civil registry (public security, health)",
        description="deaths registered",
        columns=(
            ("registration_ref", "VARCHAR"),
            ("person_id", "VARCHAR"),
            ("date_of_death", "DATE"),
        ),
        key=("registration_ref",),
    ),
    Source(
        name="property",
        department="natural resources (real estate) and public security (vehicles)",
        description="registrations of residences, commercial property and vehicles",
        columns=(
            ("registration_ref", "VARCHAR"),
            ("person_id", "VARCHAR"),
            ("kind", "VARCHAR"),  # residence | commercial | vehicle | farm_vehicle
            ("value_fen", "BIGINT"),
            ("registered_on", "DATE"),
        ),
        key=("registration_ref",),
    ),
    Source(
        name="business",
        department="market regulation",
        description="business registrations with their registered capital and status",
        columns=(
            ("credit_code", "VARCHAR"),
            ("person_id", "VARCHAR"),
            ("status", "VARCHAR"),  # active | deregistered
            ("capital_fen", "BIGINT"),
            ("registered_on", "DATE"),
        ),
        key=("credit_code",),
    ),
)


def source_named(name: str) -> Source:
    """A source by name (the population included); KeyError names the known ones."""
    for source in (POPULATION, *SOURCES):
        if source.name == name:
            return source
    known = ", ".join(s.name for s in (POPULATION, *SOURCES))
    raise KeyError(f"no source {name!r}; known: {known}")
