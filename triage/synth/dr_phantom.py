"""Synthetic projection radiographs (chest and limbs) with known fractures, for training and tests.

A phantom is a random :class:`~triage.synth.dr_scene.Scene` (chest: thorax, lungs, heart, spine,
ribs, clavicles; limbs: long bones with their joints inside a soft-tissue envelope), imaged through
a random :class:`~triage.synth.dr_geometry.Frame` (pixel size, rotation, position, mirror), with 0-3
fractures drawn into rib, clavicle or long-bone shafts, then "acquired" with scatter, noise, blur,
vendor-like processing, collimator shutters, grid lines and a side marker. Every parameter is drawn
from a wide range because the detector must generalise to other generators and to real images.

The image is in a linear display scale 0..1 where bone is bright (MONOCHROME2 sense). Ground-truth
boxes are tight around the fracture region plus at least 2 mm on each side, in pixel indices.

Not anatomy-accurate; not for any clinical use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from triage.synth.dr_acquisition import (
    Field,
    add_grid_lines,
    add_marker,
    apply_shutter,
    expose,
    process,
    random_field,
)
from triage.synth.dr_bone import Bone
from triage.synth.dr_chest import chest_scene
from triage.synth.dr_fractures import (
    FractureSpec,
    FractureTruth,
    fracture_points_mm,
    fractured_outline_mm,
    random_fracture,
    render_fractured,
)
from triage.synth.dr_geometry import F32, F64, Frame
from triage.synth.dr_limb import limb_scene
from triage.synth.dr_scene import Scene, upsample_to

GENERATOR_VERSION = "dr-phantom/1"
BOX_MARGIN_MM = 2.5
RADIOGRAPH_KINDS = ("chest", "limb")
_SOFT_FACTOR = 4

__all__ = ["GENERATOR_VERSION", "DrPhantom", "FractureTruth", "generate_radiograph"]


@dataclass(frozen=True)
class DrPhantom:
    """A rendered radiograph with its fractures.

    Attributes:
        image: (rows, cols) float32 in 0..1, bone bright.
        pixel_spacing_mm: (row spacing, column spacing) at the patient, as DICOM PixelSpacing.
        fractures: ground truth, possibly empty.
        body_part: DICOM BodyPartExamined: "CHEST", "TIBIA", "FOREARM", "FEMUR", "HUMERUS", "HAND".
        seed: the seed that made it.
        view_position: "PA" | "AP".
        laterality: "L" | "R" for limbs, "U" for the chest.
        patient_orientation: DICOM PatientOrientation: patient directions of increasing column and
            increasing row ("L", "F"; oblique directions give two letters, e.g. "LF").
    """

    image: npt.NDArray[np.float32]
    pixel_spacing_mm: tuple[float, float]
    fractures: tuple[FractureTruth, ...]
    body_part: str
    seed: int
    view_position: str = "AP"
    laterality: str = "U"
    patient_orientation: tuple[str, str] = ("L", "F")


def _chest_frame(scene: Scene, rng: np.random.Generator) -> Frame:
    long_px = int(rng.integers(2000, 2501))
    spacing = round(rng.uniform(max(0.14, 330.0 / long_px), 0.2), 4)
    cols = int(long_px * rng.uniform(0.82, 1.0))
    x0, y0, x1, y1 = scene.extent_mm
    center = ((x0 + x1) / 2 + rng.normal(0, 10), (y0 + y1) / 2 + rng.normal(0, 15))
    return Frame(
        (long_px, cols), spacing, rng.normal(0, 0.03), center, mirror=bool(rng.random() < 0.05)
    )


def _limb_frame(scene: Scene, rng: np.random.Generator) -> Frame:
    x0, y0, x1, y1 = scene.extent_mm
    long_px = int(rng.integers(1500, 2501))
    spacing = round(float(np.clip((y1 - y0) * rng.uniform(0.5, 1.1) / long_px, 0.1, 0.2)), 4)
    short_px = int(long_px * rng.uniform(0.6, 0.85))
    fov = long_px * spacing
    landscape = bool(rng.random() < 0.2)
    rotation = rng.uniform(-0.3, 0.3) + (math.pi / 2 if landscape else 0.0)
    shape = (short_px, long_px) if landscape else (long_px, short_px)
    cy = rng.uniform(-1, 1) * max(0.0, (y1 - y0 - fov) / 2) + rng.normal(0, 0.08 * fov)
    cx = (x0 + x1) / 2 + rng.normal(0, 0.08 * short_px * spacing)
    return Frame(shape, spacing, rotation, (cx, cy), mirror=False)


def _direction_letters(dx: float, dy: float) -> str:
    """Return DICOM direction letters of an anatomy-plane vector (x: patient left, y: feet)."""
    parts = [(abs(dx), "L" if dx > 0 else "R"), (abs(dy), "F" if dy > 0 else "H")]
    parts.sort(reverse=True)
    return parts[0][1] + (parts[1][1] if parts[1][0] > 0.38 * parts[0][0] else "")


def patient_orientation(frame: Frame) -> tuple[str, str]:
    """Return the patient directions of increasing column and increasing row for a frame.

    The anatomy plane is laid out as a conventionally displayed AP/PA image: +x is the patient's
    left, +y the feet.
    """
    c, s = math.cos(frame.rotation_rad), math.sin(frame.rotation_rad)
    sign = -1.0 if frame.mirror else 1.0
    return (_direction_letters(sign * c, sign * s), _direction_letters(-s, c))


def _fracture_count(rng: np.random.Generator) -> int:
    if rng.random() < 0.4:
        return 0
    return int(rng.choice([1, 2, 3], p=[0.55, 0.3, 0.15]))


def _fracture_kind(bone: Bone, rng: np.random.Generator) -> str:
    weights = {"rib": (0.5, 0.4, 0.1), "clavicle": (0.4, 0.6, 0.0)}.get(
        bone.site or "", (0.35, 0.4, 0.25)
    )
    return str(rng.choice(["cortical_break", "displaced", "buckle"], p=weights))


def _truth_box(frame: Frame, field: Field, pts_mm: F64) -> tuple[int, int, int, int] | None:
    """Return the pixel box (exclusive max) around the points plus margin; None if not all seen."""
    px = frame.to_px(pts_mm)
    margin = math.ceil(BOX_MARGIN_MM / frame.spacing_mm)
    c0, r0 = math.floor(px[:, 0].min()) - margin, math.floor(px[:, 1].min()) - margin
    c1, r1 = math.ceil(px[:, 0].max()) + margin + 1, math.ceil(px[:, 1].max()) + margin + 1
    rows, cols = frame.shape_rc
    if c0 < 0 or r0 < 0 or c1 > cols or r1 > rows:
        return None
    if not all(field.contains(c, r) for c in (c0, c1 - 1) for r in (r0, r1 - 1)):
        return None
    return (c0, r0, c1, r1)


def _place_fractures(
    scene: Scene, frame: Frame, field: Field, count: int, rng: np.random.Generator
) -> tuple[dict[int, FractureSpec], list[FractureTruth]]:
    """Put up to ``count`` fractures on distinct eligible bones, fracture site in the field."""
    eligible = [i for i, b in enumerate(scene.bones) if b.site is not None]
    specs: dict[int, FractureSpec] = {}
    truths: list[FractureTruth] = []
    for _ in range(count):
        for _attempt in range(40):
            i = int(rng.choice(eligible))
            if i in specs:
                continue
            bone = scene.bones[i]
            kind = _fracture_kind(bone, rng)
            spec = random_fracture(bone, kind, rng)
            points = fracture_points_mm(bone, spec)
            center = points.mean(axis=0)
            if scene.fracture_visible is not None and not scene.fracture_visible(*center):
                continue
            box = _truth_box(frame, field, points)
            if box is not None:
                specs[i] = spec
                truths.append(FractureTruth(box, kind, bone.name))
                break
    return specs, truths


def _texture(shape: tuple[int, int], rng: np.random.Generator, *, spacing_mm: float) -> F32:
    """Return a zero-mean trabecular-like texture with blobs of about 0.6-1 mm."""
    f = max(2, round(rng.uniform(0.6, 1.0) / spacing_mm))
    small = rng.standard_normal((shape[0] // f + 2, shape[1] // f + 2), dtype=np.float32)
    return upsample_to(small, shape, f) * np.float32(rng.uniform(0.8, 1.6))


def _bone_chunks(bone: Bone, spec: FractureSpec | None) -> list[tuple[float, float]]:
    """Return u-ranges splitting a bone so each piece gets a tight window (curved/oblique)."""
    length = bone.path.length_mm
    n = max(1, math.ceil(length / 40.0))
    edges = np.linspace(0.0, length, n + 1)
    edges[0], edges[-1] = -1e4, 1e4
    if spec is not None and spec.kind == "displaced" and spec.tilt_rad:
        return [(-1e4, 1e4)]  # the moved fragment swings far: one window from its outline
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def _render_bone(
    att: F32, bone: Bone, spec: FractureSpec | None, frame: Frame, texture: F32
) -> None:
    """Add one (possibly fractured) bone to ``att`` in place, piece by piece."""
    length = bone.path.length_mm
    reach = bone.max_radius_mm + 2.0 + (max(map(abs, spec.shift_mm)) if spec is not None else 0.0)
    for lo, hi in _bone_chunks(bone, spec):
        if lo <= -1e4 and hi >= 1e4:
            pts = fractured_outline_mm(bone, spec)
        else:
            u = np.linspace(max(lo, -reach), min(hi, length + reach), 6)
            pts = np.vstack([bone.path.world(u, np.full(6, s * reach)) for s in (-1.0, 1.0)])
        win = frame.window(pts, pad_mm=2.0)
        if win is None:
            continue
        x, y = frame.coords(win)
        u_px, v_px = bone.path.local(x, y)
        part = render_fractured(
            bone, u_px, v_px, spec, texture=texture[win], pixel_mm=frame.spacing_mm
        )
        if lo > -1e4 or hi < 1e4:
            part *= (u_px >= lo) & (u_px < hi)
        att[win] += part


def _render_attenuation(
    scene: Scene, frame: Frame, specs: dict[int, FractureSpec], rng: np.random.Generator
) -> F32:
    att = upsample_to(scene.render_soft(frame.coarse(_SOFT_FACTOR)), frame.shape_rc, _SOFT_FACTOR)
    texture = _texture(frame.shape_rc, rng, spacing_mm=frame.spacing_mm)
    for i, bone in enumerate(scene.bones):
        _render_bone(att, bone, specs.get(i), frame, texture)
    for overlay in scene.extras:
        win = frame.window(overlay.points_mm, pad_mm=overlay.pad_mm)
        if win is not None:
            att[win] += overlay.render(*frame.coords(win))
    return att


def generate_radiograph(
    seed: int, *, kind: str, n_fractures: int | None = None, body_part: str | None = None
) -> DrPhantom:
    """Render one random radiograph with fractures.

    Args:
        seed: seeds everything; the same arguments give the same image.
        kind: "chest" (PA/AP chest; fractures on ribs and clavicles) or "limb" (long bones).
        n_fractures: how many fractures to try to place; when None, 0 in about 40% of images, else
            1-3. Fewer are placed when no visible site is left (a fracture is only kept when its
            whole box lies inside the exposed field).
        body_part: for limbs, one of "TIBIA", "FOREARM", "FEMUR", "HUMERUS", "HAND"; random when
            None.

    Raises:
        ValueError: on an unknown ``kind`` or ``body_part``, or a negative ``n_fractures``.
    """
    if kind not in RADIOGRAPH_KINDS:
        raise ValueError(f"kind must be one of {RADIOGRAPH_KINDS}, got {kind!r}")
    if n_fractures is not None and n_fractures < 0:
        raise ValueError(f"n_fractures must be >= 0, got {n_fractures}")
    rng = np.random.default_rng([seed, 0 if kind == "chest" else 1])
    scene = chest_scene(rng) if kind == "chest" else limb_scene(rng, body_part=body_part)
    frame = _chest_frame(scene, rng) if kind == "chest" else _limb_frame(scene, rng)
    field = random_field(frame.shape_rc, rng)
    count = _fracture_count(rng) if n_fractures is None else n_fractures
    specs, truths = _place_fractures(scene, frame, field, count, rng)
    att = _render_attenuation(scene, frame, specs, rng)
    signal = expose(att, rng, spacing_mm=frame.spacing_mm)
    image = process(signal, field.mask(frame.shape_rc, step=4), rng, spacing_mm=frame.spacing_mm)
    add_grid_lines(image, rng)
    if rng.random() < 0.85:
        letter = scene.laterality if scene.laterality in ("L", "R") else str(rng.choice(["L", "R"]))
        add_marker(image, field, letter, rng, spacing_mm=frame.spacing_mm)
    image = np.clip(apply_shutter(image, field, rng), 0.0, 1.0).astype(np.float32)
    spacing = frame.spacing_mm
    return DrPhantom(
        image,
        (spacing, spacing),
        tuple(truths),
        scene.body_part,
        seed,
        scene.view_position,
        scene.laterality,
        patient_orientation(frame),
    )
