"""What the About dialog and ``--version`` reports say about the application: version,
intended use, and the licences of the bundled third-party components, read from the
installed packages' own metadata (so it stays true as dependencies change)."""

from __future__ import annotations

import importlib.metadata as metadata
from dataclasses import dataclass

#: third-party distributions shipped with the app (the runtime dependencies that matter)
COMPONENTS: tuple[str, ...] = (
    "PySide6-Essentials",
    "shiboken6",
    "superqt",
    "cachetools",
    "torch",
    "torchvision",
    "onnxruntime",
    "onnx",
    "grad-cam",
    "safetensors",
    "numpy",
    "scipy",
    "opencv-python-headless",
    "pillow",
    "pydicom",
    "pylibjpeg",
    "pylibjpeg-libjpeg",
    "pylibjpeg-openjpeg",
    "sqlalchemy",
    "alembic",
    "matplotlib",
    "platformdirs",
    "tqdm",
)


@dataclass(frozen=True)
class Component:
    name: str
    version: str
    licence: str


def _licence(meta: metadata.PackageMetadata) -> str:
    fields = meta.json
    expression = fields.get("license_expression")
    if expression:
        return str(expression)
    classifiers = [
        c.split("::")[-1].strip()
        for c in fields.get("classifier", [])
        if c.startswith("License ::")
    ]
    if classifiers:
        return "; ".join(classifiers)
    text = str(fields.get("license", "")).strip().splitlines()
    return text[0][:80] if text else "unknown (see the package)"


def components() -> list[Component]:
    """Name, version and licence of every bundled component that is installed."""
    found = []
    for name in COMPONENTS:
        try:
            meta = metadata.metadata(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(Component(name, str(meta["Version"]), _licence(meta)))
    return found
