"""Lesions synthesised into a scan's own anatomy, sham edits, and the backgrounds data set."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fetal_viewer.core.measure.head import HeadFit, find_head
from fetal_viewer.core.phantoms.onreal import LESIONS, sham, synthesise

H, W = 300, 420
HEAD = (210.0, 150.0, 115.0, 90.0, 10.0)  # cx, cy, a, b, angle


def _scan(seed: int = 0) -> np.ndarray:
    """A fan with speckle, amniotic fluid, a bright skull ring and a darker brain."""
    rng = np.random.default_rng(seed)

    def speckle(level: float) -> np.ndarray:
        s = rng.rayleigh(level / 1.2533, size=(H, W)).astype(np.float32)
        return np.asarray(cv2.GaussianBlur(s, (0, 0), 1.0))

    cx, cy, a, b, ang = HEAD
    t = 0.08 * b
    outer = np.zeros((H, W), np.uint8)
    inner = np.zeros((H, W), np.uint8)
    cv2.ellipse(outer, ((cx, cy), (2 * a, 2 * b), ang), 1, -1)
    cv2.ellipse(inner, ((cx, cy), (2 * (a - t), 2 * (b - t)), ang), 1, -1)
    img = speckle(70.0)
    img[:, :60] = speckle(12.0)[:, :60]  # fluid on one side
    img = np.where(inner > 0, speckle(35.0), np.where(outer > 0, speckle(210.0), img))
    yy, xx = np.mgrid[0:H, 0:W]
    fan = np.abs(np.degrees(np.arctan2(xx - W / 2, yy + 0.4 * H))) < 40
    return np.clip(np.where(fan, img + 4, 0), 0, 255).astype(np.uint8)


def _fit() -> HeadFit:
    cx, cy, a, b, ang = HEAD
    return HeadFit(cx, cy, a, b, ang, 0.08 * b, 0.9, 0.9, 1.0, 0.7, 0.6)


@pytest.mark.parametrize("label", LESIONS)
def test_each_lesion_changes_its_region_and_keeps_the_rest(label: str) -> None:
    scan = _scan()
    out = synthesise(scan, _fit(), label, np.random.default_rng(1))
    assert out.image.shape == scan.shape and out.image.dtype == np.uint8
    assert out.mask.any() and out.edits
    diff = np.abs(out.image.astype(int) - scan.astype(int))
    near = cv2.dilate(out.mask.astype(np.uint8), np.ones((21, 21), np.uint8)) > 0
    assert diff[out.mask].mean() > 8  # the lesion is visible ...
    assert diff[~near].mean() < 1.0  # ... and the rest of the scan untouched
    # same seed, same image
    again = synthesise(scan, _fit(), label, np.random.default_rng(1))
    np.testing.assert_array_equal(again.image, out.image)


def test_lesions_sit_where_the_anatomy_says() -> None:
    scan, fit = _scan(), _fit()
    cx, cy, a, b, ang = HEAD
    yy, xx = np.mgrid[0:H, 0:W]
    th = math.radians(ang)
    u = (xx - cx) * math.cos(th) + (yy - cy) * math.sin(th)
    v = -(xx - cx) * math.sin(th) + (yy - cy) * math.cos(th)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    rng = np.random.default_rng(3)
    enc = synthesise(scan, fit, "encephalocele", rng).mask
    assert (rho[enc] > 1.0).mean() > 0.5  # a sac outside the skull
    holo = synthesise(scan, fit, "holoprosencephaly", rng).mask
    assert (rho[holo] < 1.0).all()  # inside the head
    anen = synthesise(scan, fit, "anencephaly", rng)
    ring = (rho > 0.93) & (rho < 0.99)
    assert anen.image[ring].mean() < 0.5 * scan[ring].mean()  # the vault is gone


def test_an_encephalocele_shows_where_the_head_leaves_the_view() -> None:
    """A head whose right pole runs off the frame: the sac goes where it shows."""
    cx, cy, a, b = 300.0, 150.0, 115.0, 90.0
    yy, xx = np.mgrid[0:H, 0:W]
    scan = np.zeros((H, W), np.uint8)
    base = _scan()
    shift = int(cx - HEAD[0])
    scan[:, shift:] = base[:, : W - shift]  # the same scan, moved right
    scan[:, :shift] = base[:, :shift]
    fit = HeadFit(cx, cy, a, b, 0.0, 0.08 * b, 0.9, 0.9, 1.0, 0.7, 0.6)
    outside = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 > 1.0
    shown = [
        (synthesise(scan, fit, "encephalocele", np.random.default_rng(s)).mask & outside).sum()
        for s in range(12)
    ]
    # every sac shows at least 3% of the head's area (a sac cut off by the frame's edge
    # showed under 1% before)
    assert min(shown) > 0.03 * math.pi * a * b


def test_sham_edits_are_lesion_free_and_recorded() -> None:
    scan = _scan()
    out = sham(scan, _fit(), np.random.default_rng(0), 3)
    assert not out.mask.any()
    assert 1 <= len(out.edits) <= 3 and set(out.edits) <= {"fill", "skull", "warp"}
    assert not np.array_equal(out.image, scan)
    # the skull stays a bright ring: brightness along it changes little
    fit = find_head(out.image)
    assert fit is not None and abs(fit.a - HEAD[2]) < 0.08 * HEAD[2]


def test_backgrounds_data_set_from_the_cli(tmp_path: Path) -> None:
    folder = tmp_path / "scans"
    folder.mkdir()
    for k in range(3):
        cv2.imwrite(str(folder / f"s{k}.png"), _scan(k))
    cv2.imwrite(str(folder / "blank.png"), np.zeros((H, W), np.uint8))
    index = tmp_path / "index.csv"
    index.write_text(
        "filename,subject_prefix,pixel_size_mm\n"
        "s0.png,007,0.2\ns1.png,007,0.2\ns2.png,008,0.2\nblank.png,009,0.2\n"
    )
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "fetal_viewer", "phantoms", "--backgrounds", str(folder),
         "--backgrounds-index", str(index), "--out", str(out), "--center", "H",
         "--workers", "1", "--no-progress", "--format", "both"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "1 scan(s) without a skull found" in r.stderr
    with (out / "manifest.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 15 and {r["label"] for r in rows} == {
        "normal", *LESIONS,
    }  # fmt: skip
    assert {r["group"] for r in rows} == {"H-007", "H-008"}
    assert all((r["mask_path"] == "") == (r["label"] == "normal") for r in rows)
    # ages from the automatic head circumference and the given pixel size (Hadlock)
    assert all(14 < float(r["ga_weeks"]) < 40 for r in rows)
    assert (out / "dicom" / "H" / rows[0]["patient_id"] / "still01.dcm").is_file()
    with (out / "no_head.csv").open(newline="") as fh:
        assert [m["source"] for m in csv.DictReader(fh)] == ["blank.png"]
    # the manifest trains as it is: splits keep a subject's five patients together
    from fetal_viewer.core.model.labels import CLASSES
    from fetal_viewer.core.training.folds import inner_split
    from fetal_viewer.core.training.manifest import read_manifest

    m = read_manifest(out / "manifest.csv", CLASSES)
    train, val = inner_split(m.records, range(len(m.records)), 0.5, seed=0)
    assert {m.records[i].group for i in train}.isdisjoint({m.records[i].group for i in val})

    # close-up views of the same patients: same class and subject, the lesion kept whole
    views = tmp_path / "views"
    r = subprocess.run(
        [sys.executable, "-m", "fetal_viewer", "phantoms", "--zoom-views", str(out),
         "--out", str(views), "--no-progress"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    with (views / "manifest.csv").open(newline="") as fh:
        zoomed = list(csv.DictReader(fh))
    assert [(v["patient_id"], v["label"], v["group"]) for v in zoomed] == [
        (r["patient_id"] + "-Z", r["label"], r["group"]) for r in rows
    ]
    for v in zoomed:
        image = cv2.imread(str(views / v["path"]), cv2.IMREAD_UNCHANGED)
        assert image.shape[:2] == (512, 512)
        if v["label"] == "normal":
            assert v["mask_path"] == ""
            continue
        mask = cv2.imread(str(views / v["mask_path"]), cv2.IMREAD_GRAYSCALE) > 0
        assert mask.any()
        border = np.r_[mask[0], mask[-1], mask[:, 0], mask[:, -1]]
        assert not border.any(), f"{v['patient_id']}: the lesion reaches the view's edge"
    m = read_manifest(views / "manifest.csv", CLASSES)
    assert len(m.records) == 15


def test_zoom_views_refuse_a_folder_without_ellipses(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "fetal_viewer", "phantoms", "--zoom-views", str(tmp_path),
         "--out", str(tmp_path / "views"), "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode != 0
    assert "phantoms --backgrounds" in r.stderr and "Traceback" not in r.stderr


def test_real_samples_take_every_lesion(real_samples: Path) -> None:
    scan = cv2.imread(str(real_samples / "hc18" / "400_HC.png"), cv2.IMREAD_GRAYSCALE)
    fit = find_head(scan)
    assert fit is not None
    for k, label in enumerate(LESIONS):
        out = synthesise(scan, fit, label, np.random.default_rng(k))
        share = out.mask.mean()
        assert 0.001 < share < 0.6, (label, share)
