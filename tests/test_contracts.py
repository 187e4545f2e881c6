"""The upstream contract: what parses, what is refused and why, and that it documents itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from consumers.contracts import (
    EVENT_TYPES,
    BadMessageError,
    MonitoringAlertEvent,
    PaymentSettledEvent,
    parse_upstream,
)


def envelope(kind: str = "monitoring.alert", **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": "alert-42",
        "source": "/shaanxi/monitoring-platform",
        "type": kind,
        "time": "2023-06-05T09:30:00+08:00",
        "data": {
            "household_id": "HH-610523-0001",
            "region": "610523",
            "signals": ["medical spending jumped"],
            **data,
        },
    }


def refusal(body: bytes) -> BadMessageError:
    with pytest.raises(BadMessageError) as caught:
        parse_upstream(body)
    return caught.value


def test_a_monitoring_alert_parses_with_its_identity() -> None:
    event = parse_upstream(orjson.dumps(envelope()))
    assert isinstance(event, MonitoringAlertEvent)
    assert event.message_key == "/shaanxi/monitoring-platform/alert-42"
    assert event.causation_id == "upstream:/shaanxi/monitoring-platform/alert-42"
    # Without a correlationid extension, the message starts its own conversation.
    assert event.correlation_id == event.message_key
    assert event.data.household_size == 1


def test_the_correlationid_extension_becomes_the_correlation() -> None:
    body = {**envelope(), "correlationid": "batch-2023-06", "traceparent": "00-abc-01"}
    event = parse_upstream(orjson.dumps(body))
    assert event.correlation_id == "batch-2023-06"


def test_a_body_that_is_not_json_is_refused_as_not_json() -> None:
    assert refusal(b"\xff{ not json").reason == "not_json"


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', orjson.dumps({"specversion": "1.0"})])
def test_json_that_is_no_cloudevent_is_refused_as_invalid_schema(body: bytes) -> None:
    assert refusal(body).reason == "invalid_schema"


def test_an_unknown_type_is_refused_naming_the_known_ones() -> None:
    error = refusal(orjson.dumps(envelope("tax.filed")))
    assert error.reason == "unknown_type"
    assert "monitoring.alert" in error.detail


def test_a_missing_field_is_refused_naming_it() -> None:
    body = envelope()
    del body["data"]["region"]
    error = refusal(orjson.dumps(body))
    assert error.reason == "invalid_schema"
    assert "data.region" in error.detail


def test_a_time_without_offset_is_refused() -> None:
    body = {**envelope(), "time": "2023-06-05T09:30:00"}
    assert refusal(orjson.dumps(body)).reason == "invalid_schema"


def test_money_in_floats_is_refused() -> None:
    body = envelope(
        "payment.settled",
        outcome="paid",
        programme="rural_dibao",
        period="2023-06",
        amount_fen=500.5,
        payment_ref="PAY-1",
    )
    del body["data"]["region"], body["data"]["signals"]
    assert refusal(orjson.dumps(body)).reason == "invalid_schema"
    body["data"]["amount_fen"] = 50000
    assert isinstance(parse_upstream(orjson.dumps(body)), PaymentSettledEvent)


def test_unknown_data_fields_are_refused() -> None:
    assert refusal(orjson.dumps(envelope(colour="red"))).reason == "invalid_schema"


def _fields(model: type[BaseModel]) -> list[tuple[str, str | None, type[Any] | None]]:
    return [(n, f.description, f.annotation) for n, f in model.model_fields.items()]


@pytest.mark.parametrize("kind", sorted(EVENT_TYPES))
def test_every_data_field_is_described_for_the_asyncapi_document(kind: str) -> None:
    data_model = EVENT_TYPES[kind].model_fields["data"].annotation
    assert isinstance(data_model, type)
    assert issubclass(data_model, BaseModel)
    undocumented = [name for name, description, _ in _fields(data_model) if not description]
    assert not undocumented, f"{kind}: {undocumented}"
    assert data_model.__doc__


def test_the_checked_in_asyncapi_document_is_generated_from_the_code() -> None:
    from consumers.asyncapi_app import app

    generated = app.schema.to_specification().to_yaml()
    checked_in = (Path(__file__).parents[1] / "docs" / "asyncapi.yaml").read_text("utf-8")
    assert checked_in == generated, "run scripts/asyncapi and commit docs/asyncapi.yaml"
