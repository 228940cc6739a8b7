"""Phantom generation speed: frames per second at 224x224 and at 800x600 (W x H).

Baseline measured in the same run: drawing a plain speckle image of the same size
(complex Gaussian noise through the same PSF blur, magnitude, log compression) -- the
least any B-mode simulator must do. The figures are frames/s and the ratio of the time
per phantom to the time per plain speckle image. Last line: one JSON object.
"""

from __future__ import annotations

import json
import math
import time

import cv2
import numpy as np

from fetal_viewer.core.model.labels import CLASSES
from fetal_viewer.core.phantoms import STYLES, render


def plain_speckle(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    re = cv2.GaussianBlur(rng.standard_normal((h, w), dtype=np.float32), (0, 0), 2.0, 0.8)
    im = cv2.GaussianBlur(rng.standard_normal((h, w), dtype=np.float32), (0, 0), 2.0, 0.8)
    db = 10.0 * np.log10(re * re + im * im + 1e-9)
    return np.clip((db + 40.0) / 50.0 * 255.0, 0, 255).astype(np.uint8)


def timed(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    fn(0)  # warm caches (sector geometry, imports)
    t0 = time.perf_counter()
    for i in range(n):
        fn(i + 1)
    return (time.perf_counter() - t0) / n


def main() -> None:
    cv2.setNumThreads(1)
    figures: dict[str, float] = {}
    for name, (w, h), n in (("224", (224, 224), 60), ("800x600", (800, 600), 20)):
        rng = np.random.default_rng(0)

        def phantom(i: int, w: int = w, h: int = h, rng: np.random.Generator = rng) -> None:
            label = CLASSES[i % len(CLASSES)]
            render(label, 14.0 + (i * 3.7) % 26.0, STYLES[i % 4], rng, (w, h))

        def speckle(i: int, w: int = w, h: int = h, rng: np.random.Generator = rng) -> None:
            plain_speckle(rng, w, h)

        t_ph = timed(phantom, n)
        t_sp = timed(speckle, n * 3)
        figures[f"phantoms_per_s_{name}"] = round(1.0 / t_ph, 1)
        figures[f"plain_speckle_per_s_{name}"] = round(1.0 / t_sp, 1)
        figures[f"cost_vs_plain_speckle_{name}"] = round(t_ph / t_sp, 2)
        print(
            f"{name:>8}: {1.0 / t_ph:7.1f} phantoms/s, plain speckle {1.0 / t_sp:7.1f}/s, "
            f"ratio {t_ph / t_sp:.2f}x"
        )
    assert all(math.isfinite(v) for v in figures.values())
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
