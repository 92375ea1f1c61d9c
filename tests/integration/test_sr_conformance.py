"""The engine's SRs checked by independent tools: dicom3tools ``dciodvfy`` and dcmtk ``dsrdump``.

Also proves that the SR reader handles third-party TID 1500 documents (highdicom's and dcmqi's
reference files in the shared data folder). Missing tools or data fail, never skip: CI must have
them (``apt-get install dcmtk dicom3tools``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.uid import generate_uid

from triage.core.findings import Box2D, Box3D, FractureFinding, NoduleFinding
from triage.core.priority import TriagePolicy, prioritise
from triage.dicom.outputs import AlgorithmInfo, build_sr, write_sr
from triage.dicom.sr_reader import read_sr_findings
from triage.imaging.volume import affine_from_geometry

pytestmark = pytest.mark.integration

NOW = datetime(2024, 3, 1, 14, 5, 9)
STUDY_UID = generate_uid(entropy_srcs=["conformance-study"])
CT_SERIES_UID = generate_uid(entropy_srcs=["conformance-ct"])
NODULE_MODEL = AlgorithmInfo("lung-nodule-det", "1.0.0", "a" * 64, "lung_nodule")
FRACTURE_MODEL = AlgorithmInfo("fracture-det", "0.3.1", "b" * 64, "fracture")
CASES = ("ct_two_nodules", "dx_one_fracture", "not_analysed")


def _header(modality: str, sop_class_uid: str, series_uid: str, key: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Syn^Pat", "SYN-1", "", "O"
    ds.StudyInstanceUID, ds.StudyID, ds.AccessionNumber = STUDY_UID, "1", "ACC-1"
    ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName = "20240301", "101500", ""
    ds.Modality, ds.SOPClassUID, ds.Manufacturer = modality, sop_class_uid, "Synthetic"
    ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = series_uid, 2, 1
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[key])
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    return ds


def make_ct_series(n_slices: int = 5, size: int = 16) -> list[Dataset]:
    """Return axial CT headers at 0.7 x 0.7 x 1.25 mm with origin (-5.6, -5.6, -100)."""
    slices = []
    for k in range(n_slices):
        ds = _header("CT", "1.2.840.10008.5.1.4.1.1.2", CT_SERIES_UID, f"conformance-ct-{k}")
        ds.InstanceNumber, ds.ImageType = k + 1, ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.FrameOfReferenceUID = generate_uid(entropy_srcs=["conformance-for"])
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = [-5.6, -5.6, -100.0 + 1.25 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 1.25
        ds.Rows = ds.Columns = size
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = np.zeros((size, size), np.uint16).tobytes()
        slices.append(ds)
    return slices


def make_radiograph(size: int = 32) -> Dataset:
    ds = _header("DX", "1.2.840.10008.5.1.4.1.1.1.1", generate_uid(entropy_srcs=["dx"]), "dx-0")
    ds.Rows = ds.Columns = size
    ds.ImagerPixelSpacing = [0.2, 0.2]
    ds.PixelData = np.zeros((size, size), np.uint16).tobytes()
    return ds


def _nodules() -> list[NoduleFinding]:
    boxes = [Box3D((4, 4, 1), (12, 12, 4)), Box3D((2, 3, 0), (5, 6, 2))]
    return [
        NoduleFinding((0.0, 0.0, -97.5), d, v, s, CT_SERIES_UID, box)
        for box, d, v, s in zip(boxes, (9.1, 4.2), (400.5, 38.8), (0.91, 0.55), strict=True)
    ]


def _build(case: str) -> pydicom.Dataset:
    ct = make_ct_series()
    if case == "ct_two_nodules":
        findings: list[NoduleFinding | FractureFinding] = list(_nodules())
        sources, models = ct, [NODULE_MODEL]
    elif case == "dx_one_fracture":
        image = make_radiograph()
        box = Box2D((3.0, 4.0), (10.0, 20.0))
        findings = [
            FractureFinding(box, 0.8, image.SOPInstanceUID, image.SeriesInstanceUID, 1.4, 3.2)
        ]
        sources, models = [image], [FRACTURE_MODEL]
    else:
        findings, sources, models = [], ct[:1], [NODULE_MODEL, FRACTURE_MODEL]
    failures = ["no series qualifies"] if case == "not_analysed" else []
    return build_sr(
        findings=findings,
        decision=prioritise(findings, TriagePolicy(), failures=failures),
        source_datasets=sources,
        algorithms=models,
        now=NOW,
        affine_lps=affine_from_geometry((-5.6, -5.6, -100.0), np.eye(3), (0.7, 0.7, 1.25)),
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out_dir = tmp_path_factory.mktemp("sr")
    return {case: write_sr(_build(case), out_dir) for case in CASES}


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} must be on PATH for SR conformance tests: apt-get install dcmtk dicom3tools"
        )
    return path


def _run(*args: str) -> tuple[int, str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    return done.returncode, done.stdout + done.stderr


def _shared_data() -> Path:
    env = os.environ.get("TRIAGE_SHARED_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    if not (root / "sr-examples").is_dir():
        pytest.fail(f"shared data must hold sr-examples/ (set TRIAGE_SHARED_DATA), got {root}")
    return root


@pytest.mark.parametrize("case", CASES)
def test_dciodvfy_finds_no_errors(written: dict[str, Path], case: str) -> None:
    _, report = _run(_tool("dciodvfy"), str(written[case]))
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert errors == [], report
    assert "Comprehensive3DSR" in report  # dciodvfy recognised the IOD it checked


@pytest.mark.parametrize("case", CASES)
def test_dsrdump_reads_a_tid_1500_report(written: dict[str, Path], case: str) -> None:
    rc, dump = _run(_tool("dsrdump"), "+Pt", str(written[case]))
    assert rc == 0, dump
    assert "TID 1500 (DCMR)" in dump
    assert '"Qualitative Evaluations"' in dump


def test_dsrdump_shows_both_nodules_and_the_priority(written: dict[str, Path]) -> None:
    _, dump = _run(_tool("dsrdump"), "+Pt", "+Pl", str(written["ct_two_nodules"]))
    assert dump.count("TID 1410 (DCMR)") == 2
    assert dump.count('(27925004,SCT,"Nodule")') == 2
    assert '(urgent,99TRIAGE,"Urgent")' in dump
    assert '"Algorithm Version")="1.0.0"' in dump


def test_dsrdump_shows_not_analysed_without_measurement_groups(written: dict[str, Path]) -> None:
    _, dump = _run(_tool("dsrdump"), "+Pl", str(written["not_analysed"]))
    assert '(not_analysed,99TRIAGE,"Not analysed")' in dump
    assert "not analysed: no series qualifies" in dump
    assert "Measurement Group" not in dump


def test_reader_handles_third_party_tid_1500_reports() -> None:
    examples = _shared_data() / "sr-examples"
    paths = sorted((examples / "highdicom").glob("*.dcm"))
    srs = [p for p in paths if pydicom.dcmread(p, stop_before_pixels=True).Modality == "SR"]
    assert len(srs) >= 2, f"expected highdicom's reference SRs in {examples}"
    found = {p.name: read_sr_findings(p) for p in [*srs, examples / "dcmqi" / "sr.dcm"]}
    assert all(found.values())
    (spinal,) = found["sr_document.dcm"]
    assert spinal["measurements"]["Area of defined region"] == (1.7, "cm2")
    nodule = [
        f for f in found["sr_document_with_multiple_groups.dcm"] if f["finding_type"] == "Nodule"
    ]
    assert nodule[0]["measurements"]["Diameter"] == (10.0, "mm")
    assert nodule[0]["algorithm_version"] is None
    tumour = found["sr.dcm"][0]
    assert tumour["tracking_uid"] is not None
    assert any(name.startswith("SUVbw (") for name in tumour["measurements"])
