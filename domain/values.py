"""Value types of social assistance: programmes, departments, channels, regions, money."""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum

__all__ = [
    "ONE_OFF",
    "Channel",
    "Department",
    "PaymentBasis",
    "Programme",
    "Verdict",
    "month_of",
    "validate_period",
    "validate_region",
]

# Payments of one-off grants are recorded against this period instead of a month.
ONE_OFF = "one-off"

# ASCII digits and the end of the text: `\d` takes full-width and Arabic-Indic digits,
# `$` a trailing newline.
_REGION = re.compile(r"[1-8][0-9]{5}")
_MONTH = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")


class Channel(StrEnum):
    """How a household came to the service's attention."""

    MONITORING_ALERT = "monitoring_alert"
    APPLICATION_ONLINE = "application_online"
    APPLICATION_HALL = "application_hall"
    HOTLINE = "hotline"
    FIELD_TEAM = "field_team"
    REFERRAL = "referral"
    DATA_COMPARISON = "data_comparison"  # a screening batch's hit (数据比对)


class Department(StrEnum):
    """Departments and partners that run programmes behind the one window."""

    CIVIL_AFFAIRS = "civil_affairs"
    MEDICAL_SECURITY = "medical_security"
    SOCIAL_ORGANISATION = "social_organisation"


class PaymentBasis(StrEnum):
    """Whether a programme pays every month or once."""

    MONTHLY = "monthly"
    ONE_OFF = "one_off"


class Programme(StrEnum):
    """Assistance programmes of the seed's province."""

    URBAN_DIBAO = "urban_dibao"
    RURAL_DIBAO = "rural_dibao"
    TEMPORARY_RELIEF = "temporary_relief"
    SPECIAL_HARDSHIP = "special_hardship"
    MEDICAL_RELIEF = "medical_relief"
    CARE_SERVICES = "care_services"
    SOCIAL_ORG_AID = "social_org_aid"

    @property
    def department(self) -> Department:
        """The department that runs this programme."""
        return _DEPARTMENT[self]

    @property
    def basis(self) -> PaymentBasis:
        """Monthly benefit or one-off grant."""
        return _BASIS[self]

    @property
    def is_dibao(self) -> bool:
        """Minimum living guarantee: needs a public notice before enrolment."""
        return self in (Programme.URBAN_DIBAO, Programme.RURAL_DIBAO)


_DEPARTMENT = {
    Programme.URBAN_DIBAO: Department.CIVIL_AFFAIRS,
    Programme.RURAL_DIBAO: Department.CIVIL_AFFAIRS,
    Programme.TEMPORARY_RELIEF: Department.CIVIL_AFFAIRS,
    Programme.SPECIAL_HARDSHIP: Department.CIVIL_AFFAIRS,
    Programme.MEDICAL_RELIEF: Department.MEDICAL_SECURITY,
    Programme.CARE_SERVICES: Department.CIVIL_AFFAIRS,
    Programme.SOCIAL_ORG_AID: Department.SOCIAL_ORGANISATION,
}

_BASIS = {
    Programme.URBAN_DIBAO: PaymentBasis.MONTHLY,
    Programme.RURAL_DIBAO: PaymentBasis.MONTHLY,
    Programme.TEMPORARY_RELIEF: PaymentBasis.ONE_OFF,
    Programme.SPECIAL_HARDSHIP: PaymentBasis.MONTHLY,
    Programme.MEDICAL_RELIEF: PaymentBasis.ONE_OFF,
    Programme.CARE_SERVICES: PaymentBasis.MONTHLY,
    Programme.SOCIAL_ORG_AID: PaymentBasis.ONE_OFF,
}


class Verdict(StrEnum):
    """Outcome of a verification visit."""

    NEEDS_SUPPORT = "needs_support"
    RISK_ELIMINATED = "risk_eliminated"
    NOT_ELIGIBLE = "not_eligible"


def validate_region(code: str) -> str:
    """Return a GB/T 2260 six-digit county code, or raise ValueError naming it."""
    if not _REGION.fullmatch(code):
        msg = f"region {code!r} is not a 6-digit administrative code (GB/T 2260), e.g. 610523"
        raise ValueError(msg)
    return code


def validate_period(period: str) -> str:
    """Return a payment period ('YYYY-MM' or 'one-off'), or raise ValueError naming it."""
    if period != ONE_OFF and not _MONTH.fullmatch(period):
        msg = f"period {period!r} is neither a month 'YYYY-MM' nor {ONE_OFF!r}"
        raise ValueError(msg)
    return period


def month_of(day: date) -> str:
    """The 'YYYY-MM' period that contains a day."""
    return f"{day.year:04d}-{day.month:02d}"
