"""The case workflow of social assistance: pure domain, no I/O."""

from domain.application import CaseWork
from domain.case import Case
from domain.household import Household
from domain.provenance import Provenance
from domain.roles import Role
from domain.values import Channel, Department, Programme, Verdict

__all__ = [
    "Case",
    "CaseWork",
    "Channel",
    "Department",
    "Household",
    "Programme",
    "Provenance",
    "Role",
    "Verdict",
]
