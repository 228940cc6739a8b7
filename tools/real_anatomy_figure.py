"""docs/images/real-anatomy.png: real normal HC18 scans and the four anomalies synthesised
into each of them (``phantoms --backgrounds``), with the lesion masks outlined.

    .venv/bin/python tools/real_anatomy_figure.py ../shared/hc18-train/images \\
        250_HC.png 400_HC.png 600_HC.png 800_HC.png

HC18 (van den Heuvel et al., PLoS ONE 2018; Zenodo 1327317) is CC BY 4.0: the figure says so.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from fetal_viewer.core.measure.head import find_head
from fetal_viewer.core.phantoms.onreal import LESIONS, sham, synthesise

TILE = (300, 204)
COLUMNS = ("real normal (as scanned)", "normal, sham-edited", *LESIONS)


def main() -> None:
    folder, names = Path(sys.argv[1]), sys.argv[2:]
    rows = []
    for k, name in enumerate(names):
        grey = cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE)
        head = find_head(grey)
        if head is None:
            print(f"{name}: no head found, skipped")
            continue
        rng = np.random.default_rng(1000 + k)
        made = [sham(grey, head, rng, 2), *(synthesise(grey, head, lab, rng) for lab in LESIONS)]
        tiles = [cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)]
        for m in made:
            tile = cv2.cvtColor(m.image, cv2.COLOR_GRAY2BGR)
            contours, _ = cv2.findContours(
                m.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
            )
            cv2.drawContours(tile, contours, -1, (0, 220, 255), 2)
            tiles.append(tile)
        rows.append(np.hstack([cv2.resize(t, TILE, interpolation=cv2.INTER_AREA) for t in tiles]))
    grid = np.vstack(rows)
    head = np.full((28, grid.shape[1], 3), 24, np.uint8)
    for j, title in enumerate(COLUMNS):
        cv2.putText(head, title, (j * TILE[0] + 6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (230, 230, 230), 1, cv2.LINE_AA)  # fmt: skip
    foot = np.full((26, grid.shape[1], 3), 24, np.uint8)
    cv2.putText(
        foot,
        "Scans: HC18, van den Heuvel et al. PLoS ONE 2018, Zenodo 1327317, CC BY 4.0. Lesions "
        "(yellow: mask) synthesised by fetal-viewer; not real anomalies.",
        (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (200, 200, 200), 1, cv2.LINE_AA,
    )  # fmt: skip
    out = Path(__file__).resolve().parent.parent / "docs" / "images" / "real-anatomy.png"
    cv2.imwrite(str(out), np.vstack([head, grid, foot]), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(out, out.stat().st_size // 1024, "KB")


if __name__ == "__main__":
    main()
