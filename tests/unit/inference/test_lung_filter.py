"""The lung-mask candidate filter: keeps what touches the lungs, drops what lies outside them.

Regression: the filter used to test only a box's centre, so a large solid nodule — soft tissue in
a hole of the HU lung mask, its centre deeper than the 10 mm margin — was dropped.
"""

from __future__ import annotations

import numpy as np

from triage.imaging.geometry import lps_to_voxel
from triage.imaging.lung_mask import lung_mask
from triage.imaging.volume import Volume
from triage.inference.detection import Detections
from triage.inference.lung_nodule import boxes_from_centers, inside_lungs, preprocess
from triage.inference.spec import PreprocessSpec

MARGIN_MM = 10.0
SHAPE_KJI = (60, 120, 160)  # 2 mm slices, 1 mm pixels: 120 x 120 x 160 mm


def _chest() -> Volume:
    """Air around a soft-tissue body holding one lung (-850 HU) with a 30 mm solid nodule."""
    arr = np.full(SHAPE_KJI, -1000.0, dtype=np.float32)
    arr[:, 10:110, 10:150] = 40.0  # body
    arr[5:55, 25:95, 20:80] = -850.0  # lung: i 20..79, j 25..94, k 5..54
    k, j, i = np.ogrid[: SHAPE_KJI[0], : SHAPE_KJI[1], : SHAPE_KJI[2]]
    nodule = ((i - 50) ** 2 + (j - 60) ** 2 + ((k - 30) * 2.0) ** 2) <= 15.0**2
    arr[nodule] = 40.0
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    affine[:3, 3] = (-80.0, -60.0, -60.0)
    return Volume(arr, affine)


def _lps(volume: Volume, ijk: tuple[float, float, float]) -> np.ndarray:
    return (volume.affine_lps @ np.array([*ijk, 1.0]))[:3]


def _filter(volume: Volume, centers_ijk: list[tuple[float, float, float]], diam: list[float]):
    prepared = preprocess(volume, PreprocessSpec(target_spacing_mm=(1.0, 1.0, 2.0)))
    centers = np.array([_lps(volume, c) for c in centers_ijk])
    boxes = boxes_from_centers(centers, diam, prepared.affine_lps)
    dets = Detections(
        boxes, np.linspace(0.9, 0.5, len(boxes)).astype(np.float32), np.zeros(len(boxes), np.int64)
    )
    return inside_lungs(dets, volume, prepared, margin_mm=MARGIN_MM), boxes


def test_large_solid_nodule_in_a_mask_hole_is_kept() -> None:
    volume = _chest()
    mask = lung_mask(volume, margin_mm=MARGIN_MM)
    assert not mask[30, 60, 50], "the nodule centre must lie outside the dilated mask for this test"
    kept, boxes = _filter(volume, [(50.0, 60.0, 30.0)], [30.0])
    assert len(kept.scores) == 1
    np.testing.assert_array_equal(kept.boxes, boxes)


def test_candidates_outside_the_lungs_are_dropped_and_order_kept() -> None:
    volume = _chest()
    # in the lung; deep in the body wall far from the lung (i 130, 50 mm from it); in the lung again
    kept, boxes = _filter(
        volume, [(35.0, 40.0, 20.0), (130.0, 60.0, 30.0), (70.0, 85.0, 45.0)], [6.0, 8.0, 5.0]
    )
    assert len(kept.scores) == 2
    np.testing.assert_array_equal(kept.boxes, boxes[[0, 2]])
    assert list(kept.scores) == sorted(kept.scores, reverse=True)


def test_box_partly_outside_the_volume_does_not_fail() -> None:
    volume = _chest()
    kept, _ = _filter(volume, [(-20.0, 60.0, 30.0), (200.0, 200.0, 100.0)], [50.0, 10.0])
    assert len(kept.scores) == 0


def test_box_mapping_follows_the_source_orientation() -> None:
    """A volume stored with flipped i (another acquisition orientation) gives the same verdicts."""
    volume = _chest()
    flipped_aff = volume.affine_lps.copy()
    flipped_aff[:3, 0] *= -1.0
    flipped_aff[:3, 3] = volume.affine_lps[:3, 3] + volume.affine_lps[:3, 0] * (SHAPE_KJI[2] - 1)
    flipped = Volume(np.ascontiguousarray(volume.array[:, :, ::-1]), flipped_aff)
    centre = _lps(volume, (50.0, 60.0, 30.0))
    ijk = lps_to_voxel(flipped.affine_lps, centre.reshape(1, 3))[0]
    np.testing.assert_allclose(ijk, (SHAPE_KJI[2] - 1 - 50.0, 60.0, 30.0), atol=1e-6)
    far = _lps(volume, (130.0, 60.0, 30.0))
    far_ijk = lps_to_voxel(flipped.affine_lps, far.reshape(1, 3))[0]
    kept, boxes = _filter(flipped, [tuple(ijk), tuple(far_ijk)], [30.0, 8.0])
    np.testing.assert_array_equal(kept.boxes, boxes[[0]])


def test_lungs_open_to_outside_air_in_one_slice_are_kept_in_the_others() -> None:
    """Regression: outside air was labelled in 3-D, so a lung that met it in any one slice (here a
    gap through the body wall at k = 10) vanished from every slice and the mask came out empty."""
    volume = _chest()
    volume.array[10, 50:60, 0:20] = -1000.0  # a channel from the field's edge into the lung
    mask = lung_mask(volume, margin_mm=0.0)
    assert mask[20, 40, 30], "the lung away from the channel must stay in the mask"
    assert not mask[10, 55, 25], "the slice open to outside air is outside air there"


def test_no_lungs_found_keeps_every_candidate() -> None:
    """A scan whose HU mask finds no lungs keeps its candidates instead of losing all of them."""
    volume = _chest()
    volume.array[volume.array < -400] = -1000.0
    volume.array[:, 10:110, 10:150] = 40.0  # the body without lungs: nothing air-like inside
    assert not lung_mask(volume, margin_mm=MARGIN_MM).any()
    kept, boxes = _filter(volume, [(35.0, 40.0, 20.0), (130.0, 60.0, 30.0)], [6.0, 8.0])
    np.testing.assert_array_equal(kept.boxes, boxes)
