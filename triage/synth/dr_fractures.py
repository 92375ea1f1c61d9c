"""Fractures drawn in a bone's own (u, v) frame, and their ground-truth regions.

Three looks cover most of what a triage model must notice on a radiograph:

* ``cortical_break``: a thin, jagged lucent line crossing one or both cortices (0.3-1.5 mm wide),
  bone otherwise in place (undisplaced or incomplete fracture).
* ``displaced``: the bone is split along a jagged, often oblique line and one fragment is shifted
  and angulated; a lucent gap where the fragments part, a dense band where they overlap.
* ``buckle``: a local outward bulge of the cortex with a faint dense impaction band (torus).

The fracture line is ``u = u0 + tan(obliquity) v + jag(v)``; the displaced fragment is the part
beyond it, moved by a rigid motion about ``(u0, 0)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from triage.synth.dr_bone import Bone, bone_attenuation, radius_profile
from triage.synth.dr_geometry import F32, F64, as_f32, smoothstep

FRACTURE_KINDS = ("cortical_break", "displaced", "buckle")


@dataclass(frozen=True, slots=True)
class FractureTruth:
    """A fracture in a synthetic radiograph.

    Attributes:
        box_col_row: (c0, r0, c1, r1) pixel indices; c1 and r1 are exclusive. The box is tight
            around the fracture region plus a margin of at least 2 mm on each side.
        kind: "cortical_break" | "displaced" | "buckle".
        bone: name of the fractured bone in the phantom ("rib_post_R6", "tibia", ...).
    """

    box_col_row: tuple[int, int, int, int]
    kind: str
    bone: str = ""


@dataclass(frozen=True, eq=False)
class FractureSpec:
    """How to draw one fracture on one bone (local millimetres)."""

    kind: str
    u0_mm: float
    obliquity_rad: float = 0.0
    width_mm: float = 0.5
    jag_v_mm: F64 = field(default_factory=lambda: np.zeros(2))
    jag_du_mm: F64 = field(default_factory=lambda: np.zeros(2))
    extent_v_mm: tuple[float, float] = (-1e3, 1e3)
    depth_frac: float = 0.8
    shift_mm: tuple[float, float] = (0.0, 0.0)
    tilt_rad: float = 0.0
    bulge_mm: float = 0.0
    bulge_len_mm: float = 2.0
    bulge_side: int = 0


def random_fracture(bone: Bone, kind: str, rng: np.random.Generator) -> FractureSpec:
    """Draw a fracture of ``kind`` at a random position along ``bone``."""
    if kind not in FRACTURE_KINDS:
        raise ValueError(f"fracture kind must be one of {FRACTURE_KINDS}, got {kind!r}")
    length = bone.path.length_mm
    lo, hi = (0.08, 0.22) if kind == "buckle" and bone.site == "long_bone" else (0.15, 0.85)
    frac = rng.uniform(lo, hi)
    u0 = length * (frac if rng.random() < 0.5 or kind != "buckle" else 1.0 - frac)
    outer, inner = (float(a[0]) for a in radius_profile(bone, np.array([u0], np.float32)))
    knots = np.linspace(-outer - 4.0, outer + 4.0, int(rng.integers(6, 16)))
    jag = rng.normal(0.0, rng.uniform(0.15, 0.9), knots.size)
    common = {"u0_mm": u0, "jag_v_mm": knots, "jag_du_mm": jag - jag.mean()}
    if kind == "cortical_break":
        side = float(rng.choice([-1.0, 1.0]))
        if rng.random() < 0.5:
            extent = (-outer - 1.0, outer + 1.0)
        else:
            depth_in = side * (inner - rng.uniform(0.0, 0.5) * inner)
            lo, hi = sorted((side * (outer + 1.0), depth_in))
            extent = (lo, hi)
        return FractureSpec(
            kind,
            obliquity_rad=rng.uniform(-0.6, 0.6),
            width_mm=rng.uniform(0.3, 1.5),
            extent_v_mm=extent,
            depth_frac=rng.uniform(0.55, 0.95),
            **common,
        )
    if kind == "displaced":
        lateral = rng.uniform(0.15, 1.0) * outer * rng.choice([-1.0, 1.0])
        along = rng.uniform(-0.4, 0.5) * outer
        tilt = rng.uniform(0.0, 0.25) * rng.choice([-1.0, 1.0]) if bone.site == "long_bone" else 0.0
        return FractureSpec(
            kind,
            obliquity_rad=rng.uniform(-0.9, 0.9),
            width_mm=rng.uniform(0.3, 1.2),
            shift_mm=(along, lateral),
            tilt_rad=tilt,
            **common,
        )
    return FractureSpec(
        kind,
        bulge_mm=rng.uniform(0.12, 0.3) * outer,
        bulge_len_mm=rng.uniform(1.2, 3.5),
        bulge_side=int(rng.choice([-1, 0, 1])),
        depth_frac=rng.uniform(0.4, 1.0),
        **common,
    )


def line_u(spec: FractureSpec, v: npt.ArrayLike) -> F64:
    """Return the u of the fracture line at each v (float64; callers cast where they need)."""
    vv = np.asarray(v, dtype=np.float64)
    jag = np.interp(vv, spec.jag_v_mm, spec.jag_du_mm)
    return np.asarray(spec.u0_mm + math.tan(spec.obliquity_rad) * vv + jag, dtype=np.float64)


def _to_fragment(spec: FractureSpec, u: F32, v: F32) -> tuple[F32, F32]:
    """Return where a pixel of the moved fragment was before the motion (inverse rigid motion)."""
    c, s = math.cos(spec.tilt_rad), math.sin(spec.tilt_rad)
    du = u - np.float32(spec.u0_mm + spec.shift_mm[0])
    dv = v - np.float32(spec.shift_mm[1])
    return as_f32(c * du + s * dv + spec.u0_mm).astype(np.float32), (-s * du + c * dv)


def _from_fragment(spec: FractureSpec, u: F64, v: F64) -> tuple[F64, F64]:
    c, s = math.cos(spec.tilt_rad), math.sin(spec.tilt_rad)
    du = u - spec.u0_mm
    return c * du - s * v + spec.u0_mm + spec.shift_mm[0], s * du + c * v + spec.shift_mm[1]


def render_fractured(
    bone: Bone, u: F32, v: F32, spec: FractureSpec | None, *, texture: F32 | float, pixel_mm: float
) -> F32:
    """Return the bone's projected attenuation at (u, v) with the fracture drawn in."""
    if spec is None:
        return bone_attenuation(bone, u, v, texture=texture)
    soft = max(pixel_mm, 0.05)
    if spec.kind == "cortical_break":
        att = bone_attenuation(bone, u, v, texture=texture)
        dist = np.abs(u - line_u(spec, v))
        in_gap = smoothstep((spec.width_mm / 2 + soft - dist) / (2 * soft))
        lo, hi = spec.extent_v_mm
        across = smoothstep((v - lo) / soft) * smoothstep((hi - v) / soft)
        return as_f32(att * (1.0 - spec.depth_frac * in_gap * across))
    if spec.kind == "displaced":
        half = spec.width_mm / 2
        near = bone_attenuation(bone, u, v, texture=texture)
        near *= smoothstep((line_u(spec, v) - half - u) / soft + 0.5)
        uf, vf = _to_fragment(spec, u, v)
        far = bone_attenuation(bone, uf, vf, texture=texture)
        far *= smoothstep((uf - line_u(spec, vf) - half) / soft + 0.5)
        return as_f32(near + far)
    along = np.exp(-(((u - spec.u0_mm) / spec.bulge_len_mm) ** 2)).astype(np.float32)
    side = (
        np.ones_like(v)
        if spec.bulge_side == 0
        else (np.sign(v) == spec.bulge_side).astype(np.float32)
    )
    band = np.exp(-(((u - line_u(spec, v)) / (0.5 * spec.bulge_len_mm)) ** 2)).astype(np.float32)
    return bone_attenuation(
        bone,
        u,
        v,
        texture=texture,
        outer_extra_mm=spec.bulge_mm * along * side,
        marrow_extra=spec.depth_frac * band,
    )


def fracture_points_mm(bone: Bone, spec: FractureSpec) -> F64:
    """Return anatomy-plane points that outline the fracture region (for the ground-truth box)."""
    outer = float(radius_profile(bone, np.array([spec.u0_mm], np.float32))[0][0])
    if spec.kind == "cortical_break":
        lo, hi = max(spec.extent_v_mm[0], -outer), min(spec.extent_v_mm[1], outer)
        v = np.linspace(lo, hi, 17)
        u = line_u(spec, v)
        half = spec.width_mm / 2
        return bone.path.world(np.concatenate([u - half, u + half]), np.concatenate([v, v]))
    if spec.kind == "displaced":
        v = np.linspace(-outer, outer, 17)
        u = line_u(spec, v)
        uf, vf = _from_fragment(spec, u, v)
        return bone.path.world(np.concatenate([u, uf]), np.concatenate([v, vf]))
    reach = outer + spec.bulge_mm
    v = np.linspace(-reach, reach, 9)
    du = 2.0 * spec.bulge_len_mm
    u = np.concatenate([line_u(spec, v) - du, line_u(spec, v) + du])
    return bone.path.world(u, np.concatenate([v, v]))


def fractured_outline_mm(bone: Bone, spec: FractureSpec | None, *, pad_mm: float = 2.0) -> F64:
    """Return anatomy points bounding the bone as drawn, with a displaced fragment's new place."""
    pts = bone.outline_points_mm(pad_mm=pad_mm)
    if spec is None or spec.kind != "displaced":
        return pts
    n = 24
    r = bone.max_radius_mm + pad_mm
    u = np.linspace(spec.u0_mm - r, bone.path.length_mm, n)
    moved = [bone.path.world(*_from_fragment(spec, u, np.full(n, s * r))) for s in (-1.0, 1.0)]
    return np.vstack([pts, *moved])
