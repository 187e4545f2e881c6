"""Regions roll up from county (6 digits) to city (4) to province (2); report criteria.

Read models key their rows by the county code a case was discovered in (GB/T 2260,
e.g. 610523 Dali county); a city is its first 4 digits (6105 Weinan), a province its
first 2 (61 Shaanxi). Reports filter and group by any of the three.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum
from functools import lru_cache
from typing import Any

from psycopg.sql import SQL, Composable, Identifier, Literal

__all__ = [
    "CHINA_TIME",
    "Criteria",
    "Level",
    "Report",
    "business_month",
    "city_of",
    "level_of",
    "normalise_region",
    "province_of",
    "region_group",
    "region_matches",
    "today_in_china",
]

# Business months are counted in China Standard Time (UTC+8, no daylight saving).
CHINA_TIME = timezone(timedelta(hours=8))


class Level(StrEnum):
    """How far up a region rolls: county, city or province."""

    COUNTY = "county"
    CITY = "city"
    PROVINCE = "province"

    @property
    def digits(self) -> int:
        """How many leading digits of a county code name a region at this level."""
        return {Level.COUNTY: 6, Level.CITY: 4, Level.PROVINCE: 2}[self]


@lru_cache(maxsize=65536)
@lru_cache(maxsize=4096)  # business times recur across a cohort (the decoder shares them)
def business_month(moment: datetime) -> str:
    """The 'YYYY-MM' month, in China Standard Time, in which something happened."""
    local = moment.astimezone(CHINA_TIME)
    return f"{local.year:04d}-{local.month:02d}"


def city_of(county: str) -> str:
    """The 4-digit city code of a county code."""
    return county[:4]


def province_of(county: str) -> str:
    """The 2-digit province code of a county code."""
    return county[:2]


def normalise_region(code: str) -> str:
    """A region filter as a 2, 4 or 6 digit prefix; '610500' (Weinan, padded) is '6105'."""
    code = code.strip()
    if not code.isdigit() or len(code) not in (2, 4, 6):
        msg = f"region {code!r} is not a 2, 4 or 6 digit administrative code, e.g. 610523"
        raise ValueError(msg)
    while len(code) > 2 and code.endswith("00"):
        code = code[:-2]
    return code


def level_of(code: str) -> Level:
    """The level a normalised region code names."""
    return {6: Level.COUNTY, 4: Level.CITY, 2: Level.PROVINCE}[len(normalise_region(code))]


def region_matches(column: str, code: str | None) -> Composable:
    """A SQL condition: the county code in `column` lies within a region (true if none)."""
    if code is None:
        return SQL("TRUE")
    prefix = normalise_region(code)
    return SQL("left({0}, {1}) = {2}").format(
        Identifier(*column.split(".")), Literal(len(prefix)), Literal(prefix)
    )


def region_group(column: str, level: Level) -> Composable:
    """A SQL expression rolling the county code in `column` up to a level."""
    return SQL("left({0}, {1})").format(Identifier(*column.split(".")), Literal(level.digits))


def today_in_china() -> date:
    """Today's date in China Standard Time (due dates and reviews are dates there)."""
    return datetime.now(CHINA_TIME).date()


@dataclass(frozen=True)
class Criteria:
    """What a report covers: a region, a range of business months, a roll-up level, a day."""

    region: str | None = None
    first_month: str | None = None
    last_month: str | None = None
    level: Level = Level.COUNTY
    today: date = field(default_factory=today_in_china)

    def region_sql(self, column: str = "region") -> Composable:
        """Rows of counties within the region."""
        return region_matches(column, self.region)

    def group_sql(self, column: str = "region") -> Composable:
        """The region column rolled up to the level."""
        return region_group(column, self.level)

    def months_sql(self, column: str) -> Composable:
        """Rows whose 'YYYY-MM' column lies in the month range (inclusive)."""
        first = Literal(self.first_month or "0000-00")
        last = Literal(self.last_month or "9999-99")
        return SQL("{0} BETWEEN {1} AND {2}").format(Identifier(*column.split(".")), first, last)

    def moments_sql(self, column: str) -> Composable:
        """Rows whose timestamp falls, in China time, in the month range (nulls kept out)."""
        month = SQL("to_char({0} AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM')").format(
            Identifier(*column.split("."))
        )
        first = Literal(self.first_month or "0000-00")
        last = Literal(self.last_month or "9999-99")
        return SQL("{0} BETWEEN {1} AND {2}").format(month, first, last)


@dataclass
class Report:
    """A report's rows (dicts with the same keys), ready for a table, CSV or JSON."""

    title: str
    columns: list[str]
    rows: list[dict[str, Any]]
    # Stage totals for a bar chart, and a monthly series for a sparkline, where they help.
    bars: list[tuple[str, int]] = field(default_factory=list)
    series: list[tuple[str, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
