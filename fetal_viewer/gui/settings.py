"""The application's settings file: an INI file in the fetal-viewer config folder
(:func:`fetal_viewer.core.appdirs.config_dir`, moved by ``FETAL_VIEWER_CONFIG_DIR``), or the
file ``FETAL_VIEWER_SETTINGS`` names. Never Qt's per-platform default location, which the
``FETAL_VIEWER_*`` folders cannot move."""

from __future__ import annotations

import os

from PySide6.QtCore import QSettings

#: environment variable naming an INI file to use instead of the user settings
SETTINGS_ENV = "FETAL_VIEWER_SETTINGS"


def app_settings() -> QSettings:
    from fetal_viewer.core.appdirs import config_dir

    path = os.environ.get(SETTINGS_ENV) or str(config_dir() / "settings.ini")
    return QSettings(path, QSettings.Format.IniFormat)
