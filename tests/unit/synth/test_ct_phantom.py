"""CT phantom nodules: on rendered lung, inside the scan, ground glass painted over vessels."""

from __future__ import annotations

import numpy as np
import pytest

import triage.synth.ct_phantom as ct
import triage.synth.nodule_placement as placement
from triage.synth.shapes import blob, paint


def _grid() -> ct.Grid:
    return ct.make_grid(spacing_ijk_mm=(1.0, 1.0, 1.0), shape_ijk=(40, 40, 40), z_start_mm=-20.0)


def test_raise_only_paint_never_lowers_a_voxel() -> None:
    target = np.full((4, 4, 4), -850.0, np.float32)
    target[:, :, 2:] = 40.0  # a vessel on half of the block
    everywhere = (slice(None), slice(None), slice(None))
    paint(target, everywhere, np.ones((4, 4, 4), np.float32), -600.0, raise_only=True)
    assert np.all(target[:, :, :2] == -600.0)  # lung raised to ground glass
    assert np.all(target[:, :, 2:] == 40.0)  # the vessel shows through
    plain = np.full((2, 2, 2), 40.0, np.float32)
    paint(plain, everywhere, np.ones((2, 2, 2), np.float32), -600.0)
    assert np.all(plain == -600.0)  # the default blend still replaces


def test_lung_fraction_measures_the_lung_like_share_of_the_sphere() -> None:
    grid = _grid()
    image = np.full(grid.shape_kji, -850.0, np.float32)
    assert placement.lung_fraction(image, grid, (0.0, 0.0, 0.0), 5.0) == pytest.approx(1.0)
    image[:, :, 20:] = 40.0  # soft tissue from x = 0.5 mm on: about half of a centred sphere
    half = placement.lung_fraction(image, grid, (0.0, 0.0, 0.0), 5.0)
    assert 0.35 < half < 0.65
    assert placement.lung_fraction(image, grid, (12.0, 0.0, 0.0), 5.0) == pytest.approx(
        0.0, abs=0.01
    )


def test_place_nodule_skips_candidates_in_painted_soft_tissue_and_at_the_slab_ends() -> None:
    grid = _grid()
    # the analytic lung says "deep lung" everywhere, but a heart is painted over the x > 0 half
    lung_signed = [np.full(grid.shape_kji, 50.0, np.float32)] * 2
    image = np.full(grid.shape_kji, -850.0, np.float32)
    image[:, :, 20:] = 40.0
    rng = np.random.default_rng(3)
    placed = [
        placement.place_nodule(rng, lung_signed, grid, 3.0, image, juxta=False) for _ in range(40)
    ]
    centres = [c for c in placed if c is not None]
    assert len(centres) >= 30
    for x, _, z in centres:
        assert x <= 1.0, "a nodule centre must not sit in the painted heart"
        assert float(grid.z_mm.min()) + 3.0 <= z <= float(grid.z_mm.max()) - 3.0


def test_place_nodule_gives_up_when_no_rendered_lung_is_left() -> None:
    grid = _grid()
    lung_signed = [np.full(grid.shape_kji, 50.0, np.float32)] * 2
    soft = np.full(grid.shape_kji, 40.0, np.float32)
    rng = np.random.default_rng(0)
    assert placement.place_nodule(rng, lung_signed, grid, 3.0, soft, juxta=False) is None


@pytest.mark.parametrize("seed", [5, 13, 25, 36])
def test_every_phantom_nodule_lies_on_rendered_lung_inside_the_scan(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seeds that, on this grid, used to put a nodule on soft tissue (5, 25, 36: none of it lung)
    or across the end of the slab (13) before placement checked the rendered background."""
    backgrounds: list[float] = []
    render = ct._render_nodule

    def spy(image, grid, center, diameter_mm, kind, rng):  # type: ignore[no-untyped-def]
        backgrounds.append(placement.lung_fraction(image, grid, center, diameter_mm / 2))
        render(image, grid, center, diameter_mm, kind, rng)

    monkeypatch.setattr(ct, "_render_nodule", spy)
    phantom = ct.generate_ct_phantom(
        1_000_000 + seed, spacing_ijk_mm=(1.4, 1.4, 2.5), shape_ijk=(256, 214, 56), n_nodules=5
    )
    assert len(backgrounds) == len(phantom.nodules) >= 1
    assert min(backgrounds) >= placement.MIN_LUNG_FRACTION
    z = phantom.volume.affine_lps[2, 3] + phantom.volume.affine_lps[2, 2] * np.array([0, 55])
    for n in phantom.nodules:
        assert z.min() + n.diameter_mm / 2 <= n.center_lps_mm[2] <= z.max() - n.diameter_mm / 2


def test_ground_glass_nodule_raises_lung_attenuation() -> None:
    grid = _grid()
    image = np.full(grid.shape_kji, -850.0, np.float32)
    rng = np.random.default_rng(1)
    ct._render_nodule(image, grid, (0.0, 0.0, 0.0), 10.0, "ground_glass", rng)
    shape = blob(grid, (0.0, 0.0, 0.0), 3.0)
    assert shape is not None
    core = image[shape[0]][shape[1] > 0.9]
    assert -720.0 <= float(core.mean()) <= -330.0
