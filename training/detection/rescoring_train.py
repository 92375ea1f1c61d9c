"""Train the rescoring stage's patch classifier and export it as ONNX with its card block.

Positives are the reference-centred patches plus candidates within one radius of a nodule (the
LUNA16 hit rule); negatives are candidates farther than two radii from every nodule; the ones in
between are left out (a candidate on the rim of a nodule is neither). Batches are half positive,
half negative; every patch is shifted by up to ``margin`` voxels, flipped along every axis,
transposed in-plane and given a small contrast / brightness change. The network is MONAI's ResNet
(basic blocks, one per stage, 16..128 wide: ~1.3 M parameters in 3-D).

    python -m training.detection.rescoring_train --candidates work/runs/r/c_0_100.npz \\
        --out work/runs/nodule_rescoring --steps 1500

writes ``rescoring.onnx`` and ``rescoring.yaml`` (the card's ``rescoring`` block, sha256 included);
``python -m training.detection.ship --rescoring work/runs/nodule_rescoring`` adds both to a model.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
import yaml
from monai.networks.nets.resnet import ResNet

from triage.inference.card import RescoringSpec, sha256_file

ONNX_FILE = "rescoring.onnx"
BLOCK_FILE = "rescoring.yaml"
POS_WITHIN_RADII = 1.0
NEG_BEYOND_RADII = 2.0
PARITY_TOLERANCE = 1e-4


def build_classifier(spatial_dims: int) -> ResNet:
    """Return the patch classifier: MONAI ResNet, basic blocks [1, 1, 1, 1], 16..128 wide."""
    return ResNet(
        block="basic",
        layers=[1, 1, 1, 1],
        block_inplanes=[16, 32, 64, 128],
        spatial_dims=spatial_dims,
        n_input_channels=1,
        conv1_t_size=3,
        conv1_t_stride=1,
        num_classes=1,
    )


def load_candidates(paths: Sequence[Path]) -> dict[str, npt.NDArray[np.generic]]:
    """Concatenate candidate files written by ``training.detection.rescoring_data``."""
    parts: dict[str, list[npt.NDArray[np.generic]]] = {}
    for path in paths:
        with np.load(path) as data:
            for key in ("patch", "score", "seed", "dist_r", "is_gt"):
                parts.setdefault(key, []).append(data[key])
    return {k: np.concatenate(v) for k, v in parts.items()}


def split_labels(
    data: dict[str, npt.NDArray[np.generic]],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Return indices of positive and negative training patches (ambiguous ones left out)."""
    is_gt = data["is_gt"] == 1
    dist = np.asarray(data["dist_r"], dtype=np.float64)
    pos = np.flatnonzero(is_gt | (~is_gt & (dist <= POS_WITHIN_RADII)))
    neg = np.flatnonzero(~is_gt & (dist > NEG_BEYOND_RADII))
    return pos, neg


def augment(
    stored: npt.NDArray[np.generic],
    patch_size: Sequence[int],
    rng: np.random.Generator,
    *,
    max_shift: int = 4,
) -> npt.NDArray[np.float32]:
    """Return a randomly shifted, flipped, transposed and contrast-jittered ``patch_size`` crop.

    The crop is centred on the stored patch's centre, then shifted by up to ``max_shift`` voxels
    per axis (as far as the stored margin allows): a detector's box centre is seldom exactly on
    the target, and the classifier must not care.
    """
    size = np.asarray(patch_size)
    slack = np.asarray(stored.shape) - size
    lo, hi = np.maximum(-(slack // 2), -max_shift), np.minimum(slack - slack // 2, max_shift)
    origin = slack // 2 + rng.integers(lo, hi + 1)
    crop = stored[tuple(slice(int(o), int(o + s)) for o, s in zip(origin, size, strict=True))]
    out = np.asarray(crop, dtype=np.float32)
    for axis in range(out.ndim):
        if rng.random() < 0.5:
            out = np.flip(out, axis=axis)
    if size[0] == size[1] and rng.random() < 0.5:
        out = np.swapaxes(out, 0, 1)  # in-plane axes have the same voxel size
    return np.ascontiguousarray(out * rng.uniform(0.9, 1.1) + rng.uniform(-0.05, 0.05))


def train(
    data: dict[str, npt.NDArray[np.generic]],
    patch_size: Sequence[int],
    *,
    steps: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    log_every: int = 100,
    hard_score: float = 0.3,
    hard_share: float = 0.5,
) -> ResNet:
    """Train the classifier with balanced batches (one-cycle learning rate) and return it.

    ``hard_share`` of each batch's negatives are drawn from those the detector scored
    >= ``hard_score`` (when there are any): those set the operating point, while most candidates
    are faint and easy, and a uniform draw would seldom show the classifier a hard one.
    """
    pos, neg = split_labels(data)
    hard = neg[np.asarray(data["score"], dtype=np.float64)[neg] >= hard_score]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError(
            f"candidates must hold positives and negatives, got {len(pos)} and {len(neg)}; "
            "mine more seeds"
        )
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    net = build_classifier(len(patch_size))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    half = batch_size // 2
    target = torch.tensor([1.0] * half + [0.0] * half)[:, None]
    start = time.perf_counter()
    net.train()
    for step in range(steps):
        n_hard = int(round(half * hard_share)) if len(hard) else 0
        idx = np.concatenate(
            [rng.choice(pos, half), rng.choice(neg, half - n_hard), rng.choice(hard, n_hard)]
            if n_hard
            else [rng.choice(pos, half), rng.choice(neg, half)]
        )
        batch = np.stack([augment(data["patch"][i], patch_size, rng) for i in idx])[:, None]
        loss = loss_fn(net(torch.from_numpy(batch)), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps - 1:
            elapsed = time.perf_counter() - start
            print(f"step {step} loss {loss.item():.4f} {elapsed:.0f} s", flush=True)  # noqa: T201
    return net.eval()


def export(
    net: ResNet, out_dir: Path, patch_size: Sequence[int], *, weight: float, source: str
) -> RescoringSpec:
    """Export ``net`` to ``out_dir/rescoring.onnx`` and write its card block; return the block."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ONNX_FILE
    dummy = torch.zeros((2, 1, *patch_size))
    torch.onnx.export(
        net,
        (dummy,),
        str(path),
        input_names=["patch"],
        output_names=["logit"],
        dynamic_axes={"patch": {0: "n"}, "logit": {0: "n"}},
        opset_version=17,
        dynamo=False,
    )
    max_diff = _parity(net, path, patch_size)
    if max_diff > PARITY_TOLERANCE:
        raise ValueError(
            f"torch vs ONNX parity of the classifier must be <= {PARITY_TOLERANCE}, got max abs "
            f"diff {max_diff:.2e}"
        )
    spec = RescoringSpec(
        file=ONNX_FILE,
        sha256=sha256_file(path),
        patch_size=tuple(patch_size),
        weight=weight,
        source=f"{source}; parity max abs diff {max_diff:.1e}",
    )
    (out_dir / BLOCK_FILE).write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    return spec


def _parity(net: ResNet, path: Path, patch_size: Sequence[int]) -> float:
    """Return the largest |torch - onnxruntime| logit over random and constant patches."""
    import onnxruntime as ort  # noqa: PLC0415 - only when exporting

    rng = np.random.default_rng(0)
    patches = np.concatenate(
        [rng.random((6, 1, *patch_size), dtype=np.float32), np.zeros((1, 1, *patch_size), "f4")]
    )
    with torch.no_grad():
        ours = net(torch.from_numpy(patches)).numpy()
    (theirs,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"patch": patches}
    )
    return float(np.max(np.abs(ours - theirs)))


def main() -> None:
    """Train and export the patch classifier of a rescoring stage."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--candidates", type=Path, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--patch-size", type=int, nargs="+", default=[32, 32, 16])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--weight", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hard-score", type=float, default=0.3)
    p.add_argument("--hard-share", type=float, default=0.5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load_candidates(args.candidates)
    pos, neg = split_labels(data)
    print(f"{len(pos)} positive, {len(neg)} negative patches", flush=True)  # noqa: T201
    net = train(
        data,
        args.patch_size,
        steps=args.steps,
        seed=args.seed,
        hard_score=args.hard_score,
        hard_share=args.hard_share,
    )
    source = (
        f"training.detection.rescoring_train: {args.steps} steps on {len(pos)} positive / "
        f"{len(neg)} negative patches from {', '.join(c.name for c in args.candidates)}"
    )
    spec = export(net, args.out, args.patch_size, weight=args.weight, source=source)
    print(json.dumps(spec.model_dump(mode="json"), indent=1))  # noqa: T201


if __name__ == "__main__":
    main()
