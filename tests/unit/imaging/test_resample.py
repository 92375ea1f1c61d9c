"""SimpleITK conversion, resampling to a model's voxel size, and HU windows."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
import SimpleITK as sitk
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.rotations import rotation
from triage.imaging.geometry import lps_to_voxel, voxel_to_lps
from triage.imaging.resample import (
    anti_alias_sigmas_mm,
    from_sitk,
    resample_to_spacing,
    to_sitk,
)
from triage.imaging.volume import Volume, affine_from_geometry
from triage.imaging.windowing import scale_window

angles = st.floats(min_value=-math.pi, max_value=math.pi, allow_nan=False)
spacings_mm = st.floats(min_value=0.3, max_value=5.0, allow_nan=False)
origins_mm = st.floats(min_value=-500.0, max_value=500.0, allow_nan=False)
target_spacings = st.tuples(spacings_mm, spacings_mm, spacings_mm)
RAMP_SLOPE_PER_MM = 5.0
RAMP_OFFSET = 100.0


@st.composite
def affines(draw: st.DrawFn) -> npt.NDArray[np.float64]:
    """Draw a voxel->LPS affine: random (maybe mirrored) rotation, spacing 0.3-5 mm, any origin."""
    directions = rotation(draw(angles), draw(angles), draw(angles))
    directions = directions * np.array([1.0, 1.0, draw(st.sampled_from([1.0, -1.0]))])[None, :]
    spacing = (draw(spacings_mm), draw(spacings_mm), draw(spacings_mm))
    origin = (draw(origins_mm), draw(origins_mm), draw(origins_mm))
    affine = affine_from_geometry(origin, directions, spacing)
    return affine


def ramp_volume(
    affine: npt.NDArray[np.float64], shape_kji: tuple[int, int, int] = (6, 7, 8)
) -> Volume:
    """Return a volume whose value rises linearly with the physical distance along i."""
    spacing_i_mm = float(np.linalg.norm(affine[:3, 0]))
    i = np.arange(shape_kji[2], dtype=np.float64)
    values = RAMP_OFFSET + RAMP_SLOPE_PER_MM * spacing_i_mm * i
    array = np.broadcast_to(values[None, None, :], shape_kji).astype(np.float32)
    return Volume(array=array, affine_lps=affine)


def random_volume(affine: npt.NDArray[np.float64], seed: int = 0) -> Volume:
    """Return a small volume of random HU-like values."""
    rng = np.random.default_rng(seed)
    array = rng.uniform(-1024.0, 3000.0, size=(5, 6, 7)).astype(np.float32)
    return Volume(array=array, affine_lps=affine)


AXIAL = affine_from_geometry((-120.0, -80.0, 40.0), np.eye(3), (0.7, 0.7, 2.5))
OBLIQUE = affine_from_geometry((5.0, -3.0, 12.0), rotation(0.2, -0.1, 0.05), (0.8, 1.1, 3.0))


# --- to_sitk / from_sitk --------------------------------------------------------------------------


def test_to_sitk_carries_spacing_origin_and_direction() -> None:
    image = to_sitk(random_volume(AXIAL))
    assert image.GetSize() == (7, 6, 5)  # (i, j, k)
    assert image.GetSpacing() == pytest.approx((0.7, 0.7, 2.5))
    assert image.GetOrigin() == pytest.approx((-120.0, -80.0, 40.0))
    assert image.GetDirection() == pytest.approx(tuple(np.eye(3).flatten()))
    assert image.GetPixelID() == sitk.sitkFloat32


def test_sitk_round_trip_of_an_axis_aligned_volume_is_exact() -> None:
    volume = random_volume(AXIAL)
    back = from_sitk(to_sitk(volume))
    assert back.array.dtype == np.float32
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_array_equal(back.affine_lps, volume.affine_lps)


@settings(deadline=None, max_examples=30)
@given(affine=affines())
def test_sitk_round_trip_keeps_array_and_affine_for_any_orthonormal_affine(
    affine: npt.NDArray[np.float64],
) -> None:
    volume = random_volume(affine)
    back = from_sitk(to_sitk(volume))
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.affine_lps, volume.affine_lps, rtol=0, atol=1e-9)


def test_sitk_maps_voxels_to_the_same_lps_points_as_the_affine() -> None:
    image = to_sitk(random_volume(OBLIQUE))
    for ijk in [(0, 0, 0), (6, 0, 0), (3, 5, 4)]:
        expected = voxel_to_lps(OBLIQUE, ijk)
        np.testing.assert_allclose(image.TransformIndexToPhysicalPoint(ijk), expected, atol=1e-9)


def test_to_sitk_rejects_a_gantry_tilted_volume() -> None:
    sheared = np.eye(3)
    sheared[:, 2] = (0.0, math.sin(math.radians(15.0)), math.cos(math.radians(15.0)))
    volume = random_volume(affine_from_geometry((0.0, 0.0, 0.0), sheared, (0.7, 0.7, 2.5)))
    with pytest.raises(ValueError, match=r"volume axes must be orthogonal to convert to SimpleITK"):
        to_sitk(volume)


# --- resample_to_spacing --------------------------------------------------------------------------


def test_resample_is_the_identity_when_the_spacing_is_already_the_target() -> None:
    volume = random_volume(AXIAL)
    assert resample_to_spacing(volume, (0.7, 0.7, 2.5)) is volume


@settings(deadline=None, max_examples=25)
@given(affine=affines(), target=target_spacings)
def test_resample_keeps_the_physical_extent_the_first_voxel_and_the_directions(
    affine: npt.NDArray[np.float64], target: tuple[float, float, float]
) -> None:
    volume = random_volume(affine)
    out = resample_to_spacing(volume, target)
    old_extent = np.asarray(volume.shape_ijk) * np.asarray(volume.spacing_ijk_mm)
    new_size = np.asarray(out.shape_ijk)
    np.testing.assert_array_equal(
        new_size, np.maximum(np.round(old_extent / np.asarray(target)), 1)
    )
    # rounding to whole voxels moves the extent by at most half a new voxel (unless clamped to 1)
    new_extent = new_size * np.asarray(target)
    assert np.all(
        (np.abs(new_extent - old_extent) <= np.asarray(target) / 2 + 1e-9) | (new_size == 1)
    )
    np.testing.assert_allclose(out.spacing_ijk_mm, target, rtol=1e-9)
    np.testing.assert_allclose(out.affine_lps[:3, 3], volume.affine_lps[:3, 3], atol=1e-9)
    out_dirs = out.affine_lps[:3, :3] / np.asarray(out.spacing_ijk_mm)[None, :]
    in_dirs = volume.affine_lps[:3, :3] / np.asarray(volume.spacing_ijk_mm)[None, :]
    np.testing.assert_allclose(out_dirs, in_dirs, atol=1e-9)


def test_resample_voxel_counts_are_the_rounded_extent_over_the_new_spacing() -> None:
    volume = random_volume(AXIAL)  # (i, j, k) = (7, 6, 5) voxels of (0.7, 0.7, 2.5) mm
    out = resample_to_spacing(volume, (1.4, 0.35, 1.0))
    assert out.shape_ijk == (round(7 * 0.7 / 1.4), round(6 * 0.7 / 0.35), round(5 * 2.5 / 1.0))
    assert out.array.dtype == np.float32


@settings(deadline=None, max_examples=25)
@given(affine=affines(), target=target_spacings)
def test_resampled_linear_ramp_matches_the_ramp_at_the_same_world_points(
    affine: npt.NDArray[np.float64], target: tuple[float, float, float]
) -> None:
    volume = ramp_volume(affine)
    out = resample_to_spacing(volume, target)
    k, j, i = np.indices(out.array.shape)
    ijk_out = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=-1)
    src_ijk = lps_to_voxel(volume.affine_lps, voxel_to_lps(out.affine_lps, ijk_out))
    inside = np.all(
        (src_ijk >= -1e-6) & (src_ijk <= np.asarray(volume.shape_ijk) - 1 + 1e-6), axis=1
    )
    assert inside[0]  # the first voxel centre is shared, so at least one point is compared
    spacing_i_mm = volume.spacing_ijk_mm[0]
    expected = RAMP_OFFSET + RAMP_SLOPE_PER_MM * spacing_i_mm * src_ijk[inside, 0]
    got = out.array[k.ravel(), j.ravel(), i.ravel()][inside]
    np.testing.assert_allclose(got, expected, rtol=1e-3)


def test_resampled_ramp_halfway_between_voxels_is_the_mean_of_its_neighbours() -> None:
    volume = ramp_volume(AXIAL)
    out = resample_to_spacing(volume, (0.35, 0.7, 2.5))
    assert out.shape_ijk == (16, 7, 6)
    first, second = volume.array[0, 0, 0], volume.array[0, 0, 1]
    assert out.array[0, 0, 1] == pytest.approx((first + second) / 2, rel=1e-6)


def test_resample_fills_points_beyond_the_source_with_the_default_value() -> None:
    volume = ramp_volume(AXIAL, (5, 7, 8))  # 5 slices of 2.5 mm: centres at 0 .. 10 mm along k
    out = resample_to_spacing(volume, (0.7, 0.7, 0.5), default_value=-2000.0)
    assert out.shape_ijk == (8, 7, 25)  # new centres at 0 .. 12 mm along k
    src_k = np.arange(25) * 0.5 / 2.5
    beyond = src_k > 4.5  # more than half a source voxel past the last slice centre
    assert beyond.sum() == 2
    assert np.all(out.array[beyond] == -2000.0)
    assert np.all(out.array[~beyond] >= RAMP_OFFSET)


def test_resample_survives_a_subnormal_direction_cosine() -> None:
    affine = AXIAL.copy()
    affine[2, 0] = -1e-310  # orthonormal to any tolerance, but subnormal
    out = resample_to_spacing(ramp_volume(affine), (1.0, 1.0, 1.0))
    clean = resample_to_spacing(ramp_volume(AXIAL), (1.0, 1.0, 1.0))
    assert np.any(out.array >= RAMP_OFFSET), "must not silently resample to all background"
    np.testing.assert_array_equal(out.array, clean.array)


@pytest.mark.parametrize("bad", [(0.0, 1.0, 1.0), (1.0, -1.0, 1.0), (1.0, 1.0, -0.5)])
def test_resample_rejects_non_positive_spacing(bad: tuple[float, float, float]) -> None:
    with pytest.raises(ValueError, match=r"spacing_ijk_mm must be positive, got \("):
        resample_to_spacing(random_volume(AXIAL), bad)


# --- scale_window ---------------------------------------------------------------------------------


def test_scale_window_maps_the_window_ends_and_centre() -> None:
    array = np.array([-1000.0, 400.0, 1800.0], dtype=np.float32)
    assert scale_window(array, -1000.0, 1800.0).tolist() == [0.0, 0.5, 1.0]


def test_scale_window_clips_outside_the_window() -> None:
    array = np.array([-3000.0, 5000.0], dtype=np.float32)
    assert scale_window(array, -1000.0, 400.0).tolist() == [0.0, 1.0]


def test_scale_window_maps_to_a_custom_output_range() -> None:
    array = np.array([-1000.0, -300.0, 400.0, 9000.0], dtype=np.float32)
    out = scale_window(array, -1000.0, 400.0, out_low=-1.0, out_high=1.0)
    np.testing.assert_allclose(out, [-1.0, 0.0, 1.0, 1.0], atol=1e-6)


def test_scale_window_returns_float32_for_integer_input() -> None:
    out = scale_window(np.array([-1024, 0, 3071], dtype=np.int16), -1024.0, 3071.0)  # type: ignore[arg-type]
    assert out.dtype == np.float32


@pytest.mark.parametrize(("low", "high"), [(400.0, 400.0), (400.0, -1000.0)])
def test_scale_window_rejects_an_empty_or_inverted_window(low: float, high: float) -> None:
    with pytest.raises(ValueError, match=r"window high must be > low, got low=.*, high="):
        scale_window(np.zeros(3, dtype=np.float32), low, high)


@settings(deadline=None)
@given(
    values=st.lists(st.floats(-5000.0, 5000.0, width=32), min_size=1, max_size=20),
    low=st.floats(-2000.0, 1000.0),
    width=st.floats(1.0, 3000.0),
)
def test_scale_window_is_monotone_and_stays_in_the_output_range(
    values: list[float], low: float, width: float
) -> None:
    array = np.sort(np.asarray(values, dtype=np.float32))
    out = scale_window(array, low, low + width)
    assert np.all(np.diff(out) >= 0)
    assert np.all((out >= 0.0) & (out <= 1.0))


# --- anti-aliased resampling ----------------------------------------------------------------------

THIN = affine_from_geometry((-60.0, -60.0, 0.0), np.eye(3), (0.5, 0.5, 0.5))


def noise_volume(shape_ijk: tuple[int, int, int] = (40, 40, 160), seed: int = 0) -> Volume:
    """White noise, SD 40 HU around -800 HU (lung-like), on a thin 0.5 mm grid."""
    rng = np.random.default_rng(seed)
    values = (-800.0 + 40.0 * rng.normal(size=shape_ijk[::-1])).astype(np.float32)
    return Volume(array=values, affine_lps=THIN)


def test_anti_alias_sigmas_follow_the_scikit_image_rule_and_skip_refined_axes() -> None:
    assert anti_alias_sigmas_mm((0.5, 0.5, 0.5), (1.0, 1.0, 2.0)) == (0.25, 0.25, 0.75)
    coarse_z = anti_alias_sigmas_mm((0.7, 0.7, 2.5), (1.0, 1.0, 2.0))
    assert coarse_z == pytest.approx((0.15, 0.15, 0.0))
    assert anti_alias_sigmas_mm((1.0, 1.0, 1.0), (0.5, 1.0, 0.25)) == (0.0, 0.0, 0.0)


def test_anti_aliased_downsampling_averages_thin_slice_noise_down() -> None:
    volume = noise_volume()
    plain = resample_to_spacing(volume, (1.0, 1.0, 2.0))
    smoothed = resample_to_spacing(volume, (1.0, 1.0, 2.0), anti_alias=True)
    assert plain.shape_ijk == smoothed.shape_ijk == (20, 20, 40)
    # linear interpolation keeps most of the per-voxel noise; the pre-filter removes most of it
    assert float(plain.array.std()) > 25.0
    assert float(smoothed.array.std()) < 0.5 * float(plain.array.std())
    # and leaves the mean (the HU level the window sees) where it was
    assert float(smoothed.array.mean()) == pytest.approx(-800.0, abs=2.0)


def test_anti_alias_keeps_a_linear_ramp_and_the_geometry() -> None:
    volume = ramp_volume(THIN, (8, 8, 60))  # rises along i, 60 voxels of 0.5 mm
    plain = resample_to_spacing(volume, (2.0, 1.0, 1.0))
    assert plain.shape_ijk == (15, 4, 4)
    smoothed = resample_to_spacing(volume, (2.0, 1.0, 1.0), anti_alias=True)
    np.testing.assert_allclose(smoothed.affine_lps, plain.affine_lps)
    # a Gaussian maps a linear ramp to itself away from the edges (zero-flux boundary at the ends)
    interior = smoothed.array[:, :, 2:-2]
    assert interior.shape == (4, 4, 11)
    np.testing.assert_allclose(interior, plain.array[:, :, 2:-2], rtol=1e-3)


def test_anti_alias_changes_nothing_when_no_axis_is_downsampled() -> None:
    volume = random_volume(AXIAL)
    plain = resample_to_spacing(volume, (0.35, 0.7, 1.25))
    smoothed = resample_to_spacing(volume, (0.35, 0.7, 1.25), anti_alias=True)
    np.testing.assert_array_equal(smoothed.array, plain.array)
