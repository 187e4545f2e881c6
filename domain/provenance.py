"""Who acted, why, what caused it and when: recorded on every event."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from domain.roles import Role

__all__ = ["Provenance"]


class Provenance(BaseModel):
    """The facts every event records besides its own: who, why, what caused it, when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    actor: str = Field(min_length=1, description="Who acted: a staff id or an upstream system")
    role: Role = Field(description="The role the actor acted in")
    reason: str = Field(min_length=1, description="Why: the reason or legal basis for the step")
    occurred_at: AwareDatetime = Field(description="When it happened in the world (business time)")
    causation_id: str = Field(
        default="",
        description="What caused it: an upstream message id or a command id (new if empty)",
    )
    correlation_id: str = Field(
        default="",
        description="The conversation it belongs to (causation if empty)",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_ids(cls, data: Any) -> Any:
        # A command issued by a person is its own cause; the correlation then starts with it.
        if isinstance(data, dict):
            data = dict(data)
            if not data.get("causation_id"):
                data["causation_id"] = f"command:{uuid4()}"
            if not data.get("correlation_id"):
                data["correlation_id"] = data["causation_id"]
        return data

    def event_fields(self) -> dict[str, Any]:
        """The provenance as event attributes."""
        occurred: datetime = self.occurred_at
        return {
            "actor": self.actor,
            "role": self.role.value,
            "reason": self.reason,
            "occurred_at": occurred,
            "causation_id": self.causation_id,
            "correlation_id": self.correlation_id,
        }
