"""The read models the projector feeds: every class here gets every batch of events."""

from __future__ import annotations

from projections.base import ReadModel
from projections.case_status import CaseStatus
from projections.deadlines import Deadlines
from projections.payroll_cycles import PayrollCycles
from projections.payroll_ledger import PayrollLedger
from projections.rebuild import REPORT_MODELS
from projections.screening import Screening
from projections.worklist import Worklist

__all__ = ["READ_MODELS"]

# Append a read model class here to have the projector (and rebuilds) feed it.
READ_MODELS: list[type[ReadModel]] = [
    CaseStatus,
    *REPORT_MODELS,  # funnel, verification tasks, payments, time to support, stacked, roll, KPIs
]
READ_MODELS.append(Deadlines)  # every case's deadlines (the `deadlines` report)
READ_MODELS += [PayrollLedger, PayrollCycles]  # the payroll's follower, and its cycles report
READ_MODELS.append(Screening)  # data comparison batches and their hits (projections.screening)
READ_MODELS.append(Worklist)  # the workbench's inbox and approver's queue (api/web)
