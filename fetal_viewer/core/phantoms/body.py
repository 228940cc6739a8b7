"""Fetal anatomy outside the axial head planes, drawn into a :class:`Canvas`: the face
(coronal orbits, sagittal profile), the spine (sagittal, transverse), and the surroundings
(maternal wall, placenta, far uterine wall, limbs); and :func:`draw_case`, which places a
case at its pose in the fan and draws its view (the head planes from
:mod:`fetal_viewer.core.phantoms.anatomy`)."""

from __future__ import annotations

import math

import numpy as np

from fetal_viewer.core.phantoms.anatomy import (
    BONE,
    BRAIN,
    FALX,
    FLUID,
    HEAD_VIEWS,
    MEMBRANE,
    SKIN,
    TISSUE,
    Case,
    draw_axial_head,
)
from fetal_viewer.core.phantoms.canvas import Canvas, ellipse_points


# -- face (coronal, sagittal) ----------------------------------------------------------------
def draw_face(cv: Canvas, case: Case) -> None:
    """Coronal orbits view (``+p`` cranial, ``q`` lateral) or sagittal profile (``q``
    anterior). Normal: intact calvarium above the orbits; anencephaly: none, with
    disorganised tissue (angiomatous stroma) above the skull base and bulging orbits."""
    hs, prm = case.head, case.params
    b, t = hs.bpd_mm / 2.0, hs.skull_mm
    anen = case.label == "anencephaly"
    orbit_r = (prm.get("orbit_r", 0.11) if anen else 0.11) * hs.bpd_mm
    sag = case.view == "sagittal"
    vault_h = 1.05 * b if not sag else 0.95 * hs.ofd_mm / 2.0
    vault_w = b if not sag else hs.ofd_mm / 2.0
    base_p = 0.22 * b

    # face soft tissue
    cv.ellipse((-0.35 * b, 0.0), (0.7 * b, 0.85 * b), echo=TISSUE)
    if not anen:
        # intact head: brain and calvarium above the orbits
        vault = ellipse_points(
            vault_h, vault_w, 96, center=(base_p, 0.0), start_deg=-90.0, end_deg=90.0
        )
        cv.poly([*vault, (base_p, -vault_w)], echo=TISSUE)
        inner = ellipse_points(
            vault_h - t, vault_w - t, 96, center=(base_p, 0.0), start_deg=-90.0, end_deg=90.0
        )
        cv.poly([*inner, (base_p, -(vault_w - t))], echo=BRAIN, part="brain")
        cv.poly(inner, echo=BONE, bone=1.0, thick_mm=t, closed=False, part="vault")
        cv.poly([*vault, (base_p, -vault_w)], mask=True)
        if not sag:
            cv.line(
                (base_p + 0.1 * b, 0.0), (base_p + vault_h - t, 0.0), 0.45, echo=FALX, part="falx"
            )
    else:
        # angiomatous stroma: irregular heterogeneous tissue, no bone above the base
        rng = np.random.default_rng(case.texture_seed)
        h = prm["stroma_h"] * vault_h
        ang = np.linspace(-90.0, 90.0, 40)
        rad = 1.0 + 0.25 * rng.standard_normal(40).cumsum() / 6.0
        rad = np.clip(rad, 0.6, 1.4)
        pts = [
            (
                base_p + h * r * math.cos(math.radians(x)),
                0.8 * vault_w * r * math.sin(math.radians(x)),
            )
            for x, r in zip(ang, rad)
        ]
        cv.poly(pts, echo=0.9, part="stroma", mask=True)
        for _ in range(8):
            c = (base_p + float(rng.uniform(0.1, 0.8)) * h, float(rng.uniform(-0.6, 0.6)) * vault_w)
            r = float(rng.uniform(0.04, 0.12)) * b
            cv.ellipse(c, (r, r * 0.8), echo=FLUID if rng.random() < 0.5 else SKIN)
        vault = ellipse_points(
            vault_h, vault_w, 48, center=(base_p, 0.0), start_deg=-90.0, end_deg=90.0
        )
        cv.poly([*vault, (base_p, -vault_w)], mask=True, part="absent_vault")

    # skull base / orbital roofs
    cv.poly(
        [
            (base_p - 0.05 * b, -0.85 * b),
            (base_p + 0.05 * b, -0.3 * b),
            (base_p, 0.0),
            (base_p + 0.05 * b, 0.3 * b),
            (base_p - 0.05 * b, 0.85 * b),
        ]
        if not sag
        else [(base_p, 0.6 * b), (base_p - 0.1 * b, -0.2 * b), (base_p - 0.35 * b, -0.6 * b)],
        echo=BONE,
        bone=1.0,
        thick_mm=t,
        closed=False,
        part="skull_base",
    )
    # orbits
    centres = [(0.0, -0.38 * b), (0.0, 0.38 * b)] if not sag else [(0.0, 0.55 * b)]
    for c in centres:
        cv.ellipse(c, (orbit_r, orbit_r), echo=0.05, part="orbits")
        cv.ellipse(c, (orbit_r, orbit_r), echo=BONE * 0.6, bone=0.6, thick_mm=0.6)
        cv.ellipse((c[0], c[1]), (orbit_r * 0.3, orbit_r * 0.3), echo=0.6)  # lens
    # nose, maxilla, mandible
    if not sag:
        cv.ellipse((-0.3 * b, 0.0), (0.12 * b, 0.06 * b), echo=BONE * 0.7, bone=0.5)
        cv.ellipse(
            (-0.35 * b, 0.0),
            (0.35 * b, 0.55 * b),
            echo=BONE * 0.6,
            bone=0.6,
            thick_mm=t * 0.8,
            arc=(120.0, 240.0),
        )
        cv.ellipse(
            (-0.55 * b, 0.0),
            (0.45 * b, 0.6 * b),
            echo=BONE * 0.7,
            bone=0.7,
            thick_mm=t,
            arc=(130.0, 230.0),
        )
    else:
        cv.poly(
            [
                (-0.2 * b, 0.75 * b),
                (-0.35 * b, 0.95 * b),
                (-0.5 * b, 0.8 * b),
                (-0.7 * b, 0.85 * b),
                (-0.95 * b, 0.7 * b),
            ],
            echo=SKIN,
            thick_mm=1.0,
            closed=False,
        )
        cv.poly(
            [(-0.55 * b, 0.6 * b), (-0.9 * b, 0.55 * b), (-1.0 * b, 0.2 * b)],
            echo=BONE * 0.7,
            bone=0.7,
            thick_mm=t,
            closed=False,
        )
        for k in range(5):  # cervical vertebrae
            cv.ellipse(
                (-0.45 * b - k * 0.18 * b, -0.55 * b - k * 0.04 * b),
                (0.06 * b, 0.05 * b),
                echo=BONE * 0.7,
                bone=0.7,
            )


# -- spine ---------------------------------------------------------------------------------
def draw_spine_sagittal(cv: Canvas, case: Case) -> None:
    """Sagittal spine: ``p`` along the spine (cranial +), ``q`` posterior +."""
    hs, prm = case.head, case.params
    L = prm["spine_len"] * hs.ofd_mm
    w0 = 0.05 * hs.bpd_mm + 1.0
    st = 0.05 * hs.bpd_mm + 1.0
    n = 26
    d = L / n
    bend = prm["spine_curve"] * 0.07 * L

    def q0(p: float) -> float:
        return bend * (2.0 * p / L) ** 2

    def w(p: float) -> float:
        f = (p + L / 2.0) / L  # 0 sacral, 1 cervical
        return w0 * (0.35 + 0.65 * min(1.0, f / 0.3))

    ps = np.linspace(-L / 2.0, L / 2.0, 60)
    defect = case.label == "rachischisis"
    dc, dl = prm.get("defect_pos", 0.0) * L, prm.get("defect_len", 0.0) * L
    in_def = (lambda p: abs(p - dc) < dl / 2.0) if defect else (lambda p: False)

    # trunk (anterior soft tissue) and posterior soft tissue up to the skin
    front = [(p, q0(p) - w(p) - 0.55 * hs.bpd_mm) for p in ps]
    back = [(p, q0(p) + w(p) + st) for p in ps[::-1]]
    cv.poly(front + back, echo=TISSUE * 0.75)
    # canal and cord
    canal = [(p, q0(p) - w(p) * 0.7) for p in ps] + [(p, q0(p) + w(p) * 0.7) for p in ps[::-1]]
    cv.poly(canal, echo=0.25, part="canal")
    cv.poly([(p, q0(p)) for p in ps], echo=0.03, thick_mm=max(0.6, w0 * 0.5), closed=False)
    if not defect:
        cv.poly(front + back, mask=True, part="spine")
    if defect:
        # open segment: skin and soft tissue missing over the defect
        seg = np.linspace(dc - dl / 2.0, dc + dl / 2.0, 16)
        gap = [(p, q0(p) + w(p) * 0.4) for p in seg] + [
            (p, q0(p) + w(p) + st + 1.5) for p in seg[::-1]
        ]
        cv.poly(gap, echo=FLUID)
        cv.poly(
            [(p, q0(p) - 0.3 * w(p)) for p in seg]
            + [(p, q0(p) + w(p) + st + 1.0) for p in seg[::-1]],
            mask=True,
            part="defect",
        )
        if prm["sac"]:
            rs = prm["sac_r"] * dl * 0.55
            c = (dc, q0(dc) + w(dc) + st + rs * 0.55)
            cv.ellipse(c, (dl * 0.55, rs), echo=FLUID, part="sac", mask=True)
            cv.ellipse(c, (dl * 0.55, rs), echo=MEMBRANE, thick_mm=0.5, mask=True)
            for k in (-0.25, 0.1, 0.3):  # neural strands of a myelomeningocele
                cv.line(
                    (dc + k * dl, q0(dc) + w(dc) * 0.3),
                    (dc + k * dl * 1.4, c[1] + rs * 0.3),
                    0.35,
                    echo=SKIN * 0.8,
                )
    # skin line
    pts_skin: list[tuple[float, float]] = []
    for p in ps:
        if in_def(p):
            if pts_skin:
                cv.poly(pts_skin, echo=SKIN, thick_mm=0.6, closed=False)
            pts_skin = []
        else:
            pts_skin.append((p, q0(p) + w(p) + st))
    cv.poly(pts_skin, echo=SKIN, thick_mm=0.6, closed=False)
    # ossification centres: vertebral bodies (anterior) and posterior elements
    for k in range(n):
        p = -L / 2.0 + (k + 0.5) * d
        cv.ellipse(
            (p, q0(p) - w(p)), (0.36 * d, 0.28 * d + 0.4), echo=BONE, bone=1.0, part="bodies"
        )
        if in_def(p):
            # splayed laminae fall out of the midline plane: faint, displaced fragments
            cv.ellipse(
                (p, q0(p) + w(p) * 1.6), (0.18 * d, 0.12 * d + 0.3), echo=BONE * 0.3, bone=0.3
            )
        else:
            cv.ellipse(
                (p, q0(p) + w(p)),
                (0.3 * d, 0.22 * d + 0.3),
                echo=BONE,
                bone=1.0,
                part="posterior_elements",
            )


def draw_spine_transverse(cv: Canvas, case: Case) -> None:
    """Transverse spine: ``p`` posterior +, ``q`` lateral. Laminae converge posteriorly
    when closed; splayed (opening outwards) in rachischisis."""
    hs, prm = case.head, case.params
    R = 0.42 * hs.bpd_mm
    u = 0.07 * hs.bpd_mm + 0.5
    defect = case.label == "rachischisis"
    trunk_c = (-0.55 * R, 0.0)
    cv.ellipse(trunk_c, (R, 1.1 * R), echo=TISSUE * 0.7)
    cv.ellipse(trunk_c, (R, 1.1 * R), echo=SKIN, thick_mm=0.6)
    # kidneys / bowel hint
    for side in (-1.0, 1.0):
        cv.ellipse((-0.2 * R, side * 0.45 * R), (0.22 * R, 0.14 * R), 60.0 * side, echo=0.45)
    cv.ellipse((-u * 1.3, 0.0), (u, 1.1 * u), echo=BONE, bone=1.0, part="body")
    cv.ellipse((0.15 * u, 0.0), (0.75 * u, 0.75 * u), echo=0.2, part="canal")
    if not defect:
        for side in (-1.0, 1.0):
            cv.ellipse(
                (0.9 * u, side * 0.85 * u),
                (0.95 * u, 0.3 * u),
                -side * 40.0,
                echo=BONE,
                bone=1.0,
                part="laminae",
            )
        cv.ellipse((0.0, 0.0), (2.6 * u, 2.2 * u), mask=True, part="spine")
        return
    splay = prm["splay"]
    for side in (-1.0, 1.0):
        cv.ellipse(
            (0.9 * u, side * 1.45 * u),
            (0.95 * u, 0.3 * u),
            side * splay,
            echo=BONE,
            bone=1.0,
            part="laminae",
        )
    skin_p = 0.45 * R
    wedge = [(0.0, -0.9 * u), (skin_p + 1.5, -2.2 * u), (skin_p + 1.5, 2.2 * u), (0.0, 0.9 * u)]
    cv.poly(wedge, echo=FLUID, mask=True, part="defect")
    if prm["sac"]:
        rs = prm["sac_r"] * 2.2 * u
        c = (skin_p + rs * 0.7, 0.0)
        cv.ellipse(c, (rs, rs * 1.1), echo=FLUID, part="sac", mask=True)
        cv.ellipse(c, (rs, rs * 1.1), echo=MEMBRANE, thick_mm=0.5, mask=True)


# -- surroundings --------------------------------------------------------------------------
def draw_surroundings(cv: Canvas, rng: np.random.Generator) -> None:
    """Maternal abdominal wall, placenta, far uterine wall and a fetal limb or two, in
    probe (apex-centred) coordinates."""
    g = cv.geom
    s = g.px_per_mm
    r0 = g.r0_px / s
    half = math.degrees(g.half_angle) + 2.0

    def band(
        ra: float, rb: float, ta: float, tb: float, wiggle: float
    ) -> list[tuple[float, float]]:
        th = np.radians(np.linspace(ta, tb, 48))
        ph = rng.uniform(0, 2 * np.pi)
        wa = ra + wiggle * np.sin(3.0 * th + ph)
        wb = rb + wiggle * np.sin(2.0 * th + ph + 1.0)
        outer = [(r * math.sin(t), r * math.cos(t)) for r, t in zip(wb, th)]
        inner = [(r * math.sin(t), r * math.cos(t)) for r, t in zip(wa[::-1], th[::-1])]
        return outer + inner

    # apex-centred frame: p is display x, q is display y, both in mm from the apex
    cv.set_frame(g.apex, 0.0, False)
    wall = float(rng.uniform(8.0, 22.0))
    cv.poly(band(r0 - 2.0, r0 + wall, -half, half, 1.5), echo=TISSUE * 0.9)
    for k in range(int(rng.integers(2, 5))):
        rr = r0 + wall * float(rng.uniform(0.15, 0.95))
        cv.poly(
            band(rr, rr + float(rng.uniform(0.4, 1.2)), -half, half, 1.0),
            echo=SKIN * (1.5 if k % 2 else 0.4),
        )
    depth = g.depth_mm
    if rng.random() < 0.6:
        anterior = rng.random() < 0.5
        thick = float(rng.uniform(15.0, 30.0))
        ta = float(rng.uniform(-half, 0.0))
        tb = float(rng.uniform(ta + 20.0, half + 10.0))
        ra = r0 + wall if anterior else r0 + depth * float(rng.uniform(0.8, 0.92))
        cv.poly(band(ra, ra + thick, ta, tb, 2.0), echo=0.55)
    far = r0 + depth * float(rng.uniform(0.88, 1.0))
    cv.poly(band(far, far + 40.0, -half, half, 3.0), echo=TISSUE * 0.8)
    for _ in range(int(rng.integers(0, 3))):
        rr = r0 + depth * float(rng.uniform(0.2, 0.9))
        tt = math.radians(float(rng.uniform(-half, half)))
        c = (rr * math.sin(tt), rr * math.cos(tt))
        ang = float(rng.uniform(0.0, 180.0))
        ln = float(rng.uniform(10.0, 30.0))
        cv.ellipse(c, (ln * 0.6, 4.0), ang, echo=TISSUE * 0.7)
        cv.ellipse(c, (ln * 0.45, 0.9), ang, echo=BONE * 0.7, bone=0.8)


def draw_case(cv: Canvas, case: Case) -> None:
    """Place the fetal part at the case's pose and draw it."""
    g = cv.geom
    s = g.px_per_mm
    r = g.r0_px / s + g.depth_mm * case.pose.depth_frac
    th = g.half_angle * case.pose.angle_frac
    cv.set_frame(g.to_px(r, th), case.pose.rotation_deg, case.pose.flip)
    if case.view in HEAD_VIEWS:
        draw_axial_head(cv, case)
    elif case.view in ("coronal", "sagittal"):
        draw_face(cv, case)
    elif case.view == "spine_sag":
        draw_spine_sagittal(cv, case)
    else:
        draw_spine_transverse(cv, case)
