"""Synthetic chest CT phantoms with known nodules, for training and tests.

A phantom is a random *anatomy* (body outline with fat layer, two lungs with a domed base,
mediastinum and heart, trachea, spine, ribs, branching vessel trees) plus 0..n nodules (solid,
part-solid, ground-glass; lobulated or spiculated; some touching the pleura), rendered on any axial
grid with a partial-volume edge, slice-thickness blur, correlated noise and a vendor-like HU offset.
Everything is drawn from wide ranges so that a model trained on it has to learn "round,
denser-than-lung, not a tube" rather than one generator's look. Ground truth is the nodule centre in
LPS mm and its nominal diameter.

Not anatomy-accurate; not for any clinical use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from triage.imaging.volume import Volume, affine_from_geometry
from triage.synth.nodule_placement import place_nodule
from triage.synth.shapes import F32, Grid, blob, capsule, paint, ramp

GENERATOR_VERSION = "ct-phantom/2"
"""Recorded in model cards. 2 (session 9): nodules only on rendered lung and inside the slab; ground
glass painted raise-only. Versions 1 and 2 differ wherever a nodule placement is rejected."""


@dataclass(frozen=True, slots=True)
class NoduleTruth:
    """A nodule placed in a phantom."""

    center_lps_mm: tuple[float, float, float]
    diameter_mm: float
    kind: str  # "solid" | "part_solid" | "ground_glass"
    juxta_pleural: bool


@dataclass(frozen=True)
class CtPhantom:
    """A rendered phantom: HU volume plus its nodules and the acquisition it imitates."""

    volume: Volume
    nodules: tuple[NoduleTruth, ...]
    slice_thickness_mm: float
    seed: int


@dataclass(frozen=True)
class _Anatomy:
    body_a_mm: float
    body_b_mm: float
    lung_centers: tuple[tuple[float, float], tuple[float, float]]
    lung_axes: tuple[tuple[float, float], tuple[float, float]]
    z_apex_mm: float
    z_base_mm: float
    lung_hu: float
    y_spine_mm: float


def make_grid(
    *,
    spacing_ijk_mm: tuple[float, float, float],
    shape_ijk: tuple[int, int, int],
    z_start_mm: float,
) -> Grid:
    """Return an axial grid centred in x/y on the patient axis, starting at ``z_start_mm``."""
    nx, ny, nz = shape_ijk
    sx, sy, sz = spacing_ijk_mm
    x = (np.arange(nx) - (nx - 1) / 2.0) * sx
    y = (np.arange(ny) - (ny - 1) / 2.0) * sy
    z = z_start_mm + np.arange(nz) * sz
    return Grid(x_mm=x.astype(np.float64), y_mm=y.astype(np.float64), z_mm=z.astype(np.float64))


def _random_anatomy(rng: np.random.Generator, z_mid_mm: float) -> _Anatomy:
    a = rng.uniform(125, 185)
    b = a * rng.uniform(0.62, 0.8)
    gap = rng.uniform(0.08, 0.16) * a
    lung_w = rng.uniform(0.30, 0.40) * a
    lung_h = rng.uniform(0.62, 0.78) * b
    cy = rng.uniform(-0.08, 0.05) * b
    length = rng.uniform(190, 280)
    return _Anatomy(
        body_a_mm=a,
        body_b_mm=b,
        lung_centers=((-(gap + lung_w), cy), (gap + lung_w * rng.uniform(0.95, 1.05), cy)),
        lung_axes=(
            (lung_w, lung_h),
            (lung_w * rng.uniform(0.9, 1.05), lung_h * rng.uniform(0.95, 1.05)),
        ),
        z_apex_mm=z_mid_mm + length * rng.uniform(0.45, 0.55),
        z_base_mm=z_mid_mm - length * rng.uniform(0.45, 0.55),
        lung_hu=rng.uniform(-900, -780),
        y_spine_mm=b * rng.uniform(0.55, 0.72),
    )


def _lung_signed_mm(grid: Grid, anat: _Anatomy, side: int) -> npt.NDArray[np.float32]:
    """Return an approximate signed distance (mm, positive inside) to one lung's surface."""
    z = grid.z_mm[:, None, None].astype(np.float32)
    y = grid.y_mm[None, :, None].astype(np.float32)
    x = grid.x_mm[None, None, :].astype(np.float32)
    (cx, cy), (ax, ay) = anat.lung_centers[side], anat.lung_axes[side]
    frac = np.clip((anat.z_apex_mm - z) / 60.0, 0.0, 1.0)  # taper towards the apex
    taper = np.sqrt(frac) * 0.85 + 0.15
    ex = (x - cx) / (ax * taper)
    ey = (y - cy) / (ay * taper)
    rho = np.sqrt(ex * ex + ey * ey)
    inplane = (1.0 - rho) * min(ax, ay) * taper
    dome = anat.z_base_mm + 35.0 * np.clip(1.0 - ex * ex - ey * ey, 0.0, 1.0)
    below = z - dome
    above = anat.z_apex_mm - z
    signed: F32 = np.minimum(np.minimum(inplane, below), above).astype(np.float32)
    return signed


def _render_body(grid: Grid, anat: _Anatomy, rng: np.random.Generator) -> tuple[F32, F32]:
    """Return (HU image, lung occupancy) of the body, lungs and mediastinum."""
    shape = grid.shape_kji
    y = grid.y_mm[None, :, None]
    x = grid.x_mm[None, None, :]
    edge = grid.edge_mm
    r_body = np.sqrt((x / anat.body_a_mm) ** 2 + (y / anat.body_b_mm) ** 2)
    body = ramp((1.0 - r_body) * anat.body_b_mm, edge)
    muscle = ramp((rng.uniform(0.86, 0.93) - r_body) * anat.body_b_mm, edge)
    image = np.full(shape, -1000.0, dtype=np.float32)
    image += np.broadcast_to(body * (rng.uniform(-120, -80) + 1000.0), shape)
    full = (slice(None), slice(None), slice(None))
    paint(image, full, np.broadcast_to(muscle, shape).astype(np.float32), rng.uniform(25, 60))
    lungs = np.zeros(shape, dtype=np.float32)
    for side in (0, 1):
        lungs = np.maximum(lungs, ramp(_lung_signed_mm(grid, anat, side).astype(np.float64), edge))
    texture = ndimage.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), 3.0)
    texture *= 25.0 / max(float(texture.std()), 1e-6)
    gravity = (y / anat.body_b_mm * rng.uniform(10, 40)).astype(np.float32)
    paint(image, full, lungs, anat.lung_hu + texture + gravity)
    return image, lungs


def _render_mediastinum(image: F32, grid: Grid, anat: _Anatomy, rng: np.random.Generator) -> None:
    zc = anat.z_base_mm + rng.uniform(40, 70)
    heart = blob(
        grid,
        (rng.uniform(5, 30), -0.25 * anat.body_b_mm, zc),
        rng.uniform(45, 60),
        axes_scale=(1.2, 0.9, 0.8),
    )
    if heart is not None:
        paint(image, heart[0], heart[1], rng.uniform(30, 55))
    aorta_x = rng.uniform(-10, 15)
    for a, b, r, hu in (
        (
            (aorta_x, -0.1 * anat.body_b_mm, anat.z_apex_mm - 20),
            (aorta_x, -0.1 * anat.body_b_mm, zc),
            14,
            45,
        ),
        (
            (0, -0.35 * anat.body_b_mm, anat.z_apex_mm + 30),
            (0, -0.2 * anat.body_b_mm, zc + 40),
            8,
            -1000,
        ),
    ):
        cap = capsule(grid, a, b, r * rng.uniform(0.85, 1.15))
        if cap is not None:
            paint(image, cap[0], cap[1], hu)


def _render_bones(image: F32, grid: Grid, anat: _Anatomy, rng: np.random.Generator) -> None:
    bone_hu = rng.uniform(350, 900)
    spine_r = rng.uniform(13, 20)
    z0, z1 = grid.z_mm[0] - 30, grid.z_mm[-1] + 30
    spine = capsule(grid, (0, anat.y_spine_mm, z0), (0, anat.y_spine_mm, z1), spine_r)
    if spine is not None:
        paint(image, spine[0], spine[1], bone_hu)
    canal = capsule(
        grid, (0, anat.y_spine_mm + spine_r + 6, z0), (0, anat.y_spine_mm + spine_r + 6, z1), 7
    )
    if canal is not None:
        paint(image, canal[0], canal[1], 20.0)
    rib_r = rng.uniform(3.0, 5.0)
    scale = rng.uniform(0.86, 0.92)
    for z_rib in np.arange(z0, z1, rng.uniform(22, 30)):
        for side in (-1.0, 1.0):  # posterior (near the spine) -> lateral -> anterior, descending
            pts = [
                (
                    side * anat.body_a_mm * scale * abs(np.cos(t)),
                    anat.body_b_mm * scale * np.sin(t) * -1.0,
                    z_rib - 12.0 * (1 + np.sin(t)) / 2,
                )
                for t in np.linspace(np.pi * -0.45, np.pi * 0.4, 10)
            ]
            for p, q in zip(pts[:-1], pts[1:], strict=True):
                cap = capsule(grid, p, q, rib_r)
                if cap is not None:
                    paint(image, cap[0], cap[1], bone_hu * 0.8)


def _grow_tree(
    rng: np.random.Generator,
    start: npt.NDArray[np.float64],
    direction: npt.NDArray[np.float64],
    radius_mm: float,
    out: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float]],
) -> None:
    if radius_mm < 0.5 or len(out) > 2500:
        return
    length = radius_mm * rng.uniform(3.0, 6.0) + rng.uniform(3, 8)
    end = start + direction * length
    out.append((start, end, radius_mm))
    for _ in range(3 if rng.random() < 0.25 else 2):
        turn = rng.normal(0, 0.6, 3)
        child = direction + turn
        child /= np.linalg.norm(child)
        _grow_tree(rng, end, child, radius_mm * rng.uniform(0.62, 0.8), out)


def _render_vessels(
    image: F32, lungs: F32, grid: Grid, anat: _Anatomy, rng: np.random.Generator
) -> None:
    segments: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float]] = []
    z_hilum = (anat.z_apex_mm + anat.z_base_mm) / 2 + rng.uniform(-20, 20)
    for side in (0, 1):
        (cx, cy), (ax, _) = anat.lung_centers[side], anat.lung_axes[side]
        hilum = np.array([cx + np.sign(-cx) * ax * 0.7, cy, z_hilum])
        for _ in range(int(rng.integers(6, 11))):
            d = np.array(
                [np.sign(cx) * rng.uniform(0.1, 1.0), rng.uniform(-1, 1), rng.uniform(-1.2, 1.2)]
            )
            _grow_tree(rng, hilum, d / np.linalg.norm(d), rng.uniform(3.5, 6.5), segments)
    vessel_hu = rng.uniform(20, 70)
    occupancy = np.zeros_like(image)
    for a, b, r in segments:
        cap = capsule(grid, a, b, r)
        if cap is not None:
            np.maximum(occupancy[cap[0]], cap[1], out=occupancy[cap[0]])
    paint(image, (slice(None), slice(None), slice(None)), occupancy * lungs, vessel_hu)


def _nodule_bumps(rng: np.random.Generator, *, spiculated: bool) -> npt.NDArray[np.float64]:
    n = int(rng.integers(0, 6))
    dirs = rng.normal(0, 1, (n, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True) + 1e-9
    amps = rng.uniform(-0.15, 0.3, (n, 1)) * (1.6 if spiculated else 1.0)
    return np.hstack([dirs, amps])


def _render_nodule(
    image: F32,
    grid: Grid,
    center: tuple[float, float, float],
    diameter_mm: float,
    kind: str,
    rng: np.random.Generator,
) -> None:
    spiculated = bool(rng.random() < 0.3)
    bumps = _nodule_bumps(rng, spiculated=spiculated)
    scale = (rng.uniform(0.85, 1.15), rng.uniform(0.85, 1.15), rng.uniform(0.8, 1.2))
    r = diameter_mm / 2.0
    solid_hu = rng.uniform(-20, 90)
    ggo_hu = rng.uniform(-700, -350)
    if kind == "solid":
        layers = [(r, solid_hu)]
    elif kind == "ground_glass":
        layers = [(r, ggo_hu)]
    else:
        layers = [(r, ggo_hu), (r * rng.uniform(0.3, 0.6), solid_hu)]
    for radius, hu in layers:
        shape = blob(grid, center, radius, bumps=bumps, axes_scale=scale)
        if shape is not None:
            paint(image, shape[0], shape[1], hu, raise_only=hu == ggo_hu)
    if spiculated:
        c = np.asarray(center)
        for _ in range(int(rng.integers(4, 12))):
            d = rng.normal(0, 1, 3)
            d /= np.linalg.norm(d)
            cap = capsule(
                grid, c + d * r * 0.8, c + d * r * rng.uniform(1.3, 1.9), rng.uniform(0.4, 0.9)
            )
            if cap is not None:
                ggo = kind == "ground_glass"
                paint(image, cap[0], cap[1], ggo_hu if ggo else solid_hu, raise_only=ggo)


def _acquire(image: F32, grid: Grid, thickness_mm: float, rng: np.random.Generator) -> F32:
    """Apply scanner blur along z (slice profile) and in-plane (kernel), noise and offset."""
    sx = abs(float(grid.x_mm[1] - grid.x_mm[0]))
    sz = abs(float(grid.z_mm[1] - grid.z_mm[0])) if grid.z_mm.size > 1 else thickness_mm
    sigma_inplane_vox = rng.uniform(0.3, 0.9) * 0.7 / sx
    sigma_z_vox = max(thickness_mm / 2.355 / sz, 0.3)
    out = ndimage.gaussian_filter(image, (sigma_z_vox, sigma_inplane_vox, sigma_inplane_vox))
    noise = rng.normal(0, 1, image.shape).astype(np.float32)
    noise = ndimage.gaussian_filter(noise, (0.0, rng.uniform(0.5, 1.2), rng.uniform(0.5, 1.2)))
    noise *= rng.uniform(8, 45) / max(float(noise.std()), 1e-6)
    out = out + noise + np.float32(rng.uniform(-25, 25))
    clipped: F32 = np.clip(out, -1024, 3071).astype(np.float32)
    return clipped


def generate_ct_phantom(
    seed: int,
    *,
    spacing_ijk_mm: tuple[float, float, float],
    shape_ijk: tuple[int, int, int],
    slice_thickness_mm: float | None = None,
    n_nodules: int | None = None,
    diameter_range_mm: tuple[float, float] = (3.0, 30.0),
) -> CtPhantom:
    """Render one random chest phantom with nodules.

    Args:
        seed: seeds everything; the same seed and grid give the same phantom.
        spacing_ijk_mm: voxel size (x, y, z). In-plane 0.5-1.0 mm and z 0.6-2.5 mm imitate scanners.
        shape_ijk: number of voxels along x, y, z.
        slice_thickness_mm: reconstructed slice thickness; defaults to the z spacing.
        n_nodules: how many nodules to place; random 0..5 when None.
        diameter_range_mm: nodule diameters are drawn log-uniformly from this range.
    """
    rng = np.random.default_rng(seed)
    thickness = slice_thickness_mm or spacing_ijk_mm[2]
    z_mid = rng.uniform(-180, 40)
    grid = make_grid(
        spacing_ijk_mm=spacing_ijk_mm,
        shape_ijk=shape_ijk,
        z_start_mm=z_mid - (shape_ijk[2] - 1) * spacing_ijk_mm[2] / 2,
    )
    anat = _random_anatomy(rng, z_mid)
    image, _ = _render_body(grid, anat, rng)
    lung_signed = [_lung_signed_mm(grid, anat, s) for s in (0, 1)]
    _render_mediastinum(image, grid, anat, rng)
    _render_vessels(
        image, ramp(np.maximum(*lung_signed).astype(np.float64), grid.edge_mm), grid, anat, rng
    )
    _render_bones(image, grid, anat, rng)
    count = int(rng.integers(0, 6)) if n_nodules is None else n_nodules
    nodules: list[NoduleTruth] = []
    lo, hi = np.log(diameter_range_mm[0]), np.log(diameter_range_mm[1])
    for _ in range(count):
        diameter = float(np.exp(rng.uniform(lo, hi)))
        kind = str(rng.choice(["solid", "solid", "part_solid", "ground_glass"]))
        juxta = bool(rng.random() < 0.25)
        center = place_nodule(rng, lung_signed, grid, diameter / 2, image, juxta=juxta)
        if center is None or any(
            np.linalg.norm(np.subtract(center, n.center_lps_mm)) < (diameter + n.diameter_mm)
            for n in nodules
        ):
            continue
        _render_nodule(image, grid, center, diameter, kind, rng)
        nodules.append(NoduleTruth(center, round(diameter, 2), kind, juxta))
    image = _acquire(image, grid, thickness, rng)
    origin = (float(grid.x_mm[0]), float(grid.y_mm[0]), float(grid.z_mm[0]))
    affine = affine_from_geometry(origin, np.eye(3), spacing_ijk_mm)
    return CtPhantom(Volume(image, affine), tuple(nodules), float(thickness), seed)
