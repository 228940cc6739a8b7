"""How visible a class's lesion is in a patient's frames, against whether the patient was missed.

For every patient of one class in an ``evaluate`` run's predictions, each masked frame's lesion
contrast is ``|ln((mean grey inside the mask + 1) / (mean grey in a ring around it + 1))|``,
both taken inside the ultrasound fan (the frame as stored, 8-bit grey). A patient's contrast is
that of its most visible frame. Patients are then binned by contrast and each bin's misses
counted (the patient's frames aggregated as ``evaluate`` scores them). No model runs.

.venv/bin/python experiments/lesion_contrast.py --manifest out/demo-phantoms/manifest.csv \\
    --predictions out/loco-shipped/gradcam/predictions.csv --label encephalocele
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import cv2
import numpy as np

from fetal_viewer.core.model.labels import CLASSES
from fetal_viewer.core.training.data import read_mask, read_record_frame
from fetal_viewer.core.training.evaluate import _manifest_paths
from fetal_viewer.core.training.manifest import Record, read_manifest
from fetal_viewer.core.training.metrics import by_patient
from fetal_viewer.core.training.summary import PredictionTable

EDGES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, float("inf"))


def contrast(record: Record, ring_px: int) -> float | None:
    """The lesion's contrast in one frame, or None when it has no mask inside the fan."""
    if record.mask_path is None:
        return None
    grey = cv2.cvtColor(read_record_frame(record), cv2.COLOR_RGB2GRAY)
    mask = read_mask(record.mask_path)
    fan = cv2.medianBlur(grey, 5) > 2  # speckle has dark pixels; outside the fan is black
    inside = mask & fan
    kernel = np.ones((2 * ring_px + 1, 2 * ring_px + 1), np.uint8)
    ring = (cv2.dilate(mask.astype(np.uint8), kernel) > 0) & ~mask & fan
    if not inside.any() or not ring.any():
        return None
    g = grey.astype(np.float64)
    return float(abs(np.log((g[inside].mean() + 1.0) / (g[ring].mean() + 1.0))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", required=True, help="the manifest the run scored")
    ap.add_argument("--predictions", required=True, help="an evaluate run's predictions.csv")
    ap.add_argument("--label", default="encephalocele", choices=CLASSES)
    ap.add_argument("--ring", type=int, default=10, help="ring width around the mask, pixels")
    args = ap.parse_args()

    manifest = read_manifest(args.manifest, CLASSES)
    names = _manifest_paths(manifest, manifest.records)  # as predictions.csv names them
    by_path = {(n, r.frame): r for n, r in zip(names, manifest.records)}
    table = PredictionTable.read_csv(Path(args.predictions), CLASSES)
    pt = by_patient(table.patient_ids, table.y, table.probs)  # as evaluate scores patients
    want = CLASSES.index(args.label)
    patients = []  # (contrast of the most visible frame, missed, center)
    for probs, y, rows in zip(pt.probs, pt.y, pt.rows, strict=True):
        if y != want:
            continue
        frames = [by_path[(table.paths[i], table.frames[i])] for i in rows]
        seen = [c for c in (contrast(r, args.ring) for r in frames) if c is not None]
        if seen:
            patients.append((max(seen), int(np.argmax(probs)) != want, table.centers[rows[0]]))

    bins = []
    print(f"{args.label}: {len(patients)} patients with a masked frame inside the fan")
    print(
        "contrast of the most visible frame | patients | missed | miss rate | missed/patients by center"
    )
    for lo, hi in itertools.pairwise(EDGES):
        inb = [p for p in patients if lo <= p[0] < hi]
        miss = [p for p in inb if p[1]]
        centers = {
            c: f"{sum(p[2] == c for p in miss)}/{sum(p[2] == c for p in inb)}"
            for c in sorted({p[2] for p in inb})
        }
        rate = len(miss) / len(inb) if inb else None
        bins.append(
            {
                "from": lo,
                "to": hi if hi < EDGES[-1] else None,
                "patients": len(inb),
                "missed": len(miss),
            }
        )
        shown = "-" if rate is None else f"{rate:.3f}"
        print(f"{lo:.2f}-{hi:.2f} | {len(inb)} | {len(miss)} | {shown} | {centers}")
    print(json.dumps({"label": args.label, "ring_px": args.ring, "bins": bins}))


if __name__ == "__main__":
    main()
