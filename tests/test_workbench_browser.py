"""A person at the workbench, in a real browser: from a household found to its enrolment.

Headless Chromium from Debian (/usr/bin/chromium) drives the real app served by uvicorn
on the test's PostgreSQL schema; the read models are fed from the log where the projector
would feed them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from api.app import create_app
from api.server import running_in_thread
from domain.application import CaseWork
from jiuzhu.settings import Settings
from tests.browser_support import browser_page, chromium_missing
from tests.stories import by
from tests.web_support import feed_read_models

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(chromium_missing() is not None, reason=chromium_missing() or ""),
]

HOUSEHOLD = "HH-610523-7001"


def _step(page: object, command: str, fields: dict[str, str], reason: str) -> None:
    """Open a step's form, fill it, submit it, and wait for the page to say it was recorded."""
    form = page.locator(f"#step-{command}")  # type: ignore[attr-defined]
    form.locator("summary").click()
    for name, value in fields.items():
        field = form.locator(f"[name={name}]")
        if field.evaluate("node => node.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)
    form.locator("[name=reason]").fill(reason)
    form.locator("button[type=submit]").click()
    page.locator(f"#done:has-text('{_RECORDED[command]}')").wait_for()  # type: ignore[attr-defined]


_RECORDED = {
    "assign_verification": "派发入户核查",
    "give_consent": "记录授权同意",
    "verify": "录入核查结果",
    "enrol": "审批纳入",
    "refer": "转介社会组织",
}


def test_caseworker_and_approver_take_a_household_to_enrolment(
    app: CaseWork, pg_schema: str, tmp_path: Path
) -> None:
    app.open_case(
        {
            "household_id": HOUSEHOLD,
            "region": "610523",
            "channel": "monitoring_alert",
            "signals": ["医疗支出骤增"],
            "household_size": 3,
            "personal": {"name": "王某某", "id_card": "610523198001017001"},
            "by": by("upstream_system", reason="监测预警"),
        }
    )
    feed_read_models(app, pg_schema)
    server = create_app(Settings(data_dir=tmp_path), casework=app)
    with running_in_thread(server) as url, browser_page() as page:
        # The caseworker signs in and finds the household by a member's id-card number.
        page.goto(f"{url}/web/login")
        page.click("button[data-actor='wang.fang']")
        page.wait_for_url("**/web/inbox")
        page.click("nav a[data-page='search']")
        page.fill("#q", "610523198001017001")
        page.press("#q", "Enter")
        page.click("a.case-link")
        page.wait_for_url("**/web/cases/*")
        case_url = page.url
        assert page.locator("#case-status").inner_text() == "已发现"

        _step(page, "assign_verification", {"due_on": "2023-03-10"}, "派员入户核查")
        assert page.locator("#case-status").inner_text() == "核查中"
        _step(page, "give_consent", {"given_by": "户主王某某"}, "签署授权书")
        assert page.locator("#consent").inner_text() == "是"
        _step(page, "verify", {"verdict": "needs_support", "monthly_income_fen": "1500"},
              "入户核查属实")  # fmt: skip
        assert page.locator("#verdict").inner_text() == "需要救助"
        # A refused step shows the rule's words (htmx swaps the 409 page in as well).
        _step(page, "refer", {"organisation": "红十字会", "need": "大病救助"}, "转介")
        form = page.locator("#step-answer_referral")
        form.locator("summary").click()
        form.locator("[name=amount_fen]").fill("500")
        form.locator("[name=reason]").fill("红十字会回复")
        form.locator("button[type=submit]").click()
        refusal = page.locator("#refused .rule-words").inner_text()
        assert "positive amount only when accepted" in refusal
        # A caseworker may not enrol: the form is not even offered.
        assert page.locator("#step-enrol").count() == 0

        # The approver signs in and enrols the household in temporary relief.
        page.click("button:has-text('退出')")
        page.wait_for_url("**/web/login**")
        page.click("button[data-actor='zhao.min']")
        page.wait_for_url("**/web/inbox")
        page.goto(case_url)
        _step(page, "enrol", {"programme": "temporary_relief", "amount_fen": "3000"},
              "研判小组决定给予临时救助")  # fmt: skip
        assert "临时救助" in page.locator("#enrolments").inner_text()
        timeline = page.locator("#timeline tbody tr")
        assert timeline.count() == 6
        assert "zhao.min" in timeline.nth(5).inner_text()

        # The projector moves the read models on; the dashboard shows the new figures.
        feed_read_models(app, pg_schema)
        page.click("nav a[data-page='dashboard']")
        for region in ("61", "6105", "610523"):  # province, city, county
            page.click(f"a.drill[data-region='{region}']")
        page.wait_for_url("**region=610523")
        assert page.locator("[data-total='enrolled']").inner_text() == "1"
        assert page.locator("[data-total='verified']").inner_text() == "1"
        page.locator("#chart-funnel svg").wait_for()  # ECharts drew the funnel
    case = app.get_case(app.household_chain(HOUSEHOLD)[0])
    assert case.active_programmes == ["temporary_relief"]
    assert case.enrolments["temporary_relief"]["amount_fen"] == 300000
