"""Synthetic fracture training data: radiograph phantoms preprocessed by the serving code, boxed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.detection import pool
from training.detection.crops import Sample
from triage.imaging.radiograph import Radiograph
from triage.inference.fracture import preprocess
from triage.inference.spec import PreprocessSpec
from triage.synth.dr_phantom import GENERATOR_VERSION as DR_GENERATOR
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


def build_pool(
    seeds: list[int], prep: PreprocessSpec, *, cache: Path, workers: int = 2
) -> list[Sample]:
    """Return samples for the seeds, rendering missing ones in parallel and caching (float16)."""
    return pool.build_pool(
        phantom_sample,
        "fracture",
        seeds,
        prep,
        cache=cache,
        generator=DR_GENERATOR,
        workers=workers,
    )
