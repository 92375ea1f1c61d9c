"""Evaluate an exported model through the *serving* path (preprocess -> ONNX -> numpy detector).

Nodules: fresh synthetic phantoms (seeds never used in training) rendered at scanner-like voxel
sizes (in-plane 0.6-0.95 mm, slices 0.6-2.5 mm), so resampling is exercised too; LUNA16 FROC/CPM
with bootstrap CIs; plus the real LIDC-IDRI-0001 scan against its radiologists' consensus nodule.
Fractures: fresh synthetic radiographs; FROC with "hit" = predicted box centre inside the reference
box, and (when asked) average precision at IoU 0.1 / 0.3 on the boxes (``training.common.box_ap``).
Both also report sensitivity per subgroup (nodule kind, Lung-RADS size band, juxta-pleural;
radiograph kind, fracture kind) at the 1-false-positive-per-scan operating point.
Synthetic figures describe the phantoms, not clinical performance.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.common.box_ap import BoxImage, average_precision
from training.common.froc import (
    LUNA16_FP_RATES,
    ScanResult,
    bootstrap_ci,
    froc,
    scan_from_boxes,
    scan_from_centers,
    subgroup_sensitivity,
    threshold_at_fp_rate,
)
from training.detection.config import TRAIN_SEED_LIMIT
from training.detection.fracture_data import as_radiograph
from triage.core.findings import (
    FractureFinding,
    LungRadsSize,
    NoduleFinding,
    lung_rads_size_category,
)
from triage.dicom.reader import scan_folder
from triage.dicom.series import load_ct_volume
from triage.inference import fracture, lung_nodule
from triage.inference.card import ModelCard, load_card
from triage.inference.detection import Detections
from triage.inference.detector import detect
from triage.inference.rescoring import PatchClassifier, apply_rescoring
from triage.inference.runtime import (
    RuntimeOptions,
    head_function,
    make_patch_classifier,
    make_runtime,
)
from triage.synth.ct_phantom import CtPhantom, generate_ct_phantom
from triage.synth.dr_phantom import DrPhantom, generate_radiograph

EVAL_SEED_OFFSET = TRAIN_SEED_LIMIT  # training uses seeds below it (config validates)


@dataclass(frozen=True)
class Evaluation:
    """FROC summary of one model on one data set."""

    n_scans: int
    n_targets: int
    sens_at_rates: tuple[float, ...]
    cpm: float
    ci: dict[str, tuple[float, float]]
    per_scan: list[dict[str, object]]
    ap_at_iou: dict[float, float] | None = None  # fractures, when asked: {IoU: AP}
    # sensitivity per subgroup at the 1-FP-per-scan operating point, and that threshold
    subgroups_at_1fp: dict[str, dict[str, float | int]] | None = None
    threshold_at_1fp: float | None = None

    def as_json(self) -> dict[str, object]:
        """Return plain values for the model card and reports."""
        out: dict[str, object] = {
            "n_scans": self.n_scans,
            "n_targets": self.n_targets,
            "cpm": round(self.cpm, 4),
            "sensitivity_at_fp_per_scan": {
                f"{r:g}": round(s, 4)
                for r, s in zip(LUNA16_FP_RATES, self.sens_at_rates, strict=True)
            },
            "ci95": {k: [round(a, 4), round(b, 4)] for k, (a, b) in self.ci.items()},
        }
        if self.ap_at_iou is not None:
            out["ap_at_iou"] = {f"{t:g}": round(v, 4) for t, v in self.ap_at_iou.items()}
            out["ap_method"] = "MONAI COCOMetric: 101-point interpolated AP, max 100 detections"
        if self.subgroups_at_1fp is not None:
            out["operating_point_1fp"] = {
                "score_threshold": None
                if self.threshold_at_1fp is None or not np.isfinite(self.threshold_at_1fp)
                else round(self.threshold_at_1fp, 4),
                "sensitivity_by_subgroup": self.subgroups_at_1fp,
            }
        return out


@dataclass(frozen=True)
class Served:
    """A model as the engine serves it: card, detector head and (if carded) rescoring stage."""

    card: ModelCard
    head: Callable[[np.ndarray], list[np.ndarray]]
    rescorer: PatchClassifier | None = None

    def detect(self, image: np.ndarray) -> Detections:
        """Run the detector on a preprocessed image (no card filters, no rescoring)."""
        return detect(image, self.head, self.card.detection)

    def rescore(self, image: np.ndarray, dets: Detections) -> Detections:
        """Apply the card's rescoring stage (a no-op when it has none)."""
        return apply_rescoring(image, dets, self.card, self.rescorer)


def _runner(model_dir: Path) -> Served:
    card = load_card(model_dir)
    runtime = make_runtime("onnx", card, model_dir, RuntimeOptions())
    return Served(
        card,
        head_function(runtime, card),
        make_patch_classifier(card, model_dir, RuntimeOptions()),
    )


Labels = list[dict[str, str]]  # one attribute -> value mapping per reference target


_SIZE_BANDS = {
    LungRadsSize.CAT2: "<6mm",
    LungRadsSize.CAT3: "6-8mm",
    LungRadsSize.CAT4A: "8-15mm",
    LungRadsSize.CAT4B: ">=15mm",
}


def nodule_size_band(diameter_mm: float) -> str:
    """Return the Lung-RADS v2022 solid-nodule size band of a diameter, named by its mm range.

    The cut-offs are the engine's own (``triage.core.findings.lung_rads_size_category``).
    """
    return _SIZE_BANDS[lung_rads_size_category(diameter_mm)]


def render_nodule_phantom(seed: int) -> CtPhantom:
    """Render the phantom of one seed at a random scanner geometry, as evaluation sees it.

    In-plane 0.6-0.95 mm, slices 0.6-2.5 mm (sometimes overlapping), 0-5 nodules; the serving
    path then resamples it to the card's voxel size, so resampling is exercised too.
    """
    rng = np.random.default_rng(seed)
    inplane = float(rng.uniform(0.6, 0.95))
    thickness = float(rng.uniform(0.6, 2.5))
    step = thickness * float(rng.choice([1.0, 0.8]))
    nx, ny = int(360 / inplane), int(300 / inplane)
    # 140 mm of z, fewer slices when thin ones would exceed ~24 M voxels (render time on a CPU)
    nz = max(int(80 / step), min(int(140 / step), 24_000_000 // (nx * ny)))
    return generate_ct_phantom(
        seed,
        spacing_ijk_mm=(inplane, inplane, step),
        shape_ijk=(nx, ny, nz),
        slice_thickness_mm=thickness,
        n_nodules=int(rng.integers(0, 6)),
    )


def nodule_findings(seed: int, served: Served) -> tuple[list[NoduleFinding], CtPhantom]:
    """Render one evaluation phantom at a random scanner geometry; return all findings and it."""
    phantom = render_nodule_phantom(seed)
    card = served.card
    prepared = lung_nodule.preprocess(phantom.volume, card.preprocess)
    dets = served.detect(prepared.image)
    dets = lung_nodule.apply_card_filters(dets, phantom.volume, prepared, card.detection)
    dets = served.rescore(prepared.image, dets)
    found = lung_nodule.to_findings(dets, prepared, phantom.volume, series_uid=str(seed))
    return found, phantom


def nodule_scan(seed: int, served: Served) -> tuple[ScanResult, Labels]:
    """Render one evaluation phantom at a random scanner geometry and detect on it.

    Returns the FROC hits and one label set per reference nodule (kind, size band, juxta-pleural).
    """
    found, phantom = nodule_findings(seed, served)
    scan = scan_from_centers(
        np.array([f.center_lps_mm for f in found]).reshape(-1, 3),
        np.array([f.score for f in found]),
        np.array([n.center_lps_mm for n in phantom.nodules]).reshape(-1, 3),
        np.array([n.diameter_mm / 2 for n in phantom.nodules]),
    )
    labels = [
        {
            "kind": n.kind,
            "size": nodule_size_band(n.diameter_mm),
            "juxta_pleural": "yes" if n.juxta_pleural else "no",
        }
        for n in phantom.nodules
    ]
    return scan, labels


def fracture_findings(seed: int, served: Served) -> tuple[list[FractureFinding], DrPhantom]:
    """Render one evaluation radiograph (chest when 3 divides the seed, else a limb); detect."""
    kind = "chest" if seed % 3 == 0 else "limb"
    phantom = generate_radiograph(seed, kind=kind)
    radiograph = as_radiograph(phantom)
    prepared = fracture.preprocess(radiograph, served.card.preprocess)
    dets = served.rescore(prepared.image, served.detect(prepared.image))
    found = fracture.to_findings(dets, prepared, radiograph)
    return found, phantom


def fracture_run(seed: int, served: Served) -> tuple[ScanResult, BoxImage, Labels]:
    """Render one evaluation radiograph, detect on it; return its FROC hits, boxes and labels.

    Boxes (predicted and reference) are source-pixel edges ``[c0, r0, c1, r1]``; labels give each
    reference fracture's image kind (chest / limb) and fracture kind.
    """
    found, phantom = fracture_findings(seed, served)
    kind = "chest" if seed % 3 == 0 else "limb"
    gt = np.array([f.box_col_row for f in phantom.fractures], dtype=np.float64).reshape(-1, 4)
    preds = np.array([f.box_px.center_col_row for f in found]).reshape(-1, 2)
    scores = np.array([f.score for f in found])
    boxes = np.array(
        [[*f.box_px.min_col_row, *f.box_px.max_col_row] for f in found], dtype=np.float64
    ).reshape(-1, 4)
    labels = [{"image": kind, "kind": f.kind} for f in phantom.fractures]
    return scan_from_boxes(preds, scores, gt), BoxImage(boxes, scores, gt), labels


def evaluate_synthetic(
    model_dir: Path,
    *,
    n_scans: int,
    task: str,
    n_boot: int = 500,
    ap_ious: Sequence[float] = (),
    first_seed: int = EVAL_SEED_OFFSET,
) -> Evaluation:
    """Run the model on ``n_scans`` fresh phantoms and return FROC, CPM and bootstrap CIs.

    With ``ap_ious`` (fractures only), also AP at those IoU thresholds on the boxes. Seeds run from
    ``first_seed``: the default is the evaluation set the cards report; a development range no
    config trains on (e.g. 900,000) is where training phases should be compared, so that the
    evaluation set is not chosen on.
    """
    served = _runner(model_dir)
    seeds = [first_seed + s for s in range(n_scans)]
    ap: dict[float, float] | None = None
    if task == "lung_nodule":
        nodule_runs = [nodule_scan(seed, served) for seed in seeds]
        scans = [scan for scan, _ in nodule_runs]
        labels = [lab for _, lab in nodule_runs]
    else:
        runs = [fracture_run(seed, served) for seed in seeds]
        scans = [scan for scan, _, _ in runs]
        labels = [lab for _, _, lab in runs]
        if ap_ious:
            ap = average_precision([image for _, image, _ in runs], iou_thresholds=ap_ious)
    _, _, at, cpm = froc(scans)
    threshold = threshold_at_fp_rate(scans, 1.0)
    per_scan: list[dict[str, object]] = [
        {"seed": first_seed + n, "targets": s.n_targets, "detections": len(s.pred_scores)}
        for n, s in enumerate(scans)
    ]
    return Evaluation(
        len(scans),
        sum(s.n_targets for s in scans),
        at,
        cpm,
        bootstrap_ci(scans, n_boot=n_boot),
        per_scan,
        ap,
        subgroup_sensitivity(scans, labels, threshold),
        threshold,
    )


def trained_seeds_among(training_data: Mapping[str, object], seeds: range) -> list[int]:
    """Return the seeds a card's ``training_data`` says the model was trained on, among ``seeds``.

    Reads ``train_seeds`` ([start, stop)) and ``extra_seeds`` ([[start, stop, step], ...]) as
    ``ship`` / ``triage export`` record them; a card without them (real-data or imported models)
    names no synthetic seeds, so nothing is found.

    >>> data = {"train_seeds": [0, 800], "extra_seeds": [[3000, 5700, 3]]}
    >>> trained_seeds_among(data, range(798, 802)), trained_seeds_among(data, range(2999, 3004))
    ([798, 799], [3000, 3003])
    """
    ranges: list[range] = []
    base = training_data.get("train_seeds")
    if isinstance(base, list | tuple) and len(base) == 2:
        ranges.append(range(int(base[0]), int(base[1])))
    extra = training_data.get("extra_seeds")
    if isinstance(extra, list | tuple):
        ranges.extend(range(int(a), int(b), int(c)) for a, b, c in extra)
    return [s for s in seeds if any(s in r for r in ranges)]


def evaluate_lidc(model_dir: Path, series_dir: Path, consensus_csv: Path) -> dict[str, object]:
    """Run the nodule model on LIDC-IDRI-0001 and report the best hit on the consensus nodule."""
    served = _runner(model_dir)
    card = served.card
    (study,) = scan_folder(series_dir).studies
    volume = load_ct_volume(study.series[0])
    prepared = lung_nodule.preprocess(volume, card.preprocess)
    dets = lung_nodule.apply_card_filters(
        served.detect(prepared.image), volume, prepared, card.detection
    )
    dets = served.rescore(prepared.image, dets)
    found = lung_nodule.to_findings(dets, prepared, volume, series_uid=study.series[0].series_uid)
    with consensus_csv.open() as f:
        row = next(csv.DictReader(f))
    center = np.array(
        [float(row["center_x_mm"]), float(row["center_y_mm"]), float(row["center_z_mm"])]
    )
    radius = float(row["max_inplane_extent_mm_mean"]) / 2
    ranked = sorted(found, key=lambda f: -f.score)
    hits = [
        (n, f)
        for n, f in enumerate(ranked)
        if np.linalg.norm(np.subtract(f.center_lps_mm, center)) <= radius
    ]
    best = hits[0] if hits else None
    return {
        "nodule_found": best is not None,
        "hit_rank": None if best is None else best[0] + 1,
        "hit_score": None if best is None else round(best[1].score, 4),
        "hit_diameter_mm": None if best is None else round(best[1].diameter_mm, 1),
        "hit_distance_mm": None
        if best is None
        else round(float(np.linalg.norm(np.subtract(best[1].center_lps_mm, center))), 1),
        "reference_diameter_mm": round(2 * radius, 1),
        "detections_above_0.5": sum(f.score >= 0.5 for f in found),
        "false_positives_above_0.5": sum(
            f.score >= 0.5 for n, f in enumerate(ranked) if not any(n == h for h, _ in hits)
        ),
    }


def write_report(path: Path, payload: dict[str, object]) -> None:
    """Write a JSON report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))
