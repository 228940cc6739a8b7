"""Fixtures shared by every test area. Area fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parent.parent
#: ``FETAL_VIEWER_REAL_SAMPLES`` points elsewhere (a worktree has no ``../shared`` beside it)
SHARED_SAMPLES = Path(
    os.environ.get("FETAL_VIEWER_REAL_SAMPLES", str(REPO.parent / "shared" / "real-samples"))
)


@pytest.fixture(scope="session", autouse=True)
def _user_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The user cache (runtime choices, exported graphs, demo studies) in a session folder,
    not the developer's own; subprocesses inherit it."""
    os.environ.setdefault("FETAL_VIEWER_CACHE_DIR", str(tmp_path_factory.mktemp("user-cache")))


@pytest.fixture(scope="session")
def real_samples() -> Path:
    """``../shared/real-samples`` when this checkout has it (never copied into the repo)."""
    if not SHARED_SAMPLES.is_dir():
        pytest.skip("../shared/real-samples is not present beside this checkout")
    return SHARED_SAMPLES


@pytest.fixture(scope="session")
def pydicom_data_dir() -> Path:
    """Folder of the pydicom-data test files (installed with the dev extra)."""
    import data_store  # type: ignore[import-not-found]  # the pydicom-data package

    return Path(data_store.__file__).resolve().parent / "data"


@pytest.fixture(scope="session", autouse=True)
def _log_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Commands run by the tests (in subprocesses too) log into a temporary folder, not the
    user's log folder."""
    before = os.environ.get("FETAL_VIEWER_LOG_DIR")
    folder = tmp_path_factory.mktemp("logs")
    os.environ["FETAL_VIEWER_LOG_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("FETAL_VIEWER_LOG_DIR", None)
    else:
        os.environ["FETAL_VIEWER_LOG_DIR"] = before
