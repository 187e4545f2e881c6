"""The demo: the seed's stories on the real event store, and on the embedded default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from domain.application import CaseWork
from jiuzhu.demo import run_demo

JIUZHU = str(Path(sys.executable).with_name("jiuzhu"))


@pytest.mark.postgres
def test_demo_stories_and_households_reach_the_event_store(app: CaseWork) -> None:
    report = run_demo(app, households=40, seed=7)
    dali = app.get_case(report.stories["dali_county"])
    assert dali.region == "610523"
    # The 4,000 yuan grant's enrolment ended with its one payment; dibao goes on.
    assert sorted(dali.active_programmes) == ["rural_dibao"]
    assert dali.enrolments["temporary_relief"]["ended_on"] is not None
    assert dali.payments["temporary_relief:one-off"] == 400000  # 4,000 yuan
    yichuan = app.get_case(report.stories["yichuan_county"])
    assert yichuan.enrolments["rural_dibao"]["category"] == "classified provision"
    assert yichuan.payments["temporary_relief:one-off"] == 300000
    assert yichuan.referrals[next(iter(yichuan.referrals))]["organisation"] == "Red Cross"
    lianhu = app.get_case(report.stories["lianhu_district"])
    assert lianhu.services_delivered == 5
    funnel = list(report.funnel.values())
    assert funnel == sorted(funnel, reverse=True), "each stage of the funnel narrows"
    assert report.funnel["discovered"] == 43
    assert report.events == app.recorder.max_notification_id()


@pytest.mark.slow
def test_demo_runs_through_the_broker_on_the_embedded_default_and_stops_it(
    server_tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JIUZHU_")}
    env["JIUZHU_DATA_DIR"] = str(server_tmp_path / "data")
    done = subprocess.run(
        [JIUZHU, "demo", "--households", "5", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report["stories"]) == {"dali_county", "lianhu_district", "yichuan_county"}
    assert report["funnel"]["discovered"] == 8
    # The alerts, applications, visits and payments went through the broker, and the
    # events came back through the relay and projector into the read model.
    assert report["upstream_messages"] >= 8
    assert report["read_model"] == {
        "cases": 8,
        "enrolled": report["funnel"]["enrolled"],
        "paid_total_fen": report["paid_total_fen"],
    }
    pgdata = server_tmp_path / "data" / "postgres"
    assert pgdata.is_dir()
    assert not (pgdata / "postmaster.pid").exists(), "the embedded PostgreSQL was stopped"
