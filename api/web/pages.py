"""The workbench's pages: inbox, case, search, approvals, dashboard, audit, and sign-in.

Server-rendered (Jinja2); htmx only spares full reloads (hx-boost), every form works
without JavaScript. Pages read the read models; a step on a case runs a CaseWork command
with the same input model, rules and errors as the API and the CLI.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import UUID, uuid4

import psycopg
from eventsourcing.persistence import ProgrammingError
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from api.auth import TokenError, TokenVerifier
from api.problems import ProblemError
from api.routes import audit as audit_routes
from api.web import oidc, queries
from api.web.i18n import LANGUAGES, translator
from api.web.regions import region_namer
from api.web.session import (
    LANG_COOKIE,
    SESSION_COOKIE,
    LoginRequiredError,
    Viewer,
    language_of,
    set_session,
    viewer_of,
)
from api.web.settings import OidcSettings
from api.web.staff import DEMO_STAFF, staff_member
from api.web.steps import run_step, steps_open
from domain.case import Case
from domain.errors import (
    CaseNotFoundError,
    CaseWorkError,
    InvalidCommandError,
    PermissionDeniedError,
)
from domain.roles import Role, may_read
from jiuzhu.audit.casework import AuditedCaseWork
from jiuzhu.audit.checkpoints import list_checkpoints, make_checkpoint
from jiuzhu.audit.histories import case_history
from jiuzhu.audit.signing import signer_from_settings
from jiuzhu.cli_audit import export_to
from jiuzhu.cli_common import Who
from projections.regions import CHINA_TIME, normalise_region, today_in_china

__all__ = ["router", "templates"]

router = APIRouter(prefix="/web", include_in_schema=False)
templates = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,  # templates ship with the code: no stat() of each file per page
)
templates.filters["yuan"] = lambda fen: "—" if fen is None else f"¥{int(fen) / 100:,.2f}"
templates.filters["day"] = lambda v: "—" if v is None else str(v)[:10]
templates.filters["moment"] = lambda v: "—" if v is None else str(v)[:19].replace("T", " ")

# Pages each role sees in the navigation (and may open).
PAGES = {
    "inbox": frozenset(Role),
    "search": frozenset({Role.CASEWORKER, Role.APPROVER, Role.AUDITOR}),
    "approvals": frozenset({Role.APPROVER, Role.CASEWORKER}),
    "dashboard": frozenset(Role),
    "audit": frozenset({Role.AUDITOR, Role.APPROVER}),
}
_ID_CARD = re.compile(r"^\d{17}[\dXx]$")


def _render(
    request: Request, name: str, viewer: Viewer | None, status: int = 200, **context: Any
) -> HTMLResponse:
    lang = viewer.lang if viewer is not None else language_of(request)
    nav = (
        [page for page, roles in PAGES.items() if viewer.principal.role in roles]
        if viewer is not None
        else []
    )
    page = templates.get_template(name).render(
        t=translator(lang),
        place=region_namer(lang),
        lang=lang,
        languages=LANGUAGES,
        viewer=viewer,
        nav=nav,
        path=request.url.path,
        query=request.url.query,
        **context,
    )
    response = HTMLResponse(page, status_code=status)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, samesite="lax", path="/")
    return response


def _casework(request: Request) -> AuditedCaseWork:
    casework: AuditedCaseWork = request.app.state.casework
    return casework


def _oidc(request: Request) -> OidcSettings:
    settings: OidcSettings = request.app.state.oidc
    return settings


def _allowed(request: Request, page: str) -> Viewer:
    viewer = viewer_of(request)
    if viewer.principal.role not in PAGES[page]:
        raise PermissionError(page)
    return viewer


def _forbidden(request: Request, viewer: Viewer) -> HTMLResponse:
    return _render(request, "error.html", viewer, 403, title="Not allowed",
                   message="Your role may not see this page.")  # fmt: skip


@dataclass
class ReadResult:
    """Rows from the read models, or why there are none."""

    data: Any = None
    missing: bool = False


def _read(request: Request, reader: Any) -> ReadResult:
    """Run a read on the read models (in the event store's schema); missing tables said so."""
    casework = _casework(request)
    datastore = casework.datastore
    try:
        with datastore.transaction(commit=False) as curs:
            return ReadResult(reader(curs, datastore.schema or "public"))
    except (psycopg.errors.UndefinedTable, ProgrammingError) as error:
        # eventsourcing wraps psycopg's error; only a missing table means "not built yet".
        cause = error if isinstance(error, psycopg.Error) else error.__cause__
        if not isinstance(cause, psycopg.errors.UndefinedTable):
            raise
        return ReadResult(missing=True)


# -- signing in ---------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
def home() -> Response:
    """The workbench starts at the inbox."""
    return RedirectResponse("/web/inbox", status_code=303)


def _redirect_url(request: Request) -> str:
    configured = _oidc(request).redirect_url
    return configured or str(request.url_for("oidc_callback"))


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, reason: str = "") -> Response:
    """Demo staff to choose from, or off to the identity provider."""
    settings = _oidc(request)
    if settings.enabled and not reason:
        url, flow = oidc.begin(settings, _redirect_url(request))
        response = RedirectResponse(url, status_code=303)
        response.set_cookie(
            oidc.FLOW_COOKIE, flow.cookie(), max_age=600, httponly=True, samesite="lax",
            secure=settings.secure_cookies, path="/web",
        )  # fmt: skip
        return response
    return _render(request, "login.html", None, staff=DEMO_STAFF, reason=reason,
                   provider=settings.enabled)  # fmt: skip


@router.post("/login")
def login(request: Request, actor: str = Form(...)) -> Response:
    """Sign in as one of the demo's staff (embedded default only)."""
    member = staff_member(actor)
    tokens: TokenVerifier = request.app.state.tokens
    if member is None or _oidc(request).enabled:
        return _render(request, "login.html", None, 400, staff=DEMO_STAFF, provider=False,
                       reason=f"unknown demo staff member {actor!r}")  # fmt: skip
    try:
        token = tokens.issue(member.actor, member.role)
    except TokenError as error:
        return _render(request, "login.html", None, 400, staff=(), reason=str(error),
                       provider=False)  # fmt: skip
    response = RedirectResponse("/web/inbox", status_code=303)
    set_session(response, token, secure=_oidc(request).secure_cookies)
    return response


@router.get("/oidc/callback", name="oidc_callback")
def oidc_callback(request: Request, code: str = "", state: str = "", error: str = "") -> Response:
    """The identity provider sends the browser back here with a code."""
    settings = _oidc(request)
    try:
        if error or not code:
            raise oidc.SignInError(
                f"the identity provider did not sign you in: {error or 'no code'}"
            )
        flow = oidc.Flow.from_cookie(request.cookies.get(oidc.FLOW_COOKIE))
        _, token = oidc.finish(
            settings, request.app.state.tokens, flow, code=code, state=state,
            redirect_url=_redirect_url(request),
            transport=getattr(request.app.state, "oidc_transport", None),
        )  # fmt: skip
    except oidc.SignInError as failure:
        return _render(request, "login.html", None, 401, staff=(), reason=str(failure),
                       provider=True)  # fmt: skip
    response = RedirectResponse("/web/inbox", status_code=303)
    response.delete_cookie(oidc.FLOW_COOKIE, path="/web")
    set_session(response, token, secure=settings.secure_cookies)
    return response


@router.post("/logout")
def logout() -> Response:
    """Forget the session."""
    response = RedirectResponse("/web/login?reason=signed+out", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- pages --------------------------------------------------------------------------------


@router.get("/inbox", response_class=HTMLResponse)
def inbox_page(request: Request) -> Response:
    """My open tasks, overdue first."""
    viewer = viewer_of(request)
    today = today_in_china()
    found = _read(request, lambda c, s: queries.inbox(c, s, viewer.actor, viewer.role, today))
    return _render(request, "inbox.html", viewer, inbox=found.data, missing=found.missing,
                   today=today)  # fmt: skip


@router.get("/search", response_class=HTMLResponse)
def search_page(request: Request, q: str = "") -> Response:
    """Find a household by its id or a member's id-card number (or a case by its id)."""
    try:
        viewer = _allowed(request, "search")
    except PermissionError:
        return _forbidden(request, viewer_of(request))
    q = q.strip()
    casework = _casework(request)
    found: list[tuple[str, list[Case]]] = []
    note = ""
    if q:
        try:
            found = [("", [casework.get_case(UUID(q))])]
        except (ValueError, CaseNotFoundError):
            try:
                households = _households_of(casework, viewer, q) if _ID_CARD.match(q) else [q]
            except PermissionDeniedError as error:
                households, note = [], str(error)
            for household in households:
                cases = [casework.get_case(c) for c in casework.household_chain(household)]
                if cases:
                    found.append((household, cases))
    return _render(request, "search.html", viewer, q=q, found=found, note=note)


def _households_of(casework: AuditedCaseWork, viewer: Viewer, id_card: str) -> list[str]:
    """Households with a member of this id-card number (the keyed blind index, as the API)."""
    # Searching by a person's number is reading personal data: analysts may not.
    casework.authorise_read(viewer.actor, viewer.role, "read_personal_data")
    return list(casework.blind_index.households(id_card))


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(request: Request, case_id: str, done: str = "") -> Response:
    """A case: where it stands, its timeline, and the steps open to the viewer."""
    viewer = viewer_of(request)
    return _case(request, viewer, case_id, done=done if done in _STEP_COMMANDS else "")


def _case(
    request: Request,
    viewer: Viewer,
    case_id: str,
    *,
    status: int = 200,
    refused: str = "",
    refused_step: str = "",
    done: str = "",
    form: dict[str, str] | None = None,
) -> HTMLResponse:
    casework = _casework(request)
    role = viewer.principal.role
    if not may_read(role, "read_history"):
        return _forbidden(request, viewer)
    try:
        case = casework.get_case(UUID(case_id))
    except (ValueError, CaseNotFoundError):
        return _render(request, "error.html", viewer, 404, title="Not found",
                       message=f"case {case_id} not found")  # fmt: skip
    personal = may_read(role, "read_personal_data")
    timeline = case_history(casework, case.id, personal=personal)
    steps = steps_open(case, role, viewer.actor, casework.policy, today_in_china())
    return _render(
        request, "case.html", viewer, status, case=case, timeline=timeline, steps=steps,
        personal=personal, refused=refused, refused_step=refused_step, done=done,
        form=form or {}, today=today_in_china().isoformat(), form_key=uuid4().hex,
        notice_ends=(case.notice_starts_on + timedelta(days=case.notice_days)
                     if case.notice_starts_on is not None else None),
    )  # fmt: skip


@router.post("/cases/{case_id}/steps/{command}", response_class=HTMLResponse)
async def take_step(request: Request, case_id: str, command: str) -> Response:
    """Run one step through CaseWork; a refusal shows the rule's words on the case page."""
    viewer = viewer_of(request)
    form = {k: str(v) for k, v in (await request.form()).items()}
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_step, request, viewer, case_id, command, form)


def _step(
    request: Request, viewer: Viewer, case_id: str, command: str, form: dict[str, str]
) -> Response:
    casework = _casework(request)
    try:
        case_uuid = UUID(case_id)
    except ValueError:
        return _render(request, "error.html", viewer, 404, title="Not found",
                       message=f"case {case_id} not found")  # fmt: skip
    if command not in _STEP_COMMANDS:
        return _render(request, "error.html", viewer, 404, title="Not found",
                       message=f"no step {command!r}")  # fmt: skip
    try:
        run_step(casework, viewer.principal, command, case_uuid, form)
    except InvalidCommandError as error:
        return _case(request, viewer, case_id, status=422, refused=str(error),
                     refused_step=command, form=form)  # fmt: skip
    except (CaseWorkError, ProblemError) as error:
        status = error.status if isinstance(error, ProblemError) else 409
        words = error.detail if isinstance(error, ProblemError) else str(error)
        if isinstance(error, PermissionDeniedError):
            status = 403
        return _case(request, viewer, case_id, status=status, refused=words,
                     refused_step=command, form=form)  # fmt: skip
    return RedirectResponse(f"/web/cases/{case_id}?done={quote(command)}", status_code=303)


_STEP_COMMANDS = frozenset(
    {
        "attach_signal", "assign_verification", "give_consent", "withdraw_consent", "verify",
        "assess", "publish_notice", "raise_objection", "enrol", "pay", "grant_emergency_relief",
        "regularise_emergency_relief", "deliver_service", "refer", "answer_referral", "review",
        "adjust_benefit", "exit_programme", "close_case",
    }
)  # fmt: skip


@router.get("/approvals", response_class=HTMLResponse)
def approvals_page(request: Request) -> Response:
    """Enrolments and emergency relief waiting for an approver."""
    try:
        viewer = _allowed(request, "approvals")
    except PermissionError:
        return _forbidden(request, viewer_of(request))
    today = today_in_china()
    found = _read(request, lambda c, s: queries.approvals(c, s, today))
    return _render(request, "approvals.html", viewer, queue=found.data, missing=found.missing)


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard_page(request: Request, region: str = "") -> Response:
    """Funnel, payments, overdue visits, time to support, headline figures; drill down."""
    viewer = viewer_of(request)
    try:
        code = normalise_region(region) if region else None
    except ValueError as error:
        return _render(request, "error.html", viewer, 400, title="Not found", message=str(error))
    today = today_in_china()
    found = _read(request, lambda c, s: queries.dashboard(c, s, code, today))
    charts = _charts(found.data, translator(viewer.lang)) if found.data is not None else {}
    up = None if code is None else ("" if len(code) == 2 else code[:-2])
    # The chart data sits in a <script> element: no "</" may close it early.
    data = json.dumps(charts, ensure_ascii=False).replace("</", "<\\/")
    return _render(request, "dashboard.html", viewer, board=found.data, missing=found.missing,
                   region=code, up=up, charts=data)  # fmt: skip


def _charts(board: queries.Dashboard, t: Any) -> dict[str, Any]:
    """The ECharts options of the dashboard (data only; the page draws them)."""
    months = sorted({row["month"] for row in board.payments})
    programmes = sorted({row["programme"] for row in board.payments})
    amount = {(r["month"], r["programme"]): int(r["amount_fen"]) / 100 for r in board.payments}
    # The chart shows the main path; the table beside it has every stage.
    path = [(s, n) for s, n in board.funnel_totals if s not in ("risk_eliminated", "not_eligible")]
    return {
        "funnel": {
            "labels": [t(stage) for stage, _ in path],
            "values": [count for _, count in path],
        },
        "payments": {
            "months": months,
            "series": [
                {"name": t(p), "values": [amount.get((m, p), 0) for m in months]}
                for p in programmes
            ],
        },
        "overdue": {
            "labels": [t("overdue"), t("open")],
            "regions": [row["region"] for row in board.overdue],
            "overdue": [row["overdue"] for row in board.overdue],
            "open": [row["open"] for row in board.overdue],
        },
    }


@dataclass
class VerifyResult:
    """The last audit verification this process ran."""

    at: datetime
    by: str
    ok: bool
    events: int
    checkpoints: int
    findings: list[str]


@router.get("/audit", response_class=HTMLResponse)
def audit_page(request: Request) -> Response:
    """The last verify result, the signed checkpoints, exports."""
    try:
        viewer = _allowed(request, "audit")
    except PermissionError:
        return _forbidden(request, viewer_of(request))
    casework = _casework(request)
    checkpoints = list(reversed(list_checkpoints(casework.datastore, casework.audit)))[:20]
    last: VerifyResult | None = getattr(request.app.state, "web_last_verify", None)
    return _render(request, "audit.html", viewer, checkpoints=checkpoints, last=last)


@router.post("/audit/verify")
def audit_verify(request: Request) -> Response:
    """Recompute every hash and checkpoint now, as the API's /audit/verification does."""
    try:
        viewer = _allowed(request, "audit")
    except PermissionError:
        return _forbidden(request, viewer_of(request))
    report = audit_routes.verify_report(
        _casework(request), request.app.state.settings, viewer.principal, None
    )
    request.app.state.web_last_verify = VerifyResult(
        at=datetime.now(CHINA_TIME), by=viewer.actor, ok=report["ok"], events=report["events"],
        checkpoints=report["checkpoints"],
        findings=[_finding(f) for f in report["findings"][:50]],
    )  # fmt: skip
    return RedirectResponse("/web/audit", status_code=303)


def _finding(finding: dict[str, Any]) -> str:
    where = f"case {finding['case_id']} v{finding['version']}" if finding["case_id"] else "log"
    return f"{finding['kind']}: {where}: {finding['detail']}"


@router.post("/audit/checkpoint")
def audit_checkpoint(request: Request) -> Response:
    """Sign the log as it stands (as `jiuzhu audit checkpoint --no-publish`)."""
    viewer = viewer_of(request)
    casework = _casework(request)
    try:
        casework.authorise_read(viewer.actor, viewer.role, "checkpoint_audit_trail")
    except CaseWorkError as error:
        return _render(request, "error.html", viewer, 403, title="Not allowed", message=str(error))
    # The key this process signs its own checkpoints with, else the configured one.
    signer = casework.signer or signer_from_settings(request.app.state.settings)
    make_checkpoint(casework.datastore, casework.audit, signer)
    return RedirectResponse("/web/audit", status_code=303)


@router.post("/audit/export")
def audit_export(request: Request, case_id: str = Form(...)) -> Response:
    """A case's history as signed JSON Lines, as `jiuzhu audit export` and the API write it."""
    viewer = viewer_of(request)
    out = io.StringIO()
    try:
        export_to(_casework(request), request.app.state.settings, out,
                  Who(viewer.actor, viewer.role), case_id=UUID(case_id.strip()))  # fmt: skip
    except CaseWorkError as error:
        return _render(request, "error.html", viewer, 403, title="Not allowed", message=str(error))
    except ValueError:
        return _render(request, "error.html", viewer, 404, title="Not found",
                       message=f"case {case_id} not found")  # fmt: skip
    name = f"case-{case_id.strip()}-{date.today().isoformat()}.jsonl"
    return Response(out.getvalue(), media_type="application/x-ndjson",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip


@router.get("/lang/{lang}")
def choose_language(lang: str, back: str = "/web/inbox") -> Response:
    """Switch language and go back to the page (only ever a workbench page)."""
    target = back if back.startswith("/web/") and "//" not in back else "/web/inbox"
    response = RedirectResponse(target, status_code=303)
    if lang in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, samesite="lax", path="/")
    return response


async def login_required(request: Request, error: Exception) -> Response:
    """No valid session: to the sign-in page (htmx follows with HX-Redirect)."""
    reason = error.reason if isinstance(error, LoginRequiredError) else ""
    target = "/web/login" + (f"?reason={quote(reason)}" if reason else "")
    if request.headers.get("HX-Request"):
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)
