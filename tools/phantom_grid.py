"""Draw docs/images/phantom-grid.png: one phantom per class (rows) and center (columns).

.venv/bin/python tools/phantom_grid.py
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fetal_viewer.core.model.labels import CLASSES
from fetal_viewer.core.phantoms import render

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "phantom-grid.png"
CENTERS = "ABCD"
TILE_W, TILE_H, TITLE_H = 240, 196, 22


def tile(label: str, center: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = render(label, float(rng.uniform(20, 30)), center, rng).image
    h, w = image.shape[:2]
    scale = min(TILE_W / w, TILE_H / h)
    small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    out = np.zeros((TILE_H + TITLE_H, TILE_W, 3), np.uint8)
    out[TITLE_H : TITLE_H + small.shape[0], : small.shape[1]] = small
    cv2.putText(
        out,
        f"{label} / center {center}",
        (4, 16),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.45,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    return out


def main() -> None:
    rows = [
        np.hstack([tile(label, c, 100 * i + j) for j, c in enumerate(CENTERS)])
        for i, label in enumerate(CLASSES)
    ]
    grid = np.vstack(rows)
    cv2.imwrite(str(OUT), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print("saved", OUT, grid.shape)


if __name__ == "__main__":
    main()
