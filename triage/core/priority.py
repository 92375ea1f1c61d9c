"""How urgent a study is: the clinicians' rules, pure and fast to test (STYLE H2).

The AI may raise a study's priority, never lower one: any failure to analyse is ``NOT_ANALYSED``
with a reason, never a silent ``ROUTINE`` (STYLE H20).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from triage.core.findings import Finding, FractureFinding, NoduleFinding


class Priority(StrEnum):
    """Reading priority set by the engine."""

    STAT = "stat"
    URGENT = "urgent"
    ROUTINE = "routine"
    NOT_ANALYSED = "not_analysed"


_RANK = {Priority.ROUTINE: 0, Priority.NOT_ANALYSED: 1, Priority.URGENT: 2, Priority.STAT: 3}


def rank(priority: Priority) -> int:
    """Return the worklist rank: higher is read first. NOT_ANALYSED sits above ROUTINE.

    >>> P = Priority
    >>> rank(P.STAT) > rank(P.URGENT) > rank(P.NOT_ANALYSED) > rank(P.ROUTINE)
    True
    """
    return _RANK[priority]


@dataclass(frozen=True, slots=True)
class LungPolicy:
    """Thresholds for nodules; ``stat_diameter_mm`` of ``None`` means no nodule is STAT.

    ``min_score`` of ``None`` means "the model's own operating point" (the score its card records
    at 1 false positive per scan): the edge fills it in with ``with_operating_points`` before any
    finding is judged, because only the edge knows which model is loaded.
    """

    min_score: float | None = 0.5
    urgent_diameter_mm: float = 8.0
    stat_diameter_mm: float | None = None


@dataclass(frozen=True, slots=True)
class FracturePolicy:
    """Thresholds for fractures; labels in ``stat_labels`` make the study STAT.

    ``min_score`` of ``None`` means the model's operating point, as for ``LungPolicy``.
    """

    min_score: float | None = 0.5
    stat_score: float | None = None
    stat_labels: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TriagePolicy:
    """The versioned clinical policy (loaded from ``configs/policy.yaml`` at the edge)."""

    version: int = 1
    lung_nodule: LungPolicy = field(default_factory=LungPolicy)
    fracture: FracturePolicy = field(default_factory=FracturePolicy)


@dataclass(frozen=True, slots=True)
class TriageDecision:
    """The outcome for one study: the priority and every reason behind it, readable by a person."""

    priority: Priority
    reasons: tuple[str, ...]
    policy_version: int


def with_operating_points(
    policy: TriagePolicy, *, lung_nodule: float | None, fracture: float | None
) -> TriagePolicy:
    """Return ``policy`` with each "model operating point" ``min_score`` set to the given score.

    A number already in the policy wins (a site's explicit choice); a ``None`` with no operating
    point to fill it stays ``None``, and judging a finding against it raises, so the edge must
    fail that task with a reason instead.

    >>> p = TriagePolicy(lung_nodule=LungPolicy(min_score=None))
    >>> with_operating_points(p, lung_nodule=0.98, fracture=0.6).lung_nodule.min_score
    0.98
    >>> with_operating_points(p, lung_nodule=0.98, fracture=0.6).fracture.min_score
    0.5
    """
    lung, frac = policy.lung_nodule, policy.fracture
    if lung.min_score is None and lung_nodule is not None:
        lung = replace(lung, min_score=lung_nodule)
    if frac.min_score is None and fracture is not None:
        frac = replace(frac, min_score=fracture)
    return replace(policy, lung_nodule=lung, fracture=frac)


def _threshold(min_score: float | None, task: str) -> float:
    if min_score is None:
        raise ValueError(
            f"policy {task}.min_score must be resolved to the model's operating point before "
            "findings are judged (with_operating_points); the model records none"
        )
    return min_score


def _nodule_priority(f: NoduleFinding, p: LungPolicy) -> tuple[Priority, str | None]:
    if f.score < _threshold(p.min_score, "lung_nodule"):
        return Priority.ROUTINE, None
    text = (
        f"nodule {f.diameter_mm:.1f} mm (Lung-RADS size {f.lung_rads_size.value}), "
        f"score {f.score:.2f}"
    )
    if p.stat_diameter_mm is not None and f.diameter_mm >= p.stat_diameter_mm:
        return Priority.STAT, f"{text} >= {p.stat_diameter_mm:g} mm"
    if f.diameter_mm >= p.urgent_diameter_mm:
        return Priority.URGENT, f"{text} >= {p.urgent_diameter_mm:g} mm"
    return Priority.ROUTINE, f"{text} below {p.urgent_diameter_mm:g} mm"


def _fracture_priority(f: FractureFinding, p: FracturePolicy) -> tuple[Priority, str | None]:
    if f.score < _threshold(p.min_score, "fracture"):
        return Priority.ROUTINE, None
    text = f"{f.label} score {f.score:.2f}"
    if f.label in p.stat_labels or (p.stat_score is not None and f.score >= p.stat_score):
        return Priority.STAT, f"{text} (STAT rule)"
    return Priority.URGENT, text


def prioritise(
    findings: Sequence[Finding],
    policy: TriagePolicy,
    *,
    failures: Sequence[str] = (),
) -> TriageDecision:
    """Return the study's priority from its findings and from any task that failed.

    A failed task makes the study ``NOT_ANALYSED`` unless a finding elsewhere already makes it more
    urgent; either way every failure is listed in the reasons, so nothing reads as a silent routine.

    >>> prioritise([], TriagePolicy()).priority.value
    'routine'
    >>> prioritise([], TriagePolicy(), failures=["no series qualifies"]).priority.value
    'not_analysed'
    """
    best = Priority.ROUTINE
    reasons: list[str] = []
    for f in findings:
        if isinstance(f, NoduleFinding):
            prio, why = _nodule_priority(f, policy.lung_nodule)
        else:
            prio, why = _fracture_priority(f, policy.fracture)
        if why is not None and prio != Priority.ROUTINE:
            reasons.append(why)
        if rank(prio) > rank(best):
            best = prio
    for failure in failures:
        reasons.append(f"not analysed: {failure}")
    if failures and rank(best) < rank(Priority.NOT_ANALYSED):
        best = Priority.NOT_ANALYSED
    if best == Priority.ROUTINE:
        n = sum(1 for f in findings if _score(f) >= _min_score(f, policy))
        reasons.append(
            f"no finding meets the urgent rule ({n} finding(s) above the score threshold)"
        )
    return TriageDecision(priority=best, reasons=tuple(reasons), policy_version=policy.version)


def _score(f: Finding) -> float:
    return f.score


def _min_score(f: Finding, policy: TriagePolicy) -> float:
    if isinstance(f, NoduleFinding):
        return _threshold(policy.lung_nodule.min_score, "lung_nodule")
    return _threshold(policy.fracture.min_score, "fracture")
