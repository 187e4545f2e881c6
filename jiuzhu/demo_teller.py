"""Telling one case's story: staff steps go to CaseWork, upstream steps through the broker."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time
from typing import Any
from uuid import UUID, uuid4

from domain.application import CaseWork
from jiuzhu.demo_upstream import Upstream
from jiuzhu.narrate import CHINA_TIME

__all__ = ["Teller"]

# Channels whose first message comes from an upstream system, and its CloudEvents type.
_UPSTREAM_CHANNELS = {
    "monitoring_alert": ("monitoring.alert", ""),
    "hotline": ("application.submitted", "hotline"),
    "application_online": ("application.submitted", "online"),
    "application_hall": ("application.submitted", "one_window_hall"),
}


class Teller:
    """One case's story. With an Upstream, what upstream systems report is published as
    CloudEvents (alerts, applications, visit reports, settled payments) and the staff's
    steps wait until those messages have taken effect; without one, all goes to CaseWork.
    """

    def __init__(self, app: CaseWork, correlation_id: str, upstream: Upstream | None) -> None:
        self.app, self.correlation_id, self.upstream = app, correlation_id, upstream
        self.case_id: UUID = uuid4()
        self.household_id = ""
        self._sent = 0
        self._pending: list[str] = []

    def by(self, actor: str, role: str, day: date, reason: str) -> dict[str, Any]:
        """Provenance of a step on a day, within the story's correlation."""
        return {
            "actor": actor,
            "role": role,
            "reason": reason,
            "occurred_at": datetime.combine(day, time(10, 0), CHINA_TIME),
            "correlation_id": self.correlation_id,
        }

    def open(self, by: dict[str, Any], *, asked: tuple[str, ...] = (), **fields: Any) -> None:
        """The household comes to light: an alert, an application, or a staff member's report."""
        self.household_id = fields["household_id"]
        kind, channel = _UPSTREAM_CHANNELS.get(fields["channel"], ("", ""))
        if self.upstream is None or not kind:
            self.app.open_case({"case_id": self.case_id, "by": by, **fields})
            return
        data = {
            key: fields[key] for key in ("household_id", "region", "household_size", "personal")
        }
        if kind == "monitoring.alert":
            data["signals"] = fields["signals"]
        else:
            data |= {"channel": channel, "programmes": list(asked or ("temporary_relief",))}
            data["need"] = "; ".join(fields["signals"]) or "hardship"
        opened = self._publish(kind, by, data)
        assert opened is not None
        self.case_id = opened
        self.flush()  # staff act on the case next: it must exist

    def visit(self, by: dict[str, Any], *, given_by: str, **findings: Any) -> None:
        """The field team's visit: consent at the door, then the verification's findings."""
        if self.upstream is None:
            self.step("give_consent", by, given_by=given_by)
            self.step("verify", by, **findings)
            return
        data = {"team": by["actor"], "consent": {"given": True, "given_by": given_by}, **findings}
        self._publish("verification.reported", by, data)

    def pay(self, by: dict[str, Any], **payment: Any) -> None:
        """Finance settles a payment (reported upstream; staff need not wait for it)."""
        if self.upstream is None:
            self.step("pay", by, **payment)
        else:
            self._publish("payment.settled", by, {"outcome": "paid", **payment})

    def step(self, command: str, by: dict[str, Any], **fields: Any) -> int:
        """A staff step on the case, once every earlier upstream message has taken effect."""
        self.flush()
        method: Callable[[dict[str, Any]], int] = getattr(self.app, command)
        return method({"case_id": self.case_id, "by": by, **fields})

    def flush(self) -> None:
        """Wait until the upstream messages sent so far have taken effect."""
        if self.upstream is not None and self._pending:
            self.upstream.wait(self._pending)
            self._pending.clear()

    def _publish(self, kind: str, by: dict[str, Any], data: dict[str, Any]) -> UUID | None:
        assert self.upstream is not None
        self._sent += 1
        if kind not in ("monitoring.alert", "application.submitted"):
            data = {"household_id": self.household_id, "case_id": str(self.case_id), **data}
        key, opened = self.upstream.publish(
            kind,
            message_id=f"{self.correlation_id}-{self._sent}",
            source=by["actor"],
            time=by["occurred_at"],
            correlation_id=self.correlation_id,
            data={"reason": by["reason"], **data},
        )
        self._pending.append(key)
        return opened
