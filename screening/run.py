"""One screening batch from extracts to intake: compare, record the batch, hand over the hits.

Running a batch again (on purpose, or after a crash at any point) has no second effect:
the batch's record is one aggregate per batch name (a second save conflicts and is taken
as "already recorded"), and every hit is an upstream message with a fixed message key,
whose receipt the intake stores with its effect.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from eventsourcing.persistence import IntegrityError
from psycopg import Connection
from psycopg.sql import SQL, Identifier

from domain.application import CaseWork
from domain.provenance import Provenance
from domain.roles import Role
from domain.screening import ScreeningBatch, validate_batch_name
from projections.regions import CHINA_TIME
from screening.engine import HIT_COLUMNS, Comparison, compare, connect
from screening.handover import HandOver, Progress, hand_over, hit_events, publish_hits
from screening.load import FileReport
from screening.policy import ScreeningPolicy
from screening.rules import Rule

__all__ = ["BatchRun", "roll_population", "run_batch"]


@dataclass
class BatchRun:
    """A batch's run: what was compared and found, and what the intake made of the hits."""

    batch: str
    as_of: date
    data: str
    population: str
    comparison: Comparison
    recorded: str = ""  # "recorded" or "already recorded"
    handed: HandOver = field(default_factory=HandOver)
    invalid_hits: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The JSON summary of the run."""
        records = self.comparison.records
        compare_s = self.seconds.get("compare", 0.0)
        handover_s = self.seconds.get("handover", 0.0)
        hits = sum(self.comparison.hits.values())
        return {
            "batch": self.batch,
            "as_of": self.as_of.isoformat(),
            "data": self.data,
            "population": self.population,
            "households": self.comparison.households,
            "members": self.comparison.members,
            "records_compared": sum(records.values()),
            "records_by_source": records,
            "hits": hits,
            "hits_by_rule": self.comparison.hits,
            "files": [report.as_dict() for report in self.comparison.files],
            "batch_record": self.recorded,
            "intake": dict(self.handed),
            "intake_errors": self.handed.errors[:20],
            "invalid_hits": self.invalid_hits[:20],
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "records_per_second": round(sum(records.values()) / compare_s) if compare_s else None,
            "hits_per_second": round(hits / handover_s) if handover_s else None,
        }


def roll_population(conn: Connection[Any], schema: str, out: Path) -> Path:
    """The programme roll's households (county, category, enrolled or not) as a CSV file."""
    query = SQL(
        "COPY (SELECT c.household_id, min(c.region) AS region, "
        "coalesce(min(r.category) FILTER (WHERE r.exited_at IS NULL), 'case') AS category, "
        "CASE WHEN bool_or(r.exited_at IS NULL AND r.case_id IS NOT NULL) THEN 'enrolled' "
        "ELSE 'monitored' END AS status "
        "FROM {schema}.roll_case c LEFT JOIN {schema}.programme_roll r USING (case_id) "
        "GROUP BY c.household_id) TO STDOUT WITH (FORMAT csv, HEADER)"
    ).format(schema=Identifier(schema))
    with conn.cursor() as curs, curs.copy(query) as copy, out.open("wb") as f:
        for data in copy:
            f.write(bytes(data))
    return out


def run_batch(
    app: CaseWork,
    batch: str,
    directory: Path,
    *,
    as_of: date,
    policy: ScreeningPolicy,
    rules: list[Rule],
    actor: str,
    roll: Callable[[Path], Path] | None = None,
    broker_url: str | None = None,
    subject_prefix: str = "relief.upstream",
    chunk: int = 200,
    on_file: Callable[[FileReport], None] | None = None,
    progress: Progress | None = None,
) -> BatchRun:
    """Compare a batch, record it once, and hand its hits to the intake (or the broker)."""
    validate_batch_name(batch)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jiuzhu-screen-") as scratch:
        con = connect(spill=Path(scratch))
        try:
            roll_csv = roll(Path(scratch) / "roll.csv") if roll is not None else None
            comparison = compare(
                con,
                directory,
                rules,
                policy,
                as_of,
                roll_csv=roll_csv,
                progress=on_file,
            )
            rows = con.execute(f"SELECT {', '.join(HIT_COLUMNS)} FROM hits").fetchall()
        finally:
            con.close()
    run = BatchRun(
        batch=batch,
        as_of=as_of,
        data=str(directory),
        population="programme roll" if roll is not None else "population file",
        comparison=comparison,
    )
    run.seconds["compare"] = time.perf_counter() - started
    events = hit_events(
        rows, batch=batch, as_of=as_of, rules=rules, policy=policy, rejected=run.invalid_hits
    )
    run.recorded = _record(app, run, policy, actor)
    started = time.perf_counter()
    if progress is not None:
        progress(0, len(events))
    if broker_url is None:
        run.handed = hand_over(app, events, chunk=chunk, progress=progress)
    else:
        run.handed = publish_hits(broker_url, events, prefix=subject_prefix, progress=progress)
    run.seconds["handover"] = time.perf_counter() - started
    return run


def _record(app: CaseWork, run: BatchRun, policy: ScreeningPolicy, actor: str) -> str:
    rejected = {
        report.source: sum(report.rejected.values()) + (1 if report.error else 0)
        for report in run.comparison.files
        if report.rejected or report.error
    }
    moment = datetime(run.as_of.year, run.as_of.month, run.as_of.day, 9, tzinfo=CHINA_TIME)
    record = ScreeningBatch.compare(
        run.batch,
        as_of=run.as_of,
        records=run.comparison.records,
        hits=run.comparison.hits,
        rejected=rejected,
        thresholds=dict(policy.thresholds),
        by=Provenance(
            actor=actor,
            role=Role.UPSTREAM_SYSTEM,
            reason="data comparison batch (数据比对) against the monitored population",
            occurred_at=moment,
            causation_id=f"screening:{run.batch}",
            correlation_id=run.batch,
        ),
    )
    try:
        app.save(record)
    except IntegrityError:
        return "already recorded"
    return "recorded"
