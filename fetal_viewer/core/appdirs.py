"""The application's folders, from the platform's conventions (platformdirs).

Each can be moved with an environment variable, which tests, portable installs and
multi-user workstations use: ``FETAL_VIEWER_DATA_DIR`` (reader-study databases),
``FETAL_VIEWER_CACHE_DIR`` (demo studies, studies retrieved from PACS),
``FETAL_VIEWER_LOG_DIR`` (log files), ``FETAL_VIEWER_CONFIG_DIR`` (the settings file and the
DICOM node settings; when unset but ``FETAL_VIEWER_DATA_DIR`` is set, they go there too, so a
portable install that names one folder keeps all its state in it).
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "fetal-viewer"


def _dir(env: str, kind: str) -> Path:
    override = os.environ.get(env)
    if override:
        return Path(override)
    import platformdirs

    finder = getattr(platformdirs, f"user_{kind}_dir")
    return Path(finder(APP, appauthor=False))


def data_dir() -> Path:
    return _dir("FETAL_VIEWER_DATA_DIR", "data")


def cache_dir() -> Path:
    return _dir("FETAL_VIEWER_CACHE_DIR", "cache")


def log_dir() -> Path:
    return _dir("FETAL_VIEWER_LOG_DIR", "log")


def config_dir() -> Path:
    if not os.environ.get("FETAL_VIEWER_CONFIG_DIR") and os.environ.get("FETAL_VIEWER_DATA_DIR"):
        return data_dir()
    return _dir("FETAL_VIEWER_CONFIG_DIR", "config")
