"""Ground-truth files (LUNA16 csv, MONAI detection datalists, radiograph annotations) round-trip."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest

from triage.synth.studies import make_demo_set
from triage.synth.truth import (
    LUNA16_COLUMNS,
    CtDatalistEntry,
    DrAnnotationRow,
    DrDatalistEntry,
    NoduleRow,
    nodule_box_cccwhd,
    read_ct_datalist,
    read_dr_csv,
    read_dr_datalist,
    read_luna16_csv,
    write_ct_datalist,
    write_dr_csv,
    write_dr_datalist,
    write_luna16_csv,
)

ROWS = [
    NoduleRow("1.2.3", -101.25, 33.5, -180.123456, 7.25),
    NoduleRow("1.2.3", 12.0, -4.0, -90.0, 12.5),
    NoduleRow("2.25.99", 0.0, 0.0, 0.0, 3.0),
]


def test_luna16_csv_round_trips(tmp_path: Path) -> None:
    path = write_luna16_csv(ROWS, tmp_path / "annotations.csv")
    assert path.read_text().splitlines()[0] == ",".join(LUNA16_COLUMNS)
    back = read_luna16_csv(path)
    assert len(back) == len(ROWS)
    for a, b in zip(back, ROWS, strict=True):
        assert a.seriesuid == b.seriesuid
        assert a.coord_x_mm == pytest.approx(b.coord_x_mm, abs=1e-6)
        assert a.coord_y_mm == pytest.approx(b.coord_y_mm, abs=1e-6)
        assert a.coord_z_mm == pytest.approx(b.coord_z_mm, abs=1e-6)
        assert a.diameter_mm == pytest.approx(b.diameter_mm, abs=1e-6)


def test_luna16_csv_with_a_wrong_header_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("uid,x,y,z,d\n1,2,3,4,5\n")
    with pytest.raises(ValueError, match="LUNA16 csv header must be"):
        read_luna16_csv(path)


def test_ct_datalist_has_monai_luna16_layout_and_round_trips(tmp_path: Path) -> None:
    entries = {
        "training": [
            CtDatalistEntry("abc", (nodule_box_cccwhd(ROWS[0]), nodule_box_cccwhd(ROWS[1])), (0, 0))
        ],
        "validation": [CtDatalistEntry("def", (), ())],
    }
    path = write_ct_datalist(entries, tmp_path / "datalist.json")
    doc = json.loads(path.read_text())
    assert doc["box_mode"] == "cccwhd"
    assert set(doc["training"][0]) == {"image", "box", "label"}
    assert doc["training"][0]["box"][0] == [-101.25, 33.5, -180.123456, 7.25, 7.25, 7.25]
    assert doc["validation"][0] == {"image": "def", "box": [], "label": []}
    assert read_ct_datalist(path) == entries


def test_ct_datalist_from_a_plain_list_is_the_training_section(tmp_path: Path) -> None:
    entry = CtDatalistEntry("x", (nodule_box_cccwhd(ROWS[2]),), (0,))
    assert read_ct_datalist(write_ct_datalist([entry], tmp_path / "d.json")) == {
        "training": [entry]
    }


def test_dr_datalist_round_trips_with_pixel_xyxy_boxes(tmp_path: Path) -> None:
    entries = {
        "training": [
            DrDatalistEntry(
                "s/DX_0001.dcm", ((1, 2, 30, 40), (5, 5, 9, 9)), (0, 0), ("displaced", "buckle")
            )
        ],
        "validation": [DrDatalistEntry("t/CR_0001.dcm", (), (), ())],
    }
    path = write_dr_datalist(entries, tmp_path / "dr.json")
    doc = json.loads(path.read_text())
    assert doc["box_mode"] == "xyxy"
    assert doc["training"][0]["box"] == [[1, 2, 30, 40], [5, 5, 9, 9]]
    assert read_dr_datalist(path) == entries


def test_dr_csv_round_trips_including_negative_images(tmp_path: Path) -> None:
    rows = [
        DrAnnotationRow("a/DX_0001.dcm", "2.25.1", "TIBIA", (1, 2, 3, 4), "cortical_break"),
        DrAnnotationRow("b/CR_0001.dcm", "2.25.2", "CHEST", None, "none"),
    ]
    assert read_dr_csv(write_dr_csv(rows, tmp_path / "dr.csv")) == rows


def test_demo_set_writes_studies_and_consistent_truth(tmp_path: Path) -> None:
    demo = make_demo_set(tmp_path, seed=3, n_ct=1, n_dr=2, ct_max_voxels=400_000)
    assert len(demo.ct_studies) == 1
    assert len(demo.dr_studies) == 2
    ct = demo.ct_studies[0]
    datalist = read_ct_datalist(demo.datalist_json)
    entry = datalist["training"][0]
    assert (tmp_path / entry.image) == ct.study_dir
    assert len(entry.boxes_cccwhd) == len(ct.nodules)
    luna = read_luna16_csv(demo.annotations_csv)
    assert len(luna) == len(ct.nodules)
    for got, want in zip(luna, ct.nodules, strict=True):
        assert got.coord_z_mm == pytest.approx(want.coord_z_mm, abs=1e-5)
        assert got.diameter_mm == pytest.approx(want.diameter_mm, abs=1e-5)
    first = pydicom.dcmread(ct.files[0], stop_before_pixels=True)
    assert all(row.seriesuid == first.SeriesInstanceUID for row in luna)
    assert ct.study_dir.name != first.StudyInstanceUID  # hashed, never a raw UID
    dr_rows = read_dr_csv(demo.dr_annotations_csv)
    dr_list = read_dr_datalist(demo.dr_datalist_json)["training"]
    for study, listed in zip(demo.dr_studies, dr_list, strict=True):
        assert listed.boxes_xyxy == tuple(f.box_col_row for f in study.fractures)
        ds = pydicom.dcmread(tmp_path / listed.image, stop_before_pixels=True)
        assert ds.SOPInstanceUID == study.sop_instance_uid
        mine = [r for r in dr_rows if r.image == listed.image]
        assert len(mine) == max(1, len(study.fractures))
