"""Write resources/probe/: the eight frames ``auto`` checks every runtime on.

Phantoms of every class on every scanner style at 18 to 35.5 weeks, 192x144 px, so that
the network sees realistic activations (confident frames and one borderline normal head)
when a runtime's answers are compared with the float32 reference. They are files, not
rendered at run time, so the runtimes do not depend on the phantom generator (which itself
uses the model package) and every machine checks on the same pixels.

.venv/bin/python tools/probe_frames.py
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fetal_viewer.core.model.labels import CLASSES
from fetal_viewer.core.phantoms import render

OUT = Path(__file__).resolve().parents[1] / "resources" / "probe"
SEED = 43


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    for i in range(8):
        label = CLASSES[i % len(CLASSES)]
        frame = render(label, 18.0 + 2.5 * i, "ABCD"[i % 4], rng, (192, 144)).image
        path = OUT / f"probe_{i}_{label}.png"
        cv2.imwrite(str(path), np.ascontiguousarray(frame[:, :, ::-1]))
        print(path)


if __name__ == "__main__":
    main()
