"""A check set for scans that were resized to a square without keeping their aspect (as
public collections publish them): every row of a manifest, its frame resized to SIZE x SIZE
and written as JPEG; the lesion masks resized with it (docs/real-anatomy.md)::

    .venv/bin/python experiments/square_resample.py out/hc18-synth/manifest_heldout.csv \\
        out/hc18-square
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np

from fetal_viewer.core.io import read_frame

SIZE = 640
QUALITY = 85


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest")
    ap.add_argument("out")
    args = ap.parse_args()
    src = Path(args.manifest).parent
    out = Path(args.out)
    with open(args.manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        image = np.asarray(read_frame(src / row["path"], int(row.get("frame") or 0)))
        square = cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        rel = Path("jpg") / Path(row["path"]).with_suffix(".jpg").relative_to("png")
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out / rel), square[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
        row["path"] = rel.as_posix()
        row["frame"] = "0"
        if row.get("mask_path"):
            mask = cv2.imread(str(src / row["mask_path"]), cv2.IMREAD_GRAYSCALE)
            assert mask is not None, row["mask_path"]
            moved = cv2.resize(mask, (SIZE, SIZE), interpolation=cv2.INTER_NEAREST)
            (out / row["mask_path"]).parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out / row["mask_path"]), moved)
    with open(out / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


if __name__ == "__main__":
    main()
