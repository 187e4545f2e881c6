"""The read models the projector feeds: every class here gets every batch of events."""

from __future__ import annotations

from projections.base import ReadModel
from projections.case_status import CaseStatus
from projections.rebuild import REPORT_MODELS

__all__ = ["READ_MODELS"]

# Append a read model class here to have the projector (and rebuilds) feed it.
READ_MODELS: list[type[ReadModel]] = [
    CaseStatus,
    *REPORT_MODELS,  # funnel, verification tasks, payments, time to support, stacked, roll, KPIs
]

# The workbench's inbox and approver's queue (api/web): what waits on each open case.
from projections.worklist import Worklist  # noqa: E402

READ_MODELS.append(Worklist)
