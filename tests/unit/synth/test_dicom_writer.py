"""Synthetic DICOM writers: write, read back with pydicom, and check conformance with dciodvfy."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from triage.imaging.volume import Volume, affine_from_geometry
from triage.synth.ct_phantom import CtPhantom, generate_ct_phantom
from triage.synth.dicom_writer import SyntheticStudyMeta, write_ct_series, write_radiograph
from triage.synth.dr_fractures import FractureTruth
from triage.synth.dr_phantom import DrPhantom
from triage.synth.study_meta import CT_VENDORS, RESCALE_INTERCEPTS


@pytest.fixture(scope="module")
def ct() -> CtPhantom:
    return generate_ct_phantom(
        3, spacing_ijk_mm=(0.75, 0.8, 1.25), shape_ijk=(48, 40, 5), n_nodules=0
    )


@pytest.fixture(scope="module")
def dr() -> DrPhantom:
    rng = np.random.default_rng(0)
    image = rng.random((60, 80), dtype=np.float32)
    image[0, 0], image[0, 1] = 0.0, 1.0
    return DrPhantom(
        image,
        (0.15, 0.15),
        (FractureTruth((5, 6, 30, 40), "displaced", "tibia"),),
        "TIBIA",
        9,
        "AP",
        "L",
        ("L", "F"),
    )


def _read_series(paths: list[Path]) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in paths]


def _dciodvfy_errors(path: Path) -> list[str]:
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.fail("dciodvfy not found on PATH: apt-get install dicom3tools")
    result = subprocess.run(
        [exe, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    return [
        line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")
    ]


@pytest.mark.parametrize("intercept", RESCALE_INTERCEPTS)
@pytest.mark.parametrize("compression", ["none", "rle"])
def test_ct_pixels_round_trip_to_hu_within_one(
    ct: CtPhantom, tmp_path: Path, intercept: float, compression: str
) -> None:
    meta = SyntheticStudyMeta.from_seed(3, kind="ct")
    paths = write_ct_series(
        ct, tmp_path, study=meta, rescale_intercept=intercept, compression=compression
    )
    for k, ds in enumerate(_read_series(paths)):
        assert float(ds.RescaleIntercept) == intercept
        assert float(ds.RescaleSlope) == 1.0
        hu = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.abs(hu - ct.volume.array[k]).max() <= 1.0


def test_ct_geometry_tags_match_the_affine(ct: CtPhantom, tmp_path: Path) -> None:
    meta = SyntheticStudyMeta.from_seed(3, kind="ct")
    series = _read_series(write_ct_series(ct, tmp_path, study=meta))
    affine = ct.volume.affine_lps
    for k, ds in enumerate(series):
        assert np.allclose(
            [float(x) for x in ds.ImagePositionPatient], (affine @ [0, 0, k, 1])[:3], atol=1e-4
        )
        assert [float(x) for x in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert [float(x) for x in ds.PixelSpacing] == [
            0.8,
            0.75,
        ]  # (row spacing = j, column spacing = i)
        assert float(ds.SliceThickness) == pytest.approx(ct.slice_thickness_mm)
        assert float(ds.SpacingBetweenSlices) == pytest.approx(1.25)
        assert (ds.Rows, ds.Columns) == (40, 48)
        assert ds.Modality == "CT"
        assert ds.SOPClassUID == pydicom.uid.CTImageStorage
        assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
        assert ds.BodyPartExamined == "CHEST"
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian


def test_ct_geometry_follows_a_non_identity_affine(tmp_path: Path) -> None:
    affine = affine_from_geometry((-10.0, 20.0, -300.0), np.eye(3), (0.6, 0.9, 2.0))
    phantom = CtPhantom(Volume(np.zeros((3, 4, 5), np.float32), affine), (), 2.0, 1)
    ds = pydicom.dcmread(
        write_ct_series(phantom, tmp_path, study=SyntheticStudyMeta.from_seed(1, kind="ct"))[2]
    )
    assert [float(x) for x in ds.ImagePositionPatient] == [-10.0, 20.0, -296.0]
    assert [float(x) for x in ds.PixelSpacing] == [0.9, 0.6]


def test_ct_uids_are_deterministic_per_seed(ct: CtPhantom, tmp_path: Path) -> None:
    def uids(seed: int, folder: str) -> list[tuple[str, str, str]]:
        paths = write_ct_series(
            ct, tmp_path / folder, study=SyntheticStudyMeta.from_seed(seed, kind="ct")
        )
        return [
            (d.StudyInstanceUID, d.SeriesInstanceUID, d.SOPInstanceUID) for d in _read_series(paths)
        ]

    first, again, other = uids(3, "a"), uids(3, "b"), uids(4, "c")
    assert first == again
    assert len({sop for _, _, sop in first}) == len(first)
    assert not {u for t in first for u in t} & {u for t in other for u in t}
    assert all(pydicom.uid.UID(u).is_valid for t in first for u in t)


def test_ct_file_names_can_be_shuffled(ct: CtPhantom, tmp_path: Path) -> None:
    paths = write_ct_series(
        ct, tmp_path, study=SyntheticStudyMeta.from_seed(5, kind="ct"), shuffle_names=True
    )
    assert sorted(p.name for p in paths) == [f"CT_{k:04d}.dcm" for k in range(5)]
    assert [p.name for p in paths] != sorted(p.name for p in paths)
    assert [pydicom.dcmread(p).InstanceNumber for p in paths] == [1, 2, 3, 4, 5]


def test_ct_series_passes_dciodvfy(ct: CtPhantom, tmp_path: Path) -> None:
    paths = write_ct_series(
        ct, tmp_path, study=SyntheticStudyMeta.from_seed(3, kind="ct"), compression="rle"
    )
    assert _dciodvfy_errors(paths[0]) == []


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize("bits", [10, 12, 16])
def test_radiograph_pixels_scale_and_invert_for_monochrome1(
    dr: DrPhantom, tmp_path: Path, photometric: str, bits: int
) -> None:
    meta = SyntheticStudyMeta.from_seed(9, kind="dr")
    path = write_radiograph(
        dr, tmp_path / "x.dcm", study=meta, photometric=photometric, bits_stored=bits
    )
    ds = pydicom.dcmread(path)
    max_value = 2**bits - 1
    expected = np.rint(dr.image * max_value)
    if photometric == "MONOCHROME1":
        expected = max_value - expected
    assert ds.PhotometricInterpretation == photometric
    assert ds.BitsStored == bits
    assert np.array_equal(ds.pixel_array.astype(np.int64), expected.astype(np.int64))
    shown = ds.pixel_array.astype(np.float64) / max_value
    if photometric == "MONOCHROME1":
        shown = 1.0 - shown
    assert np.allclose(shown, dr.image, atol=1.0 / max_value)


def test_radiograph_imager_spacing_only(dr: DrPhantom, tmp_path: Path) -> None:
    meta = SyntheticStudyMeta.from_seed(9, kind="dr")
    ds = pydicom.dcmread(
        write_radiograph(dr, tmp_path / "x.dcm", study=meta, spacing_tag="ImagerPixelSpacing")
    )
    assert [float(x) for x in ds.ImagerPixelSpacing] == [0.15, 0.15]
    assert "PixelSpacing" not in ds


@pytest.mark.parametrize("modality", ["DX", "CR"])
def test_radiograph_pixel_spacing_is_the_patient_plane_spacing(
    dr: DrPhantom, tmp_path: Path, modality: str
) -> None:
    meta = SyntheticStudyMeta.from_seed(9, kind="dr")
    ds = pydicom.dcmread(
        write_radiograph(
            dr, tmp_path / "x.dcm", study=meta, modality=modality, spacing_tag="PixelSpacing"
        )
    )
    assert [float(x) for x in ds.PixelSpacing] == [0.15, 0.15]
    if modality == "DX":
        assert float(ds.ImagerPixelSpacing[0]) >= 0.15  # detector plane, magnified
    else:
        assert "ImagerPixelSpacing" not in ds


@pytest.mark.parametrize(
    ("modality", "sop_class"),
    [
        ("DX", pydicom.uid.DigitalXRayImageStorageForPresentation),
        ("CR", pydicom.uid.ComputedRadiographyImageStorage),
    ],
)
def test_radiograph_identity_and_presentation_tags(
    dr: DrPhantom, tmp_path: Path, modality: str, sop_class: str
) -> None:
    meta = SyntheticStudyMeta.from_seed(9, kind="dr")
    ds = pydicom.dcmread(
        write_radiograph(
            dr, tmp_path / "x.dcm", study=meta, modality=modality, photometric="MONOCHROME1"
        )
    )
    assert ds.SOPClassUID == sop_class
    assert ds.Modality == modality
    assert ds.BodyPartExamined == "TIBIA"
    assert ds.ViewPosition == "AP"
    assert ds.PatientName == "PHANTOM^DR^9"
    assert ds.PatientID == "PHANTOM-9"
    assert ds.StudyInstanceUID == meta.study_instance_uid
    if modality == "DX":
        assert ds.PresentationIntentType == "FOR PRESENTATION"
        assert ds.PresentationLUTShape == "INVERSE"
        assert ds.ImageLaterality == "L"
    else:
        assert ds.Laterality == "L"


@pytest.mark.parametrize("compression", ["rle", "jpeg2000", "jpegls"])
def test_radiograph_compression_is_lossless(
    dr: DrPhantom, tmp_path: Path, compression: str
) -> None:
    meta = SyntheticStudyMeta.from_seed(9, kind="dr")
    plain = pydicom.dcmread(write_radiograph(dr, tmp_path / "a.dcm", study=meta))
    packed = pydicom.dcmread(
        write_radiograph(dr, tmp_path / "b.dcm", study=meta, compression=compression)
    )
    assert packed.file_meta.TransferSyntaxUID.is_compressed
    assert packed.SOPInstanceUID == plain.SOPInstanceUID
    assert np.array_equal(packed.pixel_array, plain.pixel_array)


@pytest.mark.parametrize(
    ("modality", "photometric", "spacing_tag"),
    [
        ("DX", "MONOCHROME1", "PixelSpacing"),
        ("DX", "MONOCHROME2", "ImagerPixelSpacing"),
        ("CR", "MONOCHROME1", "ImagerPixelSpacing"),
        ("CR", "MONOCHROME2", "PixelSpacing"),
    ],
)
def test_radiograph_passes_dciodvfy(
    dr: DrPhantom, tmp_path: Path, modality: str, photometric: str, spacing_tag: str
) -> None:
    meta = SyntheticStudyMeta.from_seed(9, kind="dr")
    path = write_radiograph(
        dr,
        tmp_path / "x.dcm",
        study=meta,
        modality=modality,
        photometric=photometric,
        spacing_tag=spacing_tag,
        bits_stored=14,
    )
    assert _dciodvfy_errors(path) == []


def test_chest_radiograph_passes_dciodvfy(tmp_path: Path) -> None:
    chest = DrPhantom(np.full((40, 50), 0.5, np.float32), (0.16, 0.16), (), "CHEST", 2, "PA", "U")
    meta = SyntheticStudyMeta.from_seed(2, kind="dr")
    for modality in ("DX", "CR"):
        path = write_radiograph(chest, tmp_path / f"{modality}.dcm", study=meta, modality=modality)
        assert _dciodvfy_errors(path) == []


def test_bad_radiograph_arguments_are_rejected(dr: DrPhantom, tmp_path: Path) -> None:
    meta = SyntheticStudyMeta.from_seed(9, kind="dr")
    with pytest.raises(ValueError, match="modality must be"):
        write_radiograph(dr, tmp_path / "x.dcm", study=meta, modality="MR")
    with pytest.raises(ValueError, match="bits_stored must be in 10..16"):
        write_radiograph(dr, tmp_path / "x.dcm", study=meta, bits_stored=8)
    with pytest.raises(ValueError, match="compression must be one of"):
        write_radiograph(dr, tmp_path / "x.dcm", study=meta, compression="zip")


def test_study_meta_is_deterministic_and_varied() -> None:
    assert SyntheticStudyMeta.from_seed(7, kind="ct") == SyntheticStudyMeta.from_seed(7, kind="ct")
    assert (
        SyntheticStudyMeta.from_seed(7, kind="ct").study_instance_uid
        != SyntheticStudyMeta.from_seed(7, kind="dr").study_instance_uid
    )
    metas = [SyntheticStudyMeta.from_seed(s, kind="ct") for s in range(60)]
    assert {m.rescale_intercept for m in metas} == set(RESCALE_INTERCEPTS)
    assert {m.manufacturer for m in metas} == {v[0] for v in CT_VENDORS}
    assert all(len(m.study_date) == 8 and m.study_date.isdigit() for m in metas)
    assert metas[7].patient_name == "PHANTOM^CT^7"
    with pytest.raises(ValueError, match="kind must be 'ct' or 'dr'"):
        SyntheticStudyMeta.from_seed(1, kind="mr")
