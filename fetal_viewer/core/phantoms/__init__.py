"""Synthetic fetal-ultrasound phantoms with ground-truth masks (research use only).

Public API (see CONTRIBUTING.md):

* :func:`render` ``(label, ga_weeks, style, rng, size) -> Phantom`` one frame;
* :func:`generate_dataset` ``(out_dir, patients_per_class, centers, seed, fmt, size,
  progress) -> Path`` a multi-center data set and its ``manifest.csv``;
* :func:`demo.ensure_demo_studies` the demo studies folder.
"""

from __future__ import annotations

from fetal_viewer.core.phantoms.dataset import MANIFEST_COLUMNS, generate_dataset
from fetal_viewer.core.phantoms.render import Phantom, render
from fetal_viewer.core.phantoms.styles import STYLES, ScannerStyle, get_style

__all__ = [
    "MANIFEST_COLUMNS",
    "STYLES",
    "Phantom",
    "ScannerStyle",
    "generate_dataset",
    "get_style",
    "render",
]
