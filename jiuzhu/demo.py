"""The demo: the seed's three stories and N synthetic households, then a funnel and totals."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

from domain.application import CaseWork
from jiuzhu.demo_stories import STORIES
from jiuzhu.demo_synthetic import synthetic_household
from jiuzhu.demo_upstream import Upstream

__all__ = ["DemoReport", "run_demo"]

FUNNEL = ("discovered", "verification_assigned", "verified", "enrolled", "paid")


@dataclass
class DemoReport:
    """What a demo run recorded: the stories' case ids, the funnel and the totals."""

    stories: dict[str, UUID]
    households: int
    events: int = 0
    funnel: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FUNNEL, 0))
    verdicts: Counter[str] = field(default_factory=Counter)
    status: Counter[str] = field(default_factory=Counter)
    paid_fen_by_programme: Counter[str] = field(default_factory=Counter)
    paid_total_fen: int = 0
    upstream_messages: int = 0
    read_model: dict[str, int] = field(default_factory=dict)
    case_ids: list[UUID] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The report as plain JSON data."""
        return {
            "stories": {name: str(case_id) for name, case_id in self.stories.items()},
            "households": self.households,
            "events": self.events,
            "funnel": self.funnel,
            "verdicts": dict(self.verdicts),
            "status": dict(self.status),
            "paid_fen_by_programme": dict(self.paid_fen_by_programme),
            "paid_total_fen": self.paid_total_fen,
            "upstream_messages": self.upstream_messages,
            "read_model": self.read_model,
        }


def run_demo(
    app: CaseWork,
    households: int,
    *,
    seed: int = 2023,
    progress: Callable[[int], None] = lambda _: None,
    upstream: Upstream | None = None,
    workers: int = 8,
) -> DemoReport:
    """Record the stories and the synthetic households; tally what the event store now says.

    Households are told concurrently (each story is sequential): with an Upstream, most of
    a story's time is spent waiting for the intake, which other stories use meanwhile.
    """
    run = uuid4().hex[:6]  # household ids unique per run: a second demo finds no open cases
    start = app.recorder.max_notification_id() or 0
    stories = {name: tell(app, run, upstream) for name, tell in STORIES.items()}
    progress(len(stories))

    def household(number: int) -> UUID:
        # Each household draws from its own generator: the same seed tells the same stories
        # whatever the threads' interleaving.
        case_id = synthetic_household(
            app, random.Random(seed * 1_000_003 + number), run, number, upstream
        )
        progress(1)
        return case_id

    with ThreadPoolExecutor(max_workers=workers) as pool:
        case_ids = [*stories.values(), *pool.map(household, range(households))]
    report = DemoReport(stories=stories, households=households, case_ids=case_ids)
    report.upstream_messages = upstream.published if upstream else 0
    report.events = (app.recorder.max_notification_id() or 0) - start
    for case_id in case_ids:
        _tally(report, app, case_id)
    return report


def _tally(report: DemoReport, app: CaseWork, case_id: UUID) -> None:
    case = app.get_case(case_id)
    report.status[case.status] += 1
    report.funnel["discovered"] += 1
    report.funnel["verification_assigned"] += case.assignee is not None
    report.funnel["verified"] += case.verdict is not None
    report.funnel["enrolled"] += bool(case.enrolments)
    report.funnel["paid"] += bool(case.payments)
    if case.verdict:
        report.verdicts[case.verdict] += 1
    for key, amount in case.payments.items():
        report.paid_fen_by_programme[key.split(":")[0]] += amount
    for grant in case.emergency_grants.values():
        report.paid_fen_by_programme["temporary_relief (emergency)"] += grant["amount_fen"]
    report.paid_total_fen += case.paid_total_fen
