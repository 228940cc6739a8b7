"""Where bundled resources live: the repository's ``resources/`` folder in a checkout or
editable install, the same folder inside a PyInstaller bundle, or
``<prefix>/share/fetal-viewer/resources`` after a plain ``pip install`` (the wheel carries
it as data files, see ``pyproject.toml``)."""

from __future__ import annotations

import site
import sys
from pathlib import Path

SHARE = Path("share") / "fetal-viewer" / "resources"


def resources_dir() -> Path:
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is not None:
        return Path(bundle) / "resources"
    checkout = Path(__file__).resolve().parent.parent / "resources"
    if checkout.is_dir():
        return checkout
    for prefix in (sys.prefix, site.getuserbase()):
        installed = Path(prefix) / SHARE
        if installed.is_dir():
            return installed
    return checkout  # missing: callers report the absent file by its checkout path


RESOURCES = resources_dir()
#: model card of the demo model trained on phantoms (research use only)
DEMO_MODEL_CARD = RESOURCES / "models" / "demo" / "card.json"
#: the frames auto checks every inference runtime on (tools/probe_frames.py writes them)
PROBE_DIR = RESOURCES / "probe"
