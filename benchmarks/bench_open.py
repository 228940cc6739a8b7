"""Time to the first displayed frame and to all frames, against pydicom's whole-file decode.

For two JPEG baseline cines, ``color3d_jpeg_baseline.dcm`` (120 frames, 480 x 640, from
pydicom-data) and a generated 200-frame 600 x 800 one, it measures in the same run:

- baseline: ``pydicom.dcmread(path).pixel_array`` (the whole file, every frame, RGB);
- first: ``open_path(path)`` + ``series.frame(0)`` (what the viewer waits for);
- all: ``open_path(path)`` + every ``series.frame(i)`` in turn.

Ratios are ours / baseline (goal: first < 1/100, all < 1/8). Each timing is the best
of ``--repeat`` runs. The last line printed is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # tests.factories writes the generated cine


def make_cine(path: Path, n_frames: int = 200, rows: int = 600, cols: int = 800) -> Path:
    """An encapsulated JPEG baseline (YBR_FULL_422) cine of a moving synthetic sector."""
    import cv2
    from pydicom.uid import generate_uid

    from tests.factories import write_jpeg_cine

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    speckle = rng.gamma(2.0, 40.0, (rows, cols)).astype(np.float32)
    images = []
    for i in range(n_frames):
        r = np.hypot(x - cols / 2 - 40 * np.sin(i / 10), y - rows / 2)
        gray = np.clip(speckle * np.exp(-(((r - 180) / 60) ** 2)) + 10, 0, 255).astype(np.uint8)
        bgr = cv2.merge([gray, gray, np.clip(gray.astype(np.int16) + 30, 0, 255).astype(np.uint8)])
        cv2.putText(bgr, f"frame {i}", (20, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return write_jpeg_cine(
        path,
        images,
        quality=90,
        PatientID="BENCH",
        StudyInstanceUID=generate_uid(),
        FrameTime=33.3,
    )


def best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_file(path: Path, repeat: int) -> dict[str, float]:
    import pydicom

    from fetal_viewer.core.io import open_path

    def baseline() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = pydicom.dcmread(path).pixel_array
        assert arr.ndim == 4

    def first() -> None:
        (series,) = open_path(path).series
        series.frame(0)

    def every() -> None:
        (series,) = open_path(path).series
        for i in range(series.n_frames):
            series.frame(i)

    t_base = best_of(baseline, repeat)
    t_first = best_of(first, max(repeat, 5))
    t_all = best_of(every, repeat)
    return {
        "pydicom_pixel_array_s": round(t_base, 4),
        "first_frame_s": round(t_first, 5),
        "all_frames_s": round(t_all, 4),
        "first_ratio": round(t_first / t_base, 5),
        "all_ratio": round(t_all / t_base, 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    args = parser.parse_args()
    import data_store  # type: ignore[import-not-found]  # pydicom-data

    color3d = Path(data_store.__file__).resolve().parent / "data" / "color3d_jpeg_baseline.dcm"
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        generated = make_cine(Path(tmp) / "cine_200x600x800.dcm")
        for name, path in (("color3d_120", color3d), ("generated_200", generated)):
            result = bench_file(path, args.repeat)
            figures[name] = result
            print(
                f"{name}: pydicom whole file {result['pydicom_pixel_array_s']:.3f} s; first frame "
                f"{result['first_frame_s'] * 1000:.1f} ms (ratio {result['first_ratio']:.4f}, goal "
                f"< 0.01); all frames {result['all_frames_s']:.3f} s (ratio "
                f"{result['all_ratio']:.3f}, goal < 0.125)"
            )
    figures["goals_met"] = all(
        isinstance(r, dict) and r["first_ratio"] < 0.01 and r["all_ratio"] < 0.125
        for r in figures.values()
    )
    print(json.dumps({"bench": "open", **figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
