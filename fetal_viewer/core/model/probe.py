"""The probe batch ``auto`` checks every inference runtime on (see
:mod:`fetal_viewer.core.runtime.auto`): eight phantoms of every class on every scanner
style, shipped in ``resources/probe/`` (``tools/probe_frames.py`` renders them), preprocessed
for the model."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.model.preprocess import PreprocessSpec, preprocess
from fetal_viewer.errors import InferenceError
from fetal_viewer.resources import PROBE_DIR


def probe_frames() -> list[NDArray[np.uint8]]:
    """The probe frames, uint8 RGB, in file-name order."""
    import cv2

    frames: list[NDArray[np.uint8]] = []
    for path in sorted(PROBE_DIR.glob("probe_*.png")):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is not None:
            frames.append(np.ascontiguousarray(bgr[:, :, ::-1], dtype=np.uint8))
    if not frames:
        raise InferenceError(
            "The probe frames the runtimes are checked on are missing.",
            why=f"No probe_*.png could be read in {PROBE_DIR}.",
            fix="Reinstall fetal-viewer, or force a backend (--backend onnxruntime).",
        )
    return frames


def probe_batch(spec: PreprocessSpec) -> NDArray[np.float32]:
    """The probe frames preprocessed for a model: ``(8, 3, S, S)`` float32."""
    return np.stack([preprocess(f, spec).array for f in probe_frames()])
