"""The clinicians' priority rules: boundaries, fail-safe, monotonicity (STYLE H20, H23)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.core.findings import (
    Box2D,
    Box3D,
    Finding,
    FractureFinding,
    LungRadsSize,
    NoduleFinding,
    ellipsoid_volume_mm3,
)
from triage.core.priority import (
    FracturePolicy,
    LungPolicy,
    Priority,
    TriagePolicy,
    prioritise,
    rank,
    with_operating_points,
)


def nodule(diameter_mm: float, score: float = 0.9) -> NoduleFinding:
    """Return a nodule finding of the given mean diameter and model score."""
    return NoduleFinding(
        center_lps_mm=(0.0, 0.0, 0.0),
        diameter_mm=diameter_mm,
        volume_mm3=ellipsoid_volume_mm3((diameter_mm, diameter_mm, diameter_mm)),
        score=score,
        series_uid="1.2.3",
        box_ijk=Box3D(min_ijk=(0.0, 0.0, 0.0), max_ijk=(1.0, 1.0, 1.0)),
    )


def fracture(score: float = 0.9, label: str = "fracture") -> FractureFinding:
    """Return a fracture finding with the given score and label."""
    return FractureFinding(
        box_px=Box2D(min_col_row=(0.0, 0.0), max_col_row=(10.0, 10.0)),
        score=score,
        sop_instance_uid="1.2.3.4",
        series_uid="1.2.3",
        width_mm=None,
        height_mm=None,
        label=label,
    )


def decide(
    *findings: Finding, policy: TriagePolicy | None = None, failures: tuple[str, ...] = ()
) -> Priority:
    """Return only the priority of a decision."""
    return prioritise(findings, policy or TriagePolicy(), failures=failures).priority


# --- strategies -----------------------------------------------------------------------------------

diameters_mm = st.floats(min_value=0.0, max_value=60.0, allow_nan=False)
growths_mm = st.floats(min_value=0.0, max_value=20.0, allow_nan=False)
scores = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
labels = st.sampled_from(["fracture", "cervical_spine", "rib", "wrist"])


@st.composite
def policies(draw: st.DrawFn) -> TriagePolicy:
    """Draw an arbitrary (possibly odd, e.g. STAT below URGENT) policy."""
    lung = LungPolicy(
        min_score=draw(scores),
        urgent_diameter_mm=draw(st.floats(0.0, 40.0)),
        stat_diameter_mm=draw(st.none() | st.floats(0.0, 60.0)),
    )
    frac = FracturePolicy(
        min_score=draw(scores),
        stat_score=draw(st.none() | scores),
        stat_labels=tuple(draw(st.lists(labels, max_size=2, unique=True))),
    )
    return TriagePolicy(version=draw(st.integers(1, 100)), lung_nodule=lung, fracture=frac)


nodules = st.builds(nodule, diameters_mm, scores)
fractures = st.builds(fracture, scores, labels)
findings_lists = st.lists(nodules | fractures, max_size=5)
failure_texts = st.text(min_size=1, max_size=30)


# --- properties (H23) -----------------------------------------------------------------------------


@settings(deadline=None)
@given(d=diameters_mm, grow=growths_mm, score=scores, policy=policies())
def test_priority_never_drops_when_a_nodule_grows(
    d: float, grow: float, score: float, policy: TriagePolicy
) -> None:
    small = decide(nodule(d, score), policy=policy)
    large = decide(nodule(d + grow, score), policy=policy)
    assert rank(large) >= rank(small)


@settings(deadline=None)
@given(d=diameters_mm, s=scores, more=scores, policy=policies())
def test_priority_never_drops_when_a_nodule_is_more_confident(
    d: float, s: float, more: float, policy: TriagePolicy
) -> None:
    hi = max(s, more)
    assert rank(decide(nodule(d, hi), policy=policy)) >= rank(decide(nodule(d, s), policy=policy))


@settings(deadline=None)
@given(s=scores, more=scores, label=labels, policy=policies())
def test_priority_never_drops_when_a_fracture_is_more_confident(
    s: float, more: float, label: str, policy: TriagePolicy
) -> None:
    hi = max(s, more)
    low_prio = decide(fracture(s, label), policy=policy)
    assert rank(decide(fracture(hi, label), policy=policy)) >= rank(low_prio)


@settings(deadline=None)
@given(
    existing=findings_lists,
    extra=nodules | fractures,
    failures=st.lists(failure_texts, max_size=2),
    policy=policies(),
)
def test_adding_a_finding_never_lowers_priority(
    existing: list[Finding], extra: Finding, failures: list[str], policy: TriagePolicy
) -> None:
    before = prioritise(existing, policy, failures=failures).priority
    after = prioritise([*existing, extra], policy, failures=failures).priority
    assert rank(after) >= rank(before)


@settings(deadline=None)
@given(
    findings=findings_lists,
    failures=st.lists(failure_texts, min_size=1, max_size=3),
    policy=policies(),
)
def test_any_failure_is_not_analysed_or_more_urgent_never_routine(
    findings: list[Finding], failures: list[str], policy: TriagePolicy
) -> None:
    decision = prioritise(findings, policy, failures=failures)
    assert decision.priority != Priority.ROUTINE
    assert rank(decision.priority) >= rank(Priority.NOT_ANALYSED)


@settings(deadline=None)
@given(findings=findings_lists, failures=st.lists(failure_texts, max_size=3), policy=policies())
def test_reasons_mention_every_failure(
    findings: list[Finding], failures: list[str], policy: TriagePolicy
) -> None:
    decision = prioritise(findings, policy, failures=failures)
    for failure in failures:
        assert any(failure in reason for reason in decision.reasons), (failure, decision.reasons)
    assert decision.policy_version == policy.version


@settings(deadline=None)
@given(findings=findings_lists, failures=st.lists(failure_texts, max_size=2), policy=policies())
def test_every_decision_has_at_least_one_reason(
    findings: list[Finding], failures: list[str], policy: TriagePolicy
) -> None:
    assert prioritise(findings, policy, failures=failures).reasons


# --- boundaries and examples ----------------------------------------------------------------------


def test_no_findings_and_no_failures_is_routine_with_a_reason() -> None:
    decision = prioritise([], TriagePolicy(version=7))
    assert decision.priority == Priority.ROUTINE
    assert decision.policy_version == 7
    assert decision.reasons == (
        "no finding meets the urgent rule (0 finding(s) above the score threshold)",
    )


def test_routine_reason_counts_findings_above_the_score_threshold() -> None:
    decision = prioritise([nodule(4.0, 0.9), nodule(5.0, 0.1), nodule(3.0, 0.5)], TriagePolicy())
    assert decision.priority == Priority.ROUTINE
    assert decision.reasons[-1].startswith("no finding meets the urgent rule (2 finding(s)")


def test_nodule_at_exactly_the_urgent_diameter_is_urgent() -> None:
    assert decide(nodule(8.0)) == Priority.URGENT


def test_nodule_just_below_the_urgent_diameter_is_routine() -> None:
    assert decide(nodule(7.99)) == Priority.ROUTINE


def test_nodule_score_exactly_at_min_score_counts() -> None:
    policy = TriagePolicy(lung_nodule=LungPolicy(min_score=0.35))
    assert decide(nodule(9.0, 0.35), policy=policy) == Priority.URGENT
    assert decide(nodule(9.0, 0.3499), policy=policy) == Priority.ROUTINE


def test_large_nodule_below_min_score_is_routine_and_not_a_reason() -> None:
    decision = prioritise([nodule(30.0, 0.1)], TriagePolicy())
    assert decision.priority == Priority.ROUTINE
    assert not any(r.startswith("nodule") for r in decision.reasons)


def test_nodule_at_stat_diameter_is_stat() -> None:
    policy = TriagePolicy(lung_nodule=LungPolicy(stat_diameter_mm=30.0))
    assert decide(nodule(30.0), policy=policy) == Priority.STAT
    assert decide(nodule(29.99), policy=policy) == Priority.URGENT


def test_no_nodule_is_stat_without_a_stat_diameter() -> None:
    assert decide(nodule(60.0)) == Priority.URGENT


def test_urgent_nodule_reason_names_size_category_score_and_threshold() -> None:
    decision = prioritise([nodule(9.0, 0.8)], TriagePolicy())
    assert decision.reasons == ("nodule 9.0 mm (Lung-RADS size 4A), score 0.80 >= 8 mm",)


@pytest.mark.parametrize(
    ("diameter_mm", "category"),
    [
        (0.0, LungRadsSize.CAT2),
        (5.99, LungRadsSize.CAT2),
        (6.0, LungRadsSize.CAT3),
        (7.99, LungRadsSize.CAT3),
        (8.0, LungRadsSize.CAT4A),
        (14.99, LungRadsSize.CAT4A),
        (15.0, LungRadsSize.CAT4B),
        (40.0, LungRadsSize.CAT4B),
    ],
)
def test_lung_rads_size_category_changes_at_6_8_and_15_mm(
    diameter_mm: float, category: LungRadsSize
) -> None:
    assert nodule(diameter_mm).lung_rads_size == category


def test_fracture_above_min_score_is_urgent() -> None:
    assert decide(fracture(0.5)) == Priority.URGENT
    assert decide(fracture(0.49)) == Priority.ROUTINE


def test_fracture_with_a_stat_label_is_stat() -> None:
    policy = TriagePolicy(fracture=FracturePolicy(stat_labels=("cervical_spine",)))
    decision = prioritise([fracture(0.6, "cervical_spine")], policy)
    assert decision.priority == Priority.STAT
    assert decision.reasons == ("cervical_spine score 0.60 (STAT rule)",)
    assert decide(fracture(0.6, "wrist"), policy=policy) == Priority.URGENT


def test_fracture_with_a_stat_label_below_min_score_stays_routine() -> None:
    policy = TriagePolicy(fracture=FracturePolicy(stat_labels=("cervical_spine",)))
    assert decide(fracture(0.4, "cervical_spine"), policy=policy) == Priority.ROUTINE


def test_fracture_at_exactly_stat_score_is_stat() -> None:
    policy = TriagePolicy(fracture=FracturePolicy(stat_score=0.9))
    assert decide(fracture(0.9), policy=policy) == Priority.STAT
    assert decide(fracture(0.89), policy=policy) == Priority.URGENT


def test_failure_alone_is_not_analysed_with_the_failure_as_reason() -> None:
    decision = prioritise([], TriagePolicy(), failures=["no series qualifies"])
    assert decision.priority == Priority.NOT_ANALYSED
    assert decision.reasons == ("not analysed: no series qualifies",)


def test_failure_does_not_lower_a_stat_finding_and_is_still_listed() -> None:
    policy = TriagePolicy(fracture=FracturePolicy(stat_labels=("cervical_spine",)))
    decision = prioritise(
        [fracture(0.9, "cervical_spine")], policy, failures=["lung task timed out"]
    )
    assert decision.priority == Priority.STAT
    assert "not analysed: lung task timed out" in decision.reasons


def test_failure_with_only_routine_findings_is_not_analysed() -> None:
    assert decide(nodule(4.0), failures=("runtime unavailable",)) == Priority.NOT_ANALYSED


def test_most_urgent_finding_wins_and_every_non_routine_finding_is_a_reason() -> None:
    policy = TriagePolicy(fracture=FracturePolicy(stat_labels=("cervical_spine",)))
    decision = prioritise([nodule(3.0), nodule(9.0), fracture(0.8, "cervical_spine")], policy)
    assert decision.priority == Priority.STAT
    assert len(decision.reasons) == 2


def test_rank_orders_stat_urgent_not_analysed_routine() -> None:
    ordered = sorted(Priority, key=rank, reverse=True)
    assert ordered == [Priority.STAT, Priority.URGENT, Priority.NOT_ANALYSED, Priority.ROUTINE]
    assert len({rank(p) for p in Priority}) == len(Priority)


def test_priority_accepts_its_string_value_and_rejects_others() -> None:
    assert Priority("urgent") is Priority.URGENT
    with pytest.raises(ValueError, match="'soon' is not a valid Priority"):
        Priority("soon")


def test_an_operating_point_fills_only_the_thresholds_left_to_the_model() -> None:
    policy = TriagePolicy(
        lung_nodule=LungPolicy(min_score=None), fracture=FracturePolicy(min_score=0.7)
    )
    resolved = with_operating_points(policy, lung_nodule=0.98, fracture=0.55)
    assert resolved.lung_nodule.min_score == 0.98
    assert resolved.fracture.min_score == 0.7  # the site's explicit number wins
    assert prioritise([nodule(12.0, score=0.97)], resolved).priority == Priority.ROUTINE
    assert prioritise([nodule(12.0, score=0.99)], resolved).priority == Priority.URGENT


def test_an_unresolved_operating_point_is_never_judged_silently() -> None:
    policy = with_operating_points(
        TriagePolicy(fracture=FracturePolicy(min_score=None)), lung_nodule=None, fracture=None
    )
    assert policy.fracture.min_score is None
    assert prioritise([], policy).priority == Priority.ROUTINE  # no fracture finding to judge
    with pytest.raises(ValueError, match=r"fracture\.min_score must be resolved"):
        prioritise([fracture(0.99)], policy)
