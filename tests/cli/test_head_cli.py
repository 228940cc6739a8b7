"""The automatic head measurement in `fetal-viewer info` and `predict`, in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fetal_viewer.core.measure.hadlock import ellipse_perimeter
from fetal_viewer.core.measure.head import HeadFit, head_circumference_mm
from tests.core.test_head import ring_frame
from tests.core.test_io_generated import _region, make_dicom

# one drawn head: outer skull border (cx, cy, a, b, angle)
HEAD = (200.0, 140.0, 110.0, 85.0, 0.0)


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fetal_viewer", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=240,
    )


def _frames(doc: dict) -> list[dict]:
    return [
        h
        for p in doc["patients"]
        for st in p["studies"]
        for s in st["series"]
        for h in s.get("heads", [])
    ]


@pytest.fixture(scope="module")
def ring_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ring") / "ring.png"
    cv2.imwrite(str(path), ring_frame(270, 400, *HEAD, seed=1))
    return path


def test_info_pixel_size_gives_automatic_hc(ring_png: Path) -> None:
    res = _cli("info", ring_png, "--pixel-size", "0.2", "--json")
    assert res.returncode == 0, res.stderr
    (h,) = _frames(json.loads(res.stdout))
    head = h["head"]
    assert head["automatic"] is True and h["reason"] == "found"
    true_hc = ellipse_perimeter(HEAD[2], HEAD[3]) * 0.2
    assert head["hc_mm"] == pytest.approx(true_hc, rel=0.03)
    assert head["ga_weeks_hadlock"] == pytest.approx(
        8.96 + 0.054 * head["hc_mm"] + 0.0003 * (head["hc_mm"] / 10) ** 3, abs=0.06
    )
    assert head["ellipse"]["a"] >= head["ellipse"]["b"] > 0
    text = _cli("info", ring_png, "--pixel-size", "0.2")
    assert text.returncode == 0, text.stderr
    assert "automatic, check before use" in text.stdout and "HC " in text.stdout
    # without a pixel size the ellipse is shown, but no millimetres
    plain = _cli("info", ring_png, "--head", "--json")
    (h,) = _frames(json.loads(plain.stdout))
    assert h["head"]["hc_mm"] is None and h["head"]["hc_reason"] == "no pixel spacing"
    bad = _cli("info", ring_png, "--pixel-size", "-1")
    assert bad.returncode == 2 and "above 0" in bad.stderr and "Traceback" not in bad.stderr
    worse = _cli("info", ring_png, "--pixel-size", "inf")  # was a ValueError's traceback
    assert worse.returncode == 2 and "above 0" in worse.stderr


def test_info_uses_the_dicom_calibration_per_frame(tmp_path: Path) -> None:
    ring = ring_frame(270, 400, *HEAD, seed=2)
    empty = np.zeros_like(ring)
    # rows 0.3 mm, columns 0.2 mm apart (PhysicalDelta in cm)
    path = make_dicom(
        tmp_path / "cal.dcm",
        np.stack([ring, empty]).tobytes(),
        rows=270,
        cols=400,
        frames=2,
        SequenceOfUltrasoundRegions=[_region(0.02, 0.03, box=(0, 0, 399, 269))],
    )
    res = _cli("info", path, "--head", "--json")
    assert res.returncode == 0, res.stderr
    first, second = _frames(json.loads(res.stdout))
    truth = HeadFit(HEAD[0], HEAD[1], HEAD[2], HEAD[3], HEAD[4], 1, 1, 1, 1, 1, 1)
    assert first["head"]["hc_mm"] == pytest.approx(
        head_circumference_mm(truth, (0.3, 0.2)), rel=0.03
    )
    assert second["head"] is None and second["reason"] != "found"


def test_predict_json_has_the_head_field(ring_png: Path, tmp_path: Path) -> None:
    import torch

    from fetal_viewer.core.model.checkpoint import ModelCard, save_checkpoint
    from fetal_viewer.core.model.network import build_resnet34

    torch.manual_seed(0)
    card = save_checkpoint(
        build_resnet34(5), ModelCard(name="tiny-test", version="9.9", input_size=64), tmp_path
    )
    res = _cli(
        "predict", "--no-progress", ring_png, "--model", card, "--json", "--pixel-size", "0.2"
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    (frame,) = [f for p in doc["patients"] for s in p["series"] for f in s["frames"]]
    assert frame["head"]["automatic"] is True
    assert frame["head"]["hc_mm"] == pytest.approx(ellipse_perimeter(110, 85) * 0.2, rel=0.03)
    # the text form prints the same line `info` does (tested there); --no-head skips it
    text = _cli("predict", "--no-progress", ring_png, "--model", card, "--no-head")
    assert text.returncode == 0, text.stderr
    assert "frame 0:" in text.stdout and "head (automatic" not in text.stdout
