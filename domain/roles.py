"""Who may run which command: enforced by the application for every entry point."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["PERMISSIONS", "READ_PERMISSIONS", "Role", "may", "may_read"]


class Role(StrEnum):
    """Roles of the people and systems that act on cases."""

    CASEWORKER = "caseworker"
    APPROVER = "approver"
    AUDITOR = "auditor"
    ANALYST = "analyst"
    UPSTREAM_SYSTEM = "upstream_system"
    # The service itself (the clock): records deadlines passing, never a person's decision.
    SYSTEM = "system"


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
    # Crypto-shredding a household's personal data is a decision, never a field step.
    "erase_personal_data": _DECIDERS,
}

# Reads and attestations: who may see what. None of these appends a case event.
_READERS = _STAFF | {Role.AUDITOR, Role.ANALYST}
READ_PERMISSIONS: dict[str, frozenset[Role]] = {
    "read_history": _READERS,
    # Analysts work on statistics: they see personal fields masked.
    "read_personal_data": _STAFF | {Role.AUDITOR},
    "verify_audit_trail": _READERS,
    "export_audit_trail": frozenset({Role.AUDITOR, Role.APPROVER}),
    # Signing a checkpoint attests the log; schedulers run it as the upstream system.
    "checkpoint_audit_trail": frozenset({Role.AUDITOR, Role.APPROVER, Role.UPSTREAM_SYSTEM}),
}

# Only the clock records that a deadline passed (escalations, warnings, review tasks).
PERMISSIONS["record_deadline"] = frozenset({Role.SYSTEM})


def may(role: Role, command: str) -> bool:
    """Whether a role may run a command."""
    return role in PERMISSIONS.get(command, frozenset())


def may_read(role: Role, what: str) -> bool:
    """Whether a role may read (or attest) something named in READ_PERMISSIONS."""
    return role in READ_PERMISSIONS.get(what, frozenset())


# The monthly payroll (domain/payroll.py): staff prepare, a second person decides (the
# preparer may not: a rule of the cycle), finance's settlements come as the upstream system.
PERMISSIONS.update(
    {
        "prepare_payroll": _STAFF,
        "approve_payroll": _DECIDERS,
        "reject_payroll": _DECIDERS,
        "export_payroll": _DECIDERS,
        "settle_payroll": _DECIDERS | {Role.UPSTREAM_SYSTEM},
        "settle_payroll_instruction": _DECIDERS | {Role.UPSTREAM_SYSTEM},
    }
)
READ_PERMISSIONS.update(
    {
        "read_payroll": _READERS,
        # Bank accounts in disbursement files: personal data, for the approver sending them.
        "export_payment_accounts": frozenset({Role.APPROVER}),
    }
)
# Data comparison issues verification tasks (下达核查任务) for the hits it hands to the
# intake: the upstream system assigns the visit; staff still do and record it.
PERMISSIONS["assign_verification"] = PERMISSIONS["assign_verification"] | {Role.UPSTREAM_SYSTEM}
