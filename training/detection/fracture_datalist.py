"""Real radiograph training data: a datalist of CR/DX DICOM files with 2-D pixel boxes.

Each image goes through the serving code: ``triage.dicom.radiograph.load_radiograph`` (modality
LUT, MONOCHROME1 inverted, pixel spacing with its source) and then
``triage.inference.fracture.preprocess``; an image without a usable pixel spacing is refused
there, as serving refuses it.

Boxes are ``xyxy`` pixel edges of the source image (x = column, y = row; x1, y1 exclusive, the
first pixel's corner at 0), as ``triage synth dr`` and ``triage dataset export`` write them. The
network sees pixel centres at integer indices, hence the half-pixel shift: the inverse of
``fracture.to_findings`` and the same arithmetic as the synthetic ``fracture_data``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training.detection import datalist
from training.detection.config import DatalistData
from training.detection.crops import Sample
from triage.dicom.radiograph import load_radiograph
from triage.inference.fracture import PreparedImage, preprocess
from triage.inference.spec import PreprocessSpec

logger = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class DrItem:
    """One radiograph file and its fracture boxes (source pixels, ``xyxy``, max exclusive)."""

    source: Path
    boxes_xyxy_px: tuple[tuple[float, ...], ...]


def pixel_boxes_to_input(boxes_xyxy_px: npt.ArrayLike, prepared: PreparedImage) -> F32:
    """Return StandardMode boxes ``(N, 4)`` on the network's pixel grid of source-pixel boxes.

    >>> p = PreparedImage(np.zeros((4, 4), np.float32), source_px_per_input_px=(2.0, 2.0))
    >>> pixel_boxes_to_input([[10, 20, 30, 40]], p).tolist()
    [[4.75, 9.75, 14.75, 19.75]]
    """
    boxes = np.asarray(boxes_xyxy_px, dtype=np.float64).reshape(-1, 4)
    sx, sy = prepared.source_px_per_input_px
    scale = np.array([sx, sy, sx, sy])
    out: F32 = ((boxes - 0.5) / scale).astype(np.float32)
    return out


def dr_sample(index: int, prep: PreprocessSpec, *, items: tuple[DrItem, ...]) -> Sample:
    """Return item ``index`` preprocessed as serving does, with its boxes on the network grid."""
    item = items[index]
    prepared = preprocess(load_radiograph(item.source), prep)
    return Sample(prepared.image, pixel_boxes_to_input(item.boxes_xyxy_px, prepared))


def datalist_items(data: DatalistData) -> list[DrItem]:
    """Return the radiograph items of the configured datalist section."""
    entries = datalist.read_section(
        data.datalist, section=data.section, base_dir=data.base_dir, box_values=4
    )
    return [DrItem(e.image, e.boxes) for e in entries]


def build_samples(
    items: list[DrItem], prep: PreprocessSpec, *, cache: Path, workers: int
) -> list[Sample]:
    """Return preprocessed samples of the items, cached under ``cache`` (float16)."""
    key = datalist.cache_key("dr", [((i.source,), i.boxes_xyxy_px) for i in items], prep)
    make = partial(dr_sample, items=tuple(items))
    samples = datalist.build_cached(make, key, len(items), prep, cache=cache, workers=workers)
    logger.info(
        "real radiograph samples ready",
        extra={"images": len(samples), "boxes": sum(len(s.boxes) for s in samples)},
    )
    return samples
