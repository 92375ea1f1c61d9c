"""Which waiting study runs first, and what priority the worklist shows: pure rules (STYLE H2).

Two facts decide the queue order: how urgent the *order* is (a STAT request or an emergency
patient jumps the queue) and how long the analysis takes (radiographs take seconds, CT much longer,
so a waiting radiograph runs first). Among equals, the study that completed first runs first.

The priority a radiologist sees combines the order's priority with the AI's: the AI may raise a
study, never lower what the order already carries (a STAT order stays STAT whatever the model says).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from triage.core.priority import Priority, rank


class OrderPriority(StrEnum):
    """The urgency the requesting clinician gave, as read from the DICOM header at the edge."""

    STAT = "stat"
    URGENT = "urgent"
    ROUTINE = "routine"


# DICOM (0040,1003) Requested Procedure Priority and (0040,2009)/(0074,1200) enumerated values.
_ORDER_TERMS = {
    "STAT": OrderPriority.STAT,
    "HIGH": OrderPriority.URGENT,
    "URGENT": OrderPriority.URGENT,
    "ASAP": OrderPriority.URGENT,
    "ROUTINE": OrderPriority.ROUTINE,
    "MEDIUM": OrderPriority.ROUTINE,
    "LOW": OrderPriority.ROUTINE,
}
_ORDER_RANK = {OrderPriority.STAT: 0, OrderPriority.URGENT: 1, OrderPriority.ROUTINE: 2}
FAST_MODALITIES = frozenset({"CR", "DX"})  # analysed in seconds; CT takes tens of seconds


def order_priority(values: Iterable[str], *, emergency: bool = False) -> OrderPriority:
    """Return the order's priority from header terms (any case), raised to URGENT for emergencies.

    Unknown terms are ignored rather than guessed; the most urgent known term wins.

    >>> order_priority(["routine", "STAT"])
    <OrderPriority.STAT: 'stat'>
    >>> order_priority(["HIGH"])
    <OrderPriority.URGENT: 'urgent'>
    >>> order_priority([], emergency=True)
    <OrderPriority.URGENT: 'urgent'>
    >>> order_priority(["whatever"])
    <OrderPriority.ROUTINE: 'routine'>
    """
    found = [_ORDER_TERMS[v.strip().upper()] for v in values if v.strip().upper() in _ORDER_TERMS]
    if emergency:
        found.append(OrderPriority.URGENT)
    return min(found, key=_ORDER_RANK.__getitem__, default=OrderPriority.ROUTINE)


def schedule_key(order: OrderPriority, modalities: Iterable[str]) -> int:
    """Return the queue class: lower runs first (order urgency, then radiograph before CT).

    >>> schedule_key(OrderPriority.STAT, ["CT"]) < schedule_key(OrderPriority.URGENT, ["DX"])
    True
    >>> schedule_key(OrderPriority.ROUTINE, ["DX"]) < schedule_key(OrderPriority.ROUTINE, ["CT"])
    True
    """
    mods = {m.upper() for m in modalities}
    slow = 0 if mods and mods <= FAST_MODALITIES else 1
    return _ORDER_RANK[order] * 10 + slow


def order_as_priority(order: OrderPriority) -> Priority:
    """Return the worklist priority an order alone carries.

    >>> order_as_priority(OrderPriority.URGENT)
    <Priority.URGENT: 'urgent'>
    """
    return Priority(order.value)


def effective_priority(order: OrderPriority, ai: Priority | None) -> Priority:
    """Return the priority shown: the AI may raise the order's priority but never lower it.

    ``ai`` is ``None`` while the study waits for analysis. A failed analysis (NOT_ANALYSED) on a
    routine order shows NOT_ANALYSED, so the study is never silently routine.

    >>> effective_priority(OrderPriority.STAT, Priority.ROUTINE)
    <Priority.STAT: 'stat'>
    >>> effective_priority(OrderPriority.ROUTINE, Priority.URGENT)
    <Priority.URGENT: 'urgent'>
    >>> effective_priority(OrderPriority.ROUTINE, Priority.NOT_ANALYSED)
    <Priority.NOT_ANALYSED: 'not_analysed'>
    """
    base = order_as_priority(order)
    if ai is None:
        return base
    return ai if rank(ai) > rank(base) else base
