"""`fetal-viewer predict` in a subprocess with a tiny randomly initialised model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fetal_viewer", "predict", "--no-progress", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from fetal_viewer.core.model.checkpoint import ModelCard, save_checkpoint
    from fetal_viewer.core.model.network import build_resnet34

    torch.manual_seed(0)
    return save_checkpoint(
        build_resnet34(5),
        ModelCard(name="tiny-test", version="9.9", input_size=64),
        tmp_path_factory.mktemp("m"),
    )


def test_bad_model_gives_clear_error(tmp_path: Path) -> None:
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.full((40, 40, 3), 90, np.uint8))
    pt = tmp_path / "model.pt"
    pt.write_bytes(b"\x80\x04junk")
    res = _cli(img, "--model", pt)
    assert res.returncode == 1
    assert "never loaded" in res.stderr and "Fix:" in res.stderr
    res = _cli(img, "--model", tmp_path / "nope" / "card.json")
    assert res.returncode == 1 and "does not exist" in res.stderr


def test_predict_json_and_heatmaps(card: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        frame = np.zeros((80, 100, 3), np.uint8)
        frame[14:74, 15:85] = rng.integers(30, 255, (60, 70, 3), dtype=np.uint8)
        # a scanner's header with the patient's name burned into the pixels
        cv2.putText(frame, "DOE^JANE", (2, 9), cv2.FONT_HERSHEY_PLAIN, 0.6, (255, 255, 255))
        cv2.imwrite(str(data / f"img{i}.png"), frame)
    out = tmp_path / "heat"
    res = _cli(data, "--model", card, "--json", "--heatmaps", out)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["model"]["name"] == "tiny-test" and doc["model"]["version"] == "9.9"
    # the runtime, its precision and how it was chosen (auto: measured or cached)
    model = doc["model"]
    assert model["backend"] in ("openvino", "onnxruntime", "torch")
    assert model["precision"] in ("float32", "bfloat16")
    assert model["backend_choice"] in ("measured", "cached") and model["runtime"]
    frames = [f for p in doc["patients"] for s in p["series"] for f in s["frames"]]
    assert len(frames) == 2
    for p in doc["patients"]:
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-4
        assert p["top_class"] == max(p["probabilities"], key=p["probabilities"].get)
    for f in frames:
        # the PNG holds the field of view only: the header text stays out of exports
        png = cv2.imread(f["heatmap"])
        assert f["heatmap_box"] == [15, 14, 85, 74]
        assert png is not None and png.shape == (60, 70, 3)
    res = _cli(data, "--model", card)
    assert res.returncode == 0 and "tiny-test 9.9" in res.stdout
    # measured once: this run used the cached choice
    assert "runtime: " in res.stdout and "measured on this machine" in res.stdout


def test_bad_input_gives_non_zero_exit(card: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"not a dicom at all")
    res = _cli(bad, "--model", card)
    assert res.returncode != 0
    assert "error:" in res.stderr


def test_a_frame_that_fails_to_decode_costs_its_series_not_the_run(
    card: Path, tmp_path: Path
) -> None:
    from pydicom.data import get_testdata_file

    src = get_testdata_file("SC_rgb_jpeg_gdcm.dcm")  # JPEG lossless: decoded only when read
    assert src is not None
    data = bytearray(Path(src).read_bytes())
    for i in range(len(data) - 2000, len(data) - 1500, 7):  # damage the compressed stream
        data[i] ^= 0x5A
    (tmp_path / "damaged.dcm").write_bytes(bytes(data))
    cv2.imwrite(str(tmp_path / "good.png"), np.full((60, 70, 3), 90, np.uint8))
    res = _cli(tmp_path, "--model", card, "--json", "--no-head")
    assert res.returncode == 0, res.stderr
    assert "could not be decoded" in res.stderr and "Traceback" not in res.stderr
    doc = json.loads(res.stdout)
    (patient,) = doc["patients"]  # the image, predicted; the damaged file, reported
    assert patient["series"][0]["source"].endswith("good.png")
    assert any("could not be decoded" in p for p in doc["problems"])
    # nothing decodable at all: a clear error, not an empty report
    res = _cli(tmp_path / "damaged.dcm", "--model", card)
    assert res.returncode == 1 and "No frames could be decoded" in res.stderr
    assert "Traceback" not in res.stderr


def test_a_series_that_is_not_ultrasound_is_withheld_by_its_header(
    card: Path, tmp_path: Path
) -> None:
    """A model without a guard on a head cine whose header says MR: every frame is out of
    domain in --json with the modality named, the patient has no assessable frames, and
    the text says why; the same frames labelled US are read."""
    from tests.factories import write_head_cine

    mr = write_head_cine(tmp_path / "mr" / "head.dcm", "MR")
    res = _cli(mr, "--model", card, "--json", "--no-head")
    assert res.returncode == 0, res.stderr
    (patient,) = json.loads(res.stdout)["patients"]
    (series,) = patient["series"]
    assert series["modality"] == "MR" and series["foreign_modality"] == "MR (magnetic resonance)"
    assert [f["in_domain"] for f in series["frames"]] == [False, False]
    assert patient["assessment"] == "no assessable frames" and patient["top_class"] is None
    res = _cli(mr, "--model", card, "--no-head")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("[NOT ULTRASOUND] Not ultrasound: the series is MR") == 2
    assert "no assessable frames (none of 2 frame(s) is ultrasound)" in res.stdout
    us = write_head_cine(tmp_path / "us" / "head.dcm", "US")
    (patient,) = json.loads(_cli(us, "--model", card, "--json", "--no-head").stdout)["patients"]
    (series,) = patient["series"]
    assert series["foreign_modality"] is None and patient["top_class"] is not None
    assert [f["in_domain"] for f in series["frames"]] == [None, None]  # no guard


def test_a_cine_of_a_foreign_view_is_withheld_whole(tmp_path: Path) -> None:
    """The shipped model on a cine whose frames are mostly foreign: every frame is out of
    domain in --json, the text says why, and the patient has no assessable frames."""
    from fetal_viewer.resources import DEMO_MODEL_CARD
    from tests.factories import write_mostly_foreign_cine

    cine = write_mostly_foreign_cine(tmp_path / "mixed.dcm")
    res = _cli(cine, "--model", DEMO_MODEL_CARD, "--json", "--no-head", "--backend", "torch")
    assert res.returncode == 0, res.stderr
    (patient,) = json.loads(res.stdout)["patients"]
    (series,) = patient["series"]
    assert series["cine_flagged"] == [4, 6]
    assert [f["in_domain"] for f in series["frames"]] == [False] * 6
    # the first two frames pass the guard alone: their scores are below the threshold
    assert all(f["domain_score"] <= f["domain_threshold"] for f in series["frames"][:2])
    assert patient["assessment"] == "no assessable frames" and patient["top_class"] is None
    res = _cli(cine, "--model", DEMO_MODEL_CARD, "--no-head", "--backend", "torch")
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("4 of the 6 frames of this cine are") == 2
    assert res.stdout.count("[OUT OF DOMAIN]") == 6
