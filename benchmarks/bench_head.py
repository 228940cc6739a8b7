"""Head finder benchmark: ``detect_head`` against peers measured in the same run.

On drawn 800 x 540 frames (speckled skull rings of several sizes, as in the tests), OpenCV
on one thread, interleaved so machine load hits all alike:

1. ``detect_head`` (goal: at most ~150 ms of CPU per frame on one core);
2. OpenCV's ``HoughCircles`` (HOUGH_GRADIENT_ALT) on the same frame at the same working
   size: a classical circle finder, the cheapest peer that answers a similar question;
3. ``find_fov`` alone: what the model's preprocessing spends finding the fan.

Real-scan timings (999 HC18 frames) are in ``experiments/hc18_headfind.py``. The last
printed line is one JSON object of the figures.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from fetal_viewer.core.fov import find_fov
from fetal_viewer.core.measure.head import detect_head

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # tests.core.test_head draws the rings
from tests.core.test_head import ring_frame  # noqa: E402


def hough(frame: np.ndarray) -> object:
    small = cv2.resize(frame, (400, 270), interpolation=cv2.INTER_AREA)
    blur = cv2.GaussianBlur(small, (0, 0), 2.0)
    return cv2.HoughCircles(blur, cv2.HOUGH_GRADIENT_ALT, 1.5, 20, param1=80, param2=0.6)


def main() -> None:
    cv2.setNumThreads(1)
    frames = [
        ring_frame(540, 800, 400 + 30 * k, 280 - 10 * k, 120 + 40 * k, 95 + 32 * k, 20 * k, seed=k)
        for k in range(4)
    ]
    peers: dict[str, Callable[[np.ndarray], object]] = {
        "detect_head": detect_head,
        "hough_circles": hough,
        "find_fov": find_fov,
    }
    wall: dict[str, list[float]] = {k: [] for k in peers}
    cpu: dict[str, list[float]] = {k: [] for k in peers}
    for f in frames:  # warm up
        for fn in peers.values():
            fn(f)
    for _ in range(5):
        for f in frames:
            for name, fn in peers.items():
                t, c = time.perf_counter(), time.process_time()
                fn(f)
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
    found = sum(detect_head(f).fit is not None for f in frames)
    fastest = min(float(np.median(cpu[k])) for k in peers)
    doc: dict[str, object] = {"frames": len(frames), "heads_found": found}
    for name in peers:
        med_cpu, med_wall = float(np.median(cpu[name])), float(np.median(wall[name]))
        doc[name] = {
            "cpu_ms": round(1000 * med_cpu, 1),
            "wall_ms": round(1000 * med_wall, 1),
            "cpu_ratio_to_fastest": round(med_cpu / fastest, 2),
        }
        print(
            f"{name:14s} CPU {1000 * med_cpu:6.1f} ms  wall {1000 * med_wall:6.1f} ms  "
            f"{med_cpu / fastest:5.1f}x the fastest"
        )
    doc["detect_head_within_goal"] = 1000 * float(np.median(cpu["detect_head"])) <= 150.0
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
