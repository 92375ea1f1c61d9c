"""A random hand (PA): distal radius and ulna, carpus, five rays of metacarpal and phalanges.

Metacarpals and proximal phalanges, and the distal radius and ulna, may be fractured; the smaller
phalanges are not, as the generator's boxes would be below what a 2 mm margin can fairly mark.
"""

from __future__ import annotations

import math

import numpy as np

from triage.synth.dr_bone import Bone
from triage.synth.dr_scene import DOWN, LimbPart, ellipsoid_bone, long_bone, soft_tube

# Metacarpal, proximal, middle, distal phalanx lengths (mm) of the thumb .. little finger.
_RAY_LENGTHS_MM = (
    (45, 32, 0, 25),
    (68, 42, 25, 18),
    (65, 46, 28, 19),
    (58, 42, 26, 19),
    (53, 33, 20, 17),
)


def _ray(
    rng: np.random.Generator, f: int, base: tuple[float, float], angle: float, scale: float
) -> tuple[list[Bone], tuple[float, float]]:
    """Return the metacarpal and phalanges of ray ``f`` (0 = thumb) and where the ray ends."""
    bones: list[Bone] = []
    pos = base
    for seg, seg_len in enumerate(_RAY_LENGTHS_MM[f]):
        if seg_len == 0:
            continue
        length = seg_len * scale * rng.uniform(0.93, 1.07)
        radius = (4.6 - 0.6 * seg) * scale * rng.uniform(0.9, 1.1)
        name = f"{('mc', 'pp', 'mp', 'dp')[seg]}{f + 1}"
        bones.append(
            long_bone(
                rng,
                name,
                start=pos,
                length=length,
                radius=radius,
                cortex=radius * 0.35,
                angle=angle,
                flare=(0.5, 0.4),
                cap=(3.0, 3.0),
                site="long_bone" if seg < 2 else None,
            )
        )
        step = length + rng.uniform(2.0, 3.0)
        pos = (pos[0] + math.cos(angle) * step, pos[1] + math.sin(angle) * step)
        angle += rng.uniform(-0.06, 0.06)
    return bones, pos


def _carpus(rng: np.random.Generator, side: int, scale: float) -> list[Bone]:
    bones = []
    for j in range(8):
        c = (
            side * (((j % 4) - 1.5) * 10 + rng.normal(0, 1)) * scale,
            (-67 - (j // 4) * 11) * scale,
        )
        bones.append(
            ellipsoid_bone(
                c,
                half_len_mm=rng.uniform(5, 6.5) * scale,
                half_width_mm=rng.uniform(4.5, 5.5) * scale,
                angle_rad=rng.uniform(0, math.pi),
                density=1.8,
                name="carpal",
            )
        )
    return bones


def hand_part(rng: np.random.Generator, side: int) -> LimbPart:
    """Return the bones and soft tissue of a hand; ``side`` -1 puts the thumb at +x."""
    scale = rng.uniform(0.85, 1.15)
    bones: list[Bone] = [
        long_bone(
            rng,
            "radius_distal",
            start=(-side * 10 * scale, -210 * scale),
            length=122 * scale,
            radius=(5.5, 7.0),
            cortex=2.0,
            flare=(0.0, (1.2, 1.6)),
            cap=(0.0, 6.0),
        ),
        long_bone(
            rng,
            "ulna_distal",
            start=(side * 13 * scale, -210 * scale),
            length=116 * scale,
            radius=(4.5, 6.0),
            cortex=2.0,
            flare=(0.0, (0.4, 0.6)),
            cap=(0.0, 5.0),
        ),
    ]
    tissue = [
        soft_tube((0.0, -230 * scale), 250 * scale, (30.0, 28.0, 32.0, 42.0, 45.0), depth=0.45)
    ]
    spread = rng.uniform(0.05, 0.14)
    for f in range(5):
        if f == 0:
            angle, base = DOWN + side * rng.uniform(0.4, 0.65), (side * -23 * scale, -68 * scale)
        else:
            angle, base = (
                DOWN - side * (f - 2.5) * spread,
                (side * (f - 2) * 11 * scale, -60 * scale),
            )
        ray, end = _ray(rng, f, base, angle, scale)
        bones.extend(ray)
        direction = math.atan2(end[1] - base[1], end[0] - base[0])
        tissue.append(
            soft_tube(
                base, math.dist(base, end) + 6, (11.0, 10.0, 9.0, 7.0), angle=direction, depth=0.9
            )
        )
    return bones + _carpus(rng, side, scale), tissue, 300 * scale
