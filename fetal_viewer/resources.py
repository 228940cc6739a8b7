"""Where bundled resources live: the repository's ``resources/`` folder in a checkout or
editable install, or the same folder inside a PyInstaller bundle."""

from __future__ import annotations

import sys
from pathlib import Path


def resources_dir() -> Path:
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is not None:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


RESOURCES = resources_dir()
#: model card of the demo model trained on phantoms (research use only)
DEMO_MODEL_CARD = RESOURCES / "models" / "demo" / "card.json"
