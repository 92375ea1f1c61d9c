"""Synthetic radiographs: determinism, ranges, fracture truth, and the geometry they rest on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from triage.synth.dr_acquisition import Field
from triage.synth.dr_bone import Bone, bone_attenuation
from triage.synth.dr_fractures import (
    FRACTURE_KINDS,
    FractureSpec,
    fracture_points_mm,
    line_u,
    random_fracture,
    render_fractured,
)
from triage.synth.dr_geometry import ArcPath, Frame, StraightPath
from triage.synth.dr_phantom import (
    BOX_MARGIN_MM,
    DrPhantom,
    _fracture_count,
    _truth_box,
    generate_radiograph,
    patient_orientation,
)


@pytest.fixture(scope="module")
def chest() -> DrPhantom:
    return generate_radiograph(1, kind="chest", n_fractures=2)


@pytest.fixture(scope="module")
def limb() -> DrPhantom:
    return generate_radiograph(2, kind="limb", n_fractures=2, body_part="TIBIA")


def _bone() -> Bone:
    return Bone(
        StraightPath((0.0, 0.0), 0.0, 100.0),
        radius_mm=6.0,
        cortex_mm=2.0,
        cap_mm=(5.0, 5.0),
        site="long_bone",
        name="test",
    )


def _grid(bone: Bone) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.meshgrid(
        np.arange(0, 100, 0.1, dtype=np.float32), np.arange(-10, 10, 0.1, dtype=np.float32)
    )
    return bone.path.local(x, y)


def test_same_seed_gives_the_same_radiograph() -> None:
    a = generate_radiograph(5, kind="limb", body_part="HAND")
    b = generate_radiograph(5, kind="limb", body_part="HAND")
    assert np.array_equal(a.image, b.image)
    assert a.fractures == b.fractures


def test_different_seeds_give_different_radiographs() -> None:
    a = generate_radiograph(5, kind="limb", body_part="HAND", n_fractures=0)
    b = generate_radiograph(6, kind="limb", body_part="HAND", n_fractures=0)
    assert a.image.shape != b.image.shape or not np.array_equal(a.image, b.image)


@pytest.mark.parametrize(("name", "spacing_range"), [("chest", (0.14, 0.2)), ("limb", (0.1, 0.2))])
def test_image_is_float32_unit_range_with_plausible_size_and_spacing(
    name: str, spacing_range: tuple[float, float], request: pytest.FixtureRequest
) -> None:
    phantom: DrPhantom = request.getfixturevalue(name)
    assert phantom.image.dtype == np.float32
    assert phantom.image.min() >= 0.0
    assert phantom.image.max() <= 1.0
    assert 1500 <= max(phantom.image.shape) <= 2600
    assert spacing_range[0] <= phantom.pixel_spacing_mm[0] <= spacing_range[1]
    assert phantom.pixel_spacing_mm[0] == phantom.pixel_spacing_mm[1]
    assert float(phantom.image.std()) > 0.05  # not a blank image


def test_body_part_and_laterality_are_set(chest: DrPhantom, limb: DrPhantom) -> None:
    assert (chest.body_part, chest.laterality) == ("CHEST", "U")
    assert limb.body_part == "TIBIA"
    assert limb.laterality in ("L", "R")
    assert chest.view_position in ("PA", "AP")


@pytest.mark.parametrize("name", ["chest", "limb"])
def test_requested_fractures_are_placed_inside_the_image_with_a_margin(
    name: str, request: pytest.FixtureRequest
) -> None:
    phantom: DrPhantom = request.getfixturevalue(name)
    rows, cols = phantom.image.shape
    margin_px = 2.0 / phantom.pixel_spacing_mm[0]
    assert len(phantom.fractures) == 2
    for fracture in phantom.fractures:
        c0, r0, c1, r1 = fracture.box_col_row
        assert 0 <= c0 < c1 <= cols
        assert 0 <= r0 < r1 <= rows
        assert c1 - c0 > 2 * margin_px
        assert r1 - r0 > 2 * margin_px
        assert fracture.kind in FRACTURE_KINDS
        assert fracture.bone


def test_chest_fractures_are_on_ribs_or_clavicles(chest: DrPhantom) -> None:
    assert all(f.bone.startswith(("rib_", "clavicle_")) for f in chest.fractures)


def test_zero_fractures_when_asked() -> None:
    assert generate_radiograph(3, kind="limb", n_fractures=0, body_part="FOREARM").fractures == ()


def test_random_fracture_count_is_none_in_about_forty_percent() -> None:
    rng = np.random.default_rng(0)
    counts = np.array([_fracture_count(rng) for _ in range(2000)])
    assert 0.35 < float(np.mean(counts == 0)) < 0.45
    assert set(counts.tolist()) == {0, 1, 2, 3}


def test_unknown_kind_and_body_part_are_rejected() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        generate_radiograph(1, kind="skull")
    with pytest.raises(ValueError, match="body_part must be one of"):
        generate_radiograph(1, kind="limb", body_part="SKULL")
    with pytest.raises(ValueError, match="n_fractures must be >= 0"):
        generate_radiograph(1, kind="chest", n_fractures=-1)


def test_cortical_break_is_a_lucent_line_across_the_bone() -> None:
    bone = _bone()
    u, v = _grid(bone)
    spec = FractureSpec("cortical_break", u0_mm=50.0, width_mm=1.0, depth_frac=0.9)
    intact = bone_attenuation(bone, u, v)
    broken = render_fractured(bone, u, v, spec, texture=0.0, pixel_mm=0.1)
    on_line = (np.abs(u - 50.0) < 0.3) & (np.abs(v) < 5.0)
    far = np.abs(u - 50.0) > 3.0
    assert float(broken[on_line].mean()) < 0.3 * float(intact[on_line].mean())
    assert np.allclose(broken[far], intact[far])


def test_displaced_fracture_moves_the_far_fragment() -> None:
    bone = _bone()
    u, v = _grid(bone)
    spec = FractureSpec("displaced", u0_mm=50.0, width_mm=0.5, shift_mm=(0.0, 4.0))
    moved = render_fractured(bone, u, v, spec, texture=0.0, pixel_mm=0.1)
    intact = bone_attenuation(bone, u, v)
    beyond_edge = (
        (u > 60) & (u < 90) & (v > 6.5) & (v < 9.5)
    )  # outside the intact bone, inside the moved one
    assert float(intact[beyond_edge].max()) == 0.0
    assert float(moved[beyond_edge].mean()) > 0.0
    near = (u < 45) & (u > 10)
    assert np.allclose(moved[near], intact[near])


def test_buckle_adds_bone_near_the_fracture_only() -> None:
    bone = _bone()
    u, v = _grid(bone)
    spec = FractureSpec(
        "buckle", u0_mm=20.0, bulge_mm=1.5, bulge_len_mm=2.0, bulge_side=0, depth_frac=1.0
    )
    buckled = render_fractured(bone, u, v, spec, texture=0.0, pixel_mm=0.1)
    intact = bone_attenuation(bone, u, v)
    assert float(buckled[np.abs(u - 20) < 1].sum()) > float(intact[np.abs(u - 20) < 1].sum())
    far = np.abs(u - 20) > 12
    assert np.allclose(buckled[far], intact[far], atol=1e-6)


@pytest.mark.parametrize("kind", FRACTURE_KINDS)
def test_truth_box_covers_the_fracture_points_with_at_least_two_mm(kind: str) -> None:
    bone = _bone()
    spec = random_fracture(bone, kind, np.random.default_rng(4))
    frame = Frame((800, 1200), 0.15, 0.3, (50.0, 0.0))
    field = Field((599.5, 399.5), (1200.0, 800.0), 0.0)
    box = _truth_box(frame, field, fracture_points_mm(bone, spec))
    assert box is not None
    px = frame.to_px(fracture_points_mm(bone, spec))
    margin_px = 2.0 / 0.15
    assert BOX_MARGIN_MM >= 2.0
    assert box[0] <= px[:, 0].min() - margin_px
    assert box[2] >= px[:, 0].max() + margin_px
    assert box[1] <= px[:, 1].min() - margin_px
    assert box[3] >= px[:, 1].max() + margin_px


def test_fracture_line_passes_through_u0_at_the_axis() -> None:
    spec = FractureSpec("cortical_break", u0_mm=12.0, obliquity_rad=0.4)
    assert float(line_u(spec, np.array([0.0]))[0]) == pytest.approx(12.0)


def test_frame_maps_pixels_and_millimetres_both_ways() -> None:
    frame = Frame((300, 400), 0.2, 0.5, (10.0, -20.0), mirror=True)
    x, y = frame.coords((slice(10, 12), slice(30, 33)))
    px = frame.to_px(np.stack([x.ravel(), y.ravel()], axis=1))
    cols, rows = np.meshgrid(np.arange(30, 33), np.arange(10, 12))
    assert np.allclose(px[:, 0], cols.ravel(), atol=1e-3)
    assert np.allclose(px[:, 1], rows.ravel(), atol=1e-3)


def test_arc_path_local_inverts_world_near_the_curve() -> None:
    arc = ArcPath((0.0, 0.0), 120.0, 50.0, -2.0, -0.3)
    u = np.linspace(5.0, arc.length_mm - 5.0, 7)
    v = np.array([-3.0, -1.0, 0.0, 1.0, 2.0, 3.0, 0.5])
    pts = arc.world(u, v).astype(np.float32)
    uu, vv = arc.local(pts[:, 0], pts[:, 1])
    assert np.allclose(uu, u, atol=0.2)
    assert np.allclose(vv, v, atol=0.2)


@pytest.mark.parametrize(
    ("rotation", "mirror", "expected"),
    [
        (0.0, False, ("L", "F")),
        (0.0, True, ("R", "F")),
        (math.pi / 2, False, ("F", "R")),
        (0.5, False, ("LF", "FR")),
    ],
)
def test_patient_orientation_follows_the_frame(
    rotation: float, mirror: bool, expected: tuple[str, str]
) -> None:
    assert patient_orientation(Frame((10, 10), 0.1, rotation, (0.0, 0.0), mirror)) == expected
