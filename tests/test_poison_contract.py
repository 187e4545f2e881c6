"""Single-message probes of the upstream contract (issue 14): each hostile message is refused
at the boundary with a reason naming what is wrong, or accepted only within stated limits."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from consumers.contracts import (
    MAX_BODY_BYTES,
    BadMessageError,
    MonitoringAlertEvent,
    message_key_of,
    parse_upstream,
)
from tests.test_contracts import envelope, refusal


def parsed(body: dict[str, Any]) -> MonitoringAlertEvent:
    event = parse_upstream(orjson.dumps(body))
    assert isinstance(event, MonitoringAlertEvent)
    return event


# -- finding 7: one message can silently swallow another ------------------------------------


def test_source_and_id_that_join_alike_have_different_keys() -> None:
    first = parsed({**envelope(), "source": "/a/coll", "id": "c1"})
    second = parsed({**envelope(), "source": "/a", "id": "coll/c1"})
    assert first.message_key != second.message_key


def test_the_message_key_of_a_plain_id_is_unchanged() -> None:
    # Receipts stored before the fix keep matching their redeliveries.
    assert message_key_of("/shaanxi/monitoring-platform", "alert-42") == (
        "/shaanxi/monitoring-platform/alert-42"
    )


@pytest.mark.parametrize(
    ("source", "message_id"),
    [("/a", "b%2Fc"), ("/a/b", "c"), ("/a", "b/c"), ("/a%2F", "x"), ("/a", "%")],
)
def test_message_keys_split_back_into_source_and_id(source: str, message_id: str) -> None:
    key = message_key_of(source, message_id)
    head, _, tail = key.rpartition("/")
    assert head == source
    assert tail.replace("%2F", "/").replace("%25", "%") == message_id


# -- finding 8: validation gaps --------------------------------------------------------------


@pytest.mark.parametrize("region", ["６１０５２３", "٦١٠٥٢٣", "610523\n", " 610523", "61052"])
def test_regions_with_other_than_six_ascii_digits_are_refused(region: str) -> None:
    error = refusal(orjson.dumps(envelope(region=region)))
    assert error.reason == "invalid_schema"
    assert "data.region" in error.detail


@pytest.mark.parametrize("time", [1686000000, "1686000000", 1686000000.5, "2023-06-05", None])
def test_a_time_that_is_no_rfc3339_string_is_refused(time: Any) -> None:
    error = refusal(orjson.dumps({**envelope(), "time": time}))
    assert error.reason == "invalid_schema"
    assert "time" in error.detail


@pytest.mark.parametrize("field", ["household_id", "source", "id", "signals", "indicators"])
def test_a_nul_character_is_refused_naming_the_field(field: str) -> None:
    body = envelope()
    if field in ("source", "id"):
        body[field] = "a\x00b"
    elif field == "signals":
        body["data"]["signals"] = ["ok", "bad\x00"]
    elif field == "indicators":
        body["data"]["indicators"] = {"k\x00": 1}
    else:
        body["data"][field] = "HH-\x00"
    error = refusal(orjson.dumps(body))
    assert error.reason == "invalid_schema"
    assert field in error.detail
    assert "U+0000" in error.detail
    assert "\x00" not in error.detail


# -- finding 2: the accepted time range is decided at the boundary ------------------------------


@pytest.mark.parametrize(
    "time", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00+08:00", "2100-01-01T00:00:00Z"]
)
def test_a_time_outside_the_stated_range_is_refused(time: str) -> None:
    error = refusal(orjson.dumps({**envelope(), "time": time}))
    assert error.reason == "invalid_schema"
    assert "time" in error.detail
    assert "1949-10-01" in error.detail


def test_the_edges_of_the_time_range() -> None:
    assert parsed({**envelope(), "time": "1949-10-01T08:00:00+08:00"})
    assert parsed({**envelope(), "time": "2099-12-31T23:59:59.999999Z"})


# -- finding 3: sizes are bounded in the contract -------------------------------------------------


def test_sixty_thousand_indicators_are_refused() -> None:
    indicators = {f"indicator_{n}": n for n in range(60_000)}
    error = refusal(orjson.dumps(envelope(indicators=indicators)))
    assert error.reason == "invalid_schema"
    assert "body" in error.detail
    assert str(MAX_BODY_BYTES) in error.detail


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"indicators": {f"i{n}": n for n in range(101)}}, "data.indicators"),
        ({"signals": ["s"] * 51}, "data.signals"),
        ({"indicators": {"k" * 101: 1}}, "data.indicators"),
        ({"indicators": {"k": "v" * 501}}, "data.indicators"),
    ],
)
def test_collections_and_strings_over_their_bounds_are_refused(
    data: dict[str, Any], where: str
) -> None:
    error = refusal(orjson.dumps(envelope(**data)))
    assert error.reason == "invalid_schema"
    assert where in error.detail


def test_the_largest_accepted_alert_stays_far_below_a_broker_message() -> None:
    # The biggest alert the bounds allow, with all its text at the limits.
    data = {
        "signals": ["信" * 500] * 50,
        "indicators": {f"{n:0>100}": "指" * 500 for n in range(100)},
    }
    with pytest.raises(BadMessageError):  # over the body limit: refused whole
        parse_upstream(orjson.dumps(envelope(**data)))
    assert MAX_BODY_BYTES * 4 < 1024 * 1024  # its events (a few times the body) fit 1 MB
