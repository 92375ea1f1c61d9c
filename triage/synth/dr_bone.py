"""Projected attenuation of tubular bones (long bones, ribs, clavicles) along a centre-line path.

A bone is a tube whose outer half-width ``R(u)`` follows a shaft with flared metaphyses and rounded
ends, with a cortical shell of thickness ``t(u)`` that thins towards the ends. The X-ray path length
through an elliptical cross-section at distance ``v`` from the axis is ``2 k sqrt(R^2 - v^2)``, so
the projection shows what real radiographs show: bright cortical margins, a darker medulla and
trabecular ends. Attenuation values are *net* of the soft tissue the bone displaces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from triage.synth.dr_geometry import F32, F64, ArcPath, Frame, StraightPath, Window, as_f32

MU_CORTEX_PER_MM = 0.045  # net of soft tissue
MU_MARROW_PER_MM = 0.008


@dataclass(frozen=True)
class Bone:
    """One tubular bone on the anatomy plane.

    Attributes:
        path: the centre line; ``u`` runs from 0 to ``path.length_mm``.
        radius_mm: outer half-width of the shaft.
        cortex_mm: cortical thickness in the shaft.
        flare: relative widening at the start and end (metaphyses, condyles, heads).
        cap_mm: length of the rounded end caps (0: the bone is cut square, as ribs fading out).
        fade_mm: length over which the density fades to 0 at each end (costal cartilage).
        depth_ratio: beam-direction semi-axis over the in-plane one (flat ribs < 1).
        density: scales the whole bone (osteopenia, exposure).
        name: for ground truth ("rib_post_R5", "tibia").
        site: fracture site class, or None when the bone is never fractured in this generator.
    """

    path: StraightPath | ArcPath
    radius_mm: float
    cortex_mm: float
    flare: tuple[float, float] = (0.0, 0.0)
    cap_mm: tuple[float, float] = (0.0, 0.0)
    fade_mm: tuple[float, float] = (0.0, 0.0)
    depth_ratio: float = 1.0
    density: float = 1.0
    name: str = ""
    site: str | None = None

    @property
    def max_radius_mm(self) -> float:
        """Return the largest half-width anywhere along the bone."""
        return self.radius_mm * (1.0 + max(self.flare))

    def outline_points_mm(self, *, pad_mm: float = 0.0) -> F64:
        """Return anatomy points that bound the bone (for windowing)."""
        n = 24
        u = np.linspace(0.0, self.path.length_mm, n)
        r = self.max_radius_mm + pad_mm
        return np.vstack([self.path.world(u, np.full(n, -r)), self.path.world(u, np.full(n, r))])


def radius_profile(bone: Bone, u: F32) -> tuple[F32, F32]:
    """Return the outer half-width ``R(u)`` and inner (medullary) half-width ``r(u)`` in mm."""
    length = bone.path.length_mm
    rad = bone.radius_mm
    flare_len = 2.2 * rad
    near0 = np.exp(-((u / flare_len) ** 2))
    near1 = np.exp(-(((length - u) / flare_len) ** 2))
    waist = 1.0 - 0.06 * np.sin(np.pi * np.clip(u / length, 0.0, 1.0))
    outer = rad * waist * (1.0 + bone.flare[0] * near0 + bone.flare[1] * near1)
    outer = outer * _cap(u, bone.cap_mm[0]) * _cap(length - u, bone.cap_mm[1])
    shaft = 1.0 - np.maximum(
        np.exp(-((u / (3 * rad)) ** 2)), np.exp(-(((length - u) / (3 * rad)) ** 2))
    )
    thickness = 0.5 + (bone.cortex_mm - 0.5) * shaft
    inner = np.maximum(outer - thickness, 0.0)
    return outer.astype(np.float32), inner.astype(np.float32)


def _cap(dist_from_end_mm: F32, cap_mm: float) -> F32:
    """Return the rounding factor of an end: an ellipse over ``cap_mm``, 0 beyond the end."""
    if cap_mm <= 0:
        return as_f32(dist_from_end_mm >= 0)
    e = np.clip((cap_mm - dist_from_end_mm) / cap_mm, 0.0, None)
    return as_f32(np.sqrt(np.clip(1.0 - e * e, 0.0, 1.0)))


def bone_attenuation(
    bone: Bone,
    u: F32,
    v: F32,
    *,
    texture: F32 | float = 0.0,
    outer_extra_mm: F32 | float = 0.0,
    marrow_extra: F32 | float = 0.0,
) -> F32:
    """Return the net projected attenuation of ``bone`` at local coordinates (u, v).

    Args:
        bone: the bone.
        u: position along the centre line, mm.
        v: signed distance across the centre line, mm.
        texture: zero-mean trabecular texture, same shape as ``u`` or a scalar.
        outer_extra_mm: added to the outer half-width (a buckle's cortical bulge).
        marrow_extra: relative extra marrow density (a buckle's impaction band).
    """
    outer, inner = radius_profile(bone, u)
    outer = outer + outer_extra_mm
    k2 = 2.0 * bone.depth_ratio
    path_outer = k2 * np.sqrt(np.clip(outer * outer - v * v, 0.0, None))
    path_inner = k2 * np.sqrt(np.clip(inner * inner - v * v, 0.0, None))
    length = bone.path.length_mm
    end_weight = np.maximum(
        np.exp(-((u / (4 * bone.radius_mm)) ** 2)),
        np.exp(-(((length - u) / (4 * bone.radius_mm)) ** 2)),
    )
    marrow = (
        MU_MARROW_PER_MM * (1.0 + 1.2 * end_weight) * (1.0 + 0.25 * texture) + marrow_extra * 0.02
    )
    att = MU_CORTEX_PER_MM * (path_outer - path_inner) + marrow * path_inner
    att = att * _fade(u, bone.fade_mm[0]) * _fade(length - u, bone.fade_mm[1])
    return as_f32(att * bone.density)


def _fade(dist_from_end_mm: F32, fade_mm: float) -> F32 | float:
    if fade_mm <= 0:
        return 1.0
    return as_f32(np.clip(dist_from_end_mm / fade_mm, 0.0, 1.0))


def bone_window(bone: Bone, frame: Frame, *, pad_mm: float = 2.0) -> Window | None:
    """Return the pixel window that holds the bone, or None when it is off the image."""
    return frame.window(bone.outline_points_mm(pad_mm=pad_mm))
