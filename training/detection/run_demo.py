"""Build the phantom pool and train, from a config file (the ``triage train`` CLI wraps this)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from training.detection import fracture_data, nodule_data
from training.detection.config import SyntheticData, TrainConfig, load_config
from training.detection.crops import Sample
from training.detection.train import train


def main() -> None:
    """Parse ``--config --out [--resume]`` and train."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    cfg = load_config(args.config)
    train(cfg, build_pool_for(cfg), args.out, resume=args.resume)


def build_pool_for(cfg: TrainConfig) -> list[Sample]:
    """Render (or load from the cache) the phantom pool the config names.

    Raises:
        ValueError: the config's data are not synthetic (``triage train`` reads real data).
    """
    if not isinstance(cfg.data, SyntheticData):
        raise ValueError(
            f"data.kind must be synthetic to render phantoms, got {cfg.data.kind}; "
            "train on real data with `triage train`"
        )
    seeds = cfg.data.seeds()
    data = nodule_data if cfg.task == "lung_nodule" else fracture_data
    pool: list[Sample] = data.build_pool(
        seeds, cfg.preprocess, cache=cfg.data.cache_dir, workers=cfg.data_workers
    )
    return pool


if __name__ == "__main__":
    main()
