"""No PHI leaves the app: the real flows run over DICOMs with distinctive fake PHI in tags,
file names and folder names, and every output, file written and log line is scanned.

The study export and analysis report are scanned in ``tests/cli/test_study_cli.py``; this
file covers ``info``, ``predict --json`` with heatmaps, everything the CLI writes under a
private HOME/XDG tree, and the viewer's log file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.hardening.fuzz import _phantom_frames

PHI_TAGS = {
    "PatientName": "Smithers^Evangeline^Q",
    "PatientID": "MRN-55501234",
    "OtherPatientIDs": "ALT-99173",
    "PatientBirthDate": "19850317",
    "InstitutionName": "St Brigid Memorial",
    "ReferringPhysicianName": "Hollisworth^Amos",
    "AccessionNumber": "ACC8812377",
}
FORBIDDEN = (
    "Smithers", "Evangeline", "55501234", "99173", "19850317", "1985-03-17", "17/03/1985",
    "Brigid", "Hollisworth", "8812377",
)  # fmt: skip
#: PHI a site put in file and folder names (distinct from the tag values above)
PATH_PHI = ("Okonkwo", "MRN-7719", "19790923")


def _write(path: Path, n_frames: int, seed: int) -> Path:
    from pydicom import dcmread

    from tests.hardening.fuzz import _write_native_cine

    path.parent.mkdir(parents=True, exist_ok=True)
    _write_native_cine(path, _phantom_frames(n_frames, 72, 96, seed))
    ds = dcmread(path)
    for key, value in PHI_TAGS.items():
        setattr(ds, key, value)
    ds.StudyDescription = "Fetal CNS"
    ds.save_as(path)
    return path


@pytest.fixture
def phi_study(tmp_path: Path) -> Path:
    """A folder named after the patient, with a cine, a still and a damaged file, each
    named with PHI."""
    folder = tmp_path / "Okonkwo_Ada_MRN-7719"
    _write(folder / "Okonkwo_19790923_cine.dcm", 3, 1)
    _write(folder / "still_MRN-7719.dcm", 1, 2)
    (folder / "Okonkwo_damaged.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x01" * 40)
    return folder


def _scan(texts: dict[str, str], forbidden: tuple[str, ...] = FORBIDDEN) -> list[str]:
    return [f"{name}: {bad!r}" for name, text in texts.items() for bad in forbidden if bad in text]


def _private_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    for var, sub in (
        ("HOME", ""), ("XDG_CACHE_HOME", ".cache"), ("XDG_DATA_HOME", ".local/share"),
        ("XDG_STATE_HOME", ".local/state"), ("XDG_CONFIG_HOME", ".config"),
    ):  # fmt: skip
        env[var] = str(home / sub)
    env.pop("FETAL_VIEWER_LOG_DIR", None)
    env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fetal_viewer", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def _tree_texts(root: Path) -> dict[str, str]:
    """Every file under ``root``: its relative path, and its bytes read as text."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[f"{p.relative_to(root)} (name)"] = str(p.relative_to(root))
            out[str(p.relative_to(root))] = p.read_bytes().decode("latin-1")
    return out


@pytest.fixture(scope="module")
def tiny_card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from fetal_viewer.core.model.checkpoint import ModelCard, save_checkpoint
    from fetal_viewer.core.model.network import build_resnet34

    torch.manual_seed(0)
    return save_checkpoint(
        build_resnet34(5),
        ModelCard(name="tiny", version="1", input_size=64),
        tmp_path_factory.mktemp("model"),
    )


@pytest.mark.slow
def test_cli_outputs_and_files_hold_no_phi(
    phi_study: Path, tmp_path: Path, tiny_card: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = _private_env(home)
    outputs: dict[str, str] = {}
    info = _cli(env, "info", str(phi_study))
    info_json = _cli(env, "info", "--json", str(phi_study))
    check = _cli(env, "info", "--check", str(phi_study))
    for name, r in (("info", info), ("info --json", info_json), ("info --check", check)):
        assert "P-" in r.stdout, (name, r.stdout, r.stderr)  # the pseudonym is shown
        outputs[f"{name} stdout"] = r.stdout
        outputs[f"{name} stderr"] = r.stderr
    heatmaps = tmp_path / "heatmaps"
    pred = _cli(
        env, "predict", "--json", "--no-progress", "--model", str(tiny_card),
        "--heatmaps", str(heatmaps), str(phi_study),
    )  # fmt: skip
    assert pred.returncode in (0, 1), pred.stderr
    assert '"patients"' in pred.stdout or '"frames"' in pred.stdout, pred.stdout[:500]
    outputs["predict stdout"] = pred.stdout
    outputs["predict stderr"] = pred.stderr
    written = sorted(heatmaps.rglob("*.png"))
    assert len(written) == 4  # 3 cine frames + 1 still
    outputs.update({f"heatmaps/{k}": v for k, v in _tree_texts(heatmaps).items()})
    heat = {f"heatmaps/{k}": v for k, v in _tree_texts(heatmaps).items()}
    home_files = {f"HOME/{k}": v for k, v in _tree_texts(home).items()}
    outputs.update(heat)
    outputs.update(home_files)
    # tag PHI appears nowhere, not even in stdout; path PHI nowhere in the user-folder
    # files (stdout echoes the paths the user typed, as the user's own shell does)
    leaks = _scan(outputs) + _scan(home_files, PATH_PHI)
    assert not leaks, leaks
    HEATMAP_NAMES.extend(k for k in heat if k.endswith("(name)"))


HEATMAP_NAMES: list[str] = []


def test_heatmap_file_names_hold_no_path_phi() -> None:
    assert HEATMAP_NAMES, "run with test_cli_outputs_and_files_hold_no_phi"
    leaks = _scan({n: n for n in HEATMAP_NAMES}, PATH_PHI)
    assert not leaks, leaks


def test_viewer_log_holds_no_phi(
    qtbot: object, phi_study: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Open the study (one damaged file) in the viewer; the log file names no PHI."""
    from PySide6.QtCore import QSettings

    from fetal_viewer.gui.error_sink import ErrorSink, close_logging
    from fetal_viewer.gui.main_window import MainWindow

    logs = tmp_path / "logs"
    monkeypatch.setenv("FETAL_VIEWER_LOG_DIR", str(logs))
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings, error_sink=ErrorSink(), model_service=None)
    try:
        window.show()
        with qtbot.waitSignal(window.study_opened, timeout=30_000):  # type: ignore[attr-defined]
            window.open_paths([str(phi_study)])
        qtbot.waitUntil(lambda: window.series is not None, timeout=10_000)  # type: ignore[attr-defined]
        assert np.asarray(window.series.frame(0)).shape == (72, 96, 3)
    finally:
        window.close()
        window.deleteLater()
        close_logging()
    texts = _tree_texts(logs)
    assert any("could not be opened" in t or "load problem" in t for t in texts.values()), texts
    assert not _scan(texts), _scan(texts)  # tag PHI
    leaks = _scan(texts, PATH_PHI)
    assert not leaks, leaks
