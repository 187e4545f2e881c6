"""Domain errors: each names the case (or household) and the rule it broke."""

from __future__ import annotations

from uuid import UUID

__all__ = [
    "ActiveEnrolmentsError",
    "AlreadyEnrolledError",
    "CaseAlreadyOpenError",
    "CaseIsClosedError",
    "CaseNotFoundError",
    "CaseWorkError",
    "ConsentRequiredError",
    "DuplicateMessageError",
    "DuplicatePaymentError",
    "EmergencyNotRegularisedError",
    "InvalidAmountError",
    "InvalidCommandError",
    "NotEnrolledError",
    "NoticePeriodError",
    "OutsideEnrolmentPeriodError",
    "PermissionDeniedError",
    "ReasonRequiredError",
    "RuleViolationError",
    "SelfApprovalError",
    "UnknownItemError",
    "VerificationRequiredError",
]


class CaseWorkError(Exception):
    """Base of every error the case workflow raises on purpose."""


class InvalidCommandError(CaseWorkError, ValueError):
    """A command's input failed validation; names the command and each bad field."""

    def __init__(self, command: str, problems: list[tuple[str, str]]) -> None:
        self.command = command
        self.problems = problems
        detail = "; ".join(f"{field}: {message}" for field, message in problems)
        super().__init__(f"invalid {command}: {detail}")


class DuplicateMessageError(CaseWorkError):
    """An upstream message that has already taken effect was delivered again."""

    def __init__(self, message_key: str) -> None:
        self.message_key = message_key
        super().__init__(f"upstream message {message_key} has already taken effect")


class PermissionDeniedError(CaseWorkError):
    """The actor's role may not run this command."""

    def __init__(self, actor: str, role: str, command: str) -> None:
        self.actor, self.role, self.command = actor, role, command
        super().__init__(f"{actor} ({role}) may not {command.replace('_', ' ')}")


class CaseNotFoundError(CaseWorkError, LookupError):
    """No case has this id."""

    def __init__(self, case_id: UUID, when: str = "") -> None:
        self.case_id = case_id
        super().__init__(f"case {case_id} not found{when}")


class CaseAlreadyOpenError(CaseWorkError):
    """A household may have only one open case at a time."""

    rule = "one-open-case-per-household"

    def __init__(self, household_id: str, open_case_id: UUID) -> None:
        self.household_id, self.open_case_id = household_id, open_case_id
        super().__init__(
            f"household {household_id} already has open case {open_case_id} (rule {self.rule})"
        )


class RuleViolationError(CaseWorkError):
    """A command broke a rule of the workflow for one case."""

    rule = "workflow-rule"

    def __init__(self, case_id: UUID, detail: str) -> None:
        self.case_id, self.detail = case_id, detail
        super().__init__(f"case {case_id}: {detail} (rule {self.rule})")


class CaseIsClosedError(RuleViolationError):
    rule = "no-step-on-closed-case"


class VerificationRequiredError(RuleViolationError):
    rule = "enrolment-requires-positive-verification"


class ConsentRequiredError(RuleViolationError):
    rule = "consent-required"


class NoticePeriodError(RuleViolationError):
    rule = "dibao-public-notice"


class AlreadyEnrolledError(RuleViolationError):
    rule = "one-enrolment-per-programme"


class NotEnrolledError(RuleViolationError):
    rule = "payment-requires-enrolment"


class OutsideEnrolmentPeriodError(RuleViolationError):
    rule = "payment-within-enrolment-period"


class DuplicatePaymentError(RuleViolationError):
    rule = "one-payment-per-programme-and-period"


class InvalidAmountError(RuleViolationError):
    rule = "amounts-positive-in-fen"


class ReasonRequiredError(RuleViolationError):
    rule = "reason-required"


class ActiveEnrolmentsError(RuleViolationError):
    rule = "exit-enrolments-before-closing"


class EmergencyNotRegularisedError(RuleViolationError):
    rule = "emergency-relief-must-be-regularised"


class UnknownItemError(RuleViolationError):
    rule = "refers-to-known-item"


class SelfApprovalError(RuleViolationError):
    """An approver approved what they assessed (or granted) themselves (Policy.four_eyes)."""

    rule = "four-eyes-approval"
