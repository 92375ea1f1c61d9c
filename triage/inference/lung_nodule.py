"""Lung-nodule task: CT volume -> network input, and boxes -> :class:`NoduleFinding` (no torch).

Training imports :func:`preprocess` too, so a model is trained on exactly what it is served.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from triage.core.findings import Box3D, NoduleFinding, ellipsoid_volume_mm3
from triage.imaging.geometry import lps_to_voxel, reorient, voxel_to_lps
from triage.imaging.lung_mask import lung_mask
from triage.imaging.resample import resample_to_spacing
from triage.imaging.volume import Volume
from triage.imaging.windowing import scale_window
from triage.inference.detection import Detections
from triage.inference.spec import DetectionSpec, PreprocessSpec

F32 = npt.NDArray[np.float32]
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """Network input ``(i, j, k)`` in 0..1 and the affine of that grid (voxel -> LPS mm)."""

    image: F32
    affine_lps: npt.NDArray[np.float64]


def preprocess(volume: Volume, prep: PreprocessSpec) -> Prepared:
    """Reorient to the card's axis codes, resample to its voxel size and apply its HU window."""
    if len(prep.target_spacing_mm) != 3:
        raise ValueError(
            f"target_spacing_mm must have 3 values for CT, got {prep.target_spacing_mm}"
        )
    oriented = reorient(volume, prep.axcodes)
    spacing = (prep.target_spacing_mm[0], prep.target_spacing_mm[1], prep.target_spacing_mm[2])
    resampled = resample_to_spacing(
        oriented, spacing, default_value=prep.intensity.low, anti_alias=prep.anti_alias
    )
    image = scale_window(resampled.to_ijk(), prep.intensity.low, prep.intensity.high)
    return Prepared(image=image, affine_lps=resampled.affine_lps)


def boxes_from_centers(
    centers_lps_mm: npt.ArrayLike,
    diameters_mm: npt.ArrayLike,
    prepared_affine: npt.NDArray[np.float64],
) -> F32:
    """Return StandardMode boxes (network voxels) of spheres given in LPS mm: training targets."""
    centers = lps_to_voxel(
        prepared_affine, np.asarray(centers_lps_mm, dtype=np.float64).reshape(-1, 3)
    )
    spacing = np.linalg.norm(prepared_affine[:3, :3], axis=0)
    half = np.asarray(diameters_mm, dtype=np.float64).reshape(-1, 1) / 2.0 / spacing[None, :]
    return np.concatenate([centers - half, centers + half], axis=1).astype(np.float32)


def to_findings(
    detections: Detections,
    prepared: Prepared,
    source: Volume,
    *,
    series_uid: str,
    min_score: float = 0.0,
) -> list[NoduleFinding]:
    """Map boxes in network voxels to nodule findings in LPS mm and source-volume voxels."""
    spacing = np.linalg.norm(prepared.affine_lps[:3, :3], axis=0)
    findings = []
    for box, score in zip(detections.boxes, detections.scores, strict=True):
        if float(score) < min_score:
            continue
        lo, hi = box[:3].astype(np.float64), box[3:].astype(np.float64)
        extent_mm = (hi - lo) * spacing
        center = voxel_to_lps(prepared.affine_lps, (lo + hi) / 2.0)
        src = _source_corners(box, source, prepared)
        findings.append(
            NoduleFinding(
                center_lps_mm=(float(center[0]), float(center[1]), float(center[2])),
                diameter_mm=float((extent_mm[0] + extent_mm[1]) / 2.0),
                volume_mm3=ellipsoid_volume_mm3(
                    (float(extent_mm[0]), float(extent_mm[1]), float(extent_mm[2]))
                ),
                score=float(score),
                series_uid=series_uid,
                box_ijk=Box3D(
                    min_ijk=tuple(float(v) for v in src.min(axis=0)),  # type: ignore[arg-type]
                    max_ijk=tuple(float(v) for v in src.max(axis=0)),  # type: ignore[arg-type]
                ),
            )
        )
    return findings


def inside_lungs(
    detections: Detections, source: Volume, prepared: Prepared, *, margin_mm: float
) -> Detections:
    """Keep detections whose box reaches the source volume's lung mask dilated by ``margin_mm``.

    The whole box counts, not only its centre: a large solid nodule is soft tissue, not air, so
    the HU lung mask has a hole where it sits and its centre can lie deeper than any sensible
    margin (a 29 mm nodule's centre is 14.5 mm from the nearest lung air) — a centre rule drops
    exactly the largest, most urgent nodules. Candidates wholly outside the dilated lungs (spine,
    chest wall, abdomen) are still dropped.

    The mask is computed on the source HU volume (any orientation); box corners are mapped from
    network voxels through LPS into source voxels and the box is tested on their bounding range.
    When the mask finds no lungs at all (an unusual scan, a field of view the HU rule does not
    fit), every candidate is kept and a warning logged: a filter that cannot see the lungs must
    not turn a scan with nodules into one with no findings.
    """
    if len(detections.scores) == 0:
        return detections
    mask = lung_mask(source, margin_mm=margin_mm)
    if not mask.any():
        logger.warning(
            "lung mask found no lungs; lung filter skipped, all %d candidates kept",
            len(detections.scores),
        )
        return detections
    keep = np.array(
        [_box_touches(mask, _source_range(box, source, prepared)) for box in detections.boxes],
        dtype=bool,
    )
    return Detections(detections.boxes[keep], detections.scores[keep], detections.labels[keep])


def _source_corners(
    box: npt.NDArray[np.float32], source: Volume, prepared: Prepared
) -> npt.NDArray[np.float64]:
    """Return the 8 corners of a network-voxel box as (fractional) source-voxel (i, j, k)."""
    lo, hi = box[:3].astype(np.float64), box[3:].astype(np.float64)
    corners = np.array(
        [[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])]
    )
    return lps_to_voxel(source.affine_lps, voxel_to_lps(prepared.affine_lps, corners))


def _source_range(
    box: npt.NDArray[np.float32], source: Volume, prepared: Prepared
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Return the inclusive (i, j, k) source-voxel range a network-voxel box covers."""
    src = _source_corners(box, source, prepared)
    return np.round(src.min(axis=0)).astype(np.int64), np.round(src.max(axis=0)).astype(np.int64)


def _box_touches(
    mask: npt.NDArray[np.bool_], ijk_range: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]
) -> bool:
    """Return whether any voxel of an inclusive (i, j, k) range is set in a [k, j, i] mask."""
    lo = np.maximum(ijk_range[0][::-1], 0)
    hi = np.minimum(ijk_range[1][::-1], np.asarray(mask.shape) - 1)
    if np.any(hi < lo):
        return False
    return bool(mask[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1].any())


def apply_card_filters(
    detections: Detections, source: Volume, prepared: Prepared, detection: DetectionSpec
) -> Detections:
    """Apply the card's CT-only candidate filters (currently: the lung mask)."""
    if detection.lung_mask_margin_mm is None:
        return detections
    return inside_lungs(detections, source, prepared, margin_mm=detection.lung_mask_margin_mm)
