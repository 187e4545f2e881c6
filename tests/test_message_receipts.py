"""An upstream message takes effect once: its receipt is saved with the events it caused."""

from __future__ import annotations

import pytest

from domain.application import CaseWork
from domain.errors import DuplicateMessageError
from tests.stories import by, opened

pytestmark = pytest.mark.postgres


def attach(app: CaseWork, case_id: object, signal: str) -> int:
    return app.attach_signal({"case_id": case_id, "signal": signal, "by": by("upstream_system")})


def test_the_same_message_twice_has_one_effect(app: CaseWork) -> None:
    case_id = opened(app)
    with app.handling_message("monitoring/alert-1"):
        attach(app, case_id, "utility arrears")
    before = app.recorder.max_notification_id()
    with (
        pytest.raises(DuplicateMessageError, match="monitoring/alert-1"),
        app.handling_message("monitoring/alert-1"),
    ):
        attach(app, case_id, "utility arrears")
    assert app.recorder.max_notification_id() == before
    assert app.get_case(case_id).signals.count("utility arrears") == 1
    assert app.has_received("monitoring/alert-1")
    assert not app.has_received("monitoring/alert-2")


def test_a_refused_command_leaves_no_receipt(app: CaseWork) -> None:
    case_id = opened(app)
    app.close_case({"case_id": case_id, "by": by("approver", reason="resolved")})
    with pytest.raises(Exception, match="closed"), app.handling_message("hall/9"):
        attach(app, case_id, "late signal")
    assert not app.has_received("hall/9")
