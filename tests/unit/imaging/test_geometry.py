"""Voxel <-> LPS mapping, axis codes and reorientation: round trips keep every voxel in place."""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.rotations import rotation
from triage.imaging.geometry import axis_codes, is_orthonormal, lps_to_voxel, reorient, voxel_to_lps
from triage.imaging.volume import Volume, affine_from_geometry

ALL_AXIS_CODES = sorted(
    "".join(sign[n] for sign, n in zip(axes, flips, strict=True))
    for axes in itertools.permutations((("L", "R"), ("P", "A"), ("S", "I")))
    for flips in itertools.product((0, 1), repeat=3)
)


angles = st.floats(min_value=-math.pi, max_value=math.pi, allow_nan=False)
spacings_mm = st.floats(min_value=0.3, max_value=5.0, allow_nan=False)
origins_mm = st.floats(min_value=-500.0, max_value=500.0, allow_nan=False)


@st.composite
def affines(draw: st.DrawFn) -> npt.NDArray[np.float64]:
    """Draw a voxel->LPS affine: random (maybe mirrored) rotation, spacing 0.3-5 mm, any origin."""
    directions = rotation(draw(angles), draw(angles), draw(angles))
    mirror = draw(st.sampled_from([1.0, -1.0]))
    directions = directions * np.array([1.0, 1.0, mirror])[None, :]
    spacing = (draw(spacings_mm), draw(spacings_mm), draw(spacings_mm))
    origin = (draw(origins_mm), draw(origins_mm), draw(origins_mm))
    return affine_from_geometry(origin, directions, spacing)


def coded_volume(
    affine: npt.NDArray[np.float64], shape_kji: tuple[int, int, int] = (4, 5, 6)
) -> Volume:
    """Return a volume whose every voxel holds a distinct value."""
    array = np.arange(np.prod(shape_kji), dtype=np.float32).reshape(shape_kji)
    return Volume(array=array, affine_lps=affine)


def world_of_every_voxel(volume: Volume) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32]]:
    """Return the LPS position and the value of every voxel, in the same order."""
    k, j, i = np.indices(volume.array.shape)
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=-1)
    return voxel_to_lps(volume.affine_lps, ijk), volume.array[k.ravel(), j.ravel(), i.ravel()]


def value_at_lps(volume: Volume, xyz_lps_mm: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """Return the values of the voxels whose centres are exactly at the given LPS points."""
    ijk = lps_to_voxel(volume.affine_lps, xyz_lps_mm)
    idx = np.rint(ijk).astype(int)
    np.testing.assert_allclose(ijk, idx, atol=1e-6)
    return volume.array[idx[:, 2], idx[:, 1], idx[:, 0]]


# The LPS-aligned start, and an oblique, mirrored start (nearest codes "RIA") with uneven spacing.
START_AFFINES = {
    "lps": affine_from_geometry((10.0, -20.0, 30.0), np.eye(3), (0.7, 0.8, 2.5)),
    "oblique": affine_from_geometry(
        (-100.0, 50.0, 7.5),
        rotation(0.1, 0.05, -0.08)
        @ np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, -1.0, 0.0]]),
        (0.5, 1.25, 3.0),
    ),
}


# --- voxel <-> LPS --------------------------------------------------------------------------------


@settings(deadline=None)
@given(
    affine=affines(),
    ijk=st.lists(
        st.floats(min_value=-10.0, max_value=520.0, allow_nan=False), min_size=3, max_size=3
    ),
)
def test_lps_to_voxel_inverts_voxel_to_lps_for_any_orthonormal_affine(
    affine: npt.NDArray[np.float64], ijk: list[float]
) -> None:
    xyz = voxel_to_lps(affine, ijk)
    np.testing.assert_allclose(lps_to_voxel(affine, xyz), ijk, atol=1e-6)


@settings(deadline=None)
@given(affine=affines(), xyz=st.lists(origins_mm, min_size=3, max_size=3))
def test_voxel_to_lps_inverts_lps_to_voxel_for_any_orthonormal_affine(
    affine: npt.NDArray[np.float64], xyz: list[float]
) -> None:
    np.testing.assert_allclose(voxel_to_lps(affine, lps_to_voxel(affine, xyz)), xyz, atol=1e-6)


@settings(deadline=None)
@given(affine=affines())
def test_voxel_to_lps_maps_batches_like_single_points(affine: npt.NDArray[np.float64]) -> None:
    ijk = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [10.5, -2.0, 7.0]])
    batch = voxel_to_lps(affine, ijk)
    assert batch.shape == (3, 3)
    for row, point in zip(batch, ijk, strict=True):
        np.testing.assert_allclose(row, (affine @ np.append(point, 1.0))[:3], atol=1e-9)


@settings(deadline=None)
@given(affine=affines())
def test_random_rotation_affines_are_orthonormal(affine: npt.NDArray[np.float64]) -> None:
    assert is_orthonormal(affine)


# --- axis codes and orthonormality ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("directions", "codes"),
    [
        (np.eye(3), "LPS"),
        (np.diag([-1.0, -1.0, 1.0]), "RAS"),
        (np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]), "PIL"),
        (np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]), "LIP"),  # coronal
    ],
)
def test_axis_codes_name_the_patient_direction_of_each_voxel_axis(
    directions: npt.NDArray[np.float64], codes: str
) -> None:
    assert axis_codes(affine_from_geometry((1.0, 2.0, 3.0), directions, (0.5, 2.0, 4.0))) == codes


def test_axis_codes_pick_the_nearest_axis_of_an_oblique_affine() -> None:
    assert (
        axis_codes(affine_from_geometry((0.0, 0.0, 0.0), rotation(0.3, 0.0, 0.0), (1.0, 1.0, 1.0)))
        == "LPS"
    )


def test_is_orthonormal_is_false_for_a_gantry_tilted_affine() -> None:
    tilt = math.radians(15.0)
    sheared = np.eye(3)
    sheared[:, 2] = (0.0, math.sin(tilt), math.cos(tilt))  # slices stacked along a tilted axis
    assert not is_orthonormal(affine_from_geometry((0.0, 0.0, 0.0), sheared, (0.7, 0.7, 2.5)))


def test_is_orthonormal_tolerance_is_a_keyword() -> None:
    sheared = np.eye(3)
    sheared[:, 2] = (0.0, 0.01, 1.0)
    affine = affine_from_geometry((0.0, 0.0, 0.0), sheared, (1.0, 1.0, 1.0))
    assert not is_orthonormal(affine)
    assert is_orthonormal(affine, tolerance=0.05)


# --- reorient -------------------------------------------------------------------------------------


def test_there_are_48_axis_code_combinations() -> None:
    assert len(set(ALL_AXIS_CODES)) == 48


@pytest.mark.parametrize("start", sorted(START_AFFINES))
@pytest.mark.parametrize("codes", ALL_AXIS_CODES)
def test_reorient_keeps_every_voxel_at_the_same_lps_position(start: str, codes: str) -> None:
    volume = coded_volume(START_AFFINES[start])
    out = reorient(volume, codes)
    assert axis_codes(out.affine_lps) == codes
    assert sorted(out.spacing_ijk_mm) == pytest.approx(sorted(volume.spacing_ijk_mm))
    assert out.array.flags.c_contiguous
    xyz, values = world_of_every_voxel(volume)
    np.testing.assert_array_equal(value_at_lps(out, xyz), values)


@pytest.mark.parametrize("start", sorted(START_AFFINES))
@pytest.mark.parametrize("codes", ALL_AXIS_CODES)
def test_reorient_there_and_back_gives_the_identical_volume(start: str, codes: str) -> None:
    volume = coded_volume(START_AFFINES[start])
    back = reorient(reorient(volume, codes), axis_codes(volume.affine_lps))
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.affine_lps, volume.affine_lps, atol=1e-9)


def test_reorient_moves_named_corner_voxels_to_the_expected_places() -> None:
    volume = coded_volume(START_AFFINES["lps"])  # shape (k, j, i) = (4, 5, 6)
    out = reorient(volume, "RAS")
    assert out.shape_ijk == (6, 5, 4)
    # voxel (i, j, k) = (0, 0, 0) is the most left-posterior; in RAS it is the last i and the last j
    first_xyz = voxel_to_lps(volume.affine_lps, [0, 0, 0])
    np.testing.assert_allclose(voxel_to_lps(out.affine_lps, [5, 4, 0]), first_xyz, atol=1e-9)
    assert out.array[0, 4, 5] == volume.array[0, 0, 0]
    last_xyz = voxel_to_lps(volume.affine_lps, [5, 4, 3])
    np.testing.assert_allclose(voxel_to_lps(out.affine_lps, [0, 0, 3]), last_xyz, atol=1e-9)
    assert out.array[3, 0, 0] == volume.array[3, 4, 5]


def test_reorient_to_the_current_codes_changes_nothing() -> None:
    volume = coded_volume(START_AFFINES["lps"])
    out = reorient(volume, "LPS")
    np.testing.assert_array_equal(out.array, volume.array)
    np.testing.assert_array_equal(out.affine_lps, volume.affine_lps)


def test_reorient_accepts_lower_case_codes() -> None:
    volume = coded_volume(START_AFFINES["lps"])
    assert axis_codes(reorient(volume, "ras").affine_lps) == "RAS"


@pytest.mark.parametrize(
    ("codes", "match"),
    [
        ("RA", r"target_codes must be three of L/R, P/A, S/I such as 'RAS', got 'RA'"),
        ("RASL", r"must be three of L/R, P/A, S/I such as 'RAS', got 'RASL'"),
        ("RAX", r"must be three of L/R, P/A, S/I such as 'RAS', got 'RAX'"),
        ("", r"must be three of L/R, P/A, S/I such as 'RAS', got ''"),
        ("RLS", r"target_codes must name three different axes, got 'RLS'"),
        ("SPI", r"target_codes must name three different axes, got 'SPI'"),
    ],
)
def test_reorient_rejects_bad_axis_codes(codes: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        reorient(coded_volume(START_AFFINES["lps"]), codes)


def test_reorient_rejects_axes_too_oblique_to_map_one_to_one() -> None:
    sheared = np.eye(3)
    sheared[:, 1] = (0.9, 0.1, 0.0) / np.linalg.norm((0.9, 0.1, 0.0))  # i and j both nearest to L
    volume = coded_volume(affine_from_geometry((0.0, 0.0, 0.0), sheared, (1.0, 1.0, 1.0)))
    with pytest.raises(ValueError, match="must map one-to-one onto patient axes, got codes 'LLS'"):
        reorient(volume, "RAS")
