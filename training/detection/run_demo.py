"""Build the phantom pool and train, from a config file (the ``triage train`` CLI wraps this)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from training.detection import fracture_data, nodule_data
from training.detection.config import load_config
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
    seeds = list(range(*cfg.data.train_seeds))
    data = nodule_data if cfg.task == "lung_nodule" else fracture_data
    pool = data.build_pool(
        seeds, cfg.preprocess, cache=cfg.data.cache_dir, workers=cfg.data_workers
    )
    train(cfg, pool, args.out, resume=args.resume)


if __name__ == "__main__":
    main()
