"""Judge a rescoring classifier on mined candidates of development seeds, before shipping it.

Reads a candidate file of seeds that neither the detector nor the classifier was trained on
(``training.detection.rescoring_data`` on, e.g., seeds 300-339 for the nodule model, whose pool
is 0-299), runs the exported classifier on each candidate's centred patch, and prints the FROC
of the detector alone and of the combined score for several weights — the choice of weight is
made here, not on the evaluation set that ``ship`` reports.

    python -m training.detection.rescoring_eval --candidates work/runs/r/dev_300_340.npz \\
        --rescoring work/runs/nodule_rescoring
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import yaml

from training.common.froc import LUNA16_FP_RATES, ScanResult, froc, threshold_at_fp_rate
from training.detection.rescoring_train import BLOCK_FILE, POS_WITHIN_RADII
from triage.inference.card import RescoringSpec
from triage.inference.rescoring import combine_scores


def centred(stored: npt.NDArray[np.generic], patch_size: Sequence[int]) -> npt.NDArray[np.float32]:
    """Return the centred ``patch_size`` crops ``(N, 1, *patch)`` of stored patches ``(N, ...)``."""
    lo = (np.asarray(stored.shape[1:]) - np.asarray(patch_size)) // 2
    window = tuple(slice(int(a), int(a + s)) for a, s in zip(lo, patch_size, strict=True))
    return np.asarray(stored[(slice(None), *window)], dtype=np.float32)[:, None]


def scans_with(
    data: dict[str, npt.NDArray[np.generic]], scores: npt.NDArray[np.float32]
) -> list[ScanResult]:
    """Return one FROC scan per seed from candidate scores and their recorded hits."""
    cand = data["is_gt"] == 0
    out = []
    for seed in np.unique(data["seed"]):
        here = cand & (data["seed"] == seed)
        n_ref = int(np.sum((data["is_gt"] == 1) & (data["seed"] == seed)))
        hits = np.zeros((int(here.sum()), n_ref), dtype=bool)
        dist, idx = data["dist_r"][here], data["gt_idx"][here]
        for n, (d, i) in enumerate(zip(dist, idx, strict=True)):
            if float(d) <= POS_WITHIN_RADII and int(i) >= 0:
                hits[n, int(i)] = True
        out.append(ScanResult(np.asarray(scores[here[cand]], dtype=np.float64), hits))
    return out


def main() -> None:
    """Print detector-alone and rescored FROC on development candidates."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--candidates", type=Path, required=True)
    p.add_argument("--rescoring", type=Path, required=True, help="rescoring_train's --out folder")
    p.add_argument("--weights", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    args = p.parse_args()
    spec = RescoringSpec.model_validate(yaml.safe_load((args.rescoring / BLOCK_FILE).read_text()))
    with np.load(args.candidates) as z:
        data = {k: z[k] for k in ("patch", "score", "seed", "dist_r", "gt_idx", "is_gt")}
    session = ort.InferenceSession(
        str(args.rescoring / spec.file), providers=["CPUExecutionProvider"]
    )
    cand = np.flatnonzero(data["is_gt"] == 0)
    logits = np.concatenate(
        [
            session.run(
                None, {spec.input_name: centred(data["patch"][cand[i : i + 256]], spec.patch_size)}
            )[0][:, 0]
            for i in range(0, len(cand), 256)
        ]
    )
    prob = (1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))).astype(np.float32)
    det = np.asarray(data["score"][cand], dtype=np.float32)
    rates = ", ".join(f"{r:g}" for r in LUNA16_FP_RATES)
    print(f"sensitivity at {rates} FP per scan; CPM; score at 1 FP")  # noqa: T201
    for name, scores in [("detector alone", det)] + [
        (f"rescored, weight {w:g}", combine_scores(det, prob, w)) for w in args.weights
    ]:
        scans = scans_with(data, scores)
        _, _, at, cpm = froc(scans)
        sens = ", ".join(f"{s:.3f}" for s in at)
        print(f"{name}: {sens}; CPM {cpm:.3f}; {threshold_at_fp_rate(scans, 1.0):.3f}")  # noqa: T201


if __name__ == "__main__":
    main()
