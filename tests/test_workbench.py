"""The workbench's pages: sign-in, the steps the rules allow, refusals in the rule's words."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from uuid import UUID

import pytest

from api.web.session import SESSION_COOKIE
from domain.application import CaseWork
from jiuzhu.bootstrap import casework
from jiuzhu.settings import Settings
from tests.conftest import DATABASE_URL
from tests.stories import enrolled, opened, verified
from tests.web_support import feed_read_models, signed_in, workbench

pytestmark = pytest.mark.postgres


def test_sign_in_lists_the_demo_staff_and_sets_an_httponly_session(
    app: CaseWork, tmp_path: Path
) -> None:
    with workbench(app, tmp_path) as client:
        assert client.get("/web/inbox").headers["location"].startswith("/web/login")
        page = client.get("/web/login").text
        for actor in ("wang.fang", "zhao.min", "chen.jing", "liu.yang"):
            assert actor in page
        assert "经办人员" in page
        assert "审批人员" in page
        response = client.post("/web/login", data={"actor": "wang.fang"})
        cookie = response.headers["set-cookie"]
        assert SESSION_COOKIE in cookie
        assert "HttpOnly" in cookie
        assert "samesite=lax" in cookie.lower()
        assert client.get("/web/inbox").status_code == 200
        assert client.post("/web/login", data={"actor": "mallory"}).status_code == 400


def test_a_broken_session_cookie_sends_back_to_sign_in_with_the_reason(
    app: CaseWork, tmp_path: Path
) -> None:
    with workbench(app, tmp_path) as client:
        client.cookies.set(SESSION_COOKIE, "not-a-token")
        response = client.get("/web/dashboard")
        assert response.status_code == 303
        assert "not%20valid" in response.headers["location"]


def test_caseworker_forms_run_the_commands(app: CaseWork, tmp_path: Path) -> None:
    case_id = opened(app)
    with workbench(app, tmp_path) as client:
        signed_in(client, "wang.fang")
        page = client.get(f"/web/cases/{case_id}").text
        assert 'id="step-assign_verification"' in page
        assert 'id="step-enrol"' not in page  # not the caseworker's, nor allowed yet
        steps = [
            ("assign_verification", {"assignee": "wang.fang", "due_on": "2023-03-10"}),
            ("give_consent", {"given_by": "户主"}),
            ("verify", {"verdict": "needs_support", "household_size": "3",
                        "monthly_income_fen": "1200.50"}),
        ]  # fmt: skip
        for command, fields in steps:
            response = client.post(
                f"/web/cases/{case_id}/steps/{command}",
                data={**fields, "reason": "入户核查", "occurred_on": "2023-03-02"},
            )
            assert response.status_code == 303, response.text
        case = app.get_case(case_id)
        assert case.consent
        assert case.verdict == "needs_support"
        assert case.monthly_income_fen == 120050
        last = app.history(case_id)[-1]
        assert (last.actor, last.role, last.reason) == ("wang.fang", "caseworker", "入户核查")
        assert last.occurred_at.date() == date(2023, 3, 2)
        page = client.get(f"/web/cases/{case_id}?done=verify").text
        assert "已记录" in page
        assert "wang.fang" in page
        assert "入户核查" in page


def test_a_refused_step_shows_the_rules_words_and_appends_nothing(
    app: CaseWork, tmp_path: Path
) -> None:
    case_id = opened(app)
    before = len(app.history(case_id))
    with workbench(app, tmp_path) as client:
        signed_in(client, "wang.fang")
        response = client.post(
            f"/web/cases/{case_id}/steps/verify",
            data={"verdict": "needs_support", "household_size": "3",
                  "monthly_income_fen": "0", "reason": "visit"},
        )  # fmt: skip
        assert response.status_code == 409
        assert "verification needs the household&#39;s recorded consent" in response.text
        assert "rule consent-required" in response.text
        bad = client.post(
            f"/web/cases/{case_id}/steps/grant_emergency_relief",
            data={"amount_fen": "12.345", "reason": "fire"},
        )
        assert bad.status_code == 422
        assert "amount_fen" in bad.text
        for amount in ("Infinity", "NaN", "十元", "1e999999"):
            odd = client.post(
                f"/web/cases/{case_id}/steps/grant_emergency_relief",
                data={"amount_fen": amount, "reason": "fire"},
            )
            assert odd.status_code == 422, amount
        unknown = client.post(
            f"/web/cases/{case_id}/steps/attach_signal",
            data={"signal": "x", "reason": "r", "mayor": "1", "occurred_on": "2023-13-45"},
        )
        assert unknown.status_code == 422
        assert "mayor" in unknown.text
        analyst_only = client.post(f"/web/cases/{case_id}/steps/close_case", data={"reason": "x"})
        assert analyst_only.status_code == 403
        assert "may not close case" in analyst_only.text
    assert len(app.history(case_id)) == before


def test_approver_is_offered_enrolment_once_the_rules_allow_it(
    app: CaseWork, tmp_path: Path
) -> None:
    case_id = verified(app)
    with workbench(app, tmp_path) as client:
        signed_in(client, "zhao.min")
        page = client.get(f"/web/cases/{case_id}").text
        # Dibao waits for its public notice; temporary relief does not.
        enrol = page[page.index('id="step-enrol"') :].split("</details>")[0]
        assert '<option value="temporary_relief"' in enrol
        assert '<option value="rural_dibao"' not in enrol
        response = client.post(
            f"/web/cases/{case_id}/steps/enrol",
            data={"programme": "temporary_relief", "amount_fen": "3000", "effective_from":
                  "2023-06-01", "reason": "研判小组决定"},
        )  # fmt: skip
        assert response.status_code == 303
    assert app.get_case(case_id).active_programmes == ["temporary_relief"]


def test_personal_data_only_for_roles_that_may_see_it(app: CaseWork, tmp_path: Path) -> None:
    case_id = opened(app)
    with workbench(app, tmp_path) as client:
        signed_in(client, "wang.fang")
        assert "610523198001011234" in client.get(f"/web/cases/{case_id}").text
        signed_in(client, "liu.yang")
        page = client.get(f"/web/cases/{case_id}").text
        assert "610523198001011234" not in page
        assert "王某" not in page
        assert 'id="personal-hidden"' in page
        assert client.get("/web/audit").status_code == 403


def test_inbox_approvals_and_dashboard_read_the_read_models(
    app: CaseWork, pg_schema: str, tmp_path: Path
) -> None:
    overdue = opened(app, household="HH-OVERDUE")
    app.assign_verification(
        {"case_id": overdue, "assignee": "wang.fang", "due_on": date(2023, 3, 10),
         "by": {"actor": "wang.fang", "role": "caseworker", "reason": "visit",
                "occurred_at": "2023-03-01T09:00:00+08:00"}},
    )  # fmt: skip
    later = opened(app, household="HH-LATER")
    app.assign_verification(
        {"case_id": later, "assignee": "wang.fang", "due_on": date(2099, 1, 1),
         "by": {"actor": "wang.fang", "role": "caseworker", "reason": "visit",
                "occurred_at": "2023-03-01T09:00:00+08:00"}},
    )  # fmt: skip
    assessed = verified(app, household="HH-ASSESSED")
    app.assess(
        {"case_id": assessed, "measures": [{"programme": "temporary_relief", "amount_fen": 300000}],
         "by": {"actor": "zhao.min", "role": "approver", "reason": "panel",
                "occurred_at": "2023-03-05T09:00:00+08:00"}},
    )  # fmt: skip
    app.publish_notice(
        {"case_id": assessed, "starts_on": date(2023, 3, 6),
         "by": {"actor": "wang.fang", "role": "caseworker", "reason": "公示",
                "occurred_at": "2023-03-06T09:00:00+08:00"}},
    )  # fmt: skip
    enrolled(app)
    with workbench(app, tmp_path) as client:
        signed_in(client, "wang.fang")
        assert "统计数据尚未生成" in client.get("/web/inbox").text
        feed_read_models(app, pg_schema)
        inbox = client.get("/web/inbox").text
        assert inbox.index("HH-OVERDUE") < inbox.index("HH-LATER")
        visits = inbox[inbox.index('id="visits"') :].split("</section>")[0]
        assert visits.count("已逾期") == 1
        assert "待复核" in inbox  # the enrolled case's review fell due in 2023
        notices = inbox[inbox.index('id="notices"') :].split("</section>")[0]
        assert "HH-ASSESSED" in notices
        assert "公示期满" in notices
        signed_in(client, "zhao.min")
        queue = client.get("/web/approvals").text
        assert "HH-ASSESSED" in queue
        assert "须由其他审批人员审批纳入" in queue
        board = client.get("/web/dashboard").text
        assert 'href="/web/dashboard?region=61"' in board
        county = client.get("/web/dashboard?region=610523").text
        assert 'data-total="enrolled">1<' in county
        assert client.get("/web/dashboard?region=6x").status_code == 400


def test_search_by_household_and_case_id(app: CaseWork, tmp_path: Path) -> None:
    case_id = opened(app, household="HH-610523-0042")
    with workbench(app, tmp_path) as client:
        signed_in(client, "wang.fang")
        page = client.get("/web/search", params={"q": "HH-610523-0042"}).text
        assert f"/web/cases/{case_id}" in page
        assert str(case_id) in client.get("/web/search", params={"q": str(case_id)}).text
        assert "未找到" in client.get("/web/search", params={"q": "HH-NOPE"}).text
        assert UUID(str(case_id))


def test_english_switch(app: CaseWork, tmp_path: Path) -> None:
    with workbench(app, tmp_path) as client:
        signed_in(client, "wang.fang")
        response = client.get("/web/lang/en", params={"back": "/web/search"})
        assert response.headers["location"] == "/web/search"
        page = client.get("/web/search").text
        assert "Household id or id-card number" in page
        assert 'lang="en"' in page
        assert (
            client.get("/web/lang/en", params={"back": "https://evil"}).headers["location"]
            == "/web/inbox"
        )


def test_static_vendor_files_are_served(app: CaseWork, tmp_path: Path) -> None:
    with workbench(app, tmp_path) as client:
        htmx = client.get("/static/vendor/htmx.min.js")
        assert htmx.status_code == 200
        assert htmx.headers["server-timing"].startswith("app;dur=")
        assert "server-timing" not in client.get("/health").headers  # the API's own answers
        assert client.get("/").headers["location"] == "/web/"
        assert b"echarts" in client.get("/static/vendor/echarts.min.js").content[:2000]


def test_a_double_submit_takes_effect_once_and_a_stale_form_is_refused(
    app: CaseWork, tmp_path: Path
) -> None:
    case_id = opened(app)
    version = app.get_case(case_id).version
    form = {"signal": "电费骤增", "reason": "村委会反映", "idempotency_key": "k1",
            "if_match": str(version)}  # fmt: skip
    with workbench(app, tmp_path) as client:
        signed_in(client, "wang.fang")
        for _ in range(2):
            response = client.post(f"/web/cases/{case_id}/steps/attach_signal", data=form)
            assert response.status_code == 303
        assert app.get_case(case_id).signals.count("电费骤增") == 1
        stale = client.post(
            f"/web/cases/{case_id}/steps/attach_signal",
            data={**form, "idempotency_key": "k2", "signal": "另一信号"},
        )
        assert stale.status_code == 412
        assert f"not {version} (If-Match)" in stale.text


def test_search_by_id_card_goes_through_the_blind_index(app: CaseWork, tmp_path: Path) -> None:
    case_id = opened(app, household="HH-IDCARD")
    with workbench(app, tmp_path) as client:
        signed_in(client, "wang.fang")
        page = client.get("/web/search", params={"q": "610523198001011234"}).text
        assert f"/web/cases/{case_id}" in page
        signed_in(client, "liu.yang")
        refused = client.get("/web/search", params={"q": "610523198001011234"})
        assert refused.status_code == 403


def test_auditor_signs_a_checkpoint_verifies_and_exports(pg_schema: str, tmp_path: Path) -> None:
    # The store signs with the key the workbench trusts (any other key is a finding).
    app = casework(DATABASE_URL, schema=pg_schema, settings=Settings(data_dir=tmp_path))
    try:
        _auditor_signs_a_checkpoint_verifies_and_exports(app, tmp_path)
    finally:
        app.close()


def _auditor_signs_a_checkpoint_verifies_and_exports(app: CaseWork, tmp_path: Path) -> None:
    case_id = enrolled(app)
    with workbench(app, tmp_path) as client:
        signed_in(client, "chen.jing")
        assert client.post("/web/audit/checkpoint").status_code == 303
        assert client.post("/web/audit/verify").status_code == 303
        page = client.get("/web/audit").text
        assert "完整，未被篡改" in page
        checked = re.search(r"(\d+) 检查点", page)
        assert checked is not None
        assert int(checked.group(1)) >= 1  # ours, and any the store signed by itself
        export = client.post("/web/audit/export", data={"case_id": str(case_id)})
        lines = [json.loads(line) for line in export.text.splitlines()]
        assert lines[0]["kind"] == "header"
        assert lines[-1]["kind"] == "digest"
        assert lines[-1]["events"] == len(app.history(case_id))
        assert "signature" in lines[-1]
        signed_in(client, "wang.fang")
        assert client.post("/web/audit/checkpoint").status_code == 403


def test_the_approver_who_assessed_is_not_offered_the_enrolment(
    app: CaseWork, tmp_path: Path
) -> None:
    case_id = verified(app)
    app.assess(
        {"case_id": case_id, "measures": [{"programme": "temporary_relief", "amount_fen": 300000}],
         "by": {"actor": "zhao.min", "role": "approver", "reason": "panel",
                "occurred_at": "2023-03-05T09:00:00+08:00"}},
    )  # fmt: skip
    with workbench(app, tmp_path) as client:
        signed_in(client, "zhao.min")
        page = client.get(f"/web/cases/{case_id}").text
        assert 'id="step-enrol"' not in page  # four eyes: the domain's rule, asked on a copy
        assert 'id="step-grant_emergency_relief"' not in page


def test_no_form_however_odd_yields_a_500(app: CaseWork, tmp_path: Path) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from api.web.pages import _STEP_COMMANDS

    case_id = verified(app)
    names = st.sampled_from(
        ["amount_fen", "programme", "period", "due_on", "household_size", "accepted",
         "verdict", "referral_id", "grant_id", "occurred_on", "reason", "if_match",
         "idempotency_key", "effective_from", "monthly_income_fen", "signal", "by"]
    )  # fmt: skip
    values = st.one_of(
        st.text(max_size=30),
        st.sampled_from(["", "0", "-1", "1e999999", "NaN", "2023-02-30", "rural_dibao", "on"]),
    )
    with workbench(app, tmp_path) as client:
        signed_in(client, "zhao.min")

        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.sampled_from(sorted(_STEP_COMMANDS)), st.dictionaries(names, values, max_size=6))
        def odd_form(command: str, form: dict[str, str]) -> None:
            response = client.post(f"/web/cases/{case_id}/steps/{command}", data=form)
            assert response.status_code in (303, 403, 404, 409, 412, 422), (command, form)

        odd_form()
