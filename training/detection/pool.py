"""A cached pool of training samples, rendered in parallel processes, stored as float16 ``.npz``.

Sample files are named by seed only, so each cache folder also keeps a manifest per sample kind
(``<prefix>.pool.json``: generator version and preprocessing). A config that asks for other
phantoms or another voxel size than the folder holds is refused by name, instead of training on
stale samples that look valid.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from training.detection.crops import Sample
from triage.inference.spec import PreprocessSpec

MakeSample = Callable[[int, PreprocessSpec], Sample]
logger = logging.getLogger(__name__)


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


def check_manifest(cache: Path, prefix: str, identity: dict[str, object]) -> None:
    """Refuse a cache folder whose ``prefix`` samples were rendered differently; record new ones.

    A folder that already holds samples but no manifest (made before manifests existed) is adopted
    with a warning: its samples cannot be checked, only the next mismatch can.

    Raises:
        ValueError: the manifest records another generator or preprocessing; names what differs.
    """
    path = cache / f"{prefix}.pool.json"
    if path.exists():
        recorded = json.loads(path.read_text(encoding="utf-8"))
        differs = sorted(
            k for k in recorded.keys() | identity.keys() if recorded.get(k) != identity.get(k)
        )
        if differs:
            raise ValueError(
                f"data.cache_dir {str(cache)!r} holds {prefix} samples rendered with another "
                f"{' and '.join(differs)} ({', '.join(f'{k}={recorded.get(k)!r}' for k in differs)}"
                f"; this config: {', '.join(f'{k}={identity.get(k)!r}' for k in differs)}); point "
                "data.cache_dir at a new folder, or delete this one to render it again"
            )
        return
    if any(cache.glob(f"{prefix}_*.npz")):
        logger.warning(
            "cache folder has samples but no manifest; adopting them as rendered by this config",
            extra={"cache_dir": str(cache), "prefix": prefix},
        )
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(identity, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def build_pool(
    make: MakeSample,
    prefix: str,
    seeds: list[int],
    prep: PreprocessSpec,
    *,
    cache: Path,
    generator: str,
    workers: int = 2,
) -> list[Sample]:
    """Return ``make(seed, prep)`` for every seed, rendering missing ones in parallel, caching them.

    ``make`` must be a module-level function (it is sent to worker processes); ``generator`` names
    what renders the samples (a phantom generator's version), checked with ``prep`` against the
    folder's manifest (:func:`check_manifest`).
    """
    cache.mkdir(parents=True, exist_ok=True)
    check_manifest(
        cache, prefix, {"generator": generator, "preprocess": prep.model_dump(mode="json")}
    )
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_cached, [(make, prefix, s, prep, cache) for s in seeds]))
