"""Where a model's Grad-CAM maximum lands relative to the lesion mask, for one class and center.

The pointing game only counts hits. This script measures the misses: for masked frames of one
class at one center (fixed seed), it takes the true class's heatmap exactly as ``evaluate``
does and reports how far its maximum lies from the mask, in heatmap cells (a cell is the field
of view's width over the grid side, 4 at 128 px), and where it lies against the mask's centre.
``--figure`` saves eight frames with the mask outline (green) and the maximum (red cross).

.venv/bin/python experiments/cam_peaks.py --model resources/models/demo/card.json \\
    --manifest out/demo-phantoms/manifest.csv --center D --label anencephaly --frames 40
"""

from __future__ import annotations

import argparse
import json
import random

import cv2
import numpy as np

from fetal_viewer.core.cam.gradcam import grid_side
from fetal_viewer.core.model.checkpoint import load_checkpoint
from fetal_viewer.core.model.predictor import Predictor
from fetal_viewer.core.training.data import read_frame_mask, read_record_frame
from fetal_viewer.core.training.manifest import read_manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="model card (JSON)")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--center", default="D")
    ap.add_argument("--label", default="anencephaly")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figure", help="PNG of eight frames with mask and maximum")
    args = ap.parse_args()

    loaded = load_checkpoint(args.model)
    classes = list(loaded.card.classes)
    rows = [
        r
        for r in read_manifest(args.manifest, classes).records
        if r.center == args.center and r.label == args.label and r.mask_path is not None
    ]
    sample = random.Random(args.seed).sample(rows, min(args.frames, len(rows)))
    frames = [read_record_frame(r) for r in sample]
    pred = Predictor(loaded, backend="torch").predict(frames, with_cam=True)
    k, side = classes.index(args.label), grid_side(loaded.card.spec.input_size)
    away, offset, tiles = [], [], []
    for j, r in enumerate(sample):
        heat = pred.heatmap(j, k)
        assert r.mask_path is not None
        mask = read_frame_mask(r.mask_path, heat.shape).astype(bool)
        y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
        x0, _, x1, _ = pred.geometries[j].box
        cell = (x1 - x0) / side
        outside = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
        ys, xs = np.nonzero(mask)
        away.append(float(outside[y, x]) / cell)
        offset.append(((y - ys.mean()) / cell, (x - xs.mean()) / cell))
        if args.figure and len(tiles) < 8:
            f = frames[j].copy()
            contours, _ = cv2.findContours(
                mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
            )
            cv2.drawContours(f, contours, -1, (0, 255, 0), 2)
            cv2.drawMarker(f, (int(x), int(y)), (255, 0, 0), cv2.MARKER_CROSS, 30, 3)
            bx0, by0, bx1, by1 = pred.geometries[j].box
            tiles.append(cv2.resize(f[by0:by1, bx0:bx1], (320, 240)))
    d, o = np.array(away), np.array(offset)
    figures = {
        "frames": len(sample),
        "hit": round(float(np.mean(d == 0)), 3),
        "within_half_cell": round(float(np.mean(d <= 0.5)), 3),
        "within_one_cell": round(float(np.mean(d <= 1.0)), 3),
        "median_cells_from_mask": round(float(np.median(d)), 2),
        "mean_rows_below_mask_centre_cells": round(float(o[:, 0].mean()), 2),
        "mean_cols_right_of_mask_centre_cells": round(float(o[:, 1].mean()), 2),
    }
    if tiles:
        while len(tiles) % 4:
            tiles.append(np.zeros_like(tiles[0]))
        grid = np.vstack([np.hstack(tiles[i : i + 4]) for i in range(0, len(tiles), 4)])
        cv2.imwrite(args.figure, np.ascontiguousarray(grid[:, :, ::-1]))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
