"""Cases and events told for people: one-line summaries and plain rows for tables and JSON."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from domain.case import Case

__all__ = [
    "CHINA_TIME",
    "case_view",
    "end_of_day",
    "event_row",
    "event_type",
    "mask_id_card",
    "moment_from_text",
    "summary",
    "yuan",
]

# Business dates are civil dates in China Standard Time.
CHINA_TIME = timezone(timedelta(hours=8), "CST")


def yuan(fen: int) -> str:
    """Fen as yuan with two decimals and thousands separators."""
    return f"¥{fen / 100:,.2f}"


def mask_id_card(number: str) -> str:
    """An id-card number with its birth date and sequence hidden."""
    return number[:4] + "*" * (len(number) - 8) + number[-4:] if len(number) > 8 else number


def end_of_day(day: date) -> datetime:
    """The last moment of a civil day in China Standard Time."""
    return datetime.combine(day + timedelta(days=1), time(), CHINA_TIME) - timedelta(microseconds=1)


def moment_from_text(text: str) -> datetime:
    """A date (end of that day, China time) or an ISO date-time; ValueError saying so."""
    try:
        if len(text) == 10:
            return end_of_day(date.fromisoformat(text))
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD) or date-time (ISO 8601)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=CHINA_TIME)


def event_type(event: object) -> str:
    """The event's name as auditors read it, e.g. 'Paid'."""
    return type(event).__name__


def summary(event: object) -> str:
    """One line saying what the event recorded (never personal data)."""
    e: Any = event
    match event:
        case Case.Discovered():
            signals = "; ".join(e.signals) or "no signal"
            return f"household {e.household_id} in {e.region} via {e.channel}: {signals}"
        case Case.SignalAttached():
            return f"signal: {e.signal}"
        case Case.VerificationAssigned():
            return f"visit by {e.assignee}, due {e.due_on.isoformat()}"
        case Case.ConsentGiven():
            return f"consent given by {e.given_by}"
        case Case.ConsentWithdrawn():
            return "consent withdrawn"
        case Case.Verified():
            return (
                f"verdict {e.verdict}; {e.household_size} people, "
                f"income {yuan(e.monthly_income_fen)}/month"
            )
        case Case.Assessed():
            measures = ", ".join(f"{m['programme']} {yuan(m['amount_fen'])}" for m in e.measures)
            return f"measures: {measures}"
        case Case.NoticePublished():
            return f"public notice from {e.starts_on.isoformat()} for {e.days} days"
        case Case.ObjectionRaised():
            return f"objection by {e.objector}"
        case Case.Enrolled():
            return (
                f"{e.programme} ({e.department}) {yuan(e.amount_fen)} {e.basis} "
                f"from {e.effective_from.isoformat()}"
            )
        case Case.Paid():
            return f"{e.programme} {e.period}: {yuan(e.amount_fen)} ref {e.payment_ref}"
        case Case.PaymentFailed():
            return f"FAILED {e.programme} {e.period}: {yuan(e.amount_fen)} ref {e.payment_ref}"
        case Case.EmergencyReliefGranted():
            return f"emergency {e.programme} {yuan(e.amount_fen)} ({e.grant_id})"
        case Case.EmergencyReliefRegularised():
            return f"emergency grant {e.grant_id} regularised"
        case Case.ServiceDelivered():
            return f"{e.service} by {e.provider}"
        case Case.Referred():
            return f"referred to {e.organisation}: {e.need}"
        case Case.ReferralAnswered():
            answer = "accepted" if e.accepted else "declined"
            amount = f", {yuan(e.amount_fen)}" if e.amount_fen else ""
            return f"referral {e.referral_id} {answer}{amount}"
        case Case.Reviewed():
            return f"{e.programme} review: {e.outcome}; next {e.next_review_due.isoformat()}"
        case Case.BenefitAdjusted():
            return f"{e.programme} now {yuan(e.amount_fen)} from {e.effective_from.isoformat()}"
        case Case.Exited():
            return f"left {e.programme} on {e.ended_on.isoformat()}"
        case Case.Closed():
            return "case closed"
        case Case.Escalated():
            return (
                f"{e.kind.replace('_', ' ')} (due {_due(e.due_at)}): escalated to {e.escalated_to}"
            )
        case Case.DeadlinePassed():
            return f"{e.kind.replace('_', ' ')} (due {_due(e.due_at)})"
    return event_type(event)


def _due(moment: datetime) -> str:
    return moment.astimezone(CHINA_TIME).strftime("%Y-%m-%d %H:%M")


def event_row(event: Case.Event) -> dict[str, Any]:
    """An event as a plain row: position, type, times, who, why, what caused it, summary."""
    return {
        "version": event.originator_version,
        "type": event_type(event),
        "occurred_at": event.occurred_at,
        "recorded_at": event.timestamp,
        "actor": event.actor,
        "role": event.role,
        "reason": event.reason,
        "causation_id": event.causation_id,
        "correlation_id": event.correlation_id,
        "summary": summary(event),
    }


def case_view(case: Case, *, with_personal: bool = False) -> dict[str, Any]:
    """A case's state as a plain mapping; personal data only for roles that may read it."""
    personal = {field: value for field, value in case.personal.items() if value}
    if not with_personal:
        personal = dict.fromkeys(personal, "[redacted]")
    elif personal.get("id_card"):
        personal["id_card"] = mask_id_card(personal["id_card"])
    return {
        "case_id": case.id,
        "version": case.version,
        "status": case.status,
        "household_id": case.household_id,
        "household_size": case.household_size,
        "personal": personal,
        "region": case.region,
        "channel": case.channel,
        "signals": list(case.signals),
        "discovered_at": case.discovered_at,
        "assignee": case.assignee,
        "verification_due": case.verification_due,
        "consent": case.consent,
        "verdict": case.verdict,
        "monthly_income_fen": case.monthly_income_fen,
        "enrolments": {p: dict(e) for p, e in case.enrolments.items()},
        "payments": dict(case.payments),
        "paid_total_fen": case.paid_total_fen,
        "emergency_grants": {g: dict(v) for g, v in case.emergency_grants.items()},
        "referrals": {r: dict(v) for r, v in case.referrals.items()},
        "services_delivered": case.services_delivered,
        "closed_at": case.closed_at,
        "closed_reason": case.closed_reason,
        "last_changed_at": case.modified_on,
    }
