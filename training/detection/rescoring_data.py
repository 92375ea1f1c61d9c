"""Training data for the rescoring stage: the served detector's candidates on training phantoms.

Each phantom of a training seed (never an evaluation seed) is rendered exactly as evaluation
renders it (CT at a random scanner geometry; a chest or limb radiograph), run through the
serving path (preprocessing, detector, card filters; no rescoring) and every candidate's patch
is stored with its detection score and its distance to the nearest reference target (nodule:
in radii; fracture: in half box sizes). A patch centred on every reference target is added, so
targets the detector misses still teach the classifier what one looks like.
Patches are stored ``margin`` voxels larger on each side than the classifier's patch, so training
can shift them (the detector's box centre is never exactly the nodule's).

    python -m training.detection.rescoring_data --model-dir models/lung_nodule_det \\
        --seeds 0 100 --out work/runs/nodule_rescoring/candidates_0_100.npz --patch-size 32 32 16
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training.detection.evaluate import EVAL_SEED_OFFSET, Served, _runner, render_nodule_phantom
from training.detection.fracture_data import as_radiograph
from training.detection.fracture_datalist import pixel_boxes_to_input
from triage.imaging.geometry import lps_to_voxel, voxel_to_lps
from triage.inference import fracture, lung_nodule
from triage.inference.rescoring import extract_patches
from triage.synth.dr_phantom import generate_radiograph

F32 = npt.NDArray[np.float32]
SAVE_EVERY = 10  # seeds between partial saves
NO_REFERENCE = 99.0  # distance (in radii) recorded when a phantom holds no nodule


@dataclass
class CandidateSet:
    """Patches and what is known of each: score (-1 for reference patches), seed, distance."""

    patch: list[F32] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    seed: list[int] = field(default_factory=list)
    dist_r: list[float] = field(default_factory=list)  # to the nearest reference, in its radii
    gt_idx: list[int] = field(default_factory=list)  # that reference's index (-1: none)
    is_gt: list[int] = field(default_factory=list)  # 1: patch centred on a reference nodule

    def add(
        self, patches: F32, *, seed: int, score: float, dist_r: float, idx: int, gt: int
    ) -> None:
        """Append one patch ``(1, 1, *size)`` (stored without its leading axes) and its labels."""
        self.patch.append(patches[0, 0].astype(np.float16))
        self.score.append(score)
        self.seed.append(seed)
        self.dist_r.append(dist_r)
        self.gt_idx.append(idx)
        self.is_gt.append(gt)

    def save(self, path: Path, meta: dict[str, object]) -> None:
        """Write all arrays and ``meta`` (what produced them) to ``path``, atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(
            tmp,
            patch=np.stack(self.patch) if self.patch else np.zeros((0,), np.float16),
            score=np.array(self.score, np.float32),
            seed=np.array(self.seed, np.int64),
            dist_r=np.array(self.dist_r, np.float32),
            gt_idx=np.array(self.gt_idx, np.int64),
            is_gt=np.array(self.is_gt, np.int64),
            meta=np.array(json.dumps(meta)),
        )
        tmp.replace(path)


def nodule_candidates(
    seed: int, served: Served, stored_size: Sequence[int], into: CandidateSet
) -> int:
    """Add the candidates and reference patches of one training phantom; return the candidates."""
    _require_training_seed(seed)
    phantom = render_nodule_phantom(seed)
    card = served.card
    prepared = lung_nodule.preprocess(phantom.volume, card.preprocess)
    dets = lung_nodule.apply_card_filters(
        served.detect(prepared.image), phantom.volume, prepared, card.detection
    )
    ref_lps = np.array([n.center_lps_mm for n in phantom.nodules]).reshape(-1, 3)
    ref_r = np.array([n.diameter_mm / 2 for n in phantom.nodules])
    boxes = dets.boxes.reshape(-1, 6)
    centres = (boxes[:, :3] + boxes[:, 3:]) / 2.0
    cand_lps = voxel_to_lps(prepared.affine_lps, centres.reshape(-1, 3)).reshape(-1, 1, 3)
    rel = np.linalg.norm(cand_lps - ref_lps[None], axis=2) / ref_r[None]
    ref_vox = lps_to_voxel(prepared.affine_lps, ref_lps)
    _record(
        into,
        seed,
        image=prepared.image,
        centres=centres,
        scores=dets.scores,
        rel=rel,
        ref_centres=ref_vox,
        stored_size=stored_size,
    )
    return len(dets.scores)


def fracture_candidates(
    seed: int, served: Served, stored_size: Sequence[int], into: CandidateSet
) -> int:
    """Add the candidates and reference patches of one training radiograph; return the candidates.

    A candidate's distance to a fracture is the larger of its centre's offsets from the box
    centre along the two axes, in half box sizes: <= 1 is inside the box (evaluation's hit rule).
    """
    _require_training_seed(seed)
    kind = "chest" if seed % 3 == 0 else "limb"
    phantom = generate_radiograph(seed, kind=kind)
    prepared = fracture.preprocess(as_radiograph(phantom), served.card.preprocess)
    dets = served.detect(prepared.image)
    ref = pixel_boxes_to_input(
        np.array([f.box_col_row for f in phantom.fractures], dtype=np.float64).reshape(-1, 4),
        prepared,
    )
    ref_centre = (ref[:, :2] + ref[:, 2:]) / 2.0
    ref_half = np.maximum((ref[:, 2:] - ref[:, :2]) / 2.0, 0.5)
    boxes = dets.boxes.reshape(-1, 4)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    rel = np.max(np.abs(centres[:, None] - ref_centre[None]) / ref_half[None], axis=2)
    _record(
        into,
        seed,
        image=prepared.image,
        centres=centres,
        scores=dets.scores,
        rel=rel,
        ref_centres=ref_centre,
        stored_size=stored_size,
    )
    return len(dets.scores)


def _record(
    into: CandidateSet,
    seed: int,
    *,
    image: F32,
    centres: npt.NDArray[np.floating],
    scores: F32,
    rel: npt.NDArray[np.floating],
    ref_centres: npt.NDArray[np.floating],
    stored_size: Sequence[int],
) -> None:
    """Add each candidate (nearest reference by ``rel``, candidates x references) and references."""
    patches = extract_patches(image, centres, stored_size)
    for n, score in enumerate(scores):
        if rel.shape[1]:
            idx, dist = int(np.argmin(rel[n])), float(np.min(rel[n]))
        else:
            idx, dist = -1, NO_REFERENCE
        into.add(patches[n : n + 1], seed=seed, score=float(score), dist_r=dist, idx=idx, gt=0)
    ref_patches = extract_patches(image, ref_centres, stored_size)
    for idx in range(len(ref_centres)):
        into.add(ref_patches[idx : idx + 1], seed=seed, score=-1.0, dist_r=0.0, idx=idx, gt=1)


def _require_training_seed(seed: int) -> None:
    if seed >= EVAL_SEED_OFFSET:
        raise ValueError(
            f"seed must be a training seed (< {EVAL_SEED_OFFSET}), got {seed}: evaluation "
            "phantoms must never be trained on"
        )


def main() -> None:
    """Mine rescoring candidates of a served model on a range of training seeds."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model-dir", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs=2, required=True, metavar=("FIRST", "END"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--patch-size", type=int, nargs="+", required=True)
    p.add_argument("--margin", type=int, default=4, help="extra voxels per side for shifting")
    args = p.parse_args()
    served = _runner(args.model_dir)
    if len(args.patch_size) != served.card.network.spatial_dims:
        p.error(
            f"--patch-size must have {served.card.network.spatial_dims} values for this model, "
            f"got {args.patch_size}"
        )
    mine = nodule_candidates if served.card.task == "lung_nodule" else fracture_candidates
    stored = [s + 2 * args.margin for s in args.patch_size]
    meta = {
        "model": served.card.name,
        "version": served.card.version,
        "sha256": served.card.weights.sha256,
        "seeds": args.seeds,
        "patch_size": args.patch_size,
        "margin": args.margin,
    }
    found = CandidateSet()
    for count, seed in enumerate(range(*args.seeds), start=1):
        start = time.perf_counter()
        n = mine(seed, served, stored, found)
        print(f"seed {seed}: {n} candidates, {time.perf_counter() - start:.1f} s", flush=True)  # noqa: T201
        if count % SAVE_EVERY == 0:
            found.save(args.out, meta)  # a partial file to train on while mining goes on
    found.save(args.out, meta)


if __name__ == "__main__":
    main()
