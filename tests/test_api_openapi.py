"""The OpenAPI document: checked in as generated, and the whole API fuzzed from it."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.openapi import document, document_text
from domain.application import CaseWork
from domain.roles import Role
from tests.api_support import api_client, bearer, settings_in
from tests.stories import opened

ROOT = Path(__file__).resolve().parents[1]
CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def test_the_checked_in_openapi_document_is_generated_from_the_code() -> None:
    checked_in = (ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert checked_in == document_text(), "run scripts/openapi and commit docs/openapi.json"


def test_every_command_is_an_operation_with_idempotency_and_if_match() -> None:
    from domain.commands import COMMANDS

    operations = {
        op["operationId"]: op for path in document()["paths"].values() for op in path.values()
    }
    assert set(COMMANDS) <= set(operations)
    for name in COMMANDS:
        headers = {p["name"] for p in operations[name]["parameters"] if p["in"] == "header"}
        assert headers == {"Idempotency-Key", "If-Match"}, name


@pytest.fixture
def base_url(app: CaseWork, tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Any]]:
    settings_ = settings_in(tmp_path)
    with api_client(settings_, app) as client:
        yield str(client.base_url), bearer(settings_, "fuzz-approver", Role.APPROVER), app


def fuzz(operation: Any, mode: str, url: str, auth: dict[str, str], aim: Any) -> list[str]:
    """A few generated requests to one operation; what went wrong with them."""
    failures: list[str] = []
    label = f"{operation.label} ({mode})"
    strategy = operation.as_strategy(
        generation_mode=schemathesis.GenerationMode(mode), path_parameters=aim
    )

    @given(case=strategy)
    @settings(
        max_examples=3,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        response = case.call(base_url=url, headers=auth, timeout=30)
        if response.status_code >= 500 and response.status_code != 503:
            failures.append(f"{label}: {response.status_code} {response.text[:200]}")
        if mode == "positive":
            try:
                # Not "positive data accepted": the rules refuse valid data (409, 412).
                case.validate_response(response, checks=CONFORMANCE)
            except Exception as error:  # a schema mismatch: collect them all
                failures.append(f"{label}: {str(error)[:400]}")

    with contextlib.suppress(Unsatisfiable):  # nothing to make invalid (no parameters)
        check()
    return failures


@pytest.mark.slow
@pytest.mark.postgres
def test_no_request_from_the_schema_yields_a_500_and_answers_match_it(
    base_url: tuple[str, dict[str, str], Any],
) -> None:
    """Every operation, valid and invalid inputs, a few examples each (20 s time box)."""
    url, auth, app = base_url
    case_id = opened(app, household="HH-FUZZ-1")
    # The checked-in document (the first test holds it to the code): no time spent building it.
    schema = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.json")
    # Reads first (cheap), then the commands.
    operations = sorted(
        (result.ok() for result in schema.get_all_operations()), key=lambda op: op.method != "get"
    )
    deadline = time.monotonic() + 20
    failures: list[str] = []
    for operation in operations:
        if time.monotonic() > deadline:  # a loaded machine: the rest waits for the next run
            break
        # Aimed at a case that exists, commands get past "not found" to the rules.
        aim = {"case_id": str(case_id)} if "{case_id}" in operation.path else None
        for mode in ("positive", "negative"):
            failures += fuzz(operation, mode, url, auth, aim)
    assert not failures, "\n".join(failures[:20])
