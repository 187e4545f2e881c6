"""Fuzzing the upstream contract against the real NATS intake (issue 14).

Hypothesis draws a stream of CloudEvents (valid ones about a few households, so that they
open, attach to and verify each other's cases) mixed with hostile ones (fields dropped or
swapped for any JSON, NUL characters, out-of-range times, huge collections, wrong
subjects, random bytes). The oracle: every message ends applied, without effect,
duplicate or dead-lettered; a message the contract refuses is dead-lettered with the
reason parse_upstream gives; one it accepts is never dead-lettered except by a workflow
rule; nothing fails unexpectedly; the intake keeps consuming.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.contracts import BadMessageError, parse_upstream
from domain.application import CaseWork
from tests.test_intake_brokers import NATS_URL, intake

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

TYPES = [
    "monitoring.alert",
    "application.submitted",
    "verification.reported",
    "payment.settled",
    "civil.death_registered",
]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
TEXT = st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t)


@st.composite
def valid_event(draw: st.DrawFn, households: list[str]) -> dict[str, Any]:
    household = draw(st.sampled_from(households))
    kind = draw(st.sampled_from(TYPES))
    data: dict[str, Any] = {"household_id": household}
    if kind == "monitoring.alert":
        data |= {
            "region": draw(st.sampled_from(["610523", "610526", "110101"])),
            "signals": draw(st.lists(TEXT, min_size=1, max_size=3)),
            "indicators": draw(st.dictionaries(TEXT, st.integers(-1000, 1000), max_size=3)),
            "household_size": draw(st.integers(1, 30)),
        }
    elif kind == "application.submitted":
        data |= {
            "region": "610523",
            "channel": draw(st.sampled_from(["hotline", "online", "one_window_hall"])),
            "programmes": ["rural_dibao"],
            "need": draw(TEXT),
        }
    elif kind == "verification.reported":
        data |= {
            "team": "anren-team",
            "consent": {"given": draw(st.booleans())},
            "verdict": draw(st.sampled_from(["needs_support", "risk_eliminated", "not_eligible"])),
            "household_size": draw(st.integers(1, 30)),
            "monthly_income_fen": draw(st.integers(0, 10**7)),
        }
    elif kind == "payment.settled":
        data |= {
            "outcome": draw(st.sampled_from(["paid", "failed"])),
            "programme": "rural_dibao",
            "period": "2023-06",
            "amount_fen": draw(st.integers(1, 10**6)),
            "payment_ref": draw(TEXT),
        }
    else:
        data |= {"registration_ref": draw(TEXT), "date_of_death": "2023-07-01"}
    return {
        "specversion": "1.0",
        "id": draw(st.text(min_size=1, max_size=12).filter(lambda t: "\x00" not in t)),
        "source": draw(st.sampled_from(["/a", "/a/coll", "/shaanxi/monitoring-platform"])),
        "type": kind,
        "time": draw(st.sampled_from(["2023-06-05T09:30:00+08:00", "2024-01-01T00:00:00Z"])),
        "data": data,
    }


@st.composite
def hostile(draw: st.DrawFn, event: dict[str, Any]) -> dict[str, Any]:
    """A valid event made wrong in one way."""
    event = orjson.loads(orjson.dumps(event))
    where = draw(st.sampled_from(["envelope", "data"]))
    target = event if where == "envelope" else event["data"]
    name = draw(st.sampled_from(sorted(target)))
    how = draw(st.sampled_from(["drop", "any", "nul", "time", "huge"]))
    if how == "drop":
        del target[name]
    elif how == "any":
        target[name] = draw(JSON)
    elif how == "nul":
        target[name] = f"{target[name]}\x00"
    elif how == "time":
        event["time"] = draw(
            st.sampled_from(
                ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+08:00", 1686000000, "1686000000"]
            )
        )
    else:
        target[name] = ["x" * 500] * draw(st.integers(100, 200))
    return event


@st.composite
def message(draw: st.DrawFn, households: list[str]) -> tuple[str, bytes]:
    """(type part of the subject, body)."""
    event = draw(valid_event(households))
    kind = event["type"]
    shape = draw(st.sampled_from(["valid"] * 6 + ["hostile"] * 3 + ["bytes", "subject"]))
    if shape == "hostile":
        event = draw(hostile(event))
    elif shape == "bytes":
        return kind, draw(st.binary(max_size=200))
    elif shape == "subject":
        kind = draw(st.sampled_from([f"foo.{kind}", *TYPES]))
    return kind, orjson.dumps(event)


def expected_refusal(prefix: str, kind: str, body: bytes) -> str | None:
    """The reason the contract gives for refusing a message, or None if it accepts it."""
    try:
        event = parse_upstream(body)
    except BadMessageError as error:
        return error.reason
    return None if kind == event.type else "type_mismatch"


async def run_stream(app: CaseWork, messages: list[tuple[str, bytes]]) -> None:
    async with intake(NATS_URL, app) as (upstream, stats):
        for kind, body in messages:
            await upstream.publish(body, kind)
        total = len(messages)
        await stats.wait_until(
            lambda s: s.applied + s.no_effect + s.duplicates + s.dead_lettered.total() == total,
            timeout=60,
        )
        letters = await upstream.dead_letters()
        prefix = upstream.prefix
    assert "unexpected_error" not in stats.dead_lettered
    refused = Counter(
        (body, reason)
        for kind, body in messages
        if (reason := expected_refusal(prefix, kind, body)) is not None
    )
    lettered = Counter((body, headers["x-deadletter-reason"]) for body, headers in letters)
    # Every refused message is dead-lettered with the contract's reason...
    assert refused - lettered == Counter()
    # ...and every other dead letter is a message the contract accepts, refused by a rule.
    assert {reason for _, reason in (lettered - refused)} <= {"rule_violation"}


def fuzz(examples: int, largest: int) -> Any:
    households = [f"HH-FUZZ-{n}" for n in range(6)]

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(messages=st.lists(message(households), min_size=1, max_size=largest))
    def check(app: CaseWork, messages: list[tuple[str, bytes]]) -> None:
        asyncio.run(run_stream(app, messages))

    return check


def test_fuzzed_upstream_messages_are_each_applied_or_dead_lettered_precisely(
    app: CaseWork,
) -> None:
    fuzz(examples=2, largest=50)(app)


@pytest.mark.soak
def test_fuzzed_upstream_messages_long(app: CaseWork) -> None:
    fuzz(examples=40, largest=400)(app)
