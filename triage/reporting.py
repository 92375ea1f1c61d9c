"""A study's result as plain JSON: what ``triage run --json`` prints, the folder sink writes, and
the service stores for its worklist (one shape everywhere, units in the keys).

Patient names and IDs never appear here; series are named by UID or hashed UID only.
"""

from __future__ import annotations

from pathlib import Path

from triage.core.findings import Finding, FractureFinding, NoduleFinding
from triage.pipeline import StudyResult


def finding_json(f: Finding) -> dict[str, object]:
    """Return one finding as plain JSON values, units in the keys."""
    if isinstance(f, NoduleFinding):
        return {
            "type": "nodule",
            "score": round(f.score, 4),
            "center_lps_mm": [round(v, 2) for v in f.center_lps_mm],
            "diameter_mm": round(f.diameter_mm, 2),
            "volume_mm3": round(f.volume_mm3, 1),
            "lung_rads_size_category": f.lung_rads_size.value,
            "series_uid": f.series_uid,
            "box_ijk": {
                "min": [round(v, 2) for v in f.box_ijk.min_ijk],
                "max": [round(v, 2) for v in f.box_ijk.max_ijk],
            },
        }
    assert isinstance(f, FractureFinding)
    return {
        "type": "fracture",
        "label": f.label,
        "score": round(f.score, 4),
        "sop_instance_uid": f.sop_instance_uid,
        "box_col_row_px": {
            "min": [round(v, 1) for v in f.box_px.min_col_row],
            "max": [round(v, 1) for v in f.box_px.max_col_row],
        },
        "width_mm": None if f.width_mm is None else round(f.width_mm, 2),
        "height_mm": None if f.height_mm is None else round(f.height_mm, 2),
    }


def summary_json(result: StudyResult, sr_path: Path | None) -> dict[str, object]:
    """Return the study summary written next to the SR (and printed by ``triage run --json``)."""
    return {
        "study_uid": result.study_uid,
        "priority": result.decision.priority.value,
        "reasons": list(result.decision.reasons),
        "policy_version": result.decision.policy_version,
        "findings": [finding_json(f) for f in result.findings],
        "tasks": [
            {
                "task": o.task.value,
                "series_uid": o.series_uid,
                "status": "failed" if o.failure else "analysed",
                "reason": o.failure,
                "candidates": o.candidates,
                "reported": len(o.findings),
                "seconds": round(o.seconds, 2),
                "provider": o.provider,
            }
            for o in result.outcomes
        ],
        "skipped_series": [
            {
                "series": s.series_uid_hash,
                "modality": s.modality,
                "task": s.task.value,
                "reason": s.reason,
            }
            for s in result.skipped_series
        ],
        "models": [
            {"name": a.name, "version": a.version, "weights_sha256": a.weights_sha256}
            for a in result.algorithms
        ],
        "sr_sop_instance_uid": None if result.sr is None else str(result.sr.SOPInstanceUID),
        "sr_path": None if sr_path is None else str(sr_path),
        "seconds": round(result.seconds, 2),
        "ai_generated": True,
        "verified_by_radiologist": False,
    }
