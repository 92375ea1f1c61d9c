"""A cached pool of training samples, rendered in parallel processes, stored as float16 ``.npz``."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from training.detection.crops import Sample
from triage.inference.spec import PreprocessSpec

MakeSample = Callable[[int, PreprocessSpec], Sample]


def _cached(args: tuple[MakeSample, str, int, PreprocessSpec, Path]) -> Sample:
    make, prefix, seed, prep, cache = args
    path = cache / f"{prefix}_{seed}.npz"
    if path.exists():
        data = np.load(path)
        return Sample(data["image"], data["boxes"])
    sample = make(seed, prep)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, image=sample.image.astype(np.float16), boxes=sample.boxes)
    tmp.rename(path)
    return Sample(sample.image.astype(np.float16), sample.boxes)


def build_pool(
    make: MakeSample,
    prefix: str,
    seeds: list[int],
    prep: PreprocessSpec,
    *,
    cache: Path,
    workers: int = 2,
) -> list[Sample]:
    """Return ``make(seed, prep)`` for every seed, rendering missing ones in parallel, caching them.

    ``make`` must be a module-level function (it is sent to worker processes).
    """
    cache.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_cached, [(make, prefix, s, prep, cache) for s in seeds]))
