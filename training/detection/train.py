"""Train a MONAI RetinaNet detector with the bundle's recipe (ATSS matcher, hard-negative sampler).

Deterministic seeds; checkpoints (network, optimiser, step, RNG state) every N steps so ``--resume``
continues with identical state; a JSON-lines log of losses. Stops at ``max_steps`` or
``max_minutes``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from training.detection.config import TrainConfig
from training.detection.crops import Sample, augment, random_crop
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
    for _ in range(cfg.batch_size):
        s = pool[int(rng.integers(len(pool)))]
        s = Sample(s.image.astype(np.float32), s.boxes)
        crop = augment(
            random_crop(s, cfg.crop_size, rng, positive=rng.random() < cfg.pos_fraction), rng
        )
        images.append(torch.from_numpy(crop.image)[None])
        targets.append(
            {
                "box": torch.from_numpy(crop.boxes),
                "label": torch.zeros(len(crop.boxes), dtype=torch.long),
            }
        )
    return torch.stack(images), targets


def train(
    cfg: TrainConfig,
    pool: list[Sample],
    out_dir: Path,
    *,
    resume: bool = False,
    on_step: Callable[[int, float], None] | None = None,
) -> Path:
    """Train on ``pool`` and return the path of the last checkpoint."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    network = build_network(cfg.network, cfg.detection)
    detector = build_detector(cfg.network, cfg.detection, network)
    detector.set_atss_matcher(num_candidates=4, center_in_gt=False)
    detector.set_hard_negative_sampler(
        batch_size_per_image=64, positive_fraction=0.3, pool_size=20, min_neg=16
    )
    detector.set_target_keys(box_key="box", label_key="label")
    optimizer = _optimizer([p for p in network.parameters() if p.requires_grad], cfg)
    ckpt_path = out_dir / "checkpoint.pt"
    step = 0
    if resume and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        network.load_state_dict(state["network"])
        optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        rng = np.random.default_rng(int(state["rng_seed"]))
        torch.manual_seed(int(state["rng_seed"]))
    start = time.monotonic()
    detector.train()
    log = (out_dir / "train_log.jsonl").open("a")
    while step < cfg.max_steps and (time.monotonic() - start) < cfg.max_minutes * 60:
        for group in optimizer.param_groups:
            group["lr"] = cfg.optimizer.lr * _lr_factor(step, cfg)
        images, targets = _batch(pool, cfg, rng)
        losses = detector(images, targets)
        loss = losses[detector.cls_key] + losses[detector.box_reg_key]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 10.0)
        optimizer.step()
        step += 1
        log.write(
            json.dumps(
                {
                    "step": step,
                    "loss": float(loss),
                    "cls": float(losses[detector.cls_key]),
                    "box": float(losses[detector.box_reg_key]),
                    "t": time.monotonic() - start,
                }
            )
            + "\n"
        )
        log.flush()
        if on_step is not None:
            on_step(step, float(loss))
        if step % cfg.checkpoint_every == 0 or step == cfg.max_steps:
            _save(ckpt_path, network, optimizer, step, cfg.seed + step)
            rng = np.random.default_rng(cfg.seed + step)
            torch.manual_seed(cfg.seed + step)
    _save(ckpt_path, network, optimizer, step, cfg.seed + step)
    return ckpt_path


def _save(
    path: Path, network: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, rng_seed: int
) -> None:
    """Write the checkpoint atomically; RNGs re-seed from ``rng_seed`` at each save/resume."""
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "network": network.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "rng_seed": rng_seed,
        },
        tmp,
    )
    tmp.replace(path)
