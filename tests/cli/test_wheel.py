"""A plain (non-editable) install from the wheel finds the theme, icons and demo model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=300)


def test_wheel_install_carries_the_resources(tmp_path: Path) -> None:
    # build from a copy of what the wheel is made of, so the checkout gets no build/ folder
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for part in ("fetal_viewer", "resources"):
        shutil.copytree(ROOT / part, src / part, ignore=skip)
    for part in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / part, src / part)
    run(
        sys.executable,
        "-m",
        "pip",
        "-q",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(tmp_path / "dist"),
        str(src),
    )
    (wheel,) = (tmp_path / "dist").glob("fetal_viewer-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    share = "fetal_viewer-0.1.0.data/data/share/fetal-viewer/resources/"
    for part in ("models/demo/card.json", "models/demo/weights.safetensors", "theme/dark.qss"):
        assert share + part in names

    # a fresh environment with the wheel alone, installed by its own pip (pip install
    # --prefix from this environment would uninstall this environment's fetal-viewer); only
    # then does it borrow the test environment's dependencies
    env = tmp_path / "env"
    run(sys.executable, "-m", "venv", str(env))
    run(
        str(env / "bin" / "python"),
        "-m",
        "pip",
        "-q",
        "install",
        "--no-deps",
        "--no-index",
        str(wheel),
    )
    site = Path(sysconfig.get_path("purelib", vars={"base": str(env), "platbase": str(env)}))
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    probe = (
        "import json, fetal_viewer, fetal_viewer.resources as r;"
        "print(json.dumps([fetal_viewer.__file__, str(r.DEMO_MODEL_CARD),"
        " r.DEMO_MODEL_CARD.is_file(), (r.RESOURCES / 'theme' / 'dark.qss').is_file()]))"
    )
    out = subprocess.run(
        [str(env / "bin" / "python"), "-c", probe],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    module, card, has_card, has_theme = json.loads(out.stdout)
    assert module.startswith(str(env)) and card.startswith(str(env / "share"))
    assert has_card and has_theme
