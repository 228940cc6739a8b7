from pathlib import Path

import pytest

from fetal_viewer.core import appdirs
from fetal_viewer.core.phantoms.demo import demo_dir
from fetal_viewer.core.store.engine import default_db_path


def test_folders_follow_platform_conventions_and_overrides(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for env in (
        "FETAL_VIEWER_DATA_DIR",
        "FETAL_VIEWER_CACHE_DIR",
        "FETAL_VIEWER_LOG_DIR",
        "FETAL_VIEWER_CONFIG_DIR",
    ):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    assert appdirs.config_dir() == tmp_path / "xdg-config" / "fetal-viewer"
    assert appdirs.data_dir() == tmp_path / "xdg-data" / "fetal-viewer"
    assert default_db_path() == tmp_path / "xdg-data" / "fetal-viewer" / "reader_studies.sqlite"
    assert demo_dir().parent == tmp_path / "xdg-cache" / "fetal-viewer"
    assert appdirs.log_dir().name in {"fetal-viewer", "log"}  # platform-specific layout
    monkeypatch.setenv("FETAL_VIEWER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("FETAL_VIEWER_LOG_DIR", str(tmp_path / "logs"))
    assert default_db_path() == tmp_path / "data" / "reader_studies.sqlite"
    assert appdirs.log_dir() == tmp_path / "logs"
    assert appdirs.config_dir() == tmp_path / "data"  # one folder holds all state
    monkeypatch.setenv("FETAL_VIEWER_CONFIG_DIR", str(tmp_path / "config"))
    assert appdirs.config_dir() == tmp_path / "config"


def test_settings_folder_follows_config_then_data_overrides(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for env in ("FETAL_VIEWER_DATA_DIR", "FETAL_VIEWER_CONFIG_DIR"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    assert appdirs.config_dir() == tmp_path / "xdg-config" / "fetal-viewer"
    monkeypatch.setenv("FETAL_VIEWER_DATA_DIR", str(tmp_path / "portable"))
    assert appdirs.config_dir() == tmp_path / "portable"
    monkeypatch.setenv("FETAL_VIEWER_CONFIG_DIR", str(tmp_path / "config"))
    assert appdirs.config_dir() == tmp_path / "config"
