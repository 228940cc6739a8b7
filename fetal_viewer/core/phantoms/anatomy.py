"""Fetal anatomy per class and view, drawn into a :class:`Canvas`.

Sizes scale with gestational age through :func:`biometry.head_size` (Hadlock BPD/HC).
Each class draws the defining structure the sonographer looks for, and the mask layer
receives the diagnostic region:

========================  ==============================================  ==========================
class                     views                                           mask
========================  ==============================================  ==========================
normal                    axial trans-ventricular / trans-thalamic /       intact skull and brain
                          trans-cerebellar, coronal face, spine            (or intact spine)
anencephaly               coronal "frog-eye", sagittal profile             absent vault + stroma
encephalocele             axial planes with a skull defect and a sac       defect + sac
holoprosencephaly         axial planes: monoventricle, fused thalami,      monoventricle + thalami
                          no falx, no cavum
rachischisis              spine sagittal / transverse with open defect,    open segment + sac, or
                          head with lemon and banana signs                 scalloped frontal bone,
                                                                           banana cerebellum
========================  ==============================================  ==========================

Echo levels are relative to fetal soft tissue (1.0); amniotic fluid is ~-24 dB. This module
holds the cases and the axial head planes; the face, the spine, the surroundings and the
placing of a case in the fan are in :mod:`fetal_viewer.core.phantoms.body`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from fetal_viewer.core.model.labels import CLASSES
from fetal_viewer.core.phantoms.biometry import HeadSize, head_size
from fetal_viewer.core.phantoms.canvas import Canvas, ellipse_points
from fetal_viewer.errors import DataError

FLUID = 0.0006
BRAIN = 0.16
TISSUE = 0.8
SKIN = 2.0
BONE = 14.0
CHOROID = 2.2
FALX = 3.0
THALAMUS = 0.08
MEMBRANE = 2.5

#: views each class is imaged in, with their probabilities (same for every center)
VIEWS: dict[str, tuple[tuple[str, float], ...]] = {
    "normal": (
        ("tv", 0.27),
        ("tt", 0.27),
        ("tc", 0.21),
        ("coronal", 0.10),
        ("spine_sag", 0.10),
        ("spine_trans", 0.05),
    ),
    "anencephaly": (("coronal", 0.55), ("sagittal", 0.45)),
    "encephalocele": (("tv", 0.4), ("tt", 0.3), ("tc", 0.3)),
    "holoprosencephaly": (("tv", 0.5), ("tt", 0.5)),
    "rachischisis": (("spine_sag", 0.35), ("spine_trans", 0.2), ("tv", 0.2), ("tc", 0.25)),
}
HEAD_VIEWS = frozenset({"tv", "tt", "tc"})
SPINE_VIEWS = frozenset({"spine_sag", "spine_trans"})


@dataclass(frozen=True)
class Pose:
    """Where the fetal part lies in the fan: fraction of depth, fraction of the half
    opening angle, in-plane rotation (degrees) and mirror."""

    depth_frac: float
    angle_frac: float
    rotation_deg: float
    flip: bool

    def moved(self, rng: np.random.Generator, scale: float) -> Pose:
        """The pose after probe motion of relative amount ``scale`` (1 = a new still)."""
        return Pose(
            depth_frac=float(np.clip(self.depth_frac + rng.normal(0, 0.025 * scale), 0.3, 0.7)),
            angle_frac=float(np.clip(self.angle_frac + rng.normal(0, 0.05 * scale), -0.3, 0.3)),
            rotation_deg=self.rotation_deg + float(rng.normal(0, 4.0 * scale)),
            flip=self.flip,
        )


@dataclass(frozen=True)
class Case:
    """Everything fixed for one view of one fetus: class, view, age, lesion variant."""

    label: str
    view: str
    ga_weeks: float
    pose: Pose
    params: dict[str, float] = field(default_factory=dict)
    texture_seed: int = 0

    @property
    def head(self) -> HeadSize:
        return head_size(self.ga_weeks)

    def with_pose(self, pose: Pose) -> Case:
        return replace(self, pose=pose)


def check_label(label: str) -> None:
    if label not in CLASSES:
        raise DataError(
            f"Unknown phantom class {label!r}.",
            why=f"The generator draws {', '.join(CLASSES)}.",
            fix="Use one of those class names.",
        )


def sample_pose(rng: np.random.Generator, view: str) -> Pose:
    if view in HEAD_VIEWS:
        rot = float(rng.uniform(-40.0, 40.0))
    elif view == "spine_sag":
        rot = float(rng.uniform(-25.0, 25.0))
    elif view in ("coronal", "sagittal"):
        rot = float(rng.uniform(-35.0, 35.0)) - 90.0  # cranial end up, give or take
    else:
        rot = float(rng.uniform(-180.0, 180.0))
    return Pose(
        depth_frac=float(rng.uniform(0.42, 0.58)),
        angle_frac=float(rng.uniform(-0.2, 0.2)),
        rotation_deg=rot,
        flip=bool(rng.random() < 0.5),
    )


def sample_case(
    label: str, ga_weeks: float, rng: np.random.Generator, view: str | None = None
) -> Case:
    """Draw the view and the lesion variant of one fetus of class ``label``."""
    check_label(label)
    views = VIEWS[label]
    if view is None:
        names = [v for v, _ in views]
        probs = np.array([p for _, p in views])
        view = names[int(rng.choice(len(names), p=probs / probs.sum()))]
    elif view not in {v for v, _ in views}:
        raise DataError(
            f"A {label} phantom has no {view!r} view.",
            fix=f"Use one of {', '.join(v for v, _ in views)}.",
        )
    u = rng.uniform
    prm: dict[str, float] = {
        "atrium_mm": float(u(5.0, 8.0)),
        "cisterna_mm": float(u(4.0, 8.0)),
        "csp_w": float(u(0.05, 0.08)),
    }
    if label == "encephalocele":
        site = rng.choice(3, p=[0.75, 0.15, 0.10])  # occipital, parietal, frontal
        prm["defect_dir"] = float([180.0, 125.0, 25.0][site] * (1 if rng.random() < 0.5 else -1))
        if site == 0:
            prm["defect_dir"] = 180.0 + float(u(-15.0, 15.0))
        prm["defect_half"] = float(u(16.0, 34.0))
        prm["sac_r"] = float(u(0.35, 0.85))
        prm["sac_brain"] = float(rng.random() < 0.6)  # encephalocele vs meningocele
        prm["atrium_mm"] = float(u(6.0, 12.0))
    elif label == "holoprosencephaly":
        prm["alobar"] = float(rng.random() < 0.6)
        prm["dorsal_cyst"] = float(rng.random() < 0.5)
        prm["mono_scale"] = float(u(0.85, 1.05))
    elif label == "rachischisis":
        prm["atrium_mm"] = float(u(9.0, 16.0)) if rng.random() < 0.7 else float(u(6.0, 9.0))
        prm["lemon_depth"] = float(u(0.14, 0.2))
        prm["lemon_at"] = float(u(38.0, 55.0))
        prm["defect_pos"] = float(u(-0.38, -0.12))
        prm["defect_len"] = float(u(0.14, 0.28))
        prm["sac"] = float(rng.random() < 0.65)
        prm["sac_r"] = float(u(0.5, 1.0))
        prm["splay"] = float(u(25.0, 45.0))
    elif label == "anencephaly":
        prm["stroma_h"] = float(u(0.25, 0.5))
        prm["orbit_r"] = float(u(0.12, 0.16))
    prm["spine_curve"] = float(u(-1.0, 1.0))
    prm["spine_len"] = float(u(1.5, 1.9))
    return Case(
        label=label,
        view=view,
        ga_weeks=float(ga_weeks),
        pose=sample_pose(rng, view),
        params=prm,
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


# -- head ----------------------------------------------------------------------------------
def _lemon_radial(n: int, depth: float, at_deg: float) -> np.ndarray:
    """Radial factors of the skull outline with frontal scalloping at +-``at_deg``."""
    t = np.linspace(0.0, 360.0, n, endpoint=False)
    d = np.minimum(np.abs(t - at_deg), 360.0 - np.abs(t - at_deg))
    e = np.minimum(np.abs(t - (360.0 - at_deg)), 360.0 - np.abs(t - (360.0 - at_deg)))
    w = 24.0
    return 1.0 - depth * (np.exp(-((d / w) ** 2)) + np.exp(-((e / w) ** 2)))


def draw_head_shell(
    cv: Canvas,
    hs: HeadSize,
    *,
    gap: tuple[float, float] | None = None,
    lemon: tuple[float, float] | None = None,
    mask_head: bool = False,
) -> None:
    """Scalp, brain and calvarium; ``gap`` = (direction, half width) of a skull defect in
    degrees (0 = frontal), ``lemon`` = (depth, angle) of frontal scalloping."""
    a, b, t = hs.ofd_mm / 2.0, hs.bpd_mm / 2.0, hs.skull_mm
    n = 180
    radial = None if lemon is None else _lemon_radial(n, lemon[0], lemon[1])
    outer = ellipse_points(a, b, n, radial=radial)
    inner = ellipse_points(a - t, b - t, n, radial=radial)
    scalp = ellipse_points(a + 2.0, b + 2.0, n, radial=radial)
    cv.poly(scalp, echo=TISSUE)
    cv.poly(inner, echo=BRAIN, part="brain")
    if mask_head:
        cv.poly(outer, mask=True)
    mid = [((p0 + p1) / 2, (q0 + q1) / 2) for (p0, q0), (p1, q1) in zip(outer, inner)]
    if gap is None:
        cv.poly(mid, echo=BONE, bone=1.0, part="skull", thick_mm=t)
    else:
        direction, half = gap
        ang = np.linspace(0.0, 360.0, n, endpoint=False)
        rel = (ang - direction + 180.0) % 360.0 - 180.0
        keep = np.abs(rel) > half
        # split the ring where it is kept, starting just after the gap
        start = int(np.argmax(~keep)) if not keep.all() else 0
        order = [(start + k) % n for k in range(n)]
        run: list[tuple[float, float]] = []
        for k in order:
            if keep[k]:
                run.append(mid[k])
            elif run:
                cv.poly(run, echo=BONE, bone=1.0, part="skull", thick_mm=t, closed=False)
                run = []
        if run:
            cv.poly(run, echo=BONE, bone=1.0, part="skull", thick_mm=t, closed=False)


def draw_midline(cv: Canvas, hs: HeadSize, prm: dict[str, float], *, csp: bool = True) -> None:
    a, b, t = hs.ofd_mm / 2.0, hs.bpd_mm / 2.0, hs.skull_mm
    cv.line((-(a - t), 0.0), (a - t, 0.0), 0.45, echo=FALX, part="falx")
    if csp:
        w = prm["csp_w"] * b
        box = [(0.22 * a, -w), (0.46 * a, -w), (0.46 * a, w), (0.22 * a, w)]
        cv.poly(box, echo=FLUID, part="csp")
        cv.poly(box, echo=FALX * 0.5, thick_mm=0.35)
        cv.poly(box, echo=FLUID)


def draw_ventricles(cv: Canvas, hs: HeadSize, prm: dict[str, float]) -> None:
    """Frontal horns and atria with choroid plexus, both hemispheres."""
    a, b = hs.ofd_mm / 2.0, hs.bpd_mm / 2.0
    aw = prm["atrium_mm"]
    for side in (-1.0, 1.0):
        cv.ellipse(
            (0.36 * a, side * 0.17 * b),
            (0.13 * a, 0.045 * b + 0.6),
            side * 14.0,
            echo=FLUID,
            part="ventricles",
        )
        c = (-0.42 * a, side * (0.3 * b + aw * 0.3))
        cv.ellipse(c, (0.3 * a, aw / 2.0), -side * 10.0, echo=FLUID, part="ventricles")
        cv.ellipse((c[0] - 0.04 * a, c[1]), (0.2 * a, aw * 0.33), -side * 10.0, echo=CHOROID)
    # Sylvian fissures
    for side in (-1.0, 1.0):
        cv.ellipse(
            (0.05 * a, side * 0.62 * b),
            (0.18 * a, 0.1 * b),
            0.0,
            echo=SKIN,
            thick_mm=0.4,
            arc=(200.0, 340.0) if side < 0 else (20.0, 160.0),
        )


def draw_thalami(cv: Canvas, hs: HeadSize, *, fused: bool = False) -> None:
    a, b = hs.ofd_mm / 2.0, hs.bpd_mm / 2.0
    if fused:
        cv.ellipse((-0.28 * a, 0.0), (0.2 * a, 0.3 * b), echo=THALAMUS, part="thalami", mask=True)
        return
    for side in (-1.0, 1.0):
        cv.ellipse(
            (-0.04 * a, side * 0.15 * b),
            (0.17 * a, 0.1 * b),
            side * 8.0,
            echo=THALAMUS,
            part="thalami",
        )
    cv.line((-0.2 * a, 0.0), (0.12 * a, 0.0), 0.5, echo=FLUID, part="third_ventricle")


def draw_cerebellum(
    cv: Canvas, hs: HeadSize, prm: dict[str, float], *, banana: bool = False, mask: bool = False
) -> None:
    """Normal: two hemispheres, vermis and the cisterna magna; ``banana``: a cerebellum
    curved around the midbrain with an effaced cisterna magna (Chiari II)."""
    a, t = hs.ofd_mm / 2.0, hs.skull_mm
    tcd = max(10.0, hs.ga_weeks * 1.0)  # transverse cerebellar diameter ~ GA in mm
    if banana:
        c = (-(a - t) + tcd * 0.55, 0.0)
        for thick, val in ((tcd * 0.28, 0.45), (0.5, SKIN)):
            cv.ellipse(
                c,
                (tcd * 0.3, tcd * 0.62),
                0.0,
                echo=val,
                thick_mm=thick,
                arc=(105.0, 255.0),
                part="cerebellum",
                mask=mask,
            )
        return
    cm = prm["cisterna_mm"]
    p0 = -(a - t) + cm + tcd * 0.28
    cv.ellipse(
        (-(a - t) + cm * 0.5 + 0.5, 0.0),
        (cm * 0.75 + 0.5, tcd * 0.32),
        echo=FLUID,
        part="cisterna_magna",
    )
    for side in (-1.0, 1.0):
        cv.ellipse(
            (p0 + tcd * 0.05, side * tcd * 0.26),
            (tcd * 0.24, tcd * 0.25),
            echo=0.3,
            part="cerebellum",
        )
        cv.ellipse(
            (p0 + tcd * 0.05, side * tcd * 0.26), (tcd * 0.24, tcd * 0.25), echo=SKIN, thick_mm=0.4
        )
    cv.ellipse((p0, 0.0), (tcd * 0.2, tcd * 0.1), echo=1.3, part="vermis")


def draw_axial_head(cv: Canvas, case: Case) -> None:
    hs, prm, label, view = case.head, case.params, case.label, case.view
    a, b = hs.ofd_mm / 2.0, hs.bpd_mm / 2.0

    if label == "holoprosencephaly":
        draw_head_shell(cv, hs)
        k = prm["mono_scale"] * (1.0 if prm["alobar"] else 0.82)
        cv.ellipse(
            (0.12 * a, 0.0),
            (0.62 * a * k, 0.68 * b * k),
            echo=FLUID,
            part="monoventricle",
            mask=True,
        )
        cv.ellipse((0.12 * a, 0.0), (0.62 * a * k, 0.68 * b * k), echo=0.6, thick_mm=0.4)
        if prm["dorsal_cyst"]:
            cv.ellipse(
                (-0.66 * a, 0.0), (0.2 * a, 0.42 * b), echo=FLUID, part="dorsal_cyst", mask=True
            )
        draw_thalami(cv, hs, fused=True)
        return

    if label == "encephalocele":
        direction, half = prm["defect_dir"], prm["defect_half"]
        draw_encephalocele(cv, hs, prm)
        draw_head_shell(cv, hs, gap=(direction, half))
        _draw_defect_mask(cv, hs, direction, half)
    elif label == "rachischisis":
        draw_head_shell(cv, hs, lemon=(prm["lemon_depth"], prm["lemon_at"]))
        _draw_lemon_mask(cv, hs, prm)
    else:
        draw_head_shell(cv, hs, mask_head=True)

    draw_midline(cv, hs, prm)
    if view == "tv":
        draw_ventricles(cv, hs, prm)
        if label == "rachischisis" and prm["atrium_mm"] > 9.0:
            # ventriculomegaly goes with the Chiari II malformation: part of the finding
            for side in (-1.0, 1.0):
                c = (-0.42 * a, side * (0.3 * b + prm["atrium_mm"] * 0.3))
                cv.ellipse(c, (0.3 * a, prm["atrium_mm"] / 2.0), -side * 10.0, mask=True)
    elif view == "tt":
        draw_thalami(cv, hs)
        draw_ventricles_far(cv, hs, prm)
    else:
        draw_thalami(cv, hs)
        draw_cerebellum(cv, hs, prm, banana=label == "rachischisis", mask=label == "rachischisis")


def draw_ventricles_far(cv: Canvas, hs: HeadSize, prm: dict[str, float]) -> None:
    """Trans-thalamic plane: only the far atrium is seen, partly."""
    a, b = hs.ofd_mm / 2.0, hs.bpd_mm / 2.0
    aw = prm["atrium_mm"] * 0.8
    cv.ellipse((-0.5 * a, 0.38 * b), (0.2 * a, aw / 2.0), -10.0, echo=FLUID, part="ventricles")
    cv.ellipse((-0.52 * a, 0.38 * b), (0.13 * a, aw * 0.3), -10.0, echo=CHOROID)


def _dir_point(hs: HeadSize, direction_deg: float, scale: float = 1.0) -> tuple[float, float]:
    a, b = hs.ofd_mm / 2.0, hs.bpd_mm / 2.0
    th = math.radians(direction_deg)
    return (a * scale * math.cos(th), b * scale * math.sin(th))


def draw_encephalocele(cv: Canvas, hs: HeadSize, prm: dict[str, float]) -> None:
    """Herniated sac beyond the skull defect (drawn before the shell)."""
    b = hs.bpd_mm / 2.0
    direction, half = prm["defect_dir"], prm["defect_half"]
    rs = prm["sac_r"] * b
    edge = _dir_point(hs, direction)
    th = math.radians(direction)
    ux, uy = math.cos(th), math.sin(th)
    centre = (edge[0] + ux * rs * 0.75, edge[1] + uy * rs * 0.75)
    content = BRAIN * 1.3 if prm["sac_brain"] else FLUID
    # neck through the defect
    n0 = _dir_point(hs, direction - half, 0.85)
    n1 = _dir_point(hs, direction + half, 0.85)
    cv.poly([n0, n1, centre], echo=content, part="sac", mask=True)
    cv.ellipse(centre, (rs * 1.05, rs), direction, echo=TISSUE * 0.7)
    cv.ellipse(centre, (rs * 1.05 - 1.0, rs - 1.0), direction, echo=content, part="sac", mask=True)
    cv.ellipse(centre, (rs * 1.05, rs), direction, echo=MEMBRANE, thick_mm=0.5, mask=True)
    if prm["sac_brain"]:
        # herniated gyri: a few bright curved lines and a cystic space
        for k in (-1.0, 0.0, 1.0):
            cv.ellipse(
                (
                    centre[0] - ux * rs * 0.2 + k * uy * rs * 0.3,
                    centre[1] - uy * rs * 0.2 - k * ux * rs * 0.3,
                ),
                (rs * 0.45, rs * 0.18),
                direction + 90.0,
                echo=SKIN * 0.6,
                thick_mm=0.4,
                arc=(20.0, 160.0),
            )
        cv.ellipse(
            (centre[0] + ux * rs * 0.3, centre[1] + uy * rs * 0.3),
            (rs * 0.25, rs * 0.2),
            echo=FLUID,
        )


def _draw_defect_mask(cv: Canvas, hs: HeadSize, direction: float, half: float) -> None:
    pts = [_dir_point(hs, d, 0.8) for d in np.linspace(direction - half, direction + half, 12)]
    pts += [_dir_point(hs, d, 1.12) for d in np.linspace(direction + half, direction - half, 12)]
    cv.poly(pts, mask=True, part="defect")


def _draw_lemon_mask(cv: Canvas, hs: HeadSize, prm: dict[str, float]) -> None:
    at = prm["lemon_at"]
    for centre in (at, -at):
        pts = [_dir_point(hs, d, 0.78) for d in np.linspace(centre - 34.0, centre + 34.0, 13)]
        pts += [_dir_point(hs, d, 1.08) for d in np.linspace(centre + 34.0, centre - 34.0, 13)]
        cv.poly(pts, mask=True, part="lemon")
