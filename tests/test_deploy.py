"""deploy/: Prometheus alert rules, its scrape config and the Grafana dashboard use metrics
the processes really export, and docker-compose mounts them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from consumers.lease import LeaseState
from domain.application import CaseWork
from jiuzhu.metrics import ProcessMetrics
from jiuzhu.serve import ServeSettings
from tests.conftest import DATABASE_URL
from tests.test_compose import services

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
# Metrics that exist outside the serve processes (Prometheus itself, the verify job).
ELSEWHERE = {"up", "jiuzhu_audit_verify_ok"}


def exported_names(app: CaseWork, pg_schema: str) -> set[str]:
    """Every metric family name a serve process with all three components exports."""
    figures: dict[str, dict[str, Any]] = {
        "intake": {"received": 2, "applied": 1, "no_effect": 0, "duplicates": 0, "retried": 0,
                   "dead_lettered": {"not_json": 1}},
        "relay": {"position": 1, "published": 1, "faults": 0, "windows": 1, "window_seconds": 0.1},
        "projector": {"position": 0, "applied": 0, "received": 0, "batches": 0,
                      "batch_seconds": 0.0, "dead_lettered": 0, "foreign": 0, "recovered": 0,
                      "halted": None, "failing": False},
    }  # fmt: skip
    metrics = ProcessMetrics(
        figures=lambda: figures,
        lease=LeaseState(roles=["intake", "projector", "relay"]),
        database_url=DATABASE_URL,
        schema=pg_schema,
    )
    text = metrics.render().decode()
    names = set(re.findall(r"^# TYPE (\w+) ", text, flags=re.MULTILINE))
    counters = set(re.findall(r"^# TYPE (\w+) counter", text, flags=re.MULTILINE))
    return names | {f"{name}_total" for name in counters}


def used_names(expression: str) -> set[str]:
    return set(re.findall(r"\b(jiuzhu_\w+|up)\b(?!\s*\()", expression))


@pytest.mark.postgres
def test_alerts_and_dashboard_use_metrics_the_processes_export(
    app: CaseWork, pg_schema: str
) -> None:
    exported = exported_names(app, pg_schema) | ELSEWHERE
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    # Lag, dead letters, a halted follower, a failed verify: the four at least.
    assert {"JiuzhuProjectorLagging", "JiuzhuUpstreamDeadLetters", "JiuzhuFollowerHalted",
            "JiuzhuAuditVerifyFailed", "JiuzhuNoActiveInstance"} <= alerts  # fmt: skip
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "jiuzhu.json").read_text())
    expressions += [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    for expression in expressions:
        unknown = used_names(expression) - exported
        assert not unknown, (expression, unknown)


def test_prometheus_scrapes_each_process_on_its_health_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    ports = {entry["names"][0]: entry["port"] for entry in job["dns_sd_configs"]}
    described = services()
    for name, port in ports.items():
        assert described[name]["environment"]["JIUZHU_HEALTH_PORT"] == str(port)
    assert ServeSettings.model_fields["health_port"].default in ports.values()


def test_compose_runs_two_of_each_process_and_prometheus_and_grafana_on_deploy_files() -> None:
    described = services()
    for name in ("intake", "relay", "projector"):
        assert described[name]["deploy"]["replicas"] == 2
    for name in ("prometheus", "grafana"):
        for volume in described[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), volume
