"""`jiuzhu demo` beside a running deployment: it uses the pipeline, never starts a second one."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from uuid import uuid4

import pytest

from jiuzhu.cli_demo import read_model_disagreement
from jiuzhu.demo import DemoReport
from tests.test_replicas import Replica, pipeline_env, the_active
from tests.test_serve import JIUZHU, remove

pytestmark = [pytest.mark.postgres, pytest.mark.nats]


@pytest.mark.slow
def test_demo_uses_the_running_pipeline_and_leaves_it_active(
    pg_schema: str, server_tmp_path: Path
) -> None:
    env, options = pipeline_env(pg_schema)
    env["JIUZHU_DATA_DIR"] = str(server_tmp_path / "data")
    deployment = Replica("all", env, server_tmp_path / "serve.log")
    deployment.popen = subprocess.Popen(
        [str(JIUZHU), "serve"],
        env=deployment.env,
        stdout=(server_tmp_path / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        the_active([deployment], timeout=120)
        done = subprocess.run(
            [str(JIUZHU), "demo", "--households", "3", "--json"],
            env={**env, "JIUZHU_HEALTH_PORT": "0"},
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        serve_log = (server_tmp_path / "serve.log").read_text()[-3000:]
        assert done.returncode == 0, done.stderr + serve_log
        report = json.loads(done.stdout)
        assert report["read_model"] == {
            "cases": 6,
            "enrolled": report["funnel"]["enrolled"],
            "paid_total_fen": report["paid_total_fen"],
        }
        assert deployment.state() == "active"  # no fight: the deployment never stepped down
        log = (server_tmp_path / "serve.log").read_text()
        assert "durable consumer (re)started" in log
        assert log.count("durable consumer (re)started") == 1, "someone else took it over"
    finally:
        deployment.popen.kill()
        deployment.popen.wait(10)
        asyncio.run(remove(options))


def test_a_read_model_that_disagrees_with_the_store_is_named() -> None:
    report = DemoReport(stories={}, households=2, case_ids=[uuid4(), uuid4(), uuid4()])
    report.funnel["enrolled"], report.paid_total_fen = 1, 500_00
    report.read_model = {"cases": 2, "enrolled": 1, "paid_total_fen": 500_00}
    assert read_model_disagreement(report) == "cases 2 (store: 3)"
    report.read_model["cases"] = 3
    assert read_model_disagreement(report) == ""
