"""The upstream message contract: CloudEvents 1.0 JSON envelopes, one data model per type.

Upstream systems publish on `relief.upstream.<type>` in either CloudEvents content mode:
*structured* (the body is one JSON object with the envelope attributes and the type's
`data`) or *binary* (the attributes in headers, `ce-` on NATS, RabbitMQ and Redis, `ce_` on
Kafka, `cloudEvents:` or `cloudEvents_` from AMQP 1.0 producers; the body is the `data`
alone), as the CloudEvents bindings define them and the official SDKs send them. The
message's identity is `source` + `id`; the optional extension attribute `correlationid`
joins it to a conversation (e.g. the alert an application answers); without it, a
`correlation_id` header (what FastStream producers set) does, else the message itself.

Limits the contract states (and the intake enforces, so that every accepted message makes
events every follower can carry and fold): a body of at most MAX_BODY_BYTES; `time` an RFC
3339 string with offset in [TIME_FROM, TIME_UNTIL); bounded lists, maps and strings; no
U+0000 anywhere (PostgreSQL text cannot hold it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from urllib.parse import unquote
from uuid import UUID

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    ValidationError,
)

from domain.commands import Fen, Period, PersonalData, RegionCode, Text
from domain.values import ONE_OFF, PaymentBasis, Programme, Verdict

__all__ = [
    "EVENT_TYPES",
    "MAX_BODY_BYTES",
    "TIME_FROM",
    "TIME_UNTIL",
    "ApplicationSubmitted",
    "ApplicationSubmittedEvent",
    "BadMessageError",
    "CloudEvent",
    "ConsentReport",
    "DeathRegistered",
    "DeathRegisteredEvent",
    "MonitoringAlert",
    "MonitoringAlertEvent",
    "PaymentSettled",
    "PaymentSettledEvent",
    "ScreeningHit",
    "ScreeningHitEvent",
    "UpstreamEvent",
    "VerificationReported",
    "VerificationReportedEvent",
    "binary_attributes",
    "message_key_of",
    "parse_upstream",
]

# A message body bigger than this is refused: its events must fit a broker message (1 MB).
MAX_BODY_BYTES = 64 * 1024
# The business time accepted: every follower can place it in a month in China Standard
# Time (a year-9999 or year-1 time overflowed the projector's month arithmetic).
TIME_FROM = datetime(1949, 10, 1, tzinfo=UTC)
TIME_UNTIL = datetime(2100, 1, 1, tzinfo=UTC)
# RFC 3339 date-time with offset, ASCII digits only (pydantic alone also takes numbers).
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def _rfc3339_text(value: Any) -> Any:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        msg = "must be an RFC 3339 date-time string with offset, e.g. 2023-06-05T09:30:00+08:00"
        raise ValueError(msg)
    return value


def _in_time_range(value: datetime) -> datetime:
    if not TIME_FROM <= value < TIME_UNTIL:
        msg = f"must be from {TIME_FROM.isoformat()} until {TIME_UNTIL.isoformat()} (excluded)"
        raise ValueError(msg)
    return value


BusinessTime = Annotated[
    AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_in_time_range)
]
# Keys of the free-form maps (indicators, facts).
MapKey = Annotated[str, Field(min_length=1, max_length=100)]

HouseholdId = Annotated[
    str,
    Field(
        min_length=1, max_length=100, description="Household registry number",
        examples=["HH-610523-0001"],
    ),
]  # fmt: skip
HouseholdSize = Annotated[
    StrictInt, Field(ge=1, le=30, description="Members living together", examples=[3])
]


class UpstreamData(BaseModel):
    """Base of every type's data: strict fields, an optional reason."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="Why, in the upstream system's words; empty: the type's legal basis",
    )


class MonitoringAlert(UpstreamData):
    """The dynamic monitoring platform flagged a household (主动发现)."""

    household_id: HouseholdId
    region: RegionCode
    signals: list[Text] = Field(
        min_length=1,
        max_length=50,
        description="Risk signals raised by comparing departments' data (1 to 50)",
        examples=[["medical spending jumped", "income fell"]],
    )
    indicators: dict[MapKey, StrictInt | float | Annotated[str, Field(max_length=500)]] = Field(
        default_factory=dict,
        max_length=100,
        description="The measured indicators behind the signals (at most 100)",
        examples=[{"medical_spending_yuan": 47000, "income_change_pct": -35}],
    )
    household_size: HouseholdSize = 1
    personal: PersonalData = Field(
        default_factory=PersonalData, description="Household head; encrypted at rest"
    )


class ApplicationSubmitted(UpstreamData):
    """A household applied through the hotline, online (e救助) or the one-window hall."""

    household_id: HouseholdId
    region: RegionCode
    channel: Literal["hotline", "online", "one_window_hall"] = Field(
        description="Where the application came in", examples=["online"]
    )
    programmes: list[Programme] = Field(
        min_length=1,
        max_length=20,
        description="Programmes asked for",
        examples=[["rural_dibao", "temporary_relief"]],
    )
    need: Text = Field(
        description="The need in the applicant's words (no personal data)",
        examples=["dialysis costs; wife frail; two children at school"],
    )
    household_size: HouseholdSize = 1
    personal: PersonalData = Field(
        default_factory=PersonalData, description="Applicant; encrypted at rest"
    )


class ConsentReport(BaseModel):
    """Whether the household consented during the visit, and who gave it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    given: bool = Field(description="The household consented to verification and referrals")
    given_by: str = Field(
        default="head of household",
        min_length=1,
        max_length=100,
        description="Who in the household consented (a role, not a name)",
        examples=["head of household"],
    )


class CaseAddressed(UpstreamData):
    """Data about a household's open case (or a named case)."""

    household_id: HouseholdId
    case_id: UUID | None = Field(
        default=None, description="The case, if known; else the household's open case"
    )


class VerificationReported(CaseAddressed):
    """A field team's door-to-door visit: consent, verdict and the facts found."""

    team: Text = Field(description="Who visited", examples=["anren-town-team"])
    consent: ConsentReport = Field(description="The household's consent at the visit")
    verdict: Verdict = Field(description="What the visit found", examples=["needs_support"])
    household_size: HouseholdSize
    monthly_income_fen: StrictInt = Field(
        ge=0, description="The household's monthly income, in fen", examples=[250000]
    )
    facts: dict[MapKey, Annotated[str, Field(max_length=500)]] = Field(
        default_factory=dict,
        max_length=50,
        description="Non-personal findings (at most 50)",
        examples=[{"illness": "uraemia, dialysis", "housing": "own house"}],
    )


# Which programmes pay monthly and which once, from the domain's own table (domain.values).
_PERIODS = (
    "The month paid, 'YYYY-MM', for monthly programmes ("
    + ", ".join(p.value for p in Programme if p.basis is PaymentBasis.MONTHLY)
    + f"); '{ONE_OFF}' for one-off programmes ("
    + ", ".join(p.value for p in Programme if p.basis is PaymentBasis.ONE_OFF)
    + ")"
)


class PaymentSettled(CaseAddressed):
    """Finance settled a payment: paid, or failed at the bank or treasury."""

    outcome: Literal["paid", "failed"] = Field(
        description="Whether the money reached the household", examples=["paid"]
    )
    programme: Programme = Field(description="The programme paid", examples=["rural_dibao"])
    period: Period = Field(description=_PERIODS, examples=["2023-06", ONE_OFF])
    amount_fen: Fen
    payment_ref: Text = Field(
        description="Finance's reference of the payment", examples=["PAY-2023-06-000123"]
    )
    failure: str | None = Field(
        default=None, max_length=500, description="Why it failed", examples=["account closed"]
    )
    instruction_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="The payroll instruction settled (from `jiuzhu payroll export`): the "
        "cycle then decides; a second settlement is a finding, never a second payment",
        examples=["PI-2023-06-rural_dibao-610523-000017"],
    )


class DeathRegistered(UpstreamData):
    """The civil registry recorded the death of a member of a watched household."""

    household_id: HouseholdId
    registration_ref: Text = Field(
        description="The death registration's number (not the person's id card)",
        examples=["DR-610523-2023-000123"],
    )
    date_of_death: date = Field(
        description="The date of death: benefits end on it", examples=["2023-07-01"]
    )


class CloudEvent(BaseModel):
    """CloudEvents 1.0 envelope attributes; extension attributes are allowed."""

    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: Literal["1.0"] = Field(description="CloudEvents version")
    id: str = Field(
        min_length=1,
        max_length=200,
        description="Unique per source: a redelivery keeps it, a new message gets a new one",
        examples=["alert-2023-06-000042"],
    )
    source: str = Field(
        min_length=1,
        max_length=200,
        description="The upstream system (URI-reference); recorded as the actor",
        examples=["/shaanxi/monitoring-platform"],
    )
    time: BusinessTime = Field(
        description=(
            "When it happened (RFC 3339 string, with offset), from 1949-10-01T00:00:00Z "
            "until 2100-01-01T00:00:00Z (excluded); the events' business time"
        ),
        examples=["2023-06-05T09:30:00+08:00"],
    )
    subject: str | None = Field(default=None, max_length=200, examples=["HH-610523-0001"])
    datacontenttype: str = Field(default="application/json", pattern=r"^application/json")
    dataschema: str | None = Field(default=None, max_length=500)
    type: str = Field(description="The message's type; also the last part of its subject")
    data: UpstreamData
    correlationid: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Extension: the conversation this message belongs to",
    )

    @property
    def message_key(self) -> str:
        """The message's identity: dedup key of its receipt (see message_key_of)."""
        return message_key_of(self.source, self.id)

    @property
    def causation_id(self) -> str:
        """What every event it causes records as its cause."""
        return f"upstream:{self.message_key}"

    @property
    def correlation_id(self) -> str:
        """The conversation: the envelope's correlation, else the message itself."""
        return self.correlationid or self.message_key


class MonitoringAlertEvent(CloudEvent):
    """`monitoring.alert`: opens a case, or attaches the signals to the open one."""

    type: Literal["monitoring.alert"]
    data: MonitoringAlert


class ApplicationSubmittedEvent(CloudEvent):
    """`application.submitted`: opens a case, or attaches the application to the open one."""

    type: Literal["application.submitted"]
    data: ApplicationSubmitted


class VerificationReportedEvent(CloudEvent):
    """`verification.reported`: records consent (if new), then the verification."""

    type: Literal["verification.reported"]
    data: VerificationReported


class PaymentSettledEvent(CloudEvent):
    """`payment.settled`: records the payment, or its failure."""

    type: Literal["payment.settled"]
    data: PaymentSettled


class DeathRegisteredEvent(CloudEvent):
    """`civil.death_registered`: ends the benefits the death ends (see translate)."""

    type: Literal["civil.death_registered"]
    data: DeathRegistered


class ScreeningHit(UpstreamData):
    """A data comparison batch found a household (jiuzhu screen run): one rule, one hit."""

    household_id: HouseholdId
    region: RegionCode
    batch: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="The batch (also the correlation id)", examples=["2023-06"],
    )  # fmt: skip
    rule: str = Field(
        min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$",
        description="The rule that found the household", examples=["medical_self_pay"],
    )  # fmt: skip
    finding: Text = Field(
        description="What the comparison found, for the caseworker",
        examples=["medical self-pay 47000 yuan over 3 claims in 365 days"],
    )
    legal_basis: Text = Field(
        description="The rule's legal basis",
        examples=["Interim Measures for Social Assistance, arts. 11 and 28"],
    )
    indicators: dict[str, int | float | str | None] = Field(
        default_factory=dict,
        description="The measured figures behind the finding",
        examples=[{"self_pay_yuan": 47000, "claims": 3}],
    )
    household_size: HouseholdSize = 1
    verify_by: date = Field(
        description="When the verification (or review) visit is due", examples=["2023-07-15"]
    )
    assignee: Text = Field(
        description="Who receives the verification task", examples=["civil-affairs-610523"]
    )


class ScreeningHitEvent(CloudEvent):
    """`screening.hit`: opens a case with a verification task, attaches a signal to the open
    case, or, for an enrolled household, issues a review visit (eligibility review)."""

    type: Literal["screening.hit"]
    data: ScreeningHit


UpstreamEvent = Annotated[
    MonitoringAlertEvent
    | ApplicationSubmittedEvent
    | VerificationReportedEvent
    | PaymentSettledEvent
    | DeathRegisteredEvent
    | ScreeningHitEvent,
    Field(discriminator="type"),
]

EVENT_TYPES: dict[str, type[CloudEvent]] = {
    "monitoring.alert": MonitoringAlertEvent,
    "application.submitted": ApplicationSubmittedEvent,
    "verification.reported": VerificationReportedEvent,
    "payment.settled": PaymentSettledEvent,
    "civil.death_registered": DeathRegisteredEvent,
    "screening.hit": ScreeningHitEvent,
}


def message_key_of(source: str, message_id: str) -> str:
    """`source/id`, unambiguous: '%' and '/' in the id are percent-encoded.

    `source/id` alone let {source: /a/coll, id: c1} and {source: /a, id: coll/c1} collide
    (the second was taken for a duplicate). With no '/' left in the id, the last '/'
    splits the key; an id without '%' or '/' keeps the key it always had.
    """
    return f"{source}/{message_id.replace('%', '%25').replace('/', '%2F')}"


class BadMessageError(ValueError):
    """A message that can never take effect: not JSON, wrong schema or unknown type."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


# Header prefixes of CloudEvents attributes in binary content mode, per protocol binding.
CE_HEADER_PREFIXES = ("ce-", "ce_", "cloudevents:", "cloudevents_")
# The header FastStream publishers carry a correlation id in (docs/asyncapi.yaml says so).
CORRELATION_HEADER = "correlation_id"


def binary_attributes(headers: Mapping[str, Any]) -> dict[str, str]:
    """CloudEvents attributes carried in headers (binary content mode); empty if none."""
    attributes = {}
    for name, value in headers.items():
        lowered = name.lower()
        prefix = next((p for p in CE_HEADER_PREFIXES if lowered.startswith(p)), None)
        if prefix is None:
            continue
        if isinstance(value, datetime):
            text = value.isoformat()
        elif isinstance(value, int) and not isinstance(value, bool):
            # AMQP carries `time` as a timestamp: milliseconds since the epoch, UTC.
            text = datetime.fromtimestamp(value / 1000, UTC).isoformat()
        else:
            text = unquote(value.decode() if isinstance(value, bytes) else str(value))
        attributes[lowered[len(prefix) :]] = text  # header values are percent-encoded
    return attributes


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    value = next((v for k, v in headers.items() if k.lower() == name), None)
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _nul_at(value: Any, path: str) -> str | None:
    """Where a U+0000 is in parsed JSON (a key or a string), or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if "\x00" in key:
                return where
            if (found := _nul_at(item, where)) is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if (found := _nul_at(item, f"{path}.{index}")) is not None:
                return found
    return None


def parse_upstream(body: bytes, headers: Mapping[str, Any] | None = None) -> CloudEvent:
    """The typed envelope of a message, or BadMessageError saying what is wrong.

    Binary content mode (CloudEvents attributes in the headers) takes the body as the
    data; structured mode takes the envelope from the body.
    """
    headers = headers or {}
    if len(body) > MAX_BODY_BYTES:
        detail = f"body: {len(body)} bytes, over the contract's limit of {MAX_BODY_BYTES}"
        raise BadMessageError("invalid_schema", detail)
    try:
        raw: Any = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadMessageError("not_json", f"body is not JSON ({error})") from None
    if attributes := binary_attributes(headers):
        content_type = _header(headers, "content-type")
        raw = {**attributes, "data": raw}
        if content_type and "datacontenttype" not in attributes:
            raw["datacontenttype"] = content_type
    if not isinstance(raw, dict):
        raise BadMessageError("invalid_schema", "body is not a JSON object")
    if not raw.get("correlationid") and (correlation := _header(headers, CORRELATION_HEADER)):
        raw = {**raw, "correlationid": correlation}
    if (where := _nul_at(raw, "")) is not None:
        detail = f"{where}: contains U+0000 (NUL), which no text field may hold"
        raise BadMessageError("invalid_schema", _escaped(detail))
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise BadMessageError("invalid_schema", "missing CloudEvents attribute 'type'")
    model = EVENT_TYPES.get(kind)
    if model is None:
        known = ", ".join(EVENT_TYPES)
        raise BadMessageError("unknown_type", f"type {kind!r} is not one of {known}")
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()
        )
        raise BadMessageError("invalid_schema", problems) from None


def _escaped(text: str) -> str:
    return text.replace("\x00", "\\u0000")
