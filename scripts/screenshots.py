"""Screenshots of the workbench's main pages, on the demo's households (scripts/screenshots)."""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg

# Run as a file (scripts/screenshots): the project root is where the packages are.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.app import create_app
from api.server import running_in_thread
from jiuzhu.bootstrap import casework
from jiuzhu.demo import run_demo
from jiuzhu.settings import Settings
from projections.regions import CHINA_TIME
from tests.browser_support import browser_page, chromium_missing
from tests.web_support import feed_read_models

DATABASE_URL = os.environ.get(
    "JIUZHU_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def by(actor: str, role: str, day: date, reason: str) -> dict[str, Any]:
    """Provenance of a step on a day (noon, China time)."""
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=CHINA_TIME)
    return {"actor": actor, "role": role, "reason": reason, "occurred_at": noon}


def workbench_cases(app: Any) -> dict[str, Any]:
    """A few households waiting on the demo's staff: visits for wang.fang, an approval."""
    today = datetime.now(CHINA_TIME).date()
    ids: dict[str, Any] = {}
    for number, due in enumerate((today - timedelta(days=4), today + timedelta(days=3))):
        case_id = uuid4()
        app.open_case({
            "case_id": case_id, "household_id": f"HH-610523-WB{number}", "region": "610523",
            "channel": "monitoring_alert", "signals": ["医疗支出骤增"], "household_size": 3,
            "personal": {"name": f"李某{number}", "id_card": f"61052319800101{7000 + number}"},
            "by": by("low-income-monitoring-platform", "upstream_system", today, "监测预警"),
        })  # fmt: skip
        visit = by("wang.fang", "caseworker", today, "派员核查")
        app.assign_verification(
            {"case_id": case_id, "assignee": "wang.fang", "due_on": due, "by": visit}
        )
        ids[f"visit{number}"] = case_id
    case_id = uuid4()
    app.open_case({
        "case_id": case_id, "household_id": "HH-610523-WB9", "region": "610523",
        "channel": "application_online", "signals": ["尿毒症透析"], "household_size": 4,
        "personal": {"name": "张某某", "id_card": "610523197802027777", "phone": "13900000000",
                     "address": "大荔县安仁镇某村3组"},
        "by": by("e-jiuzhu", "upstream_system", today - timedelta(days=12), "网上申请"),
    })  # fmt: skip
    day = today - timedelta(days=10)
    for command, fields, actor, role, reason in (
        ("assign_verification", {"assignee": "wang.fang", "due_on": day + timedelta(days=5)},
         "wang.fang", "caseworker", "派员入户核查"),
        ("give_consent", {"given_by": "户主"}, "wang.fang", "caseworker", "签署授权书"),
        ("verify", {"verdict": "needs_support", "household_size": 4,
                    "monthly_income_fen": 250000}, "wang.fang", "caseworker", "入户核查属实"),
        ("assess", {"measures": [{"programme": "rural_dibao", "amount_fen": 60000,
                                  "category": "changing"},
                                 {"programme": "temporary_relief", "amount_fen": 300000}]},
         "sun.li", "approver", "研判小组：分类施保并给予临时救助"),
        ("publish_notice", {"starts_on": day}, "wang.fang", "caseworker", "村务公开栏公示7天"),
        ("refer", {"referral_id": "RF-REDCROSS-1", "organisation": "红十字会",
                   "need": "大病人道救助"}, "wang.fang", "caseworker", "转介红十字会"),
    ):  # fmt: skip
        getattr(app, command)({"case_id": case_id, **fields, "by": by(actor, role, day, reason)})
    ids["approval"] = case_id
    return ids


def shoot(page: Any, name: str, url: str, *, full: bool = True) -> None:
    """Open a page and save its screenshot."""
    page.goto(url)
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=full)
    print(f"docs/screenshots/{name}.png")


def sign_in(page: Any, url: str, actor: str) -> None:
    """Sign in as a demo staff member."""
    page.goto(f"{url}/web/login")
    page.click(f"button[data-actor='{actor}']")
    page.wait_for_url("**/web/inbox")


def main() -> None:
    """Record a demo in a scratch schema, serve the app, and shoot each page."""
    if (missing := chromium_missing()) is not None:
        raise SystemExit(missing)
    OUT.mkdir(parents=True, exist_ok=True)
    schema = f"screens_{uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as data_dir:
        # A scratch schema with throwaway keys: generated ones are fine here.
        settings = Settings(data_dir=Path(data_dir), allow_generated_keys=True)
        app = casework(DATABASE_URL, schema=schema, settings=settings)
        try:
            report = run_demo(app, 300, seed=2023)
            ids = workbench_cases(app)
            feed_read_models(app, schema)
            server = create_app(settings, casework=app)
            with running_in_thread(server) as url, browser_page(height=860) as page:
                shoot(page, "sign-in", f"{url}/web/login", full=False)
                sign_in(page, url, "wang.fang")
                shoot(page, "inbox", f"{url}/web/inbox")
                shoot(page, "search", f"{url}/web/search?q=610523197802027777")
                shoot(page, "case", f"{url}/web/cases/{ids['approval']}")
                # A refused step: an amount on a declined referral breaks a rule.
                form = page.locator("#step-answer_referral")
                form.locator("summary").click()
                form.locator("[name=amount_fen]").fill("500")
                form.locator("[name=reason]").fill("红十字会回复")
                form.locator("button[type=submit]").click()
                page.locator("#refused").wait_for()
                page.screenshot(path=str(OUT / "case-refused.png"), full_page=False)
                print("docs/screenshots/case-refused.png")
                sign_in(page, url, "zhao.min")
                shoot(page, "approvals", f"{url}/web/approvals")
                shoot(page, "case-approver", f"{url}/web/cases/{ids['approval']}")
                sign_in(page, url, "liu.yang")
                shoot(page, "dashboard", f"{url}/web/dashboard")
                shoot(page, "dashboard-county", f"{url}/web/dashboard?region=610523")
                sign_in(page, url, "chen.jing")
                page.goto(f"{url}/web/audit")
                page.click("#checkpoints button")
                page.locator("#checkpoints td.num").first.wait_for()
                page.click("#verify button")
                page.locator("#verify-result").wait_for(timeout=120_000)
                shoot(page, "audit", f"{url}/web/audit")
                sign_in(page, url, "wang.fang")
                shoot(page, "case-en", f"{url}/web/cases/{ids['approval']}?lang=en", full=False)
            print(f"demo: {report.households} households, {report.events} events")
        finally:
            app.close()
            with psycopg.connect(DATABASE_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
