"""The intake's batches: many messages in one save, each as if it came alone."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import orjson
import pytest
from eventsourcing.persistence import OperationalError

from consumers.contracts import CloudEvent, parse_upstream
from consumers.intake import apply_batch, apply_upstream
from consumers.translate import NoOpenCaseError
from domain.application import CaseWork
from domain.case import Case
from domain.errors import CaseWorkError, NotEnrolledError
from jiuzhu.bootstrap import casework
from tests.conftest import DATABASE_URL
from tests.stories import by, opened
from tests.test_intake import VISIT

pytestmark = pytest.mark.postgres

SOURCE = "/shaanxi/upstream"


def message(kind: str, household: str, message_id: str = "", **data: Any) -> CloudEvent:
    return parse_upstream(
        orjson.dumps(
            {
                "specversion": "1.0",
                "id": message_id or uuid4().hex,
                "source": SOURCE,
                "type": kind,
                "time": "2023-06-05T09:30:00+08:00",
                "correlationid": "batch-test",
                "data": {"household_id": household, **data},
            }
        )
    )


def alert(household: str, message_id: str = "") -> CloudEvent:
    data = {"region": "610523", "signals": ["medical spending jumped"], "household_size": 1}
    return message("monitoring.alert", household, message_id, **data)


def visit(household: str, message_id: str = "") -> CloudEvent:
    return message("verification.reported", household, message_id, **VISIT)


def unenrolled_payment(household: str) -> CloudEvent:
    settled: dict[str, Any] = {
        "programme": "rural_dibao",
        "amount_fen": 50000,
        "payment_ref": "PAY-1",
    }
    return message("payment.settled", household, outcome="paid", period="2023-06", **settled)


def counting_saves(app: CaseWork) -> list[int]:
    """Count the app's save() calls (events per call) from now on."""
    calls: list[int] = []
    save = app.save

    def counted(*objs: Any, **kwargs: Any) -> Any:
        recordings = save(*objs, **kwargs)
        calls.append(len(recordings))
        return recordings

    app.save = counted  # type: ignore[method-assign]
    return calls


def kinds(app: CaseWork, household: str) -> list[list[str]]:
    return [[type(e).__name__ for e in app.history(c)] for c in app.household_chain(household)]


def test_a_mixed_batch_applies_the_good_dead_letters_the_bad_and_counts_duplicates_once(
    app: CaseWork,
) -> None:
    first, second, third = (f"HH-{uuid4().hex[:8]}" for _ in range(3))
    earlier = alert(third, "alert-earlier")
    assert apply_upstream(app, earlier) == "applied"
    twice = alert(second, "alert-twice")
    batch = [
        alert(first, "alert-1"),
        unenrolled_payment(first),  # a rule violation, between two good messages
        twice,
        visit(first, "visit-1"),  # after its household's alert, in the same batch
        twice,  # a duplicate within the batch
        earlier,  # a duplicate of a message stored before
        visit("HH-nobody"),  # no open case
        message(
            "civil.death_registered", "HH-none", registration_ref="DR-1", date_of_death="2023-07-01"
        ),
    ]
    saves = counting_saves(app)
    outcomes = apply_batch(app, batch)
    assert outcomes[0] == outcomes[2] == outcomes[3] == "applied"
    assert isinstance(outcomes[1], NotEnrolledError)
    assert outcomes[4] == outcomes[5] == "duplicate"
    assert isinstance(outcomes[6], NoOpenCaseError)
    assert outcomes[7] == "no_effect"
    assert saves == [1 + 3 + 1 + 1 + 1 + 1 + 2 + 1]  # ONE save: events and their receipts
    assert kinds(app, first) == [["Discovered", "ConsentGiven", "Verified"]]
    assert kinds(app, second) == [["Discovered"]]
    assert kinds(app, third) == [["Discovered"]]
    assert {m.message_key for m in batch if app.has_received(m.message_key)} == {
        m.message_key for m in (batch[0], twice, batch[3], earlier)
    }
    [case_id] = app.household_chain(first)
    consent, verified = app.history(case_id)[1:]
    assert consent.causation_id == verified.causation_id == f"upstream:{SOURCE}/visit-1"
    assert verified.correlation_id == "batch-test"
    assert verified.actor == SOURCE


def test_messages_for_one_household_take_effect_in_arrival_order(app: CaseWork) -> None:
    household = f"HH-{uuid4().hex[:8]}"
    early_visit, then_alert = visit(household), alert(household)
    outcomes = apply_batch(app, [early_visit, then_alert, alert(household)])
    assert isinstance(outcomes[0], NoOpenCaseError)  # the visit came before any case
    assert outcomes[1:] == ["applied", "applied"]
    assert kinds(app, household) == [["Discovered", "SignalAttached"]]


def test_a_failed_message_leaves_no_trace_in_the_batch(app: CaseWork) -> None:
    case_id = opened(app)
    with app.batch() as unit:
        app.attach_signal({"case_id": case_id, "signal": "kept", "by": by()})

        def refused_after_a_step() -> None:
            with unit.savepoint():
                app.attach_signal({"case_id": case_id, "signal": "undone", "by": by()})
                raise CaseWorkError("refused after a step")

        with pytest.raises(CaseWorkError):
            refused_after_a_step()
        assert app.get_case(case_id).signals[-1] == "kept"
        assert unit.size == 1
    assert [type(e).__name__ for e in app.history(case_id)] == ["Discovered", "SignalAttached"]
    assert app.get_case(case_id).signals[-1] == "kept"
    assert [r.notification.id for r in unit.recordings] == [app.recorder.max_notification_id()]


def test_a_batch_that_cannot_be_saved_runs_one_message_at_a_time(
    app: CaseWork, pg_schema: str
) -> None:
    household = f"HH-{uuid4().hex[:8]}"
    apply_upstream(app, alert(household))
    batch = [alert(household), visit(household, "visit-raced"), alert(household)]
    other = casework(DATABASE_URL, schema=pg_schema)
    raced = False
    attach = app.attach_signal

    def racing_attach(command: Any) -> int:
        # Another intake (its own thread) stores the batch's second message meanwhile.
        nonlocal raced
        if not raced:
            raced = True
            outcome: list[str] = []
            racer = threading.Thread(target=lambda: outcome.append(apply_upstream(other, batch[1])))
            racer.start()
            racer.join(30)
            assert outcome == ["applied"]
        return attach(command)

    app.attach_signal = racing_attach  # type: ignore[method-assign]
    saves = counting_saves(app)
    try:
        outcomes = apply_batch(app, batch)
    finally:
        other.close()
    assert outcomes == ["applied", "duplicate", "applied"]
    assert len(saves) == 2  # the batch's save failed (nothing stored): one per message then
    [history] = kinds(app, household)
    assert history == ["Discovered", "ConsentGiven", "Verified", "SignalAttached", "SignalAttached"]


def test_a_database_fault_leaves_the_batch_for_a_retry(app: CaseWork) -> None:
    households = [f"HH-{uuid4().hex[:8]}" for _ in range(3)]
    save = app.save
    faults = 2  # the batch's save, then the first lone message's

    def failing(*objs: Any, **kwargs: Any) -> Any:
        nonlocal faults
        if faults:
            faults -= 1
            raise OperationalError("connection refused: the database is down")
        return save(*objs, **kwargs)

    app.save = failing  # type: ignore[method-assign]
    outcomes = apply_batch(app, [alert(h) for h in households])
    assert all(isinstance(o, OperationalError) for o in outcomes)  # all retried, in order
    assert all(not app.household_chain(h) for h in households)
    assert apply_batch(app, [alert(h) for h in households]) == ["applied"] * 3


def test_a_lone_message_takes_the_path_it_always_took(app: CaseWork) -> None:
    household = f"HH-{uuid4().hex[:8]}"
    one: Callable[[CloudEvent], list[Any]] = lambda event: apply_batch(app, [event])  # noqa: E731
    assert one(alert(household, "alone")) == ["applied"]
    assert one(alert(household, "alone")) == ["duplicate"]
    assert [type(e) for e in app.history(app.household_chain(household)[0])] == [Case.Discovered]


def test_a_batch_reads_its_households_and_cases_in_bulk_as_the_store_has_them(
    app: CaseWork,
) -> None:
    from consumers.preload import preload
    from domain.household import Household

    known = f"HH-{uuid4().hex[:8]}"
    case_id = opened(app, household=known)
    unknown = f"HH-{uuid4().hex[:8]}"
    with app.batch() as unit:
        preload(app, unit, [alert(known), alert(unknown)])
        reads = counting_reads(app)
        household = unit.get(Household.id_for(known))
        case = unit.get(case_id)
        assert app.open_case_of(unknown) is None
        assert reads == [], "what the batch names was read in bulk, absent ones included"
        assert household == app.repository.get(Household.id_for(known))
        assert case == app.repository.get(case_id)


def counting_reads(app: CaseWork) -> list[object]:
    """Record every read the repository makes from now on."""
    reads: list[object] = []
    get = app.repository.get

    def counted(aggregate_id: object, **kwargs: Any) -> Any:
        reads.append(aggregate_id)
        return get(aggregate_id, **kwargs)  # type: ignore[arg-type]

    app.repository.get = counted  # type: ignore[method-assign]
    return reads
