"""Real-data training inputs: synthetic datalists / annotations -> samples -> boxes on the truth.

The synthetic studies are written by the same code as ``triage synth ct`` / ``triage synth dr``
(``make_ct_study`` / ``make_dr_study`` plus the truth writers), at a small size. Boxes are checked
by decoding them with the *serving* code (``to_findings``) back to patient millimetres / source
pixels and comparing with the phantoms' ground truth, so a frame mix-up (RAS vs LPS, a missing
half-pixel shift) fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from training.detection import fracture_datalist, nodule_datalist
from training.detection.config import DatalistData, DicomCsvData, TrainConfig
from training.detection.datalist import read_section
from triage.dicom.radiograph import load_radiograph
from triage.imaging.resample import to_sitk
from triage.inference import fracture, lung_nodule
from triage.inference.detection import Detections
from triage.inference.spec import IntensitySpec, PreprocessSpec
from triage.synth.studies import (
    SyntheticStudy,
    ct_datalist_entry,
    dr_datalist_entry,
    make_ct_study,
    make_dr_study,
)
from triage.synth.truth import write_ct_datalist, write_dr_datalist, write_luna16_csv

CT_PREP = PreprocessSpec(target_spacing_mm=(2.0, 2.0, 2.0))
DR_PREP = PreprocessSpec(
    target_spacing_mm=(1.0, 1.0),
    axcodes="RA",
    intensity=IntensitySpec(mode="percentile", low=0.5, high=99.5),
)


@pytest.fixture(scope="module")
def ct(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SyntheticStudy]:
    """One small synthetic CT (11 slices) with a solid 13 mm nodule, its datalist and CSV."""
    root = tmp_path_factory.mktemp("ct")
    study = make_ct_study(root, 8, n_nodules=1, max_voxels=2_000_000, compression="none")
    assert len(study.nodules) == 1
    write_ct_datalist({"training": [ct_datalist_entry(study, root)]}, root / "datalist.json")
    write_luna16_csv(list(study.nodules), root / "annotations.csv")
    return root, study


@pytest.fixture(scope="module")
def dr(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SyntheticStudy]:
    """One synthetic limb radiograph with two fractures and its datalist."""
    root = tmp_path_factory.mktemp("dr")
    study = make_dr_study(root, 11, kind="limb", n_fractures=2, compression="none")
    write_dr_datalist({"training": [dr_datalist_entry(study, root)]}, root / "dr_datalist.json")
    return root, study


def _nodules_found(item: nodule_datalist.CtItem, boxes: np.ndarray) -> list[tuple[float, ...]]:
    """Decode sample boxes with the serving code: (x, y, z, diameter) in LPS mm."""
    volume = nodule_datalist.load_ct(item)
    prepared = lung_nodule.preprocess(volume, CT_PREP)
    dets = Detections(boxes, np.ones(len(boxes), np.float32), np.zeros(len(boxes), np.int64))
    found = lung_nodule.to_findings(dets, prepared, volume, series_uid="x")
    return [(*f.center_lps_mm, f.diameter_mm) for f in found]


def test_a_synth_ct_datalist_gives_boxes_on_the_phantom_nodules(
    ct: tuple[Path, SyntheticStudy], tmp_path: Path
) -> None:
    root, study = ct
    items = nodule_datalist.datalist_items(
        DatalistData(kind="datalist", datalist=root / "datalist.json")
    )
    (sample,) = nodule_datalist.build_samples(items, CT_PREP, cache=tmp_path, workers=1)
    (nodule,) = study.nodules
    (found,) = _nodules_found(items[0], sample.boxes.astype(np.float32))
    want = (nodule.coord_x_mm, nodule.coord_y_mm, nodule.coord_z_mm, nodule.diameter_mm)
    assert found == pytest.approx(want, abs=1e-3)
    # and the box sits on the nodule in the image the network sees (soft tissue, not lung air)
    centre = np.round((sample.boxes[0, :3] + sample.boxes[0, 3:]) / 2).astype(int)
    assert sample.image[tuple(centre)] > 0.6  # window -1024..300 HU: 0.6 is about -230 HU


def test_the_same_boxes_read_in_ras_would_miss_the_nodule(
    ct: tuple[Path, SyntheticStudy], tmp_path: Path
) -> None:
    """The convention matters: mirroring x and y (RAS) moves the box off the nodule."""
    root, study = ct
    (nodule,) = study.nodules
    ras = {"training": [{"image": study.study_dir.name, "box": [[
        -nodule.coord_x_mm, -nodule.coord_y_mm, nodule.coord_z_mm, *[nodule.diameter_mm] * 3
    ]], "label": [0]}]}  # fmt: skip
    (root / "ras.json").write_text(json.dumps(ras))
    items = nodule_datalist.datalist_items(
        DatalistData(kind="datalist", datalist=root / "ras.json")
    )
    (sample,) = nodule_datalist.build_samples(items, CT_PREP, cache=tmp_path, workers=1)
    centre = np.round((sample.boxes[0, :3] + sample.boxes[0, 3:]) / 2).astype(int)
    inside = np.all((centre >= 0) & (centre < sample.image.shape))
    assert not inside or sample.image[tuple(centre)] < 0.6


def test_dicom_csv_and_nifti_give_the_same_boxes_as_the_datalist(
    ct: tuple[Path, SyntheticStudy], tmp_path: Path
) -> None:
    root, _ = ct
    listed = nodule_datalist.datalist_items(
        DatalistData(kind="datalist", datalist=root / "datalist.json")
    )
    from_csv = nodule_datalist.dicom_csv_items(
        DicomCsvData(kind="dicom_csv", dicom_dir=root, annotations_csv=root / "annotations.csv")
    )
    # the same volume as NIfTI (stored RAS on disk; SimpleITK hands it back in LPS)
    sitk.WriteImage(to_sitk(nodule_datalist.load_ct(listed[0])), str(tmp_path / "ct.nii.gz"))
    nifti = [nodule_datalist.CtItem(tmp_path / "ct.nii.gz", listed[0].boxes_cccwhd_lps_mm)]
    got = [
        nodule_datalist.build_samples(items, CT_PREP, cache=tmp_path / "cache", workers=1)[0]
        for items in (listed, from_csv, nifti)
    ]
    assert len(from_csv) == 1
    for other in got[1:]:
        np.testing.assert_allclose(other.boxes, got[0].boxes, atol=1e-3)
        np.testing.assert_allclose(other.image, got[0].image, atol=2e-3)  # float16 cache


def test_a_synth_dr_datalist_gives_boxes_that_decode_to_the_fracture_boxes(
    dr: tuple[Path, SyntheticStudy], tmp_path: Path
) -> None:
    root, study = dr
    cfg = DatalistData(kind="datalist", datalist=root / "dr_datalist.json")
    items = fracture_datalist.datalist_items(cfg)
    (sample,) = fracture_datalist.build_samples(items, DR_PREP, cache=tmp_path, workers=1)
    radiograph = load_radiograph(items[0].source)
    prepared = fracture.preprocess(radiograph, DR_PREP)
    boxes = sample.boxes.astype(np.float32)
    dets = Detections(boxes, np.ones(len(boxes), np.float32), np.zeros(len(boxes), np.int64))
    found = fracture.to_findings(dets, prepared, radiograph)
    decoded = [(*f.box_px.min_col_row, *f.box_px.max_col_row) for f in found]
    want = [f.box_col_row for f in study.fractures]
    assert len(want) == 2
    np.testing.assert_allclose(decoded, want, atol=1e-3)


def test_samples_are_cached_and_reused(ct: tuple[Path, SyntheticStudy], tmp_path: Path) -> None:
    root, _ = ct
    items = nodule_datalist.datalist_items(
        DatalistData(kind="datalist", datalist=root / "datalist.json")
    )
    first = nodule_datalist.build_samples(items, CT_PREP, cache=tmp_path, workers=1)
    cached = sorted(tmp_path.glob("datalist_*.npz"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    again = nodule_datalist.build_samples(items, CT_PREP, cache=tmp_path, workers=1)
    assert cached[0].stat().st_mtime_ns == stamp  # read back, not rendered again
    np.testing.assert_array_equal(first[0].boxes, again[0].boxes)
    other = PreprocessSpec(target_spacing_mm=(3.0, 3.0, 3.0))
    nodule_datalist.build_samples(items, other, cache=tmp_path, workers=1)
    assert len(list(tmp_path.glob("datalist_*.npz"))) == 2  # another card: another key


def test_world_boxes_map_to_a_flipped_grid_by_their_corners() -> None:
    """RAS grid, 2 x 2 x 4 mm: i grows to the right (-x), j to anterior (-y), k superior (+z).

    Box centre (-10, -20, 40) mm -> voxel (5, 10, 10); half sizes 3, 3, 4 mm -> 1.5, 1.5, 1 voxels.
    """
    affine = np.diag([-2.0, -2.0, 4.0, 1.0])
    boxes = nodule_datalist.world_boxes_to_voxels([[-10.0, -20.0, 40.0, 6.0, 6.0, 8.0]], affine)
    assert boxes.tolist() == [[3.5, 8.5, 9.0, 6.5, 11.5, 11.0]]
    assert nodule_datalist.world_boxes_to_voxels(np.zeros((0, 6)), affine).shape == (0, 6)


def test_pixel_boxes_take_the_half_pixel_shift_and_the_scale() -> None:
    prepared = fracture.PreparedImage(np.zeros((4, 4), np.float32), (2.0, 4.0))
    boxes = fracture_datalist.pixel_boxes_to_input([[10, 20, 30, 40]], prepared)
    assert boxes.tolist() == [[4.75, 4.875, 14.75, 9.875]]


def test_a_datalist_with_a_wrong_box_length_or_label_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"training": [{"image": "a", "box": [[1, 2, 3, 4]], "label": [0]}]}))
    with pytest.raises(ValueError, match="entry 0: every box must have 6 numbers"):
        read_section(path, section="training", base_dir=None, box_values=6)
    path.write_text(json.dumps({"training": [{"image": "a", "box": [[1, 2, 3, 4]], "label": [1]}]}))
    with pytest.raises(ValueError, match="labels must be 0"):
        read_section(path, section="training", base_dir=None, box_values=4)
    with pytest.raises(ValueError, match=r"data.section must be one of .*\['training'\]"):
        read_section(path, section="validation", base_dir=None, box_values=4)


def test_annotations_naming_a_series_not_in_the_folder_are_refused(
    ct: tuple[Path, SyntheticStudy], tmp_path: Path
) -> None:
    root, _ = ct
    csv = tmp_path / "annotations.csv"
    csv.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n2.25.999,1,2,3,4\n")
    with pytest.raises(ValueError, match="every seriesuid in annotations.csv must be a CT series"):
        nodule_datalist.dicom_csv_items(
            DicomCsvData(kind="dicom_csv", dicom_dir=root, annotations_csv=csv)
        )


def test_data_kinds_are_told_apart_and_old_configs_stay_synthetic() -> None:
    assert TrainConfig.model_validate({"data": {"train_seeds": [0, 4]}}).data.kind == "synthetic"
    listed = TrainConfig.model_validate({"data": {"kind": "datalist", "datalist": "d.json"}})
    assert isinstance(listed.data, DatalistData)
    assert listed.data.section == "training"
    assert listed.amp is True
    assert listed.device == "cpu"
    with pytest.raises(ValueError, match="does not match any of the expected tags"):
        TrainConfig.model_validate({"data": {"kind": "nifti_folder"}})
