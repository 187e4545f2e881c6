"""The intake as `faststream docs gen` sees it: built on an in-memory store, never connected.

faststream docs gen --yaml consumers.asyncapi_app:app --out docs/asyncapi.yaml
"""

from __future__ import annotations

from consumers.intake import build_intake
from domain.application import CaseWork

__all__ = ["app"]

# CaseWork() without settings keeps its events in memory: nothing to connect to here.
_broker, app = build_intake(broker_url="nats://localhost:4222", app=CaseWork())
