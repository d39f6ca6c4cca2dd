"""Which cases a user sees in the monitor, as one SQL condition (lists of 100,000 cases cannot ask the
policy case by case).

It is the list form of `engine.policy`'s case levels, and never wider: every case it admits is one the
policy lets the user read (`case:read`); tests check that against `policy.can` on a data set.

- supervisors outside a ministry: every case (status level);
- unit leads: the cases of their units (responsible unit) and the cases started by a member of their units;
- coordinators: the cases the statewide network works on (a task for a coordinator group, from the facts
  table), the cases with an open task for one of their groups, and the cases they started;
- everybody else (counsellors, ministries, admins): none; the monitor is not their tool.
"""

from __future__ import annotations

from sqlalchemy import false, or_, select, true
from sqlalchemy.orm import Session

from .. import policy
from ..identity import groups_of
from ..models import CaseFact, Membership, ProcessInstance, Task, TaskCandidate, User


def case_scope(session: Session, user: User | None):
    """A condition on `ProcessInstance` admitting exactly the cases `user` sees in the monitor."""
    my_roles = policy.roles(user)
    if not my_roles:
        return false()
    if "supervisor" in my_roles and not policy.is_ministry_member(session, user):
        return true()
    conditions = []
    leads = {m.unit_id for m in user.memberships if m.role == "lead"}
    if leads:
        members = (select(User.username).join(Membership, Membership.user_id == User.id)
                   .where(Membership.unit_id.in_(leads), Membership.role.in_(policy.CASE_ROLES)))
        conditions += [ProcessInstance.responsible_unit.in_(leads), ProcessInstance.started_by.in_(members)]
    if "coordinator" in my_roles:
        network = select(CaseFact.instance_id).where(CaseFact.network.is_(True))
        waiting = (select(Task.instance_id).join(TaskCandidate, TaskCandidate.task_id == Task.id)
                   .where(TaskCandidate.kind == "group", TaskCandidate.value.in_(sorted(groups_of(user))),
                          Task.state == "open"))
        conditions += [ProcessInstance.id.in_(network), ProcessInstance.id.in_(waiting),
                       ProcessInstance.started_by == user.username]
    return or_(*conditions) if conditions else false()
