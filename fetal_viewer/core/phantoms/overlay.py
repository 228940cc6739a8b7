"""What a scanner burns into the image around the fan: grey-scale bar, depth ticks, focus
marker, orientation mark and text (scanner, patient, date, settings), in the layout of the
center's style. The patient name and ID are always synthetic (``PHANTOM^CASE0007``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.phantoms.bmode import SectorGeometry
from fetal_viewer.core.phantoms.styles import ScannerStyle


@dataclass(frozen=True)
class Annotation:
    """Burned-in text of one frame. Dates are strings as the scanner prints them."""

    patient_name: str = "PHANTOM^CASE0000"
    patient_id: str = "PHANTOM-0000"
    date: str = "2001-01-01"
    time: str = "00:00:00"
    ga_text: str = ""
    frame_text: str = ""


def _put(
    img: NDArray[np.uint8], text: str, org: tuple[int, int], scale: float, rgb: tuple[int, int, int]
) -> None:
    import cv2

    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, rgb, 1, cv2.LINE_AA)


def draw_overlay(
    img: NDArray[np.uint8],
    geom: SectorGeometry,
    style: ScannerStyle,
    ann: Annotation,
    gain: int,
) -> None:
    """Burn the annotations into ``img`` (RGB, modified in place)."""
    import cv2

    h, w = img.shape[:2]
    scale = max(0.22, 0.42 * h / 600.0)
    lh = max(7, round(22 * h / 600.0))
    col = style.text_rgb
    depth_cm = geom.depth_mm / 10.0
    left_lines = [
        style.model,
        f"C{style.freq_mhz:.1f}",
        f"{style.frame_rate_hz:.0f}Hz",
        f"D {depth_cm:.0f}cm",
        f"G {gain}",
        f"DR {style.dynamic_range_db:.0f}",
    ]
    right_lines = [ann.patient_name, ann.patient_id, ann.date, ann.time]
    if ann.ga_text:
        right_lines.append(ann.ga_text)
    if ann.frame_text:
        left_lines.append(ann.frame_text)

    if style.layout == "header":
        band = max(6, round(0.09 * h))
        img[:band] = (np.array([20, 40, 80], np.uint8))[None, None, :]
        _put(img, "PHANTOM", (round(0.01 * w), round(band * 0.45)), scale * 1.1, (255, 255, 255))
        _put(
            img,
            f"{ann.patient_name}  {ann.patient_id}",
            (round(0.16 * w), round(band * 0.45)),
            scale,
            col,
        )
        _put(img, f"{ann.date}  {ann.time}", (round(0.62 * w), round(band * 0.45)), scale, col)
        _put(img, f"{style.model}  {ann.ga_text}", (round(0.16 * w), round(band * 0.9)), scale, col)
        for i, t in enumerate(left_lines[1:]):
            _put(img, t, (round(0.005 * w), band + lh * (i + 1)), scale, col)
    elif style.layout == "corners":
        for i, t in enumerate(right_lines[:2] + left_lines[:1]):
            _put(img, t, (round(0.01 * w), lh * (i + 1)), scale, col)
        for i, t in enumerate(right_lines[2:] + left_lines[1:]):
            _put(img, t, (round(0.80 * w), lh * (i + 1)), scale, col)
    elif style.layout == "left":
        for i, t in enumerate([*right_lines, "", *left_lines]):
            _put(img, t, (round(0.005 * w), lh * (i + 1)), scale, col)
    elif style.layout == "bottom":
        y = h - round(0.1 * h)
        _put(img, "   ".join(right_lines), (round(0.02 * w), y), scale, col)
        _put(img, "   ".join(left_lines), (round(0.02 * w), y + lh), scale, col)
    else:  # right column
        for i, t in enumerate([*right_lines, "", *left_lines]):
            _put(img, t, (round(0.81 * w), lh * (i + 1)), scale, col)

    # grey-scale bar
    bar_h = max(8, round(0.28 * h))
    bar_w = max(2, round(0.014 * w))
    y0 = round(0.16 * h)
    x0 = round(0.965 * w) - bar_w if style.bar_side == "right" else round(0.012 * w)
    if style.layout == "left" and style.bar_side == "left":
        x0 = round(0.17 * w)
    ramp = np.linspace(255, 0, bar_h).astype(np.uint8)
    img[y0 : y0 + bar_h, x0 : x0 + bar_w] = ramp[:, None, None]

    # depth ticks along the right edge of the fan, every centimetre
    s = geom.px_per_mm
    r0 = geom.r0_px / s
    tick = max(2, round(0.008 * w))
    th = geom.half_angle + 0.03
    for k in range(int(depth_cm) + 1):
        x, y = geom.to_px(r0 + 10.0 * k, th)
        xi, yi = round(x), round(y)
        if 0 <= yi < h and 0 <= xi < w - tick:
            length = tick * (2 if k % 5 == 0 else 1)
            cv2.line(img, (xi, yi), (min(w - 1, xi + length), yi), col, 1)
    # focus marker (triangle) at two thirds of the depth
    fx, fy = geom.to_px(r0 + 0.6 * geom.depth_mm, th + 0.02)
    tri = np.array([[fx + tick * 2, fy - tick], [fx + tick * 2, fy + tick], [fx + 2, fy]])
    cv2.fillPoly(img, [np.round(tri).astype(np.int32)], col)
    # orientation mark beside the top-left corner of the fan
    ox, oy = geom.to_px(r0, -geom.half_angle - 0.05)
    cv2.circle(img, (round(ox), round(oy)), max(2, round(0.008 * h)), col, -1, cv2.LINE_AA)
