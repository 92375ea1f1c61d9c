"""Flag burden: how often each policy flags a study URGENT with and without a reason to (synthetic).

    nice -n 5 .venv/bin/python -m benchmarks.bench_flag_burden --n-ct 40 --n-dr 60

A triage flag is only useful if it is rare where nothing is wrong: a worklist where most studies
are URGENT is a worklist sorted by arrival again. On the evaluation seeds of
``training.detection.evaluate`` (never trained on), the shipped models run once per study through
the serving path; the same findings are then judged by the pure core (``triage.core.priority``)
under policy version 1 (``min_score`` 0.5) and version 2 (each card's 1-FP operating point).

Study-level truth: a CT should be flagged when it holds a reference nodule of at least the
policy's urgent diameter (8 mm), a radiograph when it holds any fracture. Reported per task and
policy: flag sensitivity (flagged among should-flag), false-flag rate (flagged among the rest) and
findings per study at or above the threshold (what the SR lists, before its cap); and, for a site
choosing its own ``min_score``, the study-level trade-off: the lowest threshold that flags at
most 5 / 10 / 20 % of the studies without a reason, with the flag sensitivity there (chosen on
the same studies, so optimistic). Synthetic
phantoms: NOT clinical performance. Figures are printed and written to
``benchmarks/results/flag_burden.json``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from benchmarks._common import environment, write_result
from training.detection.evaluate import (
    EVAL_SEED_OFFSET,
    _runner,
    fracture_findings,
    nodule_findings,
)
from triage.config import REPO_ROOT
from triage.core.findings import Finding, NoduleFinding
from triage.core.priority import FracturePolicy, LungPolicy, Priority, TriagePolicy, prioritise

MODELS = REPO_ROOT / "models"


def _policies(threshold: float) -> dict[str, TriagePolicy]:
    v1 = TriagePolicy(version=1, lung_nodule=LungPolicy(0.5), fracture=FracturePolicy(0.5))
    v2 = replace(
        v1,
        version=2,
        lung_nodule=LungPolicy(threshold),
        fracture=FracturePolicy(threshold),
    )
    return {"v1 (min_score 0.5)": v1, f"v2 (operating point {threshold:.4f})": v2}


def _judge(
    studies: Sequence[tuple[list[Finding], bool]], policies: dict[str, TriagePolicy]
) -> dict[str, dict[str, float | int]]:
    out: dict[str, dict[str, float | int]] = {}
    for name, policy in policies.items():
        threshold = policy.lung_nodule.min_score  # one task per call: both thresholds are equal
        assert threshold is not None
        flagged = [
            prioritise(found, policy).priority in (Priority.URGENT, Priority.STAT)
            for found, _ in studies
        ]
        pos = [f for f, (_, should) in zip(flagged, studies, strict=True) if should]
        neg = [f for f, (_, should) in zip(flagged, studies, strict=True) if not should]
        reported = [sum(f.score >= threshold for f in found) for found, _ in studies]
        out[name] = {
            "should_flag": len(pos),
            "flagged_of_should": sum(pos),
            "flag_sensitivity": round(sum(pos) / max(len(pos), 1), 3),
            "others": len(neg),
            "flagged_of_others": sum(neg),
            "false_flag_rate": round(sum(neg) / max(len(neg), 1), 3),
            "findings_per_study": round(sum(reported) / max(len(reported), 1), 2),
        }
    return out


def _flag_score(found: Sequence[Finding], urgent_mm: float) -> float:
    """Return the score at which this study's findings would start to flag it (0 if never)."""
    return max(
        (f.score for f in found if not isinstance(f, NoduleFinding) or f.diameter_mm >= urgent_mm),
        default=0.0,
    )


def _study_curve(
    studies: Sequence[tuple[list[Finding], bool]], urgent_mm: float
) -> list[dict[str, float]]:
    """Return, per target false-flag rate, the lowest min_score meeting it and its sensitivity.

    Chosen on these same studies, so optimistic; a site would choose on its own data.
    """
    scores = [(_flag_score(found, urgent_mm), should) for found, should in studies]
    neg = sorted((s for s, should in scores if not should), reverse=True)
    pos = [s for s, should in scores if should]
    out = []
    for target in (0.05, 0.1, 0.2):
        allowed = int(target * len(neg))  # negatives that may be flagged
        t = neg[allowed] + 1e-6 if allowed < len(neg) else 0.0
        out.append(
            {
                "false_flag_rate_target": target,
                "min_score": round(t, 4),
                "false_flag_rate": round(sum(s >= t for s in neg) / max(len(neg), 1), 3),
                "flag_sensitivity": round(sum(s >= t for s in pos) / max(len(pos), 1), 3),
            }
        )
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Run both models on fresh synthetic studies and print each policy's flag burden."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-ct", type=int, default=40)
    ap.add_argument("--n-dr", type=int, default=60)
    ap.add_argument("--models", type=Path, default=MODELS)
    args = ap.parse_args(argv)
    result: dict[str, object] = {"environment": environment(), "note": "synthetic, NOT clinical"}
    urgent_mm = LungPolicy().urgent_diameter_mm
    for task, folder, n in (
        ("lung_nodule", args.models / "lung_nodule_det", args.n_ct),
        ("fracture", args.models / "fracture_det", args.n_dr),
    ):
        if n == 0:
            continue  # e.g. --n-ct 0: measure the radiograph model only
        served = _runner(folder)
        card = served.card
        threshold = card.operating_point_score
        if threshold is None:
            raise SystemExit(f"{folder} records no operating point; nothing to compare")
        studies: list[tuple[list[Finding], bool]] = []
        for seed in range(EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + n):
            if task == "lung_nodule":
                found, ct = nodule_findings(seed, served)
                should = any(t.diameter_mm >= urgent_mm for t in ct.nodules)
                studies.append((list(found), should))
            else:
                found_f, dr = fracture_findings(seed, served)
                studies.append((list(found_f), bool(dr.fractures)))
        result[task] = {
            "model": f"{card.name} {card.version}",
            "n_studies": n,
            "policies": _judge(studies, _policies(threshold)),
            "study_level_min_score_for_false_flag_rate": _study_curve(studies, urgent_mm),
        }
        print(task, result[task])  # noqa: T201 - benchmark report
    write_result("flag_burden", result)


if __name__ == "__main__":
    main()
