"""Zoomed views: each patient of a ``phantoms --backgrounds`` data set seen close up.

Scans shared between centers, in teaching files and in public collections are often not the
scanner's whole frame: the head is cropped out of it, turned, and resampled to a square, so the
skull fills most of the image and the fan's edges cut across its corners. A model that has only
seen whole frames meets these as foreign images (its domain guard withholds them, or it
answers them badly). ``fetal-viewer phantoms --zoom-views DIR`` runs :func:`zoom_views`: for
every patient of the data set in ``DIR`` it writes one such view of the same (normal or
synthesised) image and its lesion mask, using the skull ellipse the generator recorded in
``synthesis.csv``:

* a square around the head, ``ZOOM`` times the semi-major axis on each side of its centre
  (further when the lesion mask reaches beyond it, so a protruding sac is never cut off),
  the centre moved by up to ``SHIFT`` of the semi-major axis;
* turned by up to ``TURN_DEG`` either way, and resampled to ``SIZE`` pixels square with its
  width and height scaled differently (their ratio up to ``exp(STRETCH)`` either way: a
  frame resized to a square without keeping its aspect, as collections often are); whatever
  lies outside the scan is black.

A view keeps its patient's class and subject (``group``); its patient id gets a ``-Z``
suffix, so a split by subject keeps a scan and its views on one side.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from fetal_viewer.core.phantoms.backgrounds import _write_csv
from fetal_viewer.core.phantoms.dataset import MANIFEST_COLUMNS, _write_png
from fetal_viewer.core.progress import CancelToken, ProgressFn, no_progress
from fetal_viewer.errors import DataError

#: half the side of the square, in semi-major axes of the head
ZOOM = (1.15, 2.2)
#: how far the square's centre is moved from the head's, in semi-major axes
SHIFT = 0.12
#: the most the view is turned either way, degrees
TURN_DEG = 30.0
#: the largest log ratio of the view's horizontal to vertical scale
STRETCH = 0.4
#: the view's side, pixels
SIZE = 512
#: the patient id suffix of a view
SUFFIX = "-Z"


def view_matrix(
    head: dict[str, float],
    mask: np.ndarray | None,
    rng: np.random.Generator,
    size: int = SIZE,
) -> np.ndarray:
    """The 2 x 3 affine matrix from scan pixels to the view's (see the module doc)."""
    a = float(head["a"])
    cx = float(head["cx"]) + rng.uniform(-SHIFT, SHIFT) * a
    cy = float(head["cy"]) + rng.uniform(-SHIFT, SHIFT) * a
    half = rng.uniform(*ZOOM) * a
    turn = np.deg2rad(rng.uniform(-TURN_DEG, TURN_DEG))
    aspect = np.exp(rng.uniform(-STRETCH, STRETCH))
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    rot = np.diag([np.sqrt(aspect), 1.0 / np.sqrt(aspect)]) @ rot
    if mask is not None and mask.any():
        ys, xs = np.nonzero(mask)
        # the lesion's reach from the centre along the view's axes, plus a margin
        reach = np.abs(rot @ np.vstack([xs - cx, ys - cy])).max()
        half = max(half, 1.08 * float(reach))
    scale = (size / 2.0) / half
    linear = scale * rot
    offset = np.array([size / 2.0, size / 2.0]) - linear @ np.array([cx, cy])
    return np.hstack([linear, offset[:, None]])


def zoom_views(
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    seed: int = 0,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> Path:
    """Write the zoomed views of the data set in ``src_dir`` (its ``manifest.csv`` and
    ``synthesis.csv``) to ``out_dir``; return the new manifest's path."""
    import cv2

    from fetal_viewer.core.io import read_frame

    src = Path(src_dir)
    manifest, synthesis = src / "manifest.csv", src / "synthesis.csv"
    if not (manifest.is_file() and synthesis.is_file()):
        raise DataError(
            "This folder is not a data set made with phantoms --backgrounds.",
            why="Its manifest.csv or synthesis.csv (the skull ellipse of each patient) is missing.",
            fix="Pass the --out folder of a fetal-viewer phantoms --backgrounds run.",
            path=src,
        )
    with synthesis.open(newline="", encoding="utf-8") as fh:
        heads = {
            r["patient_id"]: {k[5:]: float(v) for k, v in r.items() if k.startswith("head_")}
            for r in csv.DictReader(fh)
        }
    with manifest.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = np.random.SeedSequence(seed)
    written: list[dict[str, str]] = []
    progress(0, len(rows), "zoomed views")
    for i, (row, ss) in enumerate(zip(rows, root.spawn(len(rows)), strict=True), 1):
        if cancel is not None:
            cancel.raise_if_cancelled()
        head = heads.get(row["patient_id"])
        if head is None:
            raise DataError(
                f"Patient {row['patient_id']} has no skull ellipse in synthesis.csv.",
                fix="Generate the data set again with phantoms --backgrounds.",
                path=synthesis,
            )
        image = np.asarray(read_frame(src / row["path"], int(row["frame"] or 0)))
        mask = None
        if row.get("mask_path"):
            mask = cv2.imread(str(src / row["mask_path"]), cv2.IMREAD_GRAYSCALE)
            if mask is None:
                raise DataError(
                    f"The lesion mask of patient {row['patient_id']} could not be read.",
                    fix="Generate the data set again with phantoms --backgrounds.",
                    path=src / row["mask_path"],
                )
        matrix = view_matrix(head, mask, np.random.default_rng(ss))
        pid = row["patient_id"] + SUFFIX
        rel = Path(row["center"]) / pid / "f000.png"
        scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
        if scale < 0.9:  # shrinking: smooth first, as resampling software does
            image = cv2.GaussianBlur(image, (0, 0), 0.4 / scale)
        view = cv2.warpAffine(image, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
        _write_png(out / "png" / rel, np.asarray(view))
        mask_rel = ""
        if mask is not None:
            moved = cv2.warpAffine(mask, matrix, (SIZE, SIZE), flags=cv2.INTER_NEAREST)
            if moved.any():
                mask_rel = (Path("masks") / rel).as_posix()
                _write_png(out / mask_rel, np.asarray(moved))
        written.append(
            row
            | {
                "path": (Path("png") / rel).as_posix(),
                "frame": "0",
                "patient_id": pid,
                "mask_path": mask_rel,
            }
        )
        progress(i, len(rows), "zoomed views")
    _write_csv(out / "manifest.csv", [*MANIFEST_COLUMNS, "group"], written)
    return out / "manifest.csv"
