"""docker-compose.yml stays in step with the code: its commands and settings exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from jiuzhu.cli_serve import Component
from jiuzhu.serve import ServeSettings
from jiuzhu.settings import Settings

COMPOSE = Path(__file__).parent.parent / "docker-compose.yml"


def services() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded["services"]


def test_compose_runs_postgres_nats_and_each_pipeline_process() -> None:
    described = services()
    assert {"postgres", "nats", "intake", "relay", "projector"} <= set(described)
    assert "-js" in described["nats"]["command"]  # JetStream, with file storage
    for name in ("intake", "relay", "projector"):
        command = described[name]["command"]
        assert command[0] == "serve"
        assert Component(command[1]).value == name


def test_every_setting_compose_passes_is_one_the_service_reads() -> None:
    known = {
        f"JIUZHU_{field.upper()}"
        for model in (Settings, ServeSettings)
        for field in model.model_fields
    }
    for name in ("intake", "relay", "projector"):
        environment = services()[name]["environment"]
        assert set(environment) <= known, set(environment) - known
        assert environment["JIUZHU_BROKER_URL"].startswith("nats://")
        assert environment["JIUZHU_DATABASE_URL"].startswith("postgresql://")
