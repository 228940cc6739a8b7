"""Lesions synthesised into real normal scans, in the scan's own anatomy and texture.

Drawn phantoms teach a model what phantoms look like; a real normal head scan already has
real speckle, gain, depth, shadows and a real brain. Given such a scan and its skull ellipse
(:func:`fetal_viewer.core.measure.head.find_head`), :func:`synthesise` changes the anatomy
the way each anomaly changes it in an axial head plane:

* **anencephaly**: no cranial vault: the skull echo is gone (a fragment of the skull base may
  stay) and the brain is replaced by a smaller, lobulated mass of disorganised echogenic
  tissue (angiomatous stroma) floating in fluid;
* **encephalocele** (meningocele included): a gap in the skull echo, mostly at a pole of
  the occipito-frontal axis, with a sac bounded by a thin membrane protruding through it,
  holding fluid, brain tissue or both; the sac (0.3 to 1.1 of the head's minor semi-axis)
  goes where it lies in the field of view (a pole that runs off the fan gives a smaller sac,
  or one elsewhere on the skull), so the label is never a lesion no one could see;
* **holoprosencephaly** (alobar): no midline echo, one large central monoventricle, the
  thalami fused into one mass in front of or inside it;
* **rachischisis**, cranial signs: lemon-shaped frontal bones (both sides pulled inwards
  near the frontal pole) and ventriculomegaly (a dilated atrium); the banana cerebellum
  needs the posterior-fossa plane, which these scans do not show (the spine views stay with
  the drawn phantoms).

Nothing is drawn with synthetic texture. Every filled region takes its speckle from the same
scan: random blocks of its own brain, fluid or skull, quilted with overlapping cosine
windows (:func:`_quilt`) and feathered into place; the lemon shape is a smooth warp of the
scan itself. The result keeps the scan's gain, depth, noise and resolution.

**Sham edits.** Each of these operations (quilted fills, skull re-texturing, warps) leaves
some trace. So that a trace never gives the class away, :func:`sham` applies the same
operations, lesion-free, to the normal class in the same proportion: brain texture quilted
over brain, fluid over fluid, skull over skull, warps that keep the head convex. Whether a
model can tell sham-edited normals from untouched scans is measured in
docs/real-anatomy.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.measure.head import HeadFit

#: the classes :func:`synthesise` makes (normal comes from :func:`sham`)
LESIONS: tuple[str, ...] = ("anencephaly", "encephalocele", "holoprosencephaly", "rachischisis")
#: edit kinds, recorded per image so that lesions and shams can be compared
EDITS: tuple[str, ...] = ("fill", "skull", "warp")


@dataclass(frozen=True)
class Synthesis:
    """A synthesised frame: grey ``image`` (H, W) uint8, the lesion ``mask`` (empty for a
    normal), and the ``edits`` it carries (in order)."""

    image: NDArray[np.uint8]
    mask: NDArray[np.bool_]
    edits: tuple[str, ...]


def _hull(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The convex hull of a mask: a fan's field of view with its anechoic parts."""
    import cv2

    pts = cv2.findNonZero(mask.astype(np.uint8))
    out = np.zeros(mask.shape, np.uint8)
    if pts is not None:
        cv2.fillConvexPoly(out, cv2.convexHull(pts), 1)
    return out.astype(bool)


class _Head:
    """Per-pixel coordinates of a scan relative to its skull ellipse, and texture sources.

    ``u, v``: pixels along the major and minor axes from the centre; ``rho``: 1 on the outer
    skull border, ``rho_in`` on its inner border; ``phi``: the ellipse's parametric angle
    (0 at the +major pole).
    """

    def __init__(self, grey: NDArray[np.uint8], head: HeadFit, fov: NDArray[np.bool_]) -> None:
        import cv2

        self.grey = grey
        self.head = head
        #: pixels with image texture (where texture is taken from) ...
        self.fov = fov
        #: ... and the whole field of view, anechoic fluid included (where edits may go)
        self.area = _hull(fov)
        h, w = grey.shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        self.u, self.v = self.axes(xx, yy)
        self.rho = np.sqrt((self.u / head.a) ** 2 + (self.v / head.b) ** 2)
        self.phi = np.arctan2(self.u * 0 + self.v / head.b, self.u / head.a)
        t = max(2.0, head.skull_px)
        self.rho_in = max(0.5, 1.0 - t / head.b)
        self.t = t
        self.brain = (self.rho < self.rho_in * 0.95) & fov
        self.inside = (self.rho < self.rho_in * 0.95) & self.area
        self.skull = (self.rho >= self.rho_in) & (self.rho <= 1.0) & fov
        # fluid: the darkest quarter of the field of view away from the head, else the
        # darkest quarter of the brain
        blur = cv2.blur(grey.astype(np.float32), (9, 9))
        outside = fov & (self.rho > 1.25)
        if outside.sum() > 2000:
            level = np.percentile(blur[outside], 25)
            fluid = outside & (blur <= level)
        else:
            fluid = np.zeros_like(fov)
        if fluid.sum() < 1500:
            level = np.percentile(blur[self.brain], 25) if self.brain.any() else 0
            fluid = self.brain & (blur <= level)
        self.fluid = fluid
        self.scale = head.b  # lengths below are fractions of the minor semi-axis

    def axes(self, x: NDArray, y: NDArray) -> tuple[NDArray, NDArray]:
        """Frame points ``x, y`` in pixels along the ellipse's major and minor axes."""
        h = self.head
        th = math.radians(h.angle_deg)
        dx, dy = x - h.cx, y - h.cy
        return dx * math.cos(th) + dy * math.sin(th), -dx * math.sin(th) + dy * math.cos(th)

    def point(self, phi: float, rho: float) -> tuple[float, float]:
        """Frame coordinates of the ellipse point at parametric angle ``phi``, scale ``rho``."""
        h = self.head
        th = math.radians(h.angle_deg)
        u, v = rho * h.a * math.cos(phi), rho * h.b * math.sin(phi)
        return h.cx + u * math.cos(th) - v * math.sin(th), h.cy + u * math.sin(th) + v * math.cos(
            th
        )

    def normal(self, phi: float) -> tuple[float, float]:
        """Unit outward normal of the ellipse at ``phi`` in frame coordinates."""
        h = self.head
        th = math.radians(h.angle_deg)
        nu, nv = math.cos(phi) / h.a, math.sin(phi) / h.b
        n = math.hypot(nu, nv)
        nu, nv = nu / n, nv / n
        return nu * math.cos(th) - nv * math.sin(th), nu * math.sin(th) + nv * math.cos(th)

    def angle_window(self, phi0: float, half: float) -> NDArray[np.bool_]:
        d = np.angle(np.exp(1j * (self.phi - phi0)))
        return np.asarray(np.abs(d) <= half)


def _quilt(
    grey: NDArray[np.uint8],
    source: NDArray[np.bool_],
    box: tuple[int, int, int, int],
    rng: np.random.Generator,
    block: int,
) -> NDArray[np.float32]:
    """Texture for the rectangle ``box`` (x0, y0, x1, y1) quilted from random ``block``-sized
    pieces of ``grey`` lying inside ``source``, overlapped half a block with cosine windows."""
    import cv2

    x0, y0, x1, y1 = box
    bh, bw = y1 - y0, x1 - x0
    b = block
    ok = source.astype(np.uint8)
    while b >= 6:
        inside = cv2.erode(ok, np.ones((b, b), np.uint8), anchor=(0, 0), borderValue=0)
        ys, xs = np.nonzero(inside[: grey.shape[0] - b + 1, : grey.shape[1] - b + 1])
        if len(ys) >= 4:
            break
        b //= 2
    else:
        ys, xs = np.nonzero(source)
        if len(ys) == 0:
            ys, xs = np.nonzero(np.ones_like(source))
        b = 1
    step = max(1, b // 2)
    win1 = np.sin(np.pi * (np.arange(b) + 0.5) / b).astype(np.float32) if b > 1 else np.ones(1)
    win = np.outer(win1, win1).astype(np.float32) + 1e-3
    acc = np.zeros((bh + 2 * b, bw + 2 * b), np.float32)
    wsum = np.zeros_like(acc)
    g = grey.astype(np.float32)
    for oy in range(-step, bh, step):
        for ox in range(-step, bw, step):
            k = int(rng.integers(len(ys)))
            piece = g[ys[k] : ys[k] + b, xs[k] : xs[k] + b]
            if rng.random() < 0.5:
                piece = piece[:, ::-1]
            py, px = oy + step, ox + step
            acc[py : py + b, px : px + b] += piece * win
            wsum[py : py + b, px : px + b] += win
    out = (acc / np.maximum(wsum, 1e-6)).astype(np.float32)
    return out[step : step + bh, step : step + bw]


def _fill(
    img: NDArray[np.float32],
    grey: NDArray[np.uint8],
    region: NDArray[np.bool_],
    source: NDArray[np.bool_],
    rng: np.random.Generator,
    *,
    level: float | None = None,
    feather: float = 2.0,
    block: int = 24,
) -> None:
    """Quilt ``source`` texture into ``region`` of ``img`` in place (feathered edges); with
    ``level``, the texture's mean is scaled to that grey level (speckle is multiplicative)."""
    import cv2

    ys, xs = np.nonzero(region)
    if len(ys) == 0:
        return
    pad = math.ceil(3 * feather) + 1
    h, w = img.shape
    x0, x1 = max(0, xs.min() - pad), min(w, xs.max() + pad + 1)
    y0, y1 = max(0, ys.min() - pad), min(h, ys.max() + pad + 1)
    tex = _quilt(grey, source, (x0, y0, x1, y1), rng, block)
    if level is not None:
        tex = tex * (level / max(float(tex.mean()), 1.0))
    alpha = region[y0:y1, x0:x1].astype(np.float32)
    if feather > 0:
        alpha = np.asarray(cv2.GaussianBlur(alpha, (0, 0), feather), np.float32)
    sub = img[y0:y1, x0:x1]
    img[y0:y1, x0:x1] = sub * (1 - alpha) + tex * alpha


def _blob(
    hd: _Head,
    centre: tuple[float, float],
    ra: float,
    rb: float,
    rng: np.random.Generator,
    lobes: float = 0.0,
    angle: float | None = None,
) -> NDArray[np.bool_]:
    """A (lobulated) ellipse in frame pixels, axes along the head's unless ``angle``."""
    h, w = hd.grey.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    th = math.radians(hd.head.angle_deg) if angle is None else angle
    dx, dy = xx - centre[0], yy - centre[1]
    u = dx * math.cos(th) + dy * math.sin(th)
    v = -dx * math.sin(th) + dy * math.cos(th)
    r = np.sqrt((u / ra) ** 2 + (v / rb) ** 2)
    if lobes > 0:
        ang = np.arctan2(v / rb, u / ra)
        wobble = np.zeros_like(ang)
        for k in range(2, 7):
            wobble += rng.normal(0, lobes / k) * np.cos(k * ang + rng.uniform(0, 2 * np.pi))
        r = r / (1 + wobble)
    return np.asarray(r <= 1.0)


def _echo(
    hd: _Head,
    img: NDArray[np.float32],
    region: NDArray[np.bool_],
    rng: np.random.Generator,
    level: float,
    *,
    feather: float,
    block: int,
) -> None:
    """An echogenic structure (membrane, foci) in ``region``: the skull's own texture at
    ``level``."""
    _fill(img, hd.grey, region, hd.skull, rng, level=level, feather=feather, block=block)


def _levels(hd: _Head) -> dict[str, float]:
    g = hd.grey.astype(np.float32)
    brain = float(np.median(g[hd.brain])) if hd.brain.any() else float(np.median(g[hd.fov]))
    fluid = float(np.median(g[hd.fluid])) if hd.fluid.any() else 0.4 * brain
    skull = float(np.percentile(g[hd.skull], 75)) if hd.skull.any() else 200.0
    # cerebrospinal fluid and amniotic fluid are anechoic: darker than any brain tissue
    return {"brain": brain, "fluid": min(fluid, 0.45 * brain), "skull": skull}


#: an encephalocele's sac is placed where at least this share of it is in the field of view
#: (the best of :data:`_SAC_TRIES` places otherwise)
_SAC_IN_VIEW = 0.85
_SAC_TRIES = 16


def _pole(rng: np.random.Generator, occipital_share: float = 0.8) -> float:
    """A parametric angle at a pole of the major axis (either end: which is occipital is not
    known), or anywhere with probability ``1 - occipital_share``."""
    if rng.random() < occipital_share:
        return float(rng.choice([0.0, math.pi]) + rng.normal(0, math.radians(12)))
    return float(rng.uniform(-math.pi, math.pi))


def _share_in_view(hd: _Head, phi: float, ra: float, rb: float, out_frac: float) -> float:
    """Share of an encephalocele's sac (semi-axes ``ra`` along the skull's normal at ``phi``,
    ``rb`` across; its centre ``out_frac * ra`` beyond the skull) outside the skull that lies
    in the image's field of view, on a 2-pixel grid that reaches beyond the frame."""
    px, py = hd.point(phi, 1.0)
    nx, ny = hd.normal(phi)
    cx, cy = px + nx * ra * out_frac, py + ny * ra * out_frac
    g = np.arange(-ra, ra + 1.0, 2.0)
    du, dv = np.meshgrid(g, g)
    disc = (du / ra) ** 2 + (dv / rb) ** 2 <= 1.0
    x = cx + du[disc] * nx - dv[disc] * ny
    y = cy + du[disc] * ny + dv[disc] * nx
    u, v = hd.axes(x, y)
    out = (u / hd.head.a) ** 2 + (v / hd.head.b) ** 2 > 1.0
    if not out.any():
        return 0.0
    x, y = np.rint(x[out]).astype(np.int64), np.rint(y[out]).astype(np.int64)
    rows, cols = hd.area.shape
    framed = (x >= 0) & (x < cols) & (y >= 0) & (y < rows)
    shown = np.zeros(len(x), dtype=bool)
    shown[framed] = hd.area[y[framed], x[framed]]
    return float(shown.mean())


def _encephalocele(
    hd: _Head, img: NDArray[np.float32], rng: np.random.Generator
) -> tuple[NDArray[np.bool_], list[str]]:
    lv = _levels(hd)
    # from a small meningocele to a sac the size of the head (log-uniform)
    r_sac = hd.scale * math.exp(rng.uniform(math.log(0.3), math.log(1.1)))
    aspect = rng.uniform(0.75, 1.0)
    # how far the sac's centre lies beyond the skull (fraction of its radius): it always
    # overlaps the skull, so it protrudes through the gap
    out_frac = rng.uniform(0.35, 0.75)
    best: tuple[float, float, float] | None = None  # share in view, angle, radius
    for attempt in range(_SAC_TRIES):
        if attempt and attempt % 4 == 0:
            r_sac *= 0.8  # a smaller sac where a large one does not fit in view
        phi = _pole(rng)
        share = _share_in_view(hd, phi, r_sac, r_sac * aspect, out_frac)
        if best is None or share > best[0]:
            best = (share, phi, r_sac)
        if share >= _SAC_IN_VIEW:
            break
    assert best is not None
    _, phi0, r_sac = best
    px, py = hd.point(phi0, 1.0)
    nx, ny = hd.normal(phi0)
    centre = (px + nx * r_sac * out_frac, py + ny * r_sac * out_frac)
    sac = (
        _blob(hd, centre, r_sac, r_sac * aspect, rng, lobes=0.08, angle=math.atan2(ny, nx))
        & (hd.rho > 1.0)
        & hd.area
    )
    # the gap spans most of the sac's neck on the skull
    neck = r_sac * math.sqrt(1.0 - out_frac**2) / (0.5 * (hd.head.a + hd.head.b))
    half = min(max(neck * rng.uniform(0.6, 1.0), math.radians(8)), math.radians(40))
    gap = hd.angle_window(phi0, half) & (hd.rho >= hd.rho_in - 0.05) & (hd.rho <= 1.1) & hd.area
    content = rng.choice(["fluid", "brain", "mixed"], p=[0.35, 0.35, 0.3])
    edits = ["skull", "fill"]
    # the gap: the skull echo replaced by what herniates through it
    gap_level = lv["fluid"] if content == "fluid" else lv["brain"]
    gap_source = hd.fluid if content == "fluid" else hd.brain
    _fill(img, hd.grey, gap, gap_source, rng, level=gap_level, feather=1.5, block=16)
    if content == "fluid":
        _fill(img, hd.grey, sac, hd.fluid, rng, level=lv["fluid"])
    elif content == "brain":
        _fill(img, hd.grey, sac, hd.brain, rng, level=lv["brain"] * rng.uniform(0.9, 1.2))
    else:
        _fill(img, hd.grey, sac, hd.fluid, rng, level=lv["fluid"])
        inner_r = r_sac * rng.uniform(0.4, 0.7)
        inner_c = (px + nx * inner_r * 0.6, py + ny * inner_r * 0.6)
        tissue = sac & _blob(
            hd, inner_c, inner_r, inner_r * 0.8, rng, lobes=0.15, angle=math.atan2(ny, nx)
        )
        _fill(img, hd.grey, tissue, hd.brain, rng, level=lv["brain"] * 1.1)
    # the membrane: an echogenic line around the sac outside the skull, continuing the
    # skull's echo at the gap's edges
    import cv2

    sac_u8 = sac.astype(np.uint8)
    width = max(1, round(rng.uniform(0.012, 0.04) * hd.scale))
    rim = (cv2.dilate(sac_u8, np.ones((2 * width + 1,) * 2, np.uint8)) > 0) & ~sac & (hd.rho > 1.0)
    rim &= hd.area
    _echo(hd, img, rim, rng, lv["skull"] * rng.uniform(0.55, 1.0), feather=0.8, block=8)
    return sac | gap | rim, edits


def _anencephaly(
    hd: _Head, img: NDArray[np.float32], rng: np.random.Generator
) -> tuple[NDArray[np.bool_], list[str]]:
    lv = _levels(hd)
    head = (hd.rho <= 1.12) & hd.area
    edits = ["skull", "fill", "fill"]
    base_phi = float(rng.uniform(-math.pi, math.pi))
    keep_base = rng.random() < 0.5
    vault = (hd.rho >= hd.rho_in - 0.05) & (hd.rho <= 1.12) & hd.area
    if keep_base:
        vault &= ~hd.angle_window(base_phi, math.radians(rng.uniform(15, 40)))
    # everything that was head becomes fluid first, then the exposed tissue is put in
    _fill(img, hd.grey, vault | hd.inside, hd.fluid, rng, level=lv["fluid"], feather=3.0)
    bx, by = hd.point(base_phi, rng.uniform(0.1, 0.45))
    ra = hd.head.a * rng.uniform(0.4, 0.75)
    rb = hd.head.b * rng.uniform(0.4, 0.75)
    mass = _blob(hd, (bx, by), ra, rb, rng, lobes=rng.uniform(0.1, 0.25)) & head
    _fill(img, hd.grey, mass, hd.brain, rng, level=lv["brain"] * rng.uniform(1.0, 1.3))
    # echogenic foci: bright skull texture where a smooth random field is high
    import cv2

    noise = cv2.GaussianBlur(rng.normal(size=img.shape).astype(np.float32), (0, 0), hd.scale * 0.08)
    foci = mass & (noise > np.percentile(noise[mass], 80)) if mass.any() else mass
    _echo(hd, img, foci, rng, lv["skull"] * rng.uniform(0.35, 0.6), feather=3.0, block=12)
    return head, edits


def _holoprosencephaly(
    hd: _Head, img: NDArray[np.float32], rng: np.random.Generator
) -> tuple[NDArray[np.bool_], list[str]]:
    lv = _levels(hd)
    edits = ["fill", "fill", "fill"]
    # no midline echo: the band along the major axis re-textured with brain
    half_w = hd.scale * rng.uniform(0.04, 0.08)
    midline = (np.abs(hd.v) <= half_w) & (hd.rho < hd.rho_in * 0.97) & hd.area
    _fill(
        img,
        hd.grey,
        midline,
        hd.brain & (np.abs(hd.v) > 2 * half_w),
        rng,
        level=lv["brain"],
        feather=2.0,
        block=16,
    )
    front = float(rng.choice([0.0, math.pi]))
    shift = rng.uniform(0.0, 0.25)
    cx, cy = hd.point(front, shift)
    ra = hd.head.a * hd.rho_in * rng.uniform(0.45, 0.7)
    rb = hd.head.b * hd.rho_in * rng.uniform(0.5, 0.75)
    ventricle = _blob(hd, (cx, cy), ra, rb, rng, lobes=0.06) & hd.inside
    tx, ty = hd.point(front + math.pi, rng.uniform(0.0, 0.2))
    tr = hd.scale * rng.uniform(0.18, 0.3)
    thalami = _blob(hd, (tx, ty), tr * rng.uniform(1.0, 1.4), tr, rng, lobes=0.05) & hd.inside
    _fill(img, hd.grey, ventricle & ~thalami, hd.fluid, rng, level=lv["fluid"])
    _fill(img, hd.grey, thalami, hd.brain, rng, level=lv["brain"] * rng.uniform(1.0, 1.3))
    return ventricle | thalami, edits


def _warp_radial(
    hd: _Head, img: NDArray[np.float32], phis: list[float], depth: float, width: float
) -> NDArray[np.bool_]:
    """Move the skull and the tissue around it radially at angles ``phis`` by ``depth``
    (fraction of the ellipse radius; positive pulls inwards), Gaussian in angle (``width``
    radians); returns where pixels moved by more than a pixel."""
    import cv2

    d = np.zeros_like(hd.phi)
    for p in phis:
        dphi = np.angle(np.exp(1j * (hd.phi - p)))
        d += np.exp(-0.5 * (dphi / width) ** 2)
    # radial falloff: full at the skull, none at the centre and far outside
    fall = np.clip(hd.rho / 0.7, 0, 1) * np.clip((1.3 - hd.rho) / 0.25, 0, 1)
    scale_r = 1.0 + depth * d * fall  # sample from further out -> content moves inwards
    h = hd.head
    th = math.radians(h.angle_deg)
    u, v = hd.u * scale_r, hd.v * scale_r
    mx = (h.cx + u * math.cos(th) - v * math.sin(th)).astype(np.float32)
    my = (h.cy + u * math.sin(th) + v * math.cos(th)).astype(np.float32)
    warped = cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    # only where both the pixel and the place it samples lie in the field of view, so the
    # fan's edge and burned-in boxes never move
    inner = cv2.erode(hd.area.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(np.float32)
    from_fov = cv2.remap(inner, mx, my, cv2.INTER_NEAREST) > 0.5
    ok = (inner > 0) & from_fov
    moved = (np.abs(scale_r - 1.0) * hd.rho * hd.scale > 1.0) & ok
    img[...] = np.where(ok, warped, img)
    return np.asarray(moved)


def _rachischisis(
    hd: _Head, img: NDArray[np.float32], rng: np.random.Generator
) -> tuple[NDArray[np.bool_], list[str]]:
    lv = _levels(hd)
    edits = ["warp", "fill"]
    front = float(rng.choice([0.0, math.pi]))
    off = math.radians(rng.uniform(30, 55))
    depth = rng.uniform(0.09, 0.16)
    moved = _warp_radial(
        hd, img, [front + off, front - off], depth, math.radians(rng.uniform(10, 16))
    )
    lemon = moved & (hd.rho > hd.rho_in - 0.12) & (hd.rho < 1.12)
    # a dilated atrium in the posterior half, beside the midline
    back = front + math.pi
    side = float(rng.choice([-1.0, 1.0]))
    ax, ay = hd.point(back, rng.uniform(0.35, 0.55))
    th = math.radians(hd.head.angle_deg)
    lat = side * hd.head.b * rng.uniform(0.18, 0.35)
    ax, ay = ax - lat * math.sin(th), ay + lat * math.cos(th)
    atrium = (
        _blob(
            hd,
            (ax, ay),
            hd.head.a * rng.uniform(0.2, 0.32),
            hd.head.b * rng.uniform(0.1, 0.17),
            rng,
            lobes=0.05,
        )
        & hd.inside
    )
    _fill(img, hd.grey, atrium, hd.fluid, rng, level=lv["fluid"])
    if rng.random() < 0.6:  # the dangling choroid plexus
        cx, cy = hd.point(back, rng.uniform(0.45, 0.6))
        cx, cy = cx - lat * math.sin(th), cy + lat * math.cos(th)
        choroid = atrium & _blob(hd, (cx, cy), hd.scale * 0.1, hd.scale * 0.05, rng, lobes=0.1)
        _fill(
            img,
            hd.grey,
            choroid,
            hd.brain,
            rng,
            level=min(lv["skull"] * 0.45, lv["brain"] * 1.8),
            feather=2.0,
            block=8,
        )
    return lemon | atrium, edits


_MAKERS = {
    "anencephaly": _anencephaly,
    "encephalocele": _encephalocele,
    "holoprosencephaly": _holoprosencephaly,
    "rachischisis": _rachischisis,
}


def _as_grey(frame: NDArray) -> NDArray[np.uint8]:
    f = np.asarray(frame)
    if f.ndim == 3:
        f = f[..., :3].mean(axis=2)
    return np.clip(f, 0, 255).astype(np.uint8)


def _context(frame: NDArray, head: HeadFit) -> _Head:
    from fetal_viewer.core.fov import fov_mask

    grey = _as_grey(frame)
    return _Head(grey, head, fov_mask(grey))


def synthesise(frame: NDArray, head: HeadFit, label: str, rng: np.random.Generator) -> Synthesis:
    """``label`` (one of :data:`LESIONS`) synthesised into ``frame`` (a real normal scan,
    grey or RGB uint8) around the skull ``head``; see the module docstring."""
    if label not in _MAKERS:
        raise ValueError(f"no lesion synthesis for {label!r}; use one of {LESIONS}")
    hd = _context(frame, head)
    img = hd.grey.astype(np.float32)
    mask, edits = _MAKERS[label](hd, img, rng)
    return Synthesis(np.clip(img + 0.5, 0, 255).astype(np.uint8), mask, tuple(edits))


def sham(frame: NDArray, head: HeadFit, rng: np.random.Generator, n_edits: int) -> Synthesis:
    """``n_edits`` lesion-free edits of the kinds lesions are made with: brain texture quilted
    over brain, fluid over fluid, skull over skull, an outward (convexity-keeping) warp."""
    hd = _context(frame, head)
    img = hd.grey.astype(np.float32)
    lv = _levels(hd)
    done: list[str] = []
    for _ in range(n_edits):
        kind = rng.choice(["brain", "fluid", "skull", "warp"], p=[0.45, 0.25, 0.2, 0.1])
        if kind == "warp":
            phi = float(rng.uniform(-math.pi, math.pi))
            _warp_radial(hd, img, [phi], -rng.uniform(0.04, 0.1), math.radians(rng.uniform(10, 30)))
            done.append("warp")
        elif kind == "skull":
            phi = float(rng.uniform(-math.pi, math.pi))
            seg = hd.angle_window(phi, math.radians(rng.uniform(10, 24))) & hd.skull
            _fill(
                img,
                hd.grey,
                seg,
                hd.skull,
                rng,
                level=float(np.mean(hd.grey[seg])) if seg.any() else None,
                feather=1.5,
                block=12,
            )
            done.append("skull")
        else:
            source = hd.brain if kind == "brain" else hd.fluid
            if not source.any():
                continue
            ys, xs = np.nonzero(source)
            k = int(rng.integers(len(ys)))
            r = hd.scale * rng.uniform(0.15, 0.45)
            region = (
                _blob(
                    hd, (float(xs[k]), float(ys[k])), r, r * rng.uniform(0.6, 1.0), rng, lobes=0.1
                )
                & source
            )
            level = lv["brain"] if kind == "brain" else lv["fluid"]
            local = float(np.mean(hd.grey[region])) if region.any() else level
            _fill(img, hd.grey, region, source, rng, level=local)
            done.append("fill")
    return Synthesis(
        np.clip(img + 0.5, 0, 255).astype(np.uint8), np.zeros(hd.grey.shape, bool), tuple(done)
    )
