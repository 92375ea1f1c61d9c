"""CT volumes and radiographs from DICOM: sorting, HU, geometry, validation and decoding."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.pixels import get_decoder
from pydicom.uid import (
    DigitalXRayImageStorageForProcessing,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from tests.factories import (
    ORIENTATIONS,
    ct_stored_values,
    make_ct_series,
    make_enhanced_ct,
    make_radiograph,
    only_series,
    radiograph_stored_values,
)
from triage.core.errors import InvalidSeries
from triage.dicom.radiograph import load_radiograph
from triage.dicom.reader import scan_folder
from triage.dicom.series import load_ct_volume
from triage.imaging.geometry import voxel_to_lps
from triage.imaging.volume import Volume

OBLIQUE = (0.8660254, 0.5, 0.0, 0.0, 0.0, -1.0)  # row cosine 30 degrees off x, column = -z


# --- synthetic CT: order, values, geometry ---------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_slices_are_sorted_by_position_whatever_the_file_order(tmp_path: Path, seed: int) -> None:
    volume = load_ct_volume(only_series(make_ct_series(tmp_path, 6, seed=seed)))
    for k in range(6):
        assert np.array_equal(volume.array[k], ct_stored_values(k, 12, 10) - 1024.0)


def test_slices_are_sorted_along_the_normal_not_along_z(tmp_path: Path) -> None:
    # coronal: normal = row x column = (1,0,0) x (0,0,-1) = (0,1,0), i.e. posterior
    volume = load_ct_volume(only_series(make_ct_series(tmp_path, 4, orientation="coronal")))
    assert np.array_equal(volume.array[3], ct_stored_values(3, 12, 10) - 1024.0)
    assert volume.affine_lps[:3, 2].tolist() == pytest.approx([0.0, 2.5, 0.0])


def test_hu_is_stored_times_slope_plus_intercept(tmp_path: Path) -> None:
    folder = make_ct_series(tmp_path, 3, rescale_slope=2.0, rescale_intercept=-1000.0)
    volume = load_ct_volume(only_series(folder))
    assert volume.array.dtype == np.float32
    assert np.array_equal(volume.array[1], 2.0 * ct_stored_values(1, 12, 10) - 1000.0)


def test_array_is_slice_row_column_with_column_spacing_on_i(tmp_path: Path) -> None:
    folder = make_ct_series(tmp_path, 3, rows=12, cols=10, pixel_spacing_mm=(0.7, 0.8))
    volume = load_ct_volume(only_series(folder))
    assert volume.array.shape == (3, 12, 10)
    assert volume.shape_ijk == (10, 12, 3)
    assert volume.spacing_ijk_mm == pytest.approx((0.8, 0.7, 2.5))


def test_affine_maps_each_voxel_to_its_image_position(tmp_path: Path) -> None:
    folder = make_ct_series(tmp_path, 5, orientation=OBLIQUE, spacing_mm=1.5)
    volume = load_ct_volume(only_series(folder))
    for path in folder.glob("*.dcm"):
        ds = pydicom.dcmread(path)
        k = int(ds.pixel_array[0, 0]) // 100
        ipp = np.asarray(ds.ImagePositionPatient, dtype=float)
        assert voxel_to_lps(volume.affine_lps, [0, 0, k]) == pytest.approx(ipp, abs=1e-4)
        row, col = np.asarray(OBLIQUE[:3]), np.asarray(OBLIQUE[3:])
        expected = ipp + 4 * 0.8 * row + 7 * 0.7 * col  # i = 4 columns along, j = 7 rows down
        assert voxel_to_lps(volume.affine_lps, [4, 7, k]) == pytest.approx(expected, abs=1e-4)


def test_volume_matches_simpleitk_series_reader(tmp_path: Path) -> None:
    folder = make_ct_series(tmp_path, 6, orientation=OBLIQUE, rescale_slope=2.0)
    volume = load_ct_volume(only_series(folder))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    assert np.array_equal(sitk.GetArrayFromImage(image), volume.array)
    assert image.GetOrigin() == pytest.approx(tuple(volume.affine_lps[:3, 3]), abs=1e-4)
    assert image.GetSpacing() == pytest.approx(volume.spacing_ijk_mm, abs=1e-4)
    directions = volume.affine_lps[:3, :3] / np.asarray(volume.spacing_ijk_mm)
    assert image.GetDirection() == pytest.approx(tuple(directions.flatten()), abs=1e-4)


def test_single_slice_takes_its_k_step_from_slice_thickness(tmp_path: Path) -> None:
    volume = load_ct_volume(only_series(make_ct_series(tmp_path, 1, thickness_mm=1.25)))
    assert volume.array.shape == (1, 12, 10)
    assert volume.spacing_ijk_mm[2] == pytest.approx(1.25)


def test_enhanced_ct_frames_are_sorted_into_a_volume(tmp_path: Path) -> None:
    path = make_enhanced_ct(tmp_path / "enhanced" / "ct.dcm", 9, spacing_mm=1.25)
    volume = load_ct_volume(only_series(path.parent), min_slices=9)
    assert volume.shape_ijk == (6, 8, 9)
    assert volume.spacing_ijk_mm == pytest.approx((0.9, 0.6, 1.25))
    assert volume.affine_lps[:3, 3].tolist() == pytest.approx([10.0, 20.0, 30.0])
    for k in range(9):
        assert np.array_equal(volume.array[k], ct_stored_values(k, 8, 6) - 1000.0)


# --- decoding --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "syntax",
    [
        JPEGBaseline8Bit,
        JPEGExtended12Bit,
        JPEGLosslessSV1,
        JPEGLSLossless,
        JPEGLSNearLossless,
        JPEG2000Lossless,
        RLELossless,
    ],
    ids=lambda syntax: syntax.name,
)
def test_a_pixel_decoder_is_installed_for_each_supported_transfer_syntax(syntax: str) -> None:
    assert get_decoder(syntax).is_available


@pytest.mark.parametrize(
    "syntax", [JPEG2000Lossless, JPEGLSLossless, RLELossless], ids=lambda s: s.name
)
def test_compressed_ct_decodes_to_the_same_hu(tmp_path: Path, syntax: str) -> None:
    native = make_ct_series(tmp_path / "native", 3, rows=40, cols=36)
    packed = make_ct_series(tmp_path / "packed", 3, rows=40, cols=36, transfer_syntax=syntax)
    expected = load_ct_volume(only_series(native)).array
    assert np.array_equal(load_ct_volume(only_series(packed)).array, expected)


def test_truncated_pixel_data_raises_invalid_series(tmp_path: Path) -> None:
    folder = make_ct_series(tmp_path, 3)
    victim = sorted(folder.glob("*.dcm"))[0]
    victim.write_bytes(victim.read_bytes()[:-50])
    with pytest.raises(InvalidSeries, match="pixel data must decode"):
        load_ct_volume(only_series(folder))


# --- validation: every broken series names its problem ---------------------------------------


@pytest.mark.parametrize(
    ("factory_kwargs", "load_kwargs", "match"),
    [
        ({"missing": [5]}, {}, r"missing slices.*5\.00 mm gap.*about 1 slice"),
        ({"missing": [4, 5, 6]}, {}, r"missing slices.*about 3 slice"),
        ({"duplicate": [3]}, {}, r"duplicate positions"),
        (
            {"overrides": {4: {"ImageOrientationPatient": [1, 0, 0, 0, 0.9950042, 0.0998334]}}},
            {},
            r"mixed orientation",
        ),
        ({"tilt_deg": 15.0}, {}, r"15\.0 degrees.*gantry tilt.*tilt-corrected reconstruction"),
        ({"overrides": {2: {"Rows": 6}}}, {}, r"Rows x Columns.*inconsistent matrix size"),
        ({"pixel_spacing_mm": None}, {}, r"PixelSpacing must be present and > 0 mm, got absent"),
        ({"pixel_spacing_mm": (0.0, 0.0)}, {}, r"PixelSpacing must be present.*got 0\\0"),
        ({}, {"min_slices": 10}, r"at least 10 slices, got 8 \(too few slices\)"),
        (
            {"positions_mm": [0, 2.5, 5, 7.5, 10.6, 13.1, 15.6, 18.1]},
            {},
            r"non-uniform spacing.*2\.50 to 3\.10 mm",
        ),
        ({"missing": [5]}, {"max_gap_factor": 2.5}, r"non-uniform spacing"),
        ({"modality": "MR"}, {}, r"modality must be CT.*'MR'"),
    ],
    ids=[
        "gap",
        "gap-of-three",
        "duplicate",
        "mixed-orientation",
        "gantry-tilt",
        "inconsistent-rows",
        "no-pixel-spacing",
        "zero-pixel-spacing",
        "too-few-slices",
        "non-uniform",
        "gap-below-factor-is-non-uniform",
        "not-ct",
    ],
)
def test_broken_series_raise_invalid_series_with_a_named_reason(
    tmp_path: Path, factory_kwargs: dict[str, object], load_kwargs: dict[str, float], match: str
) -> None:
    series = only_series(make_ct_series(tmp_path, 8, **factory_kwargs))  # type: ignore[arg-type]
    with pytest.raises(InvalidSeries, match=match):
        load_ct_volume(series, **load_kwargs)  # type: ignore[arg-type]


def test_orientation_jitter_below_tolerance_loads(tmp_path: Path) -> None:
    jitter = {3: {"ImageOrientationPatient": [1, 0, 0, 0, 0.9999995, 0.0005]}}
    volume = load_ct_volume(only_series(make_ct_series(tmp_path, 8, overrides=jitter)))
    assert volume.shape_ijk[2] == 8


def test_small_gantry_tilt_within_tolerance_loads(tmp_path: Path) -> None:
    volume = load_ct_volume(only_series(make_ct_series(tmp_path, 8, tilt_deg=0.05)))
    assert volume.shape_ijk[2] == 8


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"min_slices": 0}, "min_slices must be >= 1, got 0"), ({"max_gap_factor": 1.0}, "> 1")],
)
def test_nonsense_limits_are_a_programming_error(
    tmp_path: Path, kwargs: dict[str, float], match: str
) -> None:
    series = only_series(make_ct_series(tmp_path, 2))
    with pytest.raises(ValueError, match=match):
        load_ct_volume(series, **kwargs)  # type: ignore[arg-type]


# --- radiographs -----------------------------------------------------------------------------


def test_monochrome1_is_inverted_so_dense_is_bright(tmp_path: Path) -> None:
    path = make_radiograph(tmp_path / "m1.dcm", photometric="MONOCHROME1", bits_stored=12)
    radiograph = load_radiograph(path)
    assert np.array_equal(radiograph.array, 4095.0 - radiograph_stored_values(20, 16, 12))


def test_monochrome2_keeps_stored_values(tmp_path: Path) -> None:
    radiograph = load_radiograph(make_radiograph(tmp_path / "m2.dcm", bits_stored=10))
    assert radiograph.array.dtype == np.float32
    assert np.array_equal(radiograph.array, radiograph_stored_values(20, 16, 10))


def test_rescale_is_applied_before_inversion(tmp_path: Path) -> None:
    path = make_radiograph(
        tmp_path / "r.dcm", photometric="MONOCHROME1", bits_stored=12, rescale=(2.0, -100.0)
    )
    stored = radiograph_stored_values(20, 16, 12).astype(np.float32)
    assert np.array_equal(load_radiograph(path).array, 2.0 * (4095.0 - stored) - 100.0)


@pytest.mark.parametrize(
    ("kwargs", "spacing", "source"),
    [
        (
            {"pixel_spacing_mm": (0.1, 0.12), "imager_pixel_spacing_mm": (0.15, 0.15)},
            (0.1, 0.12),
            "PixelSpacing",
        ),
        (
            {"imager_pixel_spacing_mm": (0.15, 0.2)},
            (0.15, 0.2),
            "ImagerPixelSpacing (at the detector; not corrected for geometric magnification)",
        ),
        (
            {"imager_pixel_spacing_mm": (0.15, 0.15), "magnification": 1.25},
            (0.12, 0.12),
            "ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor 1.25",
        ),
        (
            {"pixel_spacing_mm": (0.0, 0.0), "imager_pixel_spacing_mm": (0.15, 0.15)},
            (0.15, 0.15),
            "PixelSpacing is 0\\0",
        ),
    ],
    ids=["pixel-wins", "imager-at-detector", "imager-magnification", "zero-pixel-falls-back"],
)
def test_radiograph_spacing_prefers_pixel_spacing_then_imager_spacing(
    tmp_path: Path, kwargs: dict[str, object], spacing: tuple[float, float], source: str
) -> None:
    radiograph = load_radiograph(make_radiograph(tmp_path / "s.dcm", **kwargs))  # type: ignore[arg-type]
    assert radiograph.pixel_spacing_mm == pytest.approx(spacing)
    assert source in radiograph.spacing_source


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"pixel_spacing_mm": (0.0, 0.0)}, "none: PixelSpacing is 0\\0; ImagerPixelSpacing absent"),
        ({}, "none: PixelSpacing absent; ImagerPixelSpacing absent"),
        ({"imager_pixel_spacing_mm": (0.0, 0.1)}, "ImagerPixelSpacing is 0\\0.1"),
    ],
)
def test_unusable_radiograph_spacing_is_none_with_the_reason(
    tmp_path: Path, kwargs: dict[str, object], reason: str
) -> None:
    radiograph = load_radiograph(make_radiograph(tmp_path / "z.dcm", **kwargs))  # type: ignore[arg-type]
    assert radiograph.pixel_spacing_mm is None
    assert reason in radiograph.spacing_source


@pytest.mark.parametrize(
    "syntax", [JPEG2000Lossless, JPEGLSLossless, RLELossless], ids=lambda s: s.name
)
def test_compressed_radiograph_decodes_to_the_same_pixels(tmp_path: Path, syntax: str) -> None:
    packed = make_radiograph(tmp_path / "p.dcm", rows=40, cols=36, transfer_syntax=syntax)
    native = make_radiograph(tmp_path / "n.dcm", rows=40, cols=36)
    assert np.array_equal(load_radiograph(packed).array, load_radiograph(native).array)


def test_jpeg_baseline_radiograph_decodes_close_to_the_original(tmp_path: Path) -> None:
    packed = make_radiograph(
        tmp_path / "j.dcm", rows=40, cols=36, bits_stored=8, transfer_syntax=JPEGBaseline8Bit
    )
    expected = radiograph_stored_values(40, 36, 8)
    assert np.abs(load_radiograph(packed).array - expected).max() <= 4


def test_dx_for_processing_loads_from_a_dataset_with_series_uids(tmp_path: Path) -> None:
    path = make_radiograph(
        tmp_path / "raw.dcm",
        presentation_intent="FOR PROCESSING",
        sop_class_uid=DigitalXRayImageStorageForProcessing,
        imager_pixel_spacing_mm=(0.14, 0.14),
    )
    series = only_series(tmp_path)
    radiograph = load_radiograph(pydicom.dcmread(path), series=series)
    assert radiograph.series_uid == series.series_uid
    assert radiograph.study_uid == series.study_uid
    assert radiograph.pixel_spacing_mm == pytest.approx((0.14, 0.14))


def test_a_non_dicom_radiograph_path_raises_invalid_series(tmp_path: Path) -> None:
    path = tmp_path / "note.txt"
    path.write_text("hello", encoding="utf-8")
    with pytest.raises(InvalidSeries, match="readable DICOM file, got InvalidDicomError"):
        load_radiograph(path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"modality": "MG"}, "modality must be CR or DX for a radiograph, got 'MG'"),
        ({"number_of_frames": 2}, "must be single-frame, got 2 frames"),
    ],
)
def test_radiograph_rejects_what_it_cannot_read(
    tmp_path: Path, kwargs: dict[str, object], match: str
) -> None:
    path = make_radiograph(tmp_path / "bad.dcm", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidSeries, match=match):
        load_radiograph(path)


# --- real data -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lidc_volume(lidc_dir: Path) -> Volume:
    """The full LIDC-IDRI-0001 series, read once for the module (~1 s)."""
    return load_ct_volume(only_series(lidc_dir), min_slices=100)


def test_lidc_series_becomes_a_512x512x133_volume(lidc_volume: Volume) -> None:
    assert lidc_volume.shape_ijk == (512, 512, 133)
    assert lidc_volume.spacing_ijk_mm == pytest.approx((0.703125, 0.703125, 2.5))
    assert lidc_volume.affine_lps[:3, 3].tolist() == pytest.approx([-166.0, -171.7, -340.0])
    assert float(np.median(lidc_volume.array)) < -500  # mostly air and lung


def test_lidc_consensus_nodule_centre_lands_on_soft_tissue(
    lidc_volume: Volume, lidc_consensus: Path
) -> None:
    with lidc_consensus.open(encoding="utf-8") as stream:
        nodule = next(csv.DictReader(stream))
    centre = [float(nodule[f"center_{axis}_mm"]) for axis in "xyz"]
    inverse = np.linalg.inv(lidc_volume.affine_lps)
    i, j, k = np.rint(inverse[:3, :3] @ centre + inverse[:3, 3]).astype(int)
    patch = lidc_volume.array[k, j - 2 : j + 3, i - 2 : i + 3]
    assert float(patch.mean()) > -300  # a solid ~30 mm nodule, not lung parenchyma (~ -850)


def test_lidc_subset_matches_the_same_slab_of_the_full_series(
    lidc_volume: Volume, shared_data: Path
) -> None:
    subset = load_ct_volume(only_series(shared_data / "lidc-idri-0001-subset16"))
    k0 = round((subset.affine_lps[2, 3] - lidc_volume.affine_lps[2, 3]) / 2.5)
    assert subset.shape_ijk == (512, 512, 16)
    assert np.array_equal(subset.array, lidc_volume.array[k0 : k0 + 16])


def test_jpeg2000_abdominal_ct_decodes_to_a_volume(shared_data: Path) -> None:
    series = only_series(shared_data / "non-chest-ct-totalseg")
    volume = load_ct_volume(series)
    assert volume.shape_ijk == (512, 512, 20)
    assert volume.spacing_ijk_mm == pytest.approx((0.9765625, 0.9765625, 2.0))
    assert volume.affine_lps[2, 3] == pytest.approx(-804.5)
    assert volume.array.min() == pytest.approx(-1024.0)
    centre = volume.array[:, 200:300, 200:300]
    assert -200 < float(np.median(centre)) < 200  # soft tissue of the upper abdomen


def test_nema_cr_with_zero_pixel_spacing_has_no_spacing(shared_data: Path) -> None:
    radiograph = load_radiograph(shared_data / "nema-wg04-cr" / "RG1_UNCR.dcm")
    assert radiograph.array.shape == (1955, 1841)
    assert radiograph.pixel_spacing_mm is None
    assert radiograph.spacing_source.startswith("none: PixelSpacing is 0\\0")


def test_nema_cr_jpeg2000_decodes_to_the_same_pixels(shared_data: Path) -> None:
    folder = shared_data / "nema-wg04-cr"
    lossless = load_radiograph(folder / "RG1_J2KR.dcm")
    assert np.array_equal(lossless.array, load_radiograph(folder / "RG1_UNCR.dcm").array)


def test_nema_monochrome1_extremity_is_inverted(shared_data: Path) -> None:
    path = shared_data / "nema-wg04-cr" / "RG3_UNCR.dcm"
    stored = pydicom.dcmread(path).pixel_array.astype(np.float32)
    radiograph = load_radiograph(path)
    assert np.array_equal(radiograph.array, 1023.0 - stored)  # BitsStored 10
    assert radiograph.pixel_spacing_mm is None


def test_every_lidc_file_is_grouped_into_one_series(lidc_dir: Path) -> None:
    result = scan_folder(lidc_dir)
    assert [len(s.series) for s in result.studies] == [1]
    assert result.studies[0].series[0].n_instances == 133
    assert ORIENTATIONS["axial"] in result.studies[0].series[0].orientations
