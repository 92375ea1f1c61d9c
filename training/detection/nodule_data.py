"""Synthetic nodule training data: phantoms rendered, preprocessed by the serving code, boxed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.detection import pool
from training.detection.crops import Sample
from triage.inference.lung_nodule import boxes_from_centers, preprocess
from triage.inference.spec import PreprocessSpec
from triage.synth.ct_phantom import GENERATOR_VERSION as CT_GENERATOR
from triage.synth.ct_phantom import generate_ct_phantom


def phantom_sample(seed: int, prep: PreprocessSpec, *, n_slices: int = 64) -> Sample:
    """Render a chest slab at the card's voxel size, preprocess it like serving, box its nodules."""
    rng = np.random.default_rng(seed + 7_000_000)
    spacing = (prep.target_spacing_mm[0], prep.target_spacing_mm[1], prep.target_spacing_mm[2])
    shape = (int(rng.integers(300, 390)), int(rng.integers(250, 330)), n_slices)
    n = int(rng.choice([0, 1, 2, 3, 4, 5], p=[0.08, 0.2, 0.24, 0.24, 0.14, 0.1]))
    thickness = float(rng.uniform(0.6, 2.5))
    phantom = generate_ct_phantom(
        seed,
        spacing_ijk_mm=spacing,
        shape_ijk=shape,
        slice_thickness_mm=max(thickness, spacing[2] * 0.5),
        n_nodules=n,
    )
    prepared = preprocess(phantom.volume, prep)
    boxes = boxes_from_centers(
        [n.center_lps_mm for n in phantom.nodules] or np.zeros((0, 3)),
        [n.diameter_mm for n in phantom.nodules] or np.zeros((0,)),
        prepared.affine_lps,
    )
    return Sample(prepared.image, boxes)


def build_pool(
    seeds: list[int], prep: PreprocessSpec, *, cache: Path, workers: int = 2
) -> list[Sample]:
    """Return samples for the seeds, rendering missing ones in parallel and caching (float16)."""
    return pool.build_pool(
        phantom_sample, "nodule", seeds, prep, cache=cache, generator=CT_GENERATOR, workers=workers
    )
