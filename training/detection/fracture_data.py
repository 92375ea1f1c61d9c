"""Synthetic fracture training data: radiograph phantoms preprocessed by the serving code, boxed."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from training.detection.crops import Sample
from triage.imaging.radiograph import Radiograph
from triage.inference.fracture import preprocess
from triage.inference.spec import PreprocessSpec
from triage.synth.dr_phantom import DrPhantom, generate_radiograph


def as_radiograph(phantom: DrPhantom) -> Radiograph:
    """Return the phantom as serving sees a decoded radiograph (bone bright, PixelSpacing)."""
    return Radiograph(
        array=phantom.image.astype(np.float32),
        pixel_spacing_mm=phantom.pixel_spacing_mm,
        spacing_source="PixelSpacing",
        sop_instance_uid="2.25.1",
        series_uid="2.25.2",
        study_uid="2.25.3",
    )


def phantom_sample(seed: int, prep: PreprocessSpec) -> Sample:
    """Render a chest or limb radiograph, preprocess it as serving does, box its fractures.

    Boxes are given as pixel indices (exclusive max), i.e. SCOORD edges; the network sees pixel
    centres at integers, hence the half-pixel shift (the inverse of ``fracture.to_findings``).
    """
    kind = "chest" if seed % 3 == 0 else "limb"
    phantom = generate_radiograph(seed, kind=kind)
    prepared = preprocess(as_radiograph(phantom), prep)
    sx, sy = prepared.source_px_per_input_px
    boxes = np.array(
        [
            [(c0 - 0.5) / sx, (r0 - 0.5) / sy, (c1 - 0.5) / sx, (r1 - 0.5) / sy]
            for c0, r0, c1, r1 in (f.box_col_row for f in phantom.fractures)
        ],
        dtype=np.float32,
    ).reshape(-1, 4)
    return Sample(prepared.image, boxes)


def _cached(args: tuple[int, PreprocessSpec, Path]) -> Sample:
    seed, prep, cache = args
    path = cache / f"fracture_{seed}.npz"
    if path.exists():
        data = np.load(path)
        return Sample(data["image"], data["boxes"])
    sample = phantom_sample(seed, prep)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, image=sample.image.astype(np.float16), boxes=sample.boxes)
    tmp.rename(path)
    return Sample(sample.image.astype(np.float16), sample.boxes)


def build_pool(
    seeds: list[int], prep: PreprocessSpec, *, cache: Path, workers: int = 2
) -> list[Sample]:
    """Return samples for the seeds, rendering missing ones in parallel and caching (float16)."""
    cache.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_cached, [(s, prep, cache) for s in seeds]))
