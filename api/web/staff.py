"""The demo's staff: one person per role, offered on the embedded sign-in page."""

from __future__ import annotations

from dataclasses import dataclass

from domain.roles import Role

__all__ = ["DEMO_STAFF", "StaffMember", "staff_member"]


@dataclass(frozen=True)
class StaffMember:
    """Someone a newcomer can sign in as, to try a role."""

    actor: str
    role: Role
    name_zh: str
    name_en: str
    post_zh: str
    post_en: str


DEMO_STAFF: tuple[StaffMember, ...] = (
    StaffMember(
        "wang.fang", Role.CASEWORKER, "王芳", "Wang Fang",
        "安仁镇社会救助经办员", "Caseworker, Anren township",
    ),
    StaffMember(
        "zhao.min", Role.APPROVER, "赵敏", "Zhao Min",
        "大荔县民政局审批员", "Approver, Dali county civil affairs",
    ),
    StaffMember(
        "chen.jing", Role.AUDITOR, "陈静", "Chen Jing",
        "渭南市审计员", "Auditor, Weinan city",
    ),
    StaffMember(
        "liu.yang", Role.ANALYST, "刘洋", "Liu Yang",
        "陕西省民政厅统计分析员", "Analyst, Shaanxi civil affairs",
    ),
)  # fmt: skip


def staff_member(actor: str) -> StaffMember | None:
    """The demo staff member with this id, if any."""
    return next((member for member in DEMO_STAFF if member.actor == actor), None)
