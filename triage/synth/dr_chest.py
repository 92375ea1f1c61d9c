"""A random PA/AP chest: thorax and shoulders, lungs with vessels, heart, spine, ribs and clavicles.

Posterior ribs are elliptical arcs that run from the spine up, out and down to the lateral chest
wall; anterior ribs continue from there down and medially and fade out where cartilage takes over,
so each side shows the familiar overlapping bands. Every size and position is drawn from a wide
range. Not anatomy-accurate; made so that a detector must learn "interrupted cortex on a rib or
clavicle".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from triage.synth.dr_bone import Bone
from triage.synth.dr_geometry import (
    F32,
    ArcPath,
    Frame,
    StraightPath,
    as_f32,
    segment_distance,
    smoothstep,
)
from triage.synth.dr_scene import (
    MU_SOFT_PER_MM,
    Overlay,
    Scene,
    ring,
    rounded_rect,
    wire,
)


@dataclass(frozen=True)
class _Thorax:
    half_width_mm: float
    y_apex_mm: float
    y_base_mm: tuple[float, float]  # viewer's left lung (patient right), viewer's right lung
    depth_mm: float
    gap_mm: float
    heart: tuple[float, float, float, float]  # cx, cy, ax, ay
    shoulder: float
    breasts: bool
    lung_depth: float
    dome_mm: float
    lung_power: float
    knob: tuple[float, float, float]  # aortic knob: x offset from the mediastinal edge, y, radius


def _random_thorax(rng: np.random.Generator) -> _Thorax:
    w = rng.uniform(130, 180)
    base_r = rng.uniform(95, 140)
    base_l = base_r + rng.uniform(0, 25)
    return _Thorax(
        half_width_mm=w,
        y_apex_mm=-rng.uniform(120, 165),
        y_base_mm=(base_r, base_l),
        depth_mm=rng.uniform(170, 260),
        gap_mm=rng.uniform(18, 34),
        heart=(
            rng.uniform(12, 40),
            base_l - rng.uniform(50, 85),
            rng.uniform(60, 85),
            rng.uniform(50, 70),
        ),
        shoulder=rng.uniform(1.2, 1.5),
        breasts=bool(rng.random() < 0.3),
        lung_depth=rng.uniform(0.55, 0.8),
        dome_mm=rng.uniform(15, 35),
        lung_power=rng.uniform(1.8, 3.2),
        knob=(rng.uniform(-10, 0), rng.uniform(55, 80), rng.uniform(12, 18)),
    )


def _lung_air(x: F32, y: F32, th: _Thorax, side: int) -> F32:
    """Return the air path length (mm) through one lung; side -1 is the viewer's left."""
    w = th.half_width_mm
    x_med, x_lat = side * th.gap_mm, side * w * 0.95
    xc, aw = (x_med + x_lat) / 2, abs(x_lat - x_med) / 2
    apex_h = 0.8 * aw
    narrowing = np.clip((y - th.y_apex_mm) / apex_h, 0.02, 1.0) ** 0.6
    rho = np.abs(x - xc) / (aw * narrowing)
    base = th.y_base_mm[0 if side < 0 else 1]
    dome = base - th.dome_mm * np.clip(1.0 - rho**2, 0.0, 1.0)
    profile = np.sqrt(np.clip(1.0 - rho**th.lung_power, 0.0, 1.0)) * smoothstep((dome - y) / 6.0)
    profile *= smoothstep((y - th.y_apex_mm) / 8.0)
    return as_f32(profile * th.depth_mm * th.lung_depth)


def _body(x: F32, y: F32, th: _Thorax) -> F32:
    w, ya = th.half_width_mm, th.y_apex_mm
    ys = [ya - 90, ya - 45, ya - 15, ya + 35, ya + 90, 400]
    half = np.interp(y, ys, [0.38 * w, 0.42 * w, th.shoulder * w, 1.25 * w, 1.2 * w, 1.15 * w])
    depth = np.interp(
        y, ys, [110, 120, 0.8 * th.depth_mm, th.depth_mm, th.depth_mm, th.depth_mm * 1.05]
    )
    return as_f32(depth * np.sqrt(np.clip(1.0 - (x / half) ** 2, 0.0, None)))


def _vessel_tree(
    rng: np.random.Generator, th: _Thorax
) -> list[tuple[tuple[float, float], tuple[float, float], float]]:
    segs: list[tuple[tuple[float, float], tuple[float, float], float]] = []
    y_hilum = (th.y_apex_mm + th.y_base_mm[0]) / 2 + rng.uniform(-10, 25)
    for side in (-1, 1):
        hilum = (side * (th.gap_mm + rng.uniform(8, 22)), y_hilum)
        for ang in np.linspace(-1.3, 1.3, int(rng.integers(5, 8))):
            a = ang + rng.normal(0, 0.15)
            direction = (side * math.cos(a), math.sin(a))
            _grow(rng, hilum, direction, rng.uniform(2.5, 4.5), segs)
    return segs


def _grow(
    rng: np.random.Generator,
    start: tuple[float, float],
    direction: tuple[float, float],
    radius: float,
    out: list[tuple[tuple[float, float], tuple[float, float], float]],
) -> None:
    if radius < 0.9 or len(out) > 500:
        return
    length = radius * rng.uniform(5, 9) + rng.uniform(4, 10)
    end = (start[0] + direction[0] * length, start[1] + direction[1] * length)
    out.append((start, end, radius))
    for _ in range(2):
        a = math.atan2(direction[1], direction[0]) + rng.uniform(-0.6, 0.6)
        _grow(rng, end, (math.cos(a), math.sin(a)), radius * rng.uniform(0.65, 0.82), out)


def _make_render_soft(th: _Thorax, rng: np.random.Generator) -> Callable[[Frame], F32]:
    """Return the soft-tissue renderer; all randomness is drawn now so rendering is pure."""
    segs = _vessel_tree(rng, th)
    texture_seed = int(rng.integers(0, 2**31))
    breast = [
        (
            s * th.half_width_mm * rng.uniform(0.35, 0.6),
            th.y_base_mm[0] - rng.uniform(10, 50),
            rng.uniform(55, 85),
            rng.uniform(40, 60),
            rng.uniform(25, 60),
        )
        for s in (-1, 1)
    ]
    trachea = (rng.uniform(-5, 5), rng.uniform(7, 10))

    def render(frame: Frame) -> F32:
        x, y = frame.coords(frame.full())
        tissue = _body(x, y, th)
        air = _lung_air(x, y, th, -1) + _lung_air(x, y, th, 1)
        hx, hy, ax, ay = th.heart
        heart = smoothstep((1.0 - np.hypot((x - hx) / ax, (y - hy) / ay)) * 8.0)
        kx, ky, kr = th.knob
        knob = smoothstep((kr - np.hypot(x - th.gap_mm - kx, y - th.y_apex_mm - ky)) / 8.0)
        air *= (1.0 - 0.92 * heart) * (1.0 - 0.75 * knob)
        lung_mask = np.clip(air / (th.depth_mm * th.lung_depth * 0.5), 0.0, 1.0)
        tex = np.random.default_rng(texture_seed).normal(0, 1, x.shape).astype(np.float32)
        tex = ndimage.gaussian_filter(tex, 3.0 / frame.spacing_mm)
        air *= 1.0 + 0.6 * tex / max(float(tex.std()), 1e-6) * 0.08
        tissue = tissue - 0.9 * air + _vessels(frame, x, y, segs) * lung_mask
        if th.breasts:
            for bx, by, bax, bay, bd in breast:
                tissue += bd * np.sqrt(
                    np.clip(1 - ((x - bx) / bax) ** 2 - ((y - by) / bay) ** 2, 0, None)
                )
        tx, tr = trachea
        d = np.abs(x - tx)
        in_neck = smoothstep((th.y_apex_mm + 70 - y) / 10.0)
        tissue -= 2 * np.sqrt(np.clip(tr * tr - d * d, 0, None)) * in_neck
        return as_f32(np.clip(tissue, 0.0, None) * MU_SOFT_PER_MM)

    return render


def _vessels(
    frame: Frame, x: F32, y: F32, segs: list[tuple[tuple[float, float], tuple[float, float], float]]
) -> F32:
    out = np.zeros(x.shape, dtype=np.float32)
    for a, b, r in segs:
        win = frame.window(np.array([a, b]), pad_mm=r + 1.0)
        if win is None:
            continue
        d = segment_distance(x[win], y[win], a, b)
        out[win] += 2.0 * np.sqrt(np.clip(r * r - d * d, 0.0, None))
    return out


def _ribs(th: _Thorax, rng: np.random.Generator) -> list[Bone]:
    bones: list[Bone] = []
    n_ribs = int(rng.integers(10, 13))
    spacing = rng.uniform(17, 23)
    density = rng.uniform(1.1, 1.9)
    for side, label in ((-1, "R"), (1, "L")):
        y_k = th.y_apex_mm + rng.uniform(0, 12)
        for k in range(n_ribs):
            wk = th.half_width_mm * (0.5 + 0.5 * min(1.0, (k + 1) / 4.5)) * rng.uniform(0.95, 1.03)
            bones.extend(_one_rib(side, label, k=k, y_k=y_k, wk=wk, density=density, rng=rng))
            y_k += spacing * (1.0 + 0.03 * k) * rng.uniform(0.92, 1.08)
    return bones


def _arc(
    side: int, center: tuple[float, float], a: float, b: float, phi0: float, phi1: float
) -> ArcPath:
    """Return an arc given by 'lateral angle' phi (0 = lateral extreme, +90 deg = top), one side."""
    if side > 0:
        return ArcPath(center, a, b, -phi0, -phi1)
    return ArcPath(center, a, b, phi0 - math.pi, phi1 - math.pi)


def _one_rib(
    side: int,
    label: str,
    *,
    k: int,
    y_k: float,
    wk: float,
    density: float,
    rng: np.random.Generator,
) -> list[Bone]:
    x_med = rng.uniform(12, 20)
    phi_s, phi_e = math.radians(rng.uniform(105, 130)), math.radians(rng.uniform(-45, -25))
    a = (wk - x_med) / (1 + abs(math.cos(phi_s)))
    b = a * rng.uniform(0.32, 0.5)
    center = (side * (x_med + a * abs(math.cos(phi_s))), y_k + b * math.sin(phi_s))
    post = Bone(
        _arc(side, center, a, b, phi_s, phi_e),
        radius_mm=rng.uniform(3.8, 5.5),
        cortex_mm=rng.uniform(0.9, 1.5),
        fade_mm=(6.0, 10.0),
        depth_ratio=rng.uniform(0.55, 0.8),
        density=density * rng.uniform(0.9, 1.1),
        name=f"rib_post_{label}{k + 1}",
        site="rib",
    )
    y_lat = center[1] + b * math.sin(math.radians(20))
    x_end = rng.uniform(0.22, 0.45) * wk
    phi2_e = math.radians(rng.uniform(-85, -60))
    a2 = wk * 0.98 - x_end
    drop = rng.uniform(30, 60)
    ant = Bone(
        _arc(side, (side * x_end, y_lat), a2, drop, math.radians(rng.uniform(5, 15)), phi2_e),
        radius_mm=rng.uniform(5.0, 7.5),
        cortex_mm=rng.uniform(0.7, 1.2),
        fade_mm=(10.0, rng.uniform(8, 20)),
        depth_ratio=rng.uniform(0.3, 0.5),
        density=density * rng.uniform(0.55, 0.85),
        name=f"rib_ant_{label}{k + 1}",
        site="rib",
    )
    return [post, ant]


def _clavicles_and_humeri(th: _Thorax, rng: np.random.Generator) -> list[Bone]:
    bones: list[Bone] = []
    w, ya = th.half_width_mm, th.y_apex_mm
    for side, label in ((-1, "R"), (1, "L")):
        p0 = (side * rng.uniform(12, 30), ya + rng.uniform(25, 50))
        p1 = (side * w * rng.uniform(0.95, 1.15), ya + rng.uniform(-15, 20))
        path = StraightPath(
            p0,
            math.atan2(p1[1] - p0[1], p1[0] - p0[0]),
            math.dist(p0, p1),
            bow_mm=rng.uniform(-8, 8),
        )
        bones.append(
            Bone(
                path,
                radius_mm=rng.uniform(5, 7.5),
                cortex_mm=rng.uniform(1.4, 2.5),
                flare=(rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.6)),
                cap_mm=(4.0, 4.0),
                depth_ratio=rng.uniform(0.7, 1.0),
                density=rng.uniform(1.2, 1.9),
                name=f"clavicle_{label}",
                site="clavicle",
            )
        )
        if rng.random() < 0.5:
            tilt = math.radians(rng.uniform(5, 25))
            start = (side * w * rng.uniform(1.12, 1.35), ya + rng.uniform(-5, 25))
            angle = math.atan2(math.cos(tilt), side * math.sin(tilt))
            bones.append(
                Bone(
                    StraightPath(start, angle, 160.0),
                    radius_mm=rng.uniform(10, 13),
                    cortex_mm=rng.uniform(2.5, 4),
                    flare=(rng.uniform(1.3, 1.8), 0.0),
                    cap_mm=(rng.uniform(15, 22), 0.0),
                    name=f"humerus_{label}",
                )
            )
    return bones


def _spine(th: _Thorax, rng: np.random.Generator) -> list[Overlay]:
    out: list[Overlay] = []
    x0, curve = rng.uniform(-6, 6), rng.uniform(-0.04, 0.04)
    fill, rim = rng.uniform(0.03, 0.1), rng.uniform(0.02, 0.06)
    y = th.y_apex_mm - rng.uniform(40, 80)
    i = 0
    while y < th.y_base_mm[1] + 120:
        hh = rng.uniform(8.5, 11) + 0.3 * i
        hw = rng.uniform(15, 20) + 0.5 * i
        xc = x0 + curve * (y - th.y_apex_mm) ** 2 / 40.0
        out.append(rounded_rect((xc, y + hh), (hw, hh), corner_mm=3.0, fill=fill, rim=rim))
        for s in (-1, 1):
            out.append(
                ring((xc + s * hw * 0.7, y + hh * 0.7), rng.uniform(3, 5), width_mm=0.9, value=rim)
            )
        y += 2 * hh + rng.uniform(3.5, 6.5)
        i += 1
    return out


def _electrodes(th: _Thorax, rng: np.random.Generator) -> list[Overlay]:
    if rng.random() > 0.2:
        return []
    out: list[Overlay] = []
    for _ in range(int(rng.integers(2, 6))):
        c = (rng.uniform(-1, 1) * th.half_width_mm, rng.uniform(th.y_apex_mm, th.y_base_mm[0]))
        out.append(ring(c, rng.uniform(4, 7), width_mm=0.8, value=0.4, fill=0.05))
        pts = np.cumsum(np.vstack([c, rng.normal(0, 12, (4, 2))]), axis=0)
        out.append(wire(pts, radius_mm=rng.uniform(0.4, 0.8), value=0.06))
    return out


def _visibility(th: _Thorax) -> Callable[[float, float], bool]:
    """Return a test for fracture sites a reader can see: over a lung, or the lateral chest wall."""
    lung_max = th.depth_mm * th.lung_depth

    def visible(x_mm: float, y_mm: float) -> bool:
        x = np.array([x_mm], np.float32)
        y = np.array([y_mm], np.float32)
        air = float((_lung_air(x, y, th, -1) + _lung_air(x, y, th, 1))[0])
        hx, hy, ax, ay = th.heart
        behind_heart = math.hypot((x_mm - hx) / ax, (y_mm - hy) / ay) < 1.0
        lateral_wall = abs(x_mm) > 0.85 * th.half_width_mm and y_mm < min(th.y_base_mm)
        return (air > 0.2 * lung_max and not behind_heart) or lateral_wall

    return visible


def chest_scene(rng: np.random.Generator) -> Scene:
    """Return a random chest (PA or AP) scene."""
    th = _random_thorax(rng)
    bones = _ribs(th, rng) + _clavicles_and_humeri(th, rng)
    extras = _spine(th, rng) + _electrodes(th, rng)
    w = th.half_width_mm
    extent = (-1.2 * w, th.y_apex_mm - 50.0, 1.2 * w, max(th.y_base_mm) + 50.0)
    view = "PA" if rng.random() < 0.75 else "AP"
    soft = _make_render_soft(th, rng)
    return Scene("CHEST", soft, tuple(bones), tuple(extras), extent, "U", view, _visibility(th))
