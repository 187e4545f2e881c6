"""Who may run which command: enforced by the application for every entry point."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["PERMISSIONS", "Role", "may"]


class Role(StrEnum):
    """Roles of the people and systems that act on cases."""

    CASEWORKER = "caseworker"
    APPROVER = "approver"
    AUDITOR = "auditor"
    ANALYST = "analyst"
    UPSTREAM_SYSTEM = "upstream_system"


_STAFF = frozenset({Role.CASEWORKER, Role.APPROVER})
_FIELD = _STAFF | {Role.UPSTREAM_SYSTEM}
_DECIDERS = frozenset({Role.APPROVER})

# Auditors and analysts appear nowhere here: they read, they never change a case.
PERMISSIONS: dict[str, frozenset[Role]] = {
    "open_case": _FIELD,
    "attach_signal": _FIELD,
    "assign_verification": _STAFF,
    "give_consent": _FIELD,
    "withdraw_consent": _FIELD,
    "verify": _FIELD,
    "assess": _DECIDERS,
    "publish_notice": _STAFF,
    "raise_objection": _FIELD,
    "enrol": _DECIDERS,
    "pay": _DECIDERS | {Role.UPSTREAM_SYSTEM},
    "record_payment_failure": _DECIDERS | {Role.UPSTREAM_SYSTEM},
    "deliver_service": _FIELD,
    "refer": _STAFF,
    "answer_referral": _FIELD,
    "review": _STAFF,
    "adjust_benefit": _DECIDERS,
    "exit_programme": _DECIDERS | {Role.UPSTREAM_SYSTEM},
    "close_case": _DECIDERS | {Role.UPSTREAM_SYSTEM},
    "grant_emergency_relief": _STAFF,
    "regularise_emergency_relief": _DECIDERS,
}


def may(role: Role, command: str) -> bool:
    """Whether a role may run a command."""
    return role in PERMISSIONS.get(command, frozenset())
