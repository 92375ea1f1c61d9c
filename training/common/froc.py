"""FROC and CPM with LUNA16 rules, via MONAI's FROC helpers, with bootstrap confidence intervals.

LUNA16: a detection is a hit when its centre lies within the radius of a reference nodule; each
nodule keeps its highest-scoring hit, further hits on the same nodule are ignored (neither TP nor
FP), and any detection hitting no nodule is a false positive. CPM is the mean sensitivity at 1/8,
1/4, 1/2, 1, 2, 4 and 8 false positives per scan. MONAI's ``compute_froc_score`` defaults to
CAMELYON's rates, so the LUNA16 rates are passed explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from monai.metrics.froc import compute_froc_curve_data, compute_froc_score

LUNA16_FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ScanResult:
    """One scan: detection scores and which reference target each detection hits."""

    pred_scores: F64  # (N,)
    hits: npt.NDArray[np.bool_]  # (N, T): detection n hits target t

    @property
    def n_targets(self) -> int:
        """Return the number of reference targets in the scan."""
        return int(self.hits.shape[1])


def scan_from_centers(
    pred_centers_mm: F64, pred_scores: F64, gt_centers_mm: F64, gt_radius_mm: F64
) -> ScanResult:
    """LUNA16 rule: a detection hits a nodule when its centre lies within the nodule's radius."""
    dims = np.asarray(gt_centers_mm).shape[-1]
    pred = np.asarray(pred_centers_mm, dtype=np.float64).reshape(len(pred_scores), dims)
    gt = np.asarray(gt_centers_mm, dtype=np.float64).reshape(len(gt_radius_mm), dims)
    dist = (
        np.linalg.norm(pred[:, None, :] - gt[None, :, :], axis=2)
        if len(gt)
        else np.zeros((len(pred), 0))
    )
    return ScanResult(
        np.asarray(pred_scores, dtype=np.float64), dist <= np.asarray(gt_radius_mm)[None, :]
    )


def scan_from_boxes(pred_centers_px: F64, pred_scores: F64, gt_boxes_px: F64) -> ScanResult:
    """Box rule: a detection hits a reference box when its centre lies inside the box."""
    pred = np.asarray(pred_centers_px, dtype=np.float64).reshape(len(pred_scores), 2)
    gt = np.asarray(gt_boxes_px, dtype=np.float64).reshape(-1, 4)
    inside = (
        (pred[:, None, 0] >= gt[None, :, 0])
        & (pred[:, None, 0] <= gt[None, :, 2])
        & (pred[:, None, 1] >= gt[None, :, 1])
        & (pred[:, None, 1] <= gt[None, :, 3])
    )
    return ScanResult(np.asarray(pred_scores, dtype=np.float64), inside)


def match_scan(scan: ScanResult) -> tuple[list[float], list[float], int]:
    """Return (fp scores, tp scores — one per detected target: its best hit —, n targets)."""
    best = np.full(scan.n_targets, -1.0)
    fps: list[float] = []
    for score, row in zip(scan.pred_scores, scan.hits, strict=True):
        hit = np.nonzero(row)[0]
        if hit.size == 0:
            fps.append(float(score))
        for h in hit:
            best[h] = max(best[h], float(score))
    return fps, [float(b) for b in best if b >= 0], scan.n_targets


def froc(scans: Sequence[ScanResult]) -> tuple[F64, F64, tuple[float, ...], float]:
    """Return (fps per scan, sensitivity) curve, sensitivity at the LUNA16 rates, and CPM."""
    fp_all: list[float] = []
    tp_all: list[float] = []
    targets = 0
    for scan in scans:
        fps, tps, n = match_scan(scan)
        fp_all += fps
        tp_all += tps
        targets += n
    if targets == 0:
        raise ValueError("FROC needs at least one reference nodule, got none")
    # MONAI skips the lowest threshold (CAMELYON code); a sentinel keeps every real detection
    # counted.
    fp_arr = np.asarray(fp_all + [-1.0])
    tp_arr = np.asarray(tp_all)
    fps_per_scan, sens = compute_froc_curve_data(fp_arr, tp_arr, targets, len(scans))
    at_rates = tuple(float(s) for s in _sens_at(fps_per_scan, sens, LUNA16_FP_RATES))
    cpm = float(compute_froc_score(fps_per_scan, sens, LUNA16_FP_RATES))
    return (
        np.asarray(fps_per_scan, dtype=np.float64),
        np.asarray(sens, dtype=np.float64),
        at_rates,
        cpm,
    )


def threshold_at_fp_rate(scans: Sequence[ScanResult], rate: float) -> float:
    """Return the lowest score threshold that keeps false positives at or below ``rate`` per scan.

    This is the operating point a user would pick from the FROC curve ("at most one false positive
    per scan"); a detection counts when its score is >= the threshold. With fewer false positives
    than allowed, every detection counts (``-inf``).
    """
    fp_scores = sorted((s for scan in scans for s in match_scan(scan)[0]), reverse=True)
    allowed = int(np.floor(rate * len(scans) + 1e-9))
    if len(fp_scores) <= allowed:
        return float("-inf")
    return float(np.nextafter(fp_scores[allowed], np.inf))


def target_best_scores(scan: ScanResult) -> F64:
    """Return each target's highest hit score (``-inf`` for a target no detection hits)."""
    scores = np.where(scan.hits, scan.pred_scores[:, None], -np.inf)
    return np.asarray(
        scores.max(axis=0) if len(scan.pred_scores) else np.full(scan.n_targets, -np.inf)
    )


def subgroup_sensitivity(
    scans: Sequence[ScanResult],
    labels: Sequence[Sequence[Mapping[str, str]]],
    threshold: float,
) -> dict[str, dict[str, float | int]]:
    """Return sensitivity at ``threshold`` per subgroup ("kind=solid", "image=chest", ...).

    ``labels[s][t]`` describes target ``t`` of scan ``s`` as attribute -> value; a target counts
    as detected when its best hit scores >= ``threshold``. Subgroups show *which* targets a model
    misses, which one overall figure hides; group ``all`` holds every target.
    """
    counts: dict[str, list[int]] = {"all": [0, 0]}
    for scan, scan_labels in zip(scans, labels, strict=True):
        if len(scan_labels) != scan.n_targets:
            raise ValueError(
                f"labels must describe every target: got {len(scan_labels)} for {scan.n_targets}"
            )
        for best, attrs in zip(target_best_scores(scan), scan_labels, strict=True):
            counts["all"][0] += 1
            counts["all"][1] += int(best >= threshold)
            for key, value in attrs.items():
                n_det = counts.setdefault(f"{key}={value}", [0, 0])
                n_det[0] += 1
                n_det[1] += int(best >= threshold)
    return {
        group: {"n": n, "detected": det, "sensitivity": round(det / n, 4)}
        for group, (n, det) in sorted(counts.items())
    }


def _sens_at(fps: F64, sens: F64, rates: Sequence[float]) -> F64:
    return np.interp(rates, fps[::-1], sens[::-1])


def bootstrap_ci(
    scans: Sequence[ScanResult], *, n_boot: int = 1000, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """Return 95 % percentile intervals of CPM and of sensitivity at each rate, resampling scans."""
    rng = np.random.default_rng(seed)
    cpms, rows = [], []
    for _ in range(n_boot):
        pick = [scans[i] for i in rng.integers(0, len(scans), len(scans))]
        if sum(s.n_targets for s in pick) == 0:
            continue
        _, _, at, cpm = froc(pick)
        cpms.append(cpm)
        rows.append(at)
    out = {"cpm": _pct(cpms)}
    arr = np.asarray(rows)
    for n, rate in enumerate(LUNA16_FP_RATES):
        out[f"sens@{rate:g}"] = _pct(list(arr[:, n]))
    return out


def _pct(values: list[float]) -> tuple[float, float]:
    return (float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))
