"""The demo studies: made on first use into the user cache, not shipped.

``ensure_demo_studies()`` returns a folder of JPEG-compressed ultrasound DICOM studies:
two patients of every class (one at each of centers A and B), each a cine loop or a few
stills, generated with a fixed seed, with their ``manifest.csv`` (ground-truth class per
frame) and ``masks/``. The first call writes them (a few seconds); later
calls find the ``.complete`` marker and return at once. The folder name carries
:data:`DEMO_VERSION`, so a changed generator makes a fresh set instead of reusing a
stale one. ``FETAL_VIEWER_DEMO_DIR`` overrides the location (tests, read-only homes).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from fetal_viewer.core.progress import ProgressFn, no_progress

#: bump when the generator changes what the demo studies look like
DEMO_VERSION = "2"
DEMO_SEED = 2024
DEMO_CENTERS = ("A", "B")
DEMO_JPEG_QUALITY = 90
_MARKER = ".complete"


def demo_dir() -> Path:
    """Where the demo studies live (created or not)."""
    override = os.environ.get("FETAL_VIEWER_DEMO_DIR")
    if override:
        return Path(override)
    from fetal_viewer.core.appdirs import cache_dir

    return cache_dir() / f"demo-studies-v{DEMO_VERSION}"


def ensure_demo_studies(progress: ProgressFn = no_progress) -> Path:
    """The folder of demo studies, generating it on first use."""
    from fetal_viewer.core.phantoms.dataset import generate_dataset

    target = demo_dir()
    if (target / _MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=target.parent))
    try:
        generate_dataset(
            tmp,
            patients_per_class=1,
            centers=list(DEMO_CENTERS),
            seed=DEMO_SEED,
            fmt="dicom",
            progress=progress,
            jpeg_quality=DEMO_JPEG_QUALITY,
        )
        (tmp / "README.txt").write_text(
            "Synthetic fetal ultrasound phantoms made by fetal-viewer (research use only).\n"
            "Not real patients: names PHANTOM^CASEnnnn, IDs PHANTOM-nnnn.\n",
            encoding="utf-8",
        )
        (tmp / _MARKER).write_text(DEMO_VERSION, encoding="utf-8")
        if target.exists():  # a half-written or concurrent set: replace it
            shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / _MARKER).is_file():  # someone else did not finish it either
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
