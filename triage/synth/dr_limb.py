"""Random limb radiographs: leg (tibia/fibula), forearm, femur, humerus and hand.

Each part is a set of tubular bones laid along the y axis (proximal up) with their neighbours at the
joints, inside a soft-tissue envelope; sometimes a cast. Long axis, side and proportions are random,
and the frame later rotates, shifts and scales the lot. Fracture-eligible bones carry
``site="long_bone"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from triage.synth.dr_bone import Bone
from triage.synth.dr_geometry import F32, Frame, StraightPath
from triage.synth.dr_scene import Scene, SoftTube, ellipsoid_bone, render_tubes

DOWN = math.pi / 2  # direction of +y: proximal to distal
BODY_PARTS = ("TIBIA", "FOREARM", "FEMUR", "HUMERUS", "HAND")


def _long(
    start: tuple[float, float], length: float, rng: np.random.Generator, *, radius: float, cortex: float,
    flare: tuple[float, float], cap: tuple[float, float], name: str, angle: float = DOWN,
    site: str | None = "long_bone", bow: float = 0.0,
) -> Bone:
    return Bone(StraightPath(start, angle, length, bow_mm=bow), radius_mm=radius, cortex_mm=cortex, flare=flare,
                cap_mm=cap, depth_ratio=rng.uniform(0.85, 1.1), density=rng.uniform(0.8, 1.2), name=name,
                site=site)


def _tube(start: tuple[float, float], length: float, radii: tuple[float, ...], *, angle: float = DOWN,
          depth: float = 1.0) -> SoftTube:
    knots = tuple(float(x) for x in np.linspace(0.0, length, len(radii)))
    return SoftTube(StraightPath(start, angle, length), knots, radii, depth)


def _leg(rng: np.random.Generator, side: int) -> tuple[list[Bone], list[SoftTube], float]:
    length = rng.uniform(320, 400)
    top = -length / 2
    r_t = rng.uniform(9, 12)
    bones = [
        _long((0.0, top), length, rng, radius=r_t, cortex=rng.uniform(3, 5), bow=rng.uniform(-4, 4),
              flare=(rng.uniform(1.3, 1.8), rng.uniform(0.6, 0.9)), cap=(rng.uniform(8, 14), 8.0), name="tibia"),
        _long((side * (r_t + rng.uniform(9, 15)), top + rng.uniform(10, 20)), length * rng.uniform(0.95, 1.0), rng,
              radius=rng.uniform(4.5, 6.5), cortex=rng.uniform(1.5, 2.5), angle=DOWN - side * rng.uniform(0, 0.02),
              flare=(rng.uniform(0.6, 0.9), rng.uniform(0.5, 0.8)), cap=(7.0, 7.0), name="fibula"),
        _long((0.0, top - rng.uniform(4, 7) - 110), 110.0, rng, radius=rng.uniform(11, 14), cortex=rng.uniform(3, 5),
              flare=(0.0, rng.uniform(1.5, 2.0)), cap=(0.0, rng.uniform(10, 15)), name="femur_distal"),
        ellipsoid_bone((0.0, -top + rng.uniform(20, 28)), half_len_mm=rng.uniform(12, 16),
                       half_width_mm=rng.uniform(15, 19), angle_rad=0.0, density=0.9, name="talus"),
    ]
    if rng.random() < 0.5:
        bones.append(ellipsoid_bone((side * rng.uniform(-5, 5), top - rng.uniform(15, 30)), half_len_mm=20.0,
                                    half_width_mm=rng.uniform(13, 17), angle_rad=DOWN, density=0.6, name="patella"))
    tissue = [_tube((0.0, top - 150), length + 210, (rng.uniform(65, 80), rng.uniform(50, 60), rng.uniform(55, 70),
                                                       rng.uniform(40, 50), rng.uniform(30, 38), rng.uniform(28, 35)))]
    return bones, tissue, length + 120


def _forearm(rng: np.random.Generator, side: int) -> tuple[list[Bone], list[SoftTube], float]:
    length = rng.uniform(210, 260)
    top = -length / 2
    cross = rng.uniform(0, 0.06) if rng.random() < 0.3 else 0.0
    x_r, x_u = side * rng.uniform(8, 12), -side * rng.uniform(8, 12)
    bones = [
        _long((x_r, top), length, rng, radius=rng.uniform(5.5, 7.5), cortex=rng.uniform(1.8, 3),
              angle=DOWN + side * cross, flare=(rng.uniform(0.4, 0.7), rng.uniform(1.2, 1.7)), cap=(5.0, 6.0),
              name="radius"),
        _long((x_u, top - rng.uniform(15, 25)), length * rng.uniform(1.02, 1.1), rng, radius=rng.uniform(5, 7),
              cortex=rng.uniform(1.8, 3), flare=(rng.uniform(1.0, 1.4), rng.uniform(0.4, 0.6)), cap=(10.0, 5.0),
              name="ulna"),
    ]
    y_carp = -top + rng.uniform(10, 14)
    for row in range(2):
        for j in range(4):
            c = (side * (j - 1.5) * rng.uniform(9, 12), y_carp + row * rng.uniform(11, 15))
            bones.append(ellipsoid_bone(c, half_len_mm=rng.uniform(4, 6), half_width_mm=rng.uniform(4, 6),
                                        angle_rad=rng.uniform(0, math.pi), density=0.9, name="carpal"))
    if rng.random() < 0.4:
        bones.append(_long((0.0, top - 85), 80.0, rng, radius=rng.uniform(9, 11), cortex=rng.uniform(2.5, 3.5),
                           flare=(0.0, rng.uniform(1.3, 1.7)), cap=(0.0, 12.0), name="humerus_distal"))
    tissue = [_tube((0.0, top - 90), length + 170, (rng.uniform(42, 50), rng.uniform(38, 48), rng.uniform(36, 45),
                                                      rng.uniform(26, 32), rng.uniform(25, 30)), depth=0.8)]
    return bones, tissue, length + 60


def _femur(rng: np.random.Generator, side: int) -> tuple[list[Bone], list[SoftTube], float]:
    length = rng.uniform(400, 470)
    top = -length / 2
    neck = math.radians(rng.uniform(35, 50))
    bones = [
        _long((0.0, top), length, rng, radius=rng.uniform(12, 15), cortex=rng.uniform(4, 6), bow=rng.uniform(-10, 10),
              flare=(rng.uniform(0.8, 1.2), rng.uniform(1.6, 2.2)), cap=(10.0, rng.uniform(12, 18)), name="femur"),
        _long((0.0, top + 30), rng.uniform(55, 70), rng, radius=rng.uniform(9, 12), cortex=rng.uniform(2, 3),
              angle=math.atan2(-math.sin(neck), -side * math.cos(neck)), flare=(0.0, rng.uniform(1.2, 1.6)),
              cap=(0.0, rng.uniform(18, 24)), name="femoral_neck"),
        ellipsoid_bone((side * rng.uniform(14, 20), top + 15), half_len_mm=rng.uniform(18, 24), half_width_mm=12.0,
                       angle_rad=DOWN, density=0.7, name="greater_trochanter"),
        _long((0.0, -top + rng.uniform(5, 8)), 90.0, rng, radius=rng.uniform(10, 12), cortex=rng.uniform(3, 4),
              flare=(rng.uniform(1.3, 1.8), 0.0), cap=(10.0, 0.0), name="tibia_proximal"),
    ]
    tissue = [_tube((0.0, top - 60), length + 160, (rng.uniform(90, 110), rng.uniform(80, 95), rng.uniform(70, 85),
                                                      rng.uniform(55, 65), rng.uniform(50, 60)))]
    return bones, tissue, length + 40


def _humerus(rng: np.random.Generator, side: int) -> tuple[list[Bone], list[SoftTube], float]:
    length = rng.uniform(290, 340)
    top = -length / 2
    bones = [
        _long((0.0, top), length, rng, radius=rng.uniform(10, 12), cortex=rng.uniform(3, 4),
              flare=(rng.uniform(1.5, 2.0), rng.uniform(1.2, 1.6)), cap=(rng.uniform(15, 22), 10.0), name="humerus"),
        _long((side * 12.0, -top + rng.uniform(4, 7)), 80.0, rng, radius=rng.uniform(5.5, 7), cortex=2.0,
              flare=(0.5, 0.0), cap=(5.0, 0.0), name="radius_proximal"),
        _long((-side * 10.0, -top - 15), 95.0, rng, radius=rng.uniform(5.5, 7), cortex=2.0,
              flare=(1.2, 0.0), cap=(10.0, 0.0), name="ulna_proximal"),
    ]
    tissue = [_tube((0.0, top - 40), length + 130, (rng.uniform(55, 70), rng.uniform(45, 55), rng.uniform(40, 50),
                                                      rng.uniform(38, 45), rng.uniform(35, 42)))]
    return bones, tissue, length + 30


def _hand(rng: np.random.Generator, side: int) -> tuple[list[Bone], list[SoftTube], float]:
    scale = rng.uniform(0.85, 1.15)
    bones: list[Bone] = []
    tissue = [_tube((0.0, -110 * scale), 130 * scale, (30.0, 38.0, 44.0, 45.0), depth=0.45)]
    spread = rng.uniform(0.05, 0.14)
    lengths = ((45, 32, 0, 25), (68, 42, 25, 18), (65, 46, 28, 19), (58, 42, 26, 19), (53, 33, 20, 17))
    for f, (mc, pp, mp, dp) in enumerate(lengths):
        angle = DOWN - side * (0.75 if f == 0 else (f - 2.5) * spread)
        base = (side * (f - 2) * 11 * scale + (side * -20 * scale if f == 0 else 0.0),
                (-40 if f == 0 else -60) * scale)
        pos = base
        for seg, (seg_len, name) in enumerate(zip((mc, pp, mp, dp), ("mc", "pp", "mp", "dp"), strict=True)):
            if seg_len == 0:
                continue
            length = seg_len * scale * rng.uniform(0.93, 1.07)
            radius = (4.6 - 0.6 * seg) * scale * rng.uniform(0.9, 1.1)
            bones.append(_long(pos, length, rng, radius=radius, cortex=radius * 0.35, angle=angle,
                               flare=(0.5, 0.4), cap=(3.0, 3.0), name=f"{name}{f + 1}",
                               site="long_bone" if seg < 2 else None))
            gap = rng.uniform(2.0, 3.0)
            pos = (pos[0] + math.cos(angle) * (length + gap), pos[1] + math.sin(angle) * (length + gap))
            angle += rng.uniform(-0.06, 0.06)
        tissue.append(_tube(base, math.dist(base, pos) + 6, (11.0, 10.0, 9.0, 7.0), angle=math.atan2(
            pos[1] - base[1], pos[0] - base[0]), depth=0.9))
    for j in range(8):
        c = (side * ((j % 4) - 1.5) * 9 * scale, (-75 - (j // 4) * 12) * scale)
        bones.append(ellipsoid_bone(c, half_len_mm=4.5 * scale, half_width_mm=4.0 * scale,
                                    angle_rad=rng.uniform(0, math.pi), density=0.9, name="carpal"))
    return bones, tissue, 220 * scale


_PARTS: dict[str, Callable[[np.random.Generator, int], tuple[list[Bone], list[SoftTube], float]]] = {
    "TIBIA": _leg, "FOREARM": _forearm, "FEMUR": _femur, "HUMERUS": _humerus, "HAND": _hand,
}


def _cast(rng: np.random.Generator, tissue: list[SoftTube]) -> SoftTube:
    base = tissue[0]
    radii = tuple(r + rng.uniform(6, 12) for r in base.radii_mm)
    return SoftTube(base.path, base.knots_u_mm, radii, base.depth_ratio, rng.uniform(0.006, 0.015))


def limb_scene(rng: np.random.Generator, *, body_part: str | None = None) -> Scene:
    """Return a random limb scene; ``body_part`` is drawn from :data:`BODY_PARTS` when None."""
    part = str(rng.choice(BODY_PARTS)) if body_part is None else body_part
    if part not in _PARTS:
        raise ValueError(f"body_part must be one of {BODY_PARTS}, got {part!r}")
    side = int(rng.choice([-1, 1]))
    bones, tissue, extent_len = _PARTS[part](rng, side)
    cast = (_cast(rng, tissue),) if rng.random() < 0.1 else ()
    tubes = tuple(tissue)

    def render(frame: Frame) -> F32:
        att = render_tubes(frame, tubes)
        if cast:
            shell = render_tubes(frame, cast, combine="sum") - render_tubes(frame, tubes[:1], combine="sum") * (
                cast[0].mu_per_mm / 0.02)
            att += np.clip(shell, 0.0, None)
        return att

    half = extent_len / 2
    width = max(r for t in tissue for r in t.radii_mm)
    laterality = "R" if side < 0 else "L"
    view = "AP" if rng.random() < 0.8 else "PA"
    return Scene(part, render, tuple(bones), (), (-width, -half, width, half), laterality, view)
