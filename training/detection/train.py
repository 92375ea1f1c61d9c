"""Train a MONAI RetinaNet detector with the bundle's recipe (ATSS matcher, hard-negative sampler).

Deterministic seeds; checkpoints (network, optimiser, step, RNG state) every N steps so ``--resume``
continues with identical state; a JSON-lines log of losses and, when a ``log_dir`` is given,
TensorBoard scalars. Mixed precision (autocast + GradScaler) runs only on CUDA: on the CPU the
step is the plain float32 step, bit for bit. Stops at ``max_steps`` or ``max_minutes``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector

from training.detection import hard_negatives, hard_positives
from training.detection.config import TrainConfig
from training.detection.crops import Sample, augment, random_crop
from training.detection.scalars import ScalarLog, open_scalar_log
from triage.inference.networks import build_detector, build_network

logger = logging.getLogger(__name__)


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    warm = cfg.optimizer.warmup_steps
    factor = min(1.0, (step + 1) / warm) if warm else 1.0
    return factor * cfg.optimizer.gamma ** sum(step >= m for m in cfg.optimizer.milestones)


def _optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    o = cfg.optimizer
    if o.name == "sgd":
        return torch.optim.SGD(
            params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=True
        )
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)


def _batch(
    pool: list[Sample], cfg: TrainConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    images, targets = [], []
    with_hard = [s for s in pool if len(s.hard)] if cfg.hard_negative_fraction else []
    with_missed = [s for s in pool if len(s.missed)] if cfg.hard_positive_fraction else []
    for _ in range(cfg.batch_size):
        s = pool[int(rng.integers(len(pool)))]
        draw = rng.random()  # one draw decides positive / hard negative / random negative
        positive = draw < cfg.pos_fraction
        hard = not positive and draw < cfg.pos_fraction + cfg.hard_negative_fraction
        if hard and with_hard and not len(s.hard):
            s = with_hard[int(rng.integers(len(with_hard)))]
        box_index: int | None = None
        if positive and with_missed and rng.random() < cfg.hard_positive_fraction:
            s = with_missed[int(rng.integers(len(with_missed)))]
            box_index = int(s.missed[int(rng.integers(len(s.missed)))])
        s = Sample(s.image.astype(np.float32), s.boxes, s.hard)
        crop = augment(
            random_crop(s, cfg.crop_size, rng, positive=positive, hard=hard, box_index=box_index),
            rng,
        )
        images.append(torch.from_numpy(crop.image)[None])
        targets.append(
            {
                "box": torch.from_numpy(crop.boxes),
                "label": torch.zeros(len(crop.boxes), dtype=torch.long),
            }
        )
    return torch.stack(images), targets


def resolve_device(name: str) -> torch.device:
    """Return the training device: ``cpu``, ``cuda``, or ``auto`` (CUDA when available).

    Raises:
        ValueError: ``cuda`` was asked for and there is none.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device must be cpu or auto on a machine without CUDA, got cuda")
    return torch.device(name)


def use_amp(cfg: TrainConfig, device: torch.device) -> bool:
    """Return whether mixed precision is on: asked for and on CUDA (said once when it is not)."""
    if cfg.amp and device.type != "cuda":
        logger.warning("amp is off on %s: mixed precision runs on CUDA only (float32 here)", device)
    return cfg.amp and device.type == "cuda"


def _to_device(
    images: torch.Tensor, targets: list[dict[str, torch.Tensor]], device: torch.device
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    if device.type == "cpu":
        return images, targets
    moved = [{k: v.to(device) for k, v in t.items()} for t in targets]
    return images.to(device, non_blocking=True), moved


def train(
    cfg: TrainConfig,
    pool: list[Sample],
    out_dir: Path,
    *,
    resume: bool = False,
    on_step: Callable[[int, float], None] | None = None,
    log_dir: Path | None = None,
) -> Path:
    """Train on ``pool`` and return the path of the last checkpoint.

    Args:
        cfg: the experiment.
        pool: preprocessed samples to crop batches from.
        out_dir: run folder: ``checkpoint.pt`` and ``train_log.jsonl``.
        resume: continue from ``out_dir/checkpoint.pt`` with its exact state.
        on_step: called with (step, loss) after each step (progress bars).
        log_dir: TensorBoard event folder; ``None`` writes none.
    """
    device = resolve_device(cfg.device)
    if cfg.hard_negatives is not None:
        pool = hard_negatives.attach(pool, hard_negatives.load(cfg.hard_negatives, len(pool)))
    if cfg.hard_positives is not None:
        pool = hard_positives.attach(pool, hard_positives.load(cfg.hard_positives, pool))
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    amp = use_amp(cfg, device)
    network, detector = _build(cfg, device)
    optimizer = _optimizer([p for p in network.parameters() if p.requires_grad], cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)  # disabled: every call is a no-op
    ckpt_path = out_dir / "checkpoint.pt"
    step = 0
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        if amp and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        step = int(state["step"])
        rng = np.random.default_rng(int(state["rng_seed"]))
        torch.manual_seed(int(state["rng_seed"]))
    scalars = open_scalar_log(log_dir)
    start = time.monotonic()
    detector.train()
    log = (out_dir / "train_log.jsonl").open("a")
    while step < cfg.max_steps and (time.monotonic() - start) < cfg.max_minutes * 60:
        t_step = time.monotonic()
        lr = cfg.optimizer.lr * _lr_factor(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images, targets = _to_device(*_batch(pool, cfg, rng), device)
        losses, loss = _optimise(detector, network, optimizer, scaler, images, targets)
        step += 1
        log.write(
            json.dumps(
                {
                    "step": step,
                    "loss": float(loss.detach()),
                    "cls": float(losses[detector.cls_key].detach()),
                    "box": float(losses[detector.box_reg_key].detach()),
                    "t": time.monotonic() - start,
                }
            )
            + "\n"
        )
        log.flush()
        _write_scalars(scalars, step, losses, detector, lr=lr, seconds=time.monotonic() - t_step)
        if on_step is not None:
            on_step(step, float(loss.detach()))
        if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
            _save(ckpt_path, network, optimizer, step, cfg.seed + step, scaler=scaler)
            rng = np.random.default_rng(cfg.seed + step)
            torch.manual_seed(cfg.seed + step)
    _save(ckpt_path, network, optimizer, step, cfg.seed + step, scaler=scaler)
    scalars.close()
    return ckpt_path


def _build(cfg: TrainConfig, device: torch.device) -> tuple[torch.nn.Module, RetinaNetDetector]:
    """Return the network on ``device`` and its detector with the bundle's training recipe."""
    network = build_network(cfg.network, cfg.detection).to(device)
    detector = build_detector(cfg.network, cfg.detection, network)
    detector.set_atss_matcher(num_candidates=4, center_in_gt=False)
    detector.set_hard_negative_sampler(
        batch_size_per_image=64, positive_fraction=0.3, pool_size=20, min_neg=16
    )
    detector.set_target_keys(box_key="box", label_key="label")
    return network, detector


def _optimise(
    detector: RetinaNetDetector,
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    images: torch.Tensor,
    targets: list[dict[str, torch.Tensor]],
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Run one optimiser step; autocast and loss scaling only when ``scaler`` is enabled (CUDA)."""
    with torch.autocast(images.device.type, enabled=scaler.is_enabled()):
        losses = detector(images, targets)
        loss = losses[detector.cls_key] + losses[detector.box_reg_key]
    optimizer.zero_grad()
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    torch.nn.utils.clip_grad_norm_(network.parameters(), 10.0)
    scaler.step(optimizer)
    scaler.update()
    return losses, loss


def _write_scalars(
    scalars: ScalarLog,
    step: int,
    losses: dict[str, torch.Tensor],
    detector: RetinaNetDetector,
    *,
    lr: float,
    seconds: float,
) -> None:
    cls = float(losses[detector.cls_key].detach())
    box = float(losses[detector.box_reg_key].detach())
    scalars.add("loss/total", cls + box, step)
    scalars.add("loss/cls", cls, step)
    scalars.add("loss/box_reg", box, step)
    scalars.add("lr", lr, step)
    scalars.add("time/step_s", seconds, step)


def _save(
    path: Path,
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    rng_seed: int,
    *,
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """Write the checkpoint atomically; RNGs re-seed from ``rng_seed`` at each save/resume."""
    tmp = path.with_suffix(".tmp")
    state: dict[str, object] = {
        "network": network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "rng_seed": rng_seed,
    }
    if scaler is not None and scaler.is_enabled():
        state["scaler"] = scaler.state_dict()
    torch.save(state, tmp)
    tmp.replace(path)
