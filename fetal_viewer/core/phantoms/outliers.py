"""Synthetic images that are *not* a fetal head view: outlier exposure for the domain guard.

The domain guard (:mod:`fetal_viewer.core.model.guard`) learns what the model's domain looks
like from its training frames; a distance to those alone lets most foreign ultrasound
through (docs/domain-guard.md). Its second part, a linear probe on the same features, also
needs to see what lies *outside*. A clinic has its own archive of other views and organs
(``guard fit --outliers``); the demo model and every model ``train`` writes get these
synthetic ones, made so that they share no anatomy with a head view:

* ``jigsaw``: a training frame cut into 3x3 to 6x6 blocks, shuffled and flipped: the scan's
  own speckle, gain and depth, with no head left in it;
* ``doppler``: a jigsaw with a colour-flow box of red and blue flow over it;
* ``organ``: a fan of speckle over fluid-filled chambers with thick echogenic walls in
  tissue (heart, bladder, stomach, vessels), some with colour flow;
* ``tissue``: a fan of speckle over smooth random tissue with dark fluid pockets;
* ``echo``: a wide sector with its apex at the top over heart-like anatomy (four chambers
  behind thin septa, or a ventricle's thick ring in short axis), with the overlays of an
  echocardiograph (ECG trace, grey bar, text);
* ``abdomen``: a curved-array (convex) fan over layered body wall, parenchyma and vessels,
  with text and calipers: an ultrasound view of the same kind of probe, without a head;
* ``slice``: a head in cross-section (MR, CT) on black, smooth, with folded cortex and
  ventricles: a head that is not ultrasound;
* ``tomography``: nested ellipses of flat grey levels without speckle (CT, MR), some in a
  false-colour map (nuclear medicine);
* ``bars``: colour bars, gradients and flat rectangles (test patterns, screen captures);
* ``text``: lines of text on a dark screen (reports, secondary captures);
* ``masks``: white blobs on black (segmentations).

:class:`SyntheticOutliers` is a lazy sequence: frame ``i`` is made when asked for, the same
for the same ``seed`` on every machine, its kind ``KINDS[i % len(KINDS)]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

Frame = NDArray[np.uint8]

#: the kinds of outlier, in the order frames cycle through them
KINDS = (
    "jigsaw",
    "doppler",
    "organ",
    "tissue",
    "echo",
    "abdomen",
    "slice",
    "tomography",
    "bars",
    "text",
    "masks",
)

_H, _W = 480, 640


class SyntheticOutliers(Sequence[Frame]):
    """``n`` synthetic non-head frames; the jigsaw kinds are cut from ``bases`` (the model's
    own training frames, indexed lazily), the others need none."""

    def __init__(self, bases: Sequence[Frame], n: int, seed: int = 0) -> None:
        self.bases = bases
        self.n = n
        self.seed = seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        i %= self.n
        rng = np.random.default_rng([self.seed, i])
        kind = KINDS[i % len(KINDS)]
        if kind in ("jigsaw", "doppler"):
            base = np.asarray(self.bases[int(rng.integers(len(self.bases)))], np.uint8)
            img = _jigsaw(base, rng)
            return _doppler(img, rng) if kind == "doppler" else img
        return _MAKERS[kind](rng)


def _jigsaw(img: Frame, rng: np.random.Generator) -> Frame:
    g = int(rng.choice([3, 4, 5, 6]))
    h, w = img.shape[0] // g, img.shape[1] // g
    blocks = [img[r * h : (r + 1) * h, c * w : (c + 1) * w] for r in range(g) for c in range(g)]
    order = rng.permutation(len(blocks))
    rows = []
    for r in range(g):
        row = []
        for c in range(g):
            b = blocks[order[r * g + c]]
            if rng.random() < 0.5:
                b = b[::-1]
            if rng.random() < 0.5:
                b = b[:, ::-1]
            row.append(b)
        rows.append(np.concatenate(row, axis=1))
    return np.ascontiguousarray(np.concatenate(rows, axis=0))


def _rgb(img: Frame) -> Frame:
    return img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2)


def _doppler(img: Frame, rng: np.random.Generator) -> Frame:
    """A colour-flow box of red (towards) and blue (away) flow over ``img``."""
    out = _rgb(img).copy()
    h, w = out.shape[:2]
    noise = rng.normal(0.0, 1.0, (max(h // 6, 2), max(w // 6, 2))).astype(np.float32)
    flow = np.asarray(cv2.resize(cv2.GaussianBlur(noise, (0, 0), 2.0), (w, h)), np.float32)
    flow /= float(np.abs(flow).max()) + 1e-6
    box = np.zeros((h, w), bool)
    y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
    box[y0 : y0 + int(h * rng.uniform(0.3, 0.6)), x0 : x0 + int(w * rng.uniform(0.3, 0.6))] = True
    red, blue = (flow > 0.25) & box, (flow < -0.25) & box
    out[red] = np.stack(
        [200 + 55 * flow[red], np.full(red.sum(), 40.0), np.full(red.sum(), 30.0)], axis=1
    ).clip(0, 255)
    out[blue] = np.stack(
        [np.full(blue.sum(), 20.0), 90 - 60 * flow[blue], np.full(blue.sum(), 230.0)], axis=1
    ).clip(0, 255)
    return out


def _speckled(tissue: NDArray[np.float32], rng: np.random.Generator) -> NDArray[np.float32]:
    h, w = tissue.shape
    speckle = rng.rayleigh(1.0, (h // 2, w // 3)).astype(np.float32)
    speckle = np.asarray(cv2.resize(cv2.GaussianBlur(speckle, (0, 0), 0.7), (w, h)), np.float32)
    depth = np.linspace(1.0, rng.uniform(0.4, 1.0), h, dtype=np.float32)[:, None]
    return np.asarray(cv2.GaussianBlur(tissue, (0, 0), rng.uniform(1.0, 3.0)), np.float32) * (
        speckle * depth
    )


def _fan(
    tissue: NDArray[np.float32],
    rng: np.random.Generator,
    half: float | None = None,
    convex: bool = False,
) -> Frame:
    """Speckle, depth attenuation and a field of view over a reflectivity map: a sector with
    its apex at the top (phased array) or, ``convex``, a fan whose top is an arc (curved array)."""
    h, w = tissue.shape
    img = _speckled(tissue, rng)
    sector = np.zeros((h, w), np.uint8)
    half = float(rng.uniform(30, 45)) if half is None else half
    if convex:
        inner = int(rng.uniform(0.25, 0.6) * h)
        apex = (w // 2, -inner + int(rng.uniform(0.0, 0.06) * h))
        radius = inner + int(rng.uniform(0.8, 0.95) * h)
        cv2.ellipse(sector, apex, (radius, radius), 90, -half, half, 255, -1)
        cv2.circle(sector, apex, inner, 0, -1)
    else:
        radius = int(rng.uniform(0.85, 1.0) * h)
        apex = (w // 2, int(rng.uniform(-0.05, 0.05) * h))
        cv2.ellipse(sector, apex, (radius, radius), 90, -half, half, 255, -1)
    img *= rng.uniform(0.6, 1.1) * (sector > 0)
    return (img.clip(0, 1) * 255).astype(np.uint8)


def _organ(rng: np.random.Generator) -> Frame:
    tissue = np.full((_H, _W), rng.uniform(0.15, 0.4), np.float32)
    field = cv2.GaussianBlur(rng.random((_H // 16, _W // 16)).astype(np.float32), (0, 0), 1.5)
    tissue += cv2.resize(field - field.mean(), (_W, _H)) * rng.uniform(0.3, 0.8)
    for _ in range(int(rng.integers(1, 5))):
        centre = (float(rng.uniform(0.25, 0.75) * _W), float(rng.uniform(0.25, 0.8) * _H))
        axes = (float(rng.uniform(0.2, 0.6) * _H), float(rng.uniform(0.2, 0.7) * _H))
        angle, wall = float(rng.uniform(0, 180)), float(rng.uniform(6, 30))
        outer = (axes[0] + wall, axes[1] + wall)
        cv2.ellipse(tissue, (centre, outer, angle), float(rng.uniform(0.5, 0.9)), -1)
        cv2.ellipse(tissue, (centre, axes, angle), float(rng.uniform(0.0, 0.08)), -1)
    for _ in range(int(rng.integers(0, 4))):
        x0, y0, x1, y1 = (rng.uniform(0, 1, 4) * [_W, _H, _W, _H]).astype(int)
        thickness = int(rng.integers(2, 6))
        cv2.line(tissue, (x0, y0), (x1, y1), float(rng.uniform(0.6, 1.0)), thickness)
    img = _fan(tissue, rng)
    return _doppler(img, rng) if rng.random() < 0.25 else img


def _tissue(rng: np.random.Generator) -> Frame:
    field = cv2.GaussianBlur(rng.random((_H // 8, _W // 8)).astype(np.float32), (0, 0), 2.0)
    field = cv2.resize((field - field.min()) / (float(np.ptp(field)) + 1e-6), (_W, _H))
    fluid = field < rng.uniform(0.2, 0.45)
    edges = cv2.morphologyEx(fluid.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((5, 5), np.uint8))
    tissue = 0.35 + 0.4 * field
    tissue[fluid] = 0.04
    tissue[edges > 0] = 0.9
    img = _fan(tissue.astype(np.float32), rng)
    return _doppler(img, rng) if rng.random() < 0.25 else img


def _field(
    rng: np.random.Generator, shape: tuple[int, int], cells: int, sigma: float
) -> NDArray[np.float32]:
    """Smooth random values in [0, 1] over ``shape``."""
    h, w = shape
    small = rng.random((max(h // cells, 2), max(w // cells, 2))).astype(np.float32)
    field = np.asarray(cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma), (w, h)), np.float32)
    return (field - field.min()) / (float(np.ptp(field)) + 1e-6)


def _overlays(img: Frame, rng: np.random.Generator, ecg: bool) -> Frame:
    """What a scanner burns into a frame: text, a grey bar, calipers, an ECG trace."""
    out = _rgb(img).copy() if ecg or rng.random() < 0.3 else img.copy()
    h, w = out.shape[:2]
    white = (235, 235, 235) if out.ndim == 3 else 235
    for _ in range(int(rng.integers(2, 9))):
        line = "".join(rng.choice(_CHARS, int(rng.integers(4, 14))))
        x = int(rng.choice([rng.integers(0, w // 5), rng.integers(3 * w // 4, w - 40)]))
        cv2.putText(
            out, line, (x, int(rng.integers(12, h))), cv2.FONT_HERSHEY_SIMPLEX, 0.4, white, 1
        )
    if rng.random() < 0.6:
        x0, y0 = int(rng.integers(2, 20)), int(rng.uniform(0.05, 0.2) * h)
        bar = np.linspace(255, 0, int(0.35 * h)).astype(np.uint8)[:, None]
        out[y0 : y0 + len(bar), x0 : x0 + 8] = bar[..., None] if out.ndim == 3 else bar
    for _ in range(int(rng.integers(0, 3))):
        cx, cy = int(rng.uniform(0.3, 0.7) * w), int(rng.uniform(0.2, 0.8) * h)
        cv2.drawMarker(out, (cx, cy), white, cv2.MARKER_CROSS, 10, 1)
    if ecg:
        y = int(0.9 * h)
        xs = np.arange(int(0.05 * w), int(0.6 * w))
        beat = int(rng.integers(40, 90))
        trace = y - (np.exp(-(((xs % beat) - beat // 2) ** 2) / 6.0) * 25).astype(int)
        colour = [(60, 220, 90), (60, 200, 220), (230, 220, 60)][int(rng.integers(3))]
        cv2.polylines(out, [np.stack([xs, trace], 1).astype(np.int32)], False, colour, 1)
    return out


def _echo(rng: np.random.Generator) -> Frame:
    tissue = 0.15 + 0.2 * _field(rng, (_H, _W), 12, 1.5)
    cx, top = _W / 2 + float(rng.normal(0, 20)), float(rng.uniform(0.1, 0.2) * _H)
    if rng.random() < 0.6:  # apical four chambers: ventricles above, atria below, thin septa
        muscle = (cx, _H * 0.45), (0.45 * _H, 0.75 * _H)
        cv2.ellipse(tissue, (muscle[0], muscle[1], float(rng.normal(0, 8))), 0.55, -1)
        split = float(rng.uniform(0.52, 0.62) * _H)
        for side in (-1, 1):
            for y0, y1 in ((top + 25, split - 6), (split + 6, _H * 0.85)):
                centre = (cx + side * float(rng.uniform(45, 70)), (y0 + y1) / 2)
                axes = (float(rng.uniform(60, 110)), max(y1 - y0, 20.0))
                cv2.ellipse(tissue, (centre, axes, float(rng.normal(side * 8, 5))), 0.03, -1)
    else:  # short axis: a ventricle's thick ring, a crescent beside it
        centre = (cx, float(rng.uniform(0.45, 0.6) * _H))
        r = float(rng.uniform(0.12, 0.2) * _H)
        cv2.circle(tissue, (int(centre[0]), int(centre[1])), int(r * 1.7), 0.55, -1)
        cv2.circle(tissue, (int(centre[0]), int(centre[1])), int(r), 0.03, -1)
        crescent = (int(centre[0] - 2.1 * r), int(centre[1] - 0.4 * r))
        cv2.ellipse(tissue, crescent, (int(0.9 * r), int(1.6 * r)), 30.0, 0, 360, 0.03, -1)
    for _ in range(int(rng.integers(1, 4))):  # valves and papillary muscles
        x, y = float(cx + rng.normal(0, 60)), float(rng.uniform(0.3, 0.8) * _H)
        cv2.line(
            tissue,
            (int(x), int(y)),
            (int(x + rng.normal(0, 25)), int(y + rng.normal(0, 25))),
            0.8,
            3,
        )
    img = _fan(tissue.astype(np.float32), rng, half=float(rng.uniform(38, 46)))
    img = _doppler(img, rng) if rng.random() < 0.2 else img
    return _overlays(img, rng, ecg=rng.random() < 0.8)


def _abdomen(rng: np.random.Generator) -> Frame:
    y = np.arange(_H, dtype=np.float32)[:, None]
    wall = float(rng.uniform(0.08, 0.25) * _H)
    wave = 8 * np.sin(np.arange(_W, dtype=np.float32)[None] / float(rng.uniform(60, 200)))
    tissue = 0.3 + 0.35 * _field(rng, (_H, _W), 10, 1.5)
    for k in range(int(rng.integers(2, 5))):  # body wall: fat and muscle layers
        band = np.abs(y - wall * (k + 1) / 4 - wave) < float(rng.uniform(2, 6))
        tissue[band] = float(rng.uniform(0.6, 0.95))
    organ = _field(rng, (_H, _W), 40, 1.0) > float(rng.uniform(0.45, 0.65))
    organ &= np.broadcast_to(y > wall, organ.shape)
    tissue[organ] = float(rng.uniform(0.2, 0.5)) + 0.15 * tissue[organ]
    for _ in range(int(rng.integers(1, 5))):  # vessels and ducts: dark tubes with bright walls
        xs = np.linspace(rng.uniform(0, 0.3), rng.uniform(0.7, 1.0), 30) * _W
        ys = wall + rng.uniform(0.1, 0.7) * _H + np.cumsum(rng.normal(0, 4, 30))
        pts = np.stack([xs, ys], 1).astype(np.int32)
        width = int(rng.integers(6, 30))
        cv2.polylines(tissue, [pts], False, 0.85, width + 4)
        cv2.polylines(tissue, [pts], False, 0.04, width)
    img = _fan(tissue.astype(np.float32), rng, half=float(rng.uniform(28, 40)), convex=True)
    img = _doppler(img, rng) if rng.random() < 0.15 else img
    return _overlays(img, rng, ecg=False)


def _slice(rng: np.random.Generator) -> Frame:
    side = int(rng.choice([256, 384, 512]))
    img = np.zeros((side, side), np.float32)
    c = (side / 2 + float(rng.normal(0, side / 30)), side / 2 + float(rng.normal(0, side / 30)))
    a, b = float(rng.uniform(0.32, 0.44) * side), float(rng.uniform(0.36, 0.46) * side)
    angle = float(rng.uniform(-15, 15))
    ct = rng.random() < 0.4
    scalp, skull = (0.35, 0.95) if ct else (0.85, float(rng.uniform(0.02, 0.1)))
    cv2.ellipse(img, (c, (2 * a, 2 * b), angle), scalp, -1)
    if rng.random() < 0.4:  # sagittal: the face and neck below the head
        cv2.ellipse(img, ((c[0] + a * 0.3, c[1] + b * 0.9), (1.2 * a, 1.1 * b), angle), scalp, -1)
    cv2.ellipse(img, (c, (1.9 * a, 1.9 * b), angle), skull, -1)
    brain = np.zeros_like(img)
    cv2.ellipse(brain, (c, (1.8 * a, 1.8 * b), angle), 1.0, -1)
    folds = _field(rng, (side, side), 6, 0.8)
    sulci = np.abs(folds - 0.5) < float(rng.uniform(0.03, 0.07))
    grey = float(rng.uniform(0.35, 0.6))
    img[brain > 0] = grey
    img[(brain > 0) & sulci] = grey * float(rng.uniform(0.3, 0.7))
    for sgn in (-1, 1):  # lateral ventricles
        v = (c[0] + sgn * a * 0.15, c[1] + float(rng.normal(0, b * 0.05)))
        cv2.ellipse(img, (v, (a * 0.15, b * 0.6), angle + sgn * 10), 0.05 if not ct else 0.1, -1)
    img = np.asarray(cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 1.5)), np.float32)
    img += rng.normal(0, rng.uniform(0.005, 0.03), img.shape).astype(np.float32)
    grey8 = (img.clip(0, 1) * 255).astype(np.uint8)
    return _overlays(grey8, rng, ecg=False) if rng.random() < 0.5 else grey8


def _tomography(rng: np.random.Generator) -> Frame:
    img = np.zeros((512, 512), np.float32)
    centre = (256 + float(rng.normal(0, 20)), 256 + float(rng.normal(0, 20)))
    a, b = float(rng.uniform(0.3, 0.47) * 512), float(rng.uniform(0.3, 0.47) * 512)
    bone = rng.random() < 0.5
    level = float(rng.uniform(0.8, 1.0) if bone else rng.uniform(0.3, 0.6))
    cv2.ellipse(img, (centre, (2 * a, 2 * b), float(rng.uniform(0, 180))), level, -1)
    if bone:
        cv2.ellipse(img, (centre, (1.86 * a, 1.86 * b), 0.0), float(rng.uniform(0.2, 0.5)), -1)
    for _ in range(int(rng.integers(3, 12))):
        c = (centre[0] + float(rng.normal(0, a / 3)), centre[1] + float(rng.normal(0, b / 3)))
        axes = (float(rng.uniform(10, a)), float(rng.uniform(10, b)))
        cv2.ellipse(img, (c, axes, float(rng.uniform(0, 180))), float(rng.uniform(0, 1)), -1)
    img = np.asarray(cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 3.0)), np.float32)
    img += rng.normal(0, rng.uniform(0, 0.03), img.shape).astype(np.float32)
    grey = (img.clip(0, 1) * 255).astype(np.uint8)
    if rng.random() < 0.25:
        cmap = int(rng.choice([cv2.COLORMAP_JET, cv2.COLORMAP_HOT, cv2.COLORMAP_BONE]))
        return np.asarray(cv2.cvtColor(cv2.applyColorMap(grey, cmap), cv2.COLOR_BGR2RGB), np.uint8)
    return grey


def _bars(rng: np.random.Generator) -> Frame:
    kind = int(rng.integers(0, 3))
    if kind == 0:
        n = int(rng.integers(4, 10))
        colours = rng.integers(0, 256, (n, 3)).astype(np.uint8)
        img = np.repeat(colours, _W // n + 1, axis=0)[:_W][None].repeat(_H, axis=0)
        return np.ascontiguousarray(img.transpose(1, 0, 2)) if rng.random() < 0.5 else img
    if kind == 1:
        x = np.linspace(0, 1, _W, dtype=np.float32)[None, :, None]
        y = np.linspace(0, 1, _H, dtype=np.float32)[:, None, None]
        c0, c1, c2 = rng.random((3, 3)).astype(np.float32)
        img = 127.5 * (c0 * x + c1 * y + c2 * (1 - x) * (1 - y))
        return np.broadcast_to(img.clip(0, 255), (_H, _W, 3)).astype(np.uint8)
    img = np.zeros((_H, _W, 3), np.uint8)
    img[:] = rng.integers(0, 80, 3)
    for _ in range(int(rng.integers(3, 15))):
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, [_W, _H, _W, _H]))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, -1)
    return img


_CHARS = list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 :.-/")


def _text(rng: np.random.Generator) -> Frame:
    img = np.full((_H, _W, 3), int(rng.integers(0, 60)), np.uint8)
    for _ in range(int(rng.integers(5, 25))):
        line = "".join(rng.choice(_CHARS, int(rng.integers(5, 40))))
        origin = (int(rng.integers(0, _W // 2)), int(rng.integers(15, _H)))
        colour = tuple(int(v) for v in rng.integers(120, 256, 3))
        font = cv2.FONT_HERSHEY_SIMPLEX
        cv2.putText(img, line, origin, font, float(rng.uniform(0.4, 1.2)), colour, 1)
    return img


def _masks(rng: np.random.Generator) -> Frame:
    side = int(rng.integers(256, 513))
    field = cv2.GaussianBlur(rng.random((side // 16, side // 16)).astype(np.float32), (0, 0), 1.2)
    field = cv2.resize(field, (side, side))
    inside = field > np.quantile(field, rng.uniform(0.6, 0.95))
    return (inside * 255).astype(np.uint8)


_MAKERS: dict[str, Callable[[np.random.Generator], Frame]] = {
    "organ": _organ,
    "tissue": _tissue,
    "echo": _echo,
    "abdomen": _abdomen,
    "slice": _slice,
    "tomography": _tomography,
    "bars": _bars,
    "text": _text,
    "masks": _masks,
}
