"""Fuzzed DICOM, PNG and JPEG inputs end in a study or a typed StudyLoadError.

The short run here (2,100 cases) is part of the suite; ``benchmarks/fuzz_inputs.py`` runs
the same harness for 50,000+ cases. The harness itself is tested too: a hang, a dying
worker, an escaping exception and a memory hog must each be reported as a failure.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from fetal_viewer.core.io.study import LoadResult
from fetal_viewer.errors import StudyLoadError
from tests.hardening.fuzz import OUTCOMES_OK, check_file, load_seed, make_seeds, mutate, run_fuzz

SHORT_RUN_CASES = 2100


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory, pydicom_data_dir: Path) -> list[Path]:
    return make_seeds(tmp_path_factory.mktemp("fuzz-seeds"), pydicom_data_dir)


def test_seeds_load_cleanly(seeds: list[Path]) -> None:
    """Unmutated, every seed but the deliberately odd ones loads and decodes."""
    kinds = {load_seed(p).kind for p in seeds}
    assert kinds == {"dicom", "png", "jpeg"}
    outcomes = {str(p): check_file(p) for p in seeds}
    loaded = [n for n, (o, _) in outcomes.items() if o == "loaded"]
    odd = {n: o for n, o in outcomes.items() if o[0] != "loaded"}
    assert len(loaded) >= len(seeds) - 2, odd
    assert all(o in OUTCOMES_OK for o, _ in outcomes.values()), outcomes


def test_mutations_are_deterministic_and_change_the_file(seeds: list[Path]) -> None:
    seed = load_seed(seeds[0])
    a = mutate(seed, 1234)
    assert a == mutate(seed, 1234)
    changed = sum(mutate(seed, s)[0] != seed.data for s in range(50))
    assert changed >= 45


@pytest.mark.slow
def test_short_fuzz_run(seeds: list[Path], tmp_path: Path) -> None:
    t0 = time.perf_counter()
    report = run_fuzz(
        seeds, SHORT_RUN_CASES, workers=2, rng_seed=20240901, failures_dir=tmp_path / "failed"
    )
    summary = report.summary()
    print(json.dumps(summary), f"wall {time.perf_counter() - t0:.1f} s")
    assert report.cases == SHORT_RUN_CASES
    assert not report.failures, json.dumps(summary, indent=1)
    # the mutations reach every outcome for every kind of file
    for kind in ("dicom", "png", "jpeg"):
        assert report.by_kind[kind]["frame_error"] + report.by_kind[kind]["refused"] > 0, kind
    assert report.outcomes["loaded"] > 0
    assert report.outcomes["frame_error"] > 0
    assert report.outcomes["refused"] > 0


# --- the harness catches what it is there to catch ------------------------------------------


def evil_check(path: Path, seed_name: str = "") -> tuple[str, str]:
    """Misbehaves by seed name (run in the fuzz workers by the test below)."""
    if seed_name.startswith("hang"):
        time.sleep(60)
    if seed_name.startswith("abort"):
        os.abort()
    if seed_name.startswith("hog"):
        block = np.ones(300 * 2**20, np.uint8)  # touched: 300 MiB resident
        return "loaded", str(int(block[::4096].sum()))
    if seed_name.startswith("huge"):
        try:
            np.ones(8 * 2**30, np.uint8)  # over the worker's address-space limit
        except MemoryError:
            return "refused", "MemoryError"
        return "loaded", "allocated 8 GiB: RLIMIT_AS not applied"
    return check_file(path, seed_name)


def test_harness_reports_hang_death_and_memory(seeds: list[Path], tmp_path: Path) -> None:
    png = next(p for p in seeds if p.suffix == ".png")
    named = []
    for name in ("hang", "abort", "hog", "huge", "fine"):
        target = tmp_path / f"{name}.png"
        target.write_bytes(png.read_bytes())
        named.append(target)
    report = run_fuzz(
        named,
        10,
        workers=2,
        rng_seed=1,
        round_robin=True,
        deadline_s=2.0,
        rss_limit=200 * 2**20,
        check="tests.hardening.test_fuzz:evil_check",
    )
    by_seed = {f.seed: f.outcome for f in report.failures}
    assert by_seed.get("hang.png") == "hang"
    assert by_seed.get("abort.png") == "died"
    assert by_seed.get("hog.png") == "memory"
    assert "huge.png" not in by_seed and "fine.png" not in by_seed, by_seed
    assert report.cases == 10


def test_check_file_classifies_escaping_and_wrapped_errors(
    monkeypatch: pytest.MonkeyPatch, seeds: list[Path]
) -> None:
    import fetal_viewer.core.io as io_api

    def boom(path: object) -> LoadResult:
        raise KeyError("escaped")

    monkeypatch.setattr(io_api, "open_path", boom)
    assert check_file(seeds[0])[0] == "crash"

    def wrapped(path: object) -> LoadResult:
        return LoadResult([], [StudyLoadError("the file could not be examined", why="X")])

    monkeypatch.setattr(io_api, "open_path", wrapped)
    assert check_file(seeds[0]) == ("unexpected", "X")
