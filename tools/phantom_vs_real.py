"""Draw docs/images/phantom-vs-real.png: real samples (top) beside phantoms of the same class.

The real images are read from ``../shared/real-samples`` (CC BY 4.0, see the README's licence
section); they are never copied into the project, only drawn small into this figure.

.venv/bin/python tools/phantom_vs_real.py [REAL_SAMPLES_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from fetal_viewer.core.phantoms import render

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "docs" / "images" / "phantom-vs-real.png"
REAL = {
    "normal": "hc18/010_HC.png",
    "encephalocele": "brain_anomaly/encephalocele-20a.jpg",
    "holoprosencephaly": "brain_anomaly/holoprosencephaly-17a.jpg",
}
PHANTOM = {"normal": ("A", 1), "encephalocele": ("B", 2), "holoprosencephaly": ("C", 3)}
TILE_W, TILE_H, TITLE_H = 240, 190, 22
CREDIT = (
    "Real (top): HC18, van den Heuvel et al. PLoS ONE 2018, Zenodo 1327317, CC BY 4.0;",
    "Roboflow Universe 'Fetal Brain Abnormalities Ultrasound' v1, CC BY 4.0. "
    "Bottom: fetal-viewer phantoms.",
)


def tile(image: np.ndarray, title: str) -> np.ndarray:
    h, w = image.shape[:2]
    scale = min(TILE_W / w, TILE_H / h)
    small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    out = np.zeros((TILE_H + TITLE_H, TILE_W, 3), np.uint8)
    top, left = TITLE_H + (TILE_H - small.shape[0]) // 2, (TILE_W - small.shape[1]) // 2
    out[top : top + small.shape[0], left : left + small.shape[1]] = small
    cv2.putText(
        out, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA
    )
    return out


def main() -> None:
    real_dir = (
        Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[1] / "shared" / "real-samples"
    )
    real, fake = [], []
    for label, name in REAL.items():
        bgr = cv2.imread(str(real_dir / name), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit(f"cannot read {real_dir / name}: pass the real-samples folder")
        real.append(tile(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), f"real {label}"))
        center, seed = PHANTOM[label]
        phantom = render(label, 24.0, center, np.random.default_rng(seed)).image
        fake.append(tile(phantom, f"phantom {label} / center {center}"))
    credit = np.zeros((44, TILE_W * len(REAL), 3), np.uint8)
    for k, line in enumerate(CREDIT):
        cv2.putText(
            credit,
            line,
            (4, 16 + 20 * k),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            (220, 220, 220),
            1,
            cv2.LINE_AA,
        )
    figure = np.vstack([np.hstack(real), np.hstack(fake), credit])
    cv2.imwrite(str(OUT), cv2.cvtColor(figure, cv2.COLOR_RGB2BGR))
    print("saved", OUT, figure.shape)


if __name__ == "__main__":
    main()
