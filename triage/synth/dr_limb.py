"""Random limb radiographs: leg (tibia/fibula), forearm, femur, humerus and hand.

Each part is a set of tubular bones laid along the y axis (proximal up) with their neighbours at the
joints, inside a soft-tissue envelope; sometimes a cast. Side and proportions are random, and the
frame later rotates, shifts and scales the lot. Fracture-eligible bones carry ``site="long_bone"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from triage.synth.dr_bone import Bone
from triage.synth.dr_geometry import F32, Frame
from triage.synth.dr_hand import hand_part
from triage.synth.dr_scene import (
    DOWN,
    LimbPart,
    Scene,
    SoftTube,
    ellipsoid_bone,
    long_bone,
    render_tubes,
    soft_tube,
)

BODY_PARTS = ("TIBIA", "FOREARM", "FEMUR", "HUMERUS", "HAND")


def _radii(rng: np.random.Generator, *ranges: tuple[float, float]) -> tuple[float, ...]:
    return tuple(float(rng.uniform(lo, hi)) for lo, hi in ranges)


def _leg(rng: np.random.Generator, side: int) -> LimbPart:
    length = rng.uniform(320, 400)
    top = -length / 2
    r_t = rng.uniform(9, 12)
    fibula_x = side * (r_t + rng.uniform(9, 15))
    bones = [
        long_bone(
            rng,
            "tibia",
            start=(0.0, top),
            length=length,
            radius=r_t,
            cortex=(3, 5),
            bow=(-4, 4),
            flare=((1.3, 1.8), (0.6, 0.9)),
            cap=((8, 14), 8.0),
        ),
        long_bone(
            rng,
            "fibula",
            start=(fibula_x, top + rng.uniform(10, 20)),
            length=length * rng.uniform(0.95, 1),
            radius=(4.5, 6.5),
            cortex=(1.5, 2.5),
            angle=DOWN - side * rng.uniform(0, 0.02),
            flare=((0.6, 0.9), (0.5, 0.8)),
            cap=(7.0, 7.0),
        ),
        long_bone(
            rng,
            "femur_distal",
            start=(0.0, top - rng.uniform(4, 7) - 110),
            length=110.0,
            radius=(11, 14),
            cortex=(3, 5),
            flare=(0.0, (1.5, 2.0)),
            cap=(0.0, (10, 15)),
        ),
    ]
    return (
        bones + _leg_ends(rng, side, top),
        [soft_tube((0.0, top - 150), length + 210, _leg_radii(rng))],
        length + 120,
    )


def _leg_radii(rng: np.random.Generator) -> tuple[float, ...]:
    return _radii(rng, (65, 80), (50, 60), (55, 70), (40, 50), (30, 38), (28, 35))


def _leg_ends(rng: np.random.Generator, side: int, top: float) -> list[Bone]:
    """Return the talus below the tibia and, in half the images, a patella over the knee."""
    bones = [
        ellipsoid_bone(
            (0.0, -top + rng.uniform(20, 28)),
            half_len_mm=rng.uniform(12, 16),
            half_width_mm=rng.uniform(15, 19),
            angle_rad=0.0,
            density=1.8,
            name="talus",
        )
    ]
    if rng.random() < 0.5:
        bones.append(
            ellipsoid_bone(
                (side * rng.uniform(-5, 5), top - rng.uniform(15, 30)),
                half_len_mm=20.0,
                half_width_mm=rng.uniform(13, 17),
                angle_rad=DOWN,
                density=1.2,
                name="patella",
            )
        )
    return bones


def _forearm(rng: np.random.Generator, side: int) -> LimbPart:
    length = rng.uniform(210, 260)
    top = -length / 2
    cross = rng.uniform(0, 0.06) if rng.random() < 0.3 else 0.0
    bones = [
        long_bone(
            rng,
            "radius",
            start=(side * rng.uniform(8, 12), top),
            length=length,
            radius=(5.5, 7.5),
            cortex=(1.8, 3),
            angle=DOWN + side * cross,
            flare=((0.4, 0.7), (1.2, 1.7)),
            cap=(5.0, 6.0),
        ),
        long_bone(
            rng,
            "ulna",
            start=(-side * rng.uniform(8, 12), top - rng.uniform(15, 25)),
            length=length * rng.uniform(1.02, 1.1),
            radius=(5, 7),
            cortex=(1.8, 3),
            flare=((1.0, 1.4), (0.4, 0.6)),
            cap=(10.0, 5.0),
        ),
    ]
    bones += _carpals(rng, side, -top + rng.uniform(10, 14))
    if rng.random() < 0.4:
        bones.append(
            long_bone(
                rng,
                "humerus_distal",
                start=(0.0, top - 85),
                length=80.0,
                radius=(9, 11),
                cortex=(2.5, 3.5),
                flare=(0.0, (1.3, 1.7)),
                cap=(0.0, 12.0),
            )
        )
    radii = _radii(rng, (42, 50), (38, 48), (36, 45), (26, 32), (25, 30))
    return bones, [soft_tube((0.0, top - 90), length + 170, radii, depth=0.8)], length + 60


def _carpals(rng: np.random.Generator, side: int, y_top: float) -> list[Bone]:
    """Return two rows of four small round carpal bones starting at ``y_top``."""
    bones = []
    for j in range(8):
        c = (side * (j % 4 - 1.5) * rng.uniform(9, 12), y_top + (j // 4) * rng.uniform(11, 15))
        bones.append(
            ellipsoid_bone(
                c,
                half_len_mm=rng.uniform(4, 6),
                half_width_mm=rng.uniform(4, 6),
                angle_rad=rng.uniform(0, math.pi),
                density=1.8,
                name="carpal",
            )
        )
    return bones


def _femur(rng: np.random.Generator, side: int) -> LimbPart:
    length = rng.uniform(400, 470)
    top = -length / 2
    neck = math.radians(rng.uniform(35, 50))
    bones = [
        long_bone(
            rng,
            "femur",
            start=(0.0, top),
            length=length,
            radius=(12, 15),
            cortex=(4, 6),
            bow=(-10, 10),
            flare=((0.8, 1.2), (1.6, 2.2)),
            cap=(10.0, (12, 18)),
        ),
        long_bone(
            rng,
            "femoral_neck",
            start=(0.0, top + 30),
            length=rng.uniform(55, 70),
            radius=(9, 12),
            cortex=(2, 3),
            angle=math.atan2(-math.sin(neck), -side * math.cos(neck)),
            flare=(0.0, (1.2, 1.6)),
            cap=(0.0, (18, 24)),
        ),
        ellipsoid_bone(
            (side * rng.uniform(14, 20), top + 15),
            half_len_mm=rng.uniform(18, 24),
            half_width_mm=12.0,
            angle_rad=DOWN,
            density=1.4,
            name="greater_trochanter",
        ),
        long_bone(
            rng,
            "tibia_proximal",
            start=(0.0, -top + rng.uniform(5, 8)),
            length=90.0,
            radius=(10, 12),
            cortex=(3, 4),
            flare=((1.3, 1.8), 0.0),
            cap=(10.0, 0.0),
        ),
    ]
    radii = _radii(rng, (90, 110), (80, 95), (70, 85), (55, 65), (50, 60))
    return bones, [soft_tube((0.0, top - 60), length + 160, radii)], length + 40


def _humerus(rng: np.random.Generator, side: int) -> LimbPart:
    length = rng.uniform(290, 340)
    top = -length / 2
    bones = [
        long_bone(
            rng,
            "humerus",
            start=(0.0, top),
            length=length,
            radius=(10, 12),
            cortex=(3, 4),
            flare=((1.5, 2.0), (1.2, 1.6)),
            cap=((15, 22), 10.0),
        ),
        long_bone(
            rng,
            "radius_proximal",
            start=(side * 12.0, -top + rng.uniform(4, 7)),
            length=80.0,
            radius=(5.5, 7),
            cortex=2.0,
            flare=(0.5, 0.0),
            cap=(5.0, 0.0),
        ),
        long_bone(
            rng,
            "ulna_proximal",
            start=(-side * 10.0, -top - 15),
            length=95.0,
            radius=(5.5, 7),
            cortex=2.0,
            flare=(1.2, 0.0),
            cap=(10.0, 0.0),
        ),
    ]
    radii = _radii(rng, (55, 70), (45, 55), (40, 50), (38, 45), (35, 42))
    return bones, [soft_tube((0.0, top - 40), length + 130, radii)], length + 30


_PARTS: dict[str, Callable[[np.random.Generator, int], LimbPart]] = {
    "TIBIA": _leg,
    "FOREARM": _forearm,
    "FEMUR": _femur,
    "HUMERUS": _humerus,
    "HAND": hand_part,
}


def _cast(rng: np.random.Generator, tissue: list[SoftTube]) -> SoftTube:
    base = tissue[0]
    radii = tuple(r + rng.uniform(6, 12) for r in base.radii_mm)
    return SoftTube(base.path, base.knots_u_mm, radii, base.depth_ratio, rng.uniform(0.006, 0.015))


def _soft_renderer(tubes: tuple[SoftTube, ...], cast: SoftTube | None) -> Callable[[Frame], F32]:
    def render(frame: Frame) -> F32:
        att = render_tubes(frame, tubes)
        if cast is not None:  # a plaster shell: the cast tube minus the limb it holds
            limb = render_tubes(frame, tubes[:1], combine="sum") * np.float32(
                cast.mu_per_mm / tubes[0].mu_per_mm
            )
            att += np.clip(render_tubes(frame, (cast,), combine="sum") - limb, 0.0, None)
        return att

    return render


def limb_scene(rng: np.random.Generator, *, body_part: str | None = None) -> Scene:
    """Return a random limb scene; ``body_part`` is drawn from :data:`BODY_PARTS` when None."""
    part = str(rng.choice(BODY_PARTS)) if body_part is None else body_part
    if part not in _PARTS:
        raise ValueError(f"body_part must be one of {BODY_PARTS}, got {part!r}")
    side = int(rng.choice([-1, 1]))
    bones, tissue, extent_len = _PARTS[part](rng, side)
    cast = _cast(rng, tissue) if rng.random() < 0.1 else None
    half = extent_len / 2
    width = max(r for t in tissue for r in t.radii_mm)
    laterality = "R" if side < 0 else "L"
    view = "AP" if rng.random() < 0.8 else "PA"
    return Scene(
        part,
        _soft_renderer(tuple(tissue), cast),
        tuple(bones),
        (),
        (-width, -half, width, half),
        laterality,
        view,
    )
