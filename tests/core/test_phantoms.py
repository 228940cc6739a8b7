"""Phantom generator: biometry, determinism, masks, per-class anatomy from the
generator's own geometry, DICOM output and the manifest."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from fetal_viewer.core.model.labels import CLASSES
from fetal_viewer.core.phantoms import STYLES, generate_dataset, render
from fetal_viewer.core.phantoms.anatomy import VIEWS, sample_case
from fetal_viewer.core.phantoms.biometry import (
    bpd_from_ga,
    ga_from_bpd,
    ga_from_hc,
    hc_from_ga,
    head_size,
)
from fetal_viewer.core.phantoms.bmode import geometry_for
from fetal_viewer.core.phantoms.render import (
    FRAMED_SHARE,
    Scene,
    build_scene,
    choose_depth_mm,
    choose_sector_deg,
    frame_case,
    frame_exam,
    lesion_view,
)
from fetal_viewer.errors import DataError

SIZE = (128, 112)


# -- biometry --------------------------------------------------------------------------------
def test_hadlock_inverses_round_trip_and_match_the_chart() -> None:
    for ga in (14.0, 20.0, 28.5, 40.0):
        assert ga_from_bpd(bpd_from_ga(ga)) == pytest.approx(ga, abs=1e-9)
        assert ga_from_hc(hc_from_ga(ga)) == pytest.approx(ga, abs=1e-6)
    # Hadlock 1984 chart values: BPD ~4.6-4.8 cm and HC ~17.5 cm at 20 weeks, HC ~33-35 at 40
    assert 4.4 < bpd_from_ga(20.0) < 4.9
    assert 17.0 < hc_from_ga(20.0) < 18.0
    assert 33.0 < hc_from_ga(40.0) < 35.5
    # HC18 lists HC 172.71 mm as 19.8 weeks by Hadlock
    assert ga_from_hc(17.271) == pytest.approx(19.8, abs=0.05)
    hs = head_size(30.0)
    assert 0.70 <= hs.cephalic_index <= 0.90
    assert head_size(20.0).bpd_mm < hs.bpd_mm < head_size(40.0).bpd_mm


# -- determinism -----------------------------------------------------------------------------
def test_render_same_seed_same_pixels_other_seed_differs() -> None:
    a = render("encephalocele", 24.0, "A", np.random.default_rng(5), SIZE)
    b = render("encephalocele", 24.0, "A", np.random.default_rng(5), SIZE)
    c = render("encephalocele", 24.0, "A", np.random.default_rng(6), SIZE)
    assert a.image.dtype == np.uint8 and a.image.shape == (SIZE[1], SIZE[0], 3)
    assert a.mask.dtype == np.bool_ and a.mask.shape == (SIZE[1], SIZE[0])
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_dataset_same_seed_same_bytes(tmp_path: Path) -> None:
    kw = {"patients_per_class": 1, "centers": ["A", "D"], "fmt": "both", "size": (96, 80)}
    generate_dataset(tmp_path / "one", seed=11, jpeg_quality=85, **kw)  # type: ignore[arg-type]
    # a second run in two processes (as the CLI does by default) writes the same files
    generate_dataset(tmp_path / "two", seed=11, jpeg_quality=85, workers=2, **kw)  # type: ignore[arg-type]
    generate_dataset(tmp_path / "three", seed=12, jpeg_quality=85, **kw)  # type: ignore[arg-type]
    one, two, three = (_digest(tmp_path / n) for n in ("one", "two", "three"))
    assert any(k.endswith(".dcm") for k in one) and any(k.endswith(".png") for k in one)
    assert one == two
    assert one != three


# -- masks -----------------------------------------------------------------------------------
@pytest.mark.parametrize("label", CLASSES)
def test_masks_lie_inside_the_sector_and_are_not_empty(label: str) -> None:
    rng = np.random.default_rng(100 + CLASSES.index(label))
    for style in STYLES:
        ph = render(label, float(rng.uniform(14, 40)), style, rng, SIZE)
        geom = geometry_for(style, SIZE, ph.meta["depth_mm"], ph.meta["sector_deg"])
        assert ph.mask.any(), (label, style.center)
        assert not (ph.mask & ~geom.sector).any()
        # outside the fan the display is black except the burned-in annotations
        x0, y0, x1, y1 = ph.meta["region"]
        assert ph.image[geom.sector].mean() > 10
        assert ph.meta["spacing_mm"][0] > 0 and x1 > x0 and y1 > y0


def test_framing_brings_the_diagnostic_region_into_the_narrowed_fan() -> None:
    """Late encephaloceles with a big sac do not fit a CNS preset at every pose: the
    framing moves the probe and deepens the image until at least 95% of the region shows,
    for every class alike."""
    rng = np.random.default_rng(3)
    style = STYLES[0]
    unframed, framed = [], []
    for _ in range(12):
        case = sample_case("encephalocele", float(rng.uniform(30, 38)), rng)
        case = replace(case, params={**case.params, "sac_r": 0.85})
        depth = choose_depth_mm(style, case.ga_weeks, 0.0)
        sector = choose_sector_deg(style, 0.0)
        assert sector <= style.sector_deg
        unframed.append(lesion_view(case, geometry_for(style, SIZE, depth, sector)))
        moved, geom, share = frame_exam(case, style, SIZE, depth, sector, rng)
        assert share == lesion_view(moved, geom)
        assert moved.label == case.label and moved.view == case.view
        assert geom.depth_mm >= depth
        framed.append(lesion_view(moved, geom))
    assert min(framed) >= FRAMED_SHARE
    assert min(unframed) < FRAMED_SHARE  # the check above is not vacuous


# -- anatomy from the generator's own geometry -----------------------------------------------
def scene(label: str, view: str, seed: int = 0, ga: float = 28.0) -> Scene:
    rng = np.random.default_rng(seed)
    case = sample_case(label, ga, rng, view=view)
    case = frame_case(case, geometry_for(STYLES[0], (320, 240), 140.0), rng)
    return build_scene(case, STYLES[0], (320, 240), 140.0, keep_parts=True)


def as_normal(sc: Scene) -> Scene:
    """The same fetus, view and pose without the anomaly."""
    case = replace(sc.case, label="normal")
    return build_scene(case, STYLES[0], (320, 240), 140.0, keep_parts=True)


def n_components(mask: np.ndarray) -> int:
    n, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return int(n) - 1


def has(sc: Scene, part: str) -> bool:
    return part in sc.parts and bool(sc.parts[part].any())


@pytest.mark.parametrize("view", ["tv", "tt", "tc"])
def test_normal_head_has_midline_cavum_and_paired_structures(view: str) -> None:
    sc = scene("normal", view)
    assert has(sc, "falx") and has(sc, "csp") and has(sc, "skull")
    paired = "ventricles" if view == "tv" else "thalami"
    assert n_components(sc.parts[paired]) >= 2
    for absent in ("monoventricle", "sac", "stroma", "defect", "lemon"):
        assert not has(sc, absent)
    if view == "tc":
        assert has(sc, "cisterna_magna") and has(sc, "cerebellum")


@pytest.mark.parametrize("seed", range(4))
def test_holoprosencephaly_one_ventricle_fused_thalami_no_midline(seed: int) -> None:
    sc = scene("holoprosencephaly", "tv" if seed % 2 else "tt", seed)
    assert n_components(sc.parts["monoventricle"]) == 1
    assert n_components(sc.parts["thalami"]) == 1
    assert not has(sc, "falx") and not has(sc, "csp") and not has(sc, "ventricles")
    assert sc.mask[sc.parts["monoventricle"]].all()


@pytest.mark.parametrize("view", ["coronal", "sagittal"])
def test_anencephaly_has_no_skull_arc_above_the_orbits(view: str) -> None:
    sc = scene("anencephaly", view, seed=3)
    vault = sc.parts["absent_vault"].astype(np.uint8)
    # leave out the skull base at the bottom edge of the vault region
    upper = cv2.erode(vault, np.ones((9, 9), np.uint8)) > 0
    assert upper.sum() > 200
    assert not (sc.bone[upper] > 0).any()
    assert has(sc, "stroma") and has(sc, "orbits") and has(sc, "skull_base")
    if view == "coronal":
        assert n_components(sc.parts["orbits"]) == 2
    # the normal coronal view of the same fetus has its calvarium there
    normal = as_normal(sc)
    assert has(normal, "vault") and not has(normal, "stroma")
    assert (normal.bone[upper] > 0).sum() > 50


@pytest.mark.parametrize("seed", range(4))
def test_encephalocele_skull_defect_with_sac_outside_the_skull(seed: int) -> None:
    sc = scene("encephalocele", "tv", seed)
    defect, sac = sc.parts["defect"], sc.parts["sac"]
    assert defect.any() and sac.sum() > 100
    # no bone across the defect; the sac reaches beyond the skull ellipse
    assert (sc.bone[defect] > 0).mean() < 0.05
    skull = sc.parts["skull"].astype(np.uint8)
    contours, _ = cv2.findContours(skull, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    hull = np.zeros_like(skull)
    cv2.fillPoly(hull, [cv2.convexHull(np.concatenate(contours))], 1)
    assert (sac & (hull == 0)).sum() > 0.3 * sac.sum()
    normal = as_normal(sc)
    assert (normal.bone[defect] > 0).mean() > 0.15


@pytest.mark.parametrize("seed", range(3))
def test_rachischisis_spine_open_posterior_elements(seed: int) -> None:
    sc = scene("rachischisis", "spine_sag", seed)
    defect = sc.parts["defect"]
    assert defect.any()
    assert not (sc.parts["posterior_elements"] & defect).any()
    # the vertebral bodies run on under the open segment (within 2 px at this matrix)
    near = cv2.dilate(defect.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert (sc.parts["bodies"] & near).any()
    normal = as_normal(sc)
    assert n_components(normal.parts["posterior_elements"]) >= 20
    assert not has(normal, "defect") and not has(normal, "sac")


def test_rachischisis_transverse_laminae_splay_apart() -> None:
    def gap(sc: Scene) -> float:
        ys, xs = np.nonzero(sc.parts["laminae"])
        pts = np.stack([xs, ys], 1).astype(np.float32)
        _, _, centres = cv2.kmeans(
            pts, 2, None, (cv2.TERM_CRITERIA_EPS, 20, 0.1), 3, cv2.KMEANS_PP_CENTERS
        )
        return float(np.linalg.norm(centres[0] - centres[1]))

    sc = scene("rachischisis", "spine_trans", 1)
    assert gap(sc) > 1.4 * gap(as_normal(sc))


def test_rachischisis_head_lemon_and_banana() -> None:
    lemon = scene("rachischisis", "tc", seed=2)
    normal = as_normal(lemon)
    assert has(lemon, "lemon") and has(lemon, "cerebellum") and not has(lemon, "cisterna_magna")
    # frontal scalloping: brain lost against the same head without it, all of it in the mask
    lost = normal.parts["brain"] & ~lemon.parts["brain"]
    assert lost.sum() > 0.03 * normal.parts["brain"].sum()
    assert (lost & lemon.parts["lemon"]).sum() > 0.85 * lost.sum()
    assert not (lemon.parts["brain"] & ~normal.parts["brain"]).any()
    assert has(normal, "cisterna_magna")


def test_every_class_view_is_known_and_unknowns_are_refused() -> None:
    rng = np.random.default_rng(0)
    for label, views in VIEWS.items():
        assert label in CLASSES
        for view, _ in views:
            assert sample_case(label, 20.0, rng, view=view).view == view
    with pytest.raises(DataError):
        render("hydrocephalus", 20.0, "A", rng, SIZE)
    with pytest.raises(DataError):
        sample_case("anencephaly", 20.0, rng, view="tv")
    with pytest.raises(DataError):
        render("normal", 20.0, "Z", rng, SIZE)


# -- data set, manifest, DICOM ---------------------------------------------------------------
@pytest.fixture(scope="module")
def dicom_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantom_dicom")
    return generate_dataset(out, 1, 4, seed=3, fmt="dicom", size=(120, 96))


def read_manifest(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_manifest_columns_centers_and_patients(dicom_set: Path) -> None:
    rows = read_manifest(dicom_set)
    assert list(rows[0]) == [
        "path",
        "frame",
        "patient_id",
        "center",
        "label",
        "ga_weeks",
        "mask_path",
    ]
    centers_of: dict[str, set[str]] = {}
    for r in rows:
        centers_of.setdefault(r["patient_id"], set()).add(r["center"])
        assert (dicom_set.parent / r["path"]).is_file()
        assert (dicom_set.parent / r["mask_path"]).is_file()
        assert 14.0 <= float(r["ga_weeks"]) <= 40.0
        assert r["label"] not in r["path"] and r["label"] not in r["mask_path"]
    assert all(len(c) == 1 for c in centers_of.values())
    pairs = {(r["center"], r["label"]) for r in rows}
    assert pairs == {(c, lab) for c in "ABCD" for lab in CLASSES}
    assert len(centers_of) == 4 * len(CLASSES)
    per_patient = {p: sum(r["patient_id"] == p for r in rows) for p in centers_of}
    assert min(per_patient.values()) >= 3


def test_dicom_headers(dicom_set: Path) -> None:
    import pydicom

    rows = read_manifest(dicom_set)
    seen_classes = set()
    for r in rows:
        ds = pydicom.dcmread(dicom_set.parent / r["path"])
        seen_classes.add(ds.SOPClassUID)
        assert ds.BurnedInAnnotation == "YES"
        assert str(ds.PatientName).startswith("PHANTOM^CASE")
        assert ds.PatientID == r["patient_id"]
        reg = ds.SequenceOfUltrasoundRegions[0]
        assert reg.PhysicalUnitsXDirection == 3 and reg.PhysicalUnitsYDirection == 3
        assert reg.PhysicalDeltaX == pytest.approx(reg.PhysicalDeltaY)
        ga = float(ds.AcquisitionContextSequence[0].NumericValue)
        assert ga == pytest.approx(float(r["ga_weeks"]), abs=1e-3)
        assert ds.AcquisitionContextSequence[0].ConceptNameCodeSequence[0].CodeValue == "18185-9"
        frames = int(ds.get("NumberOfFrames", 1))
        if frames > 1:
            assert float(ds.FrameTime) > 0
        assert int(r["frame"]) < frames
        assert ds.pixel_array.shape[-3:] == (96, 120, 3)
    assert seen_classes <= {"1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.3.1"}


def test_dicom_spacing_is_the_drawn_spacing(tmp_path: Path) -> None:
    import pydicom

    from fetal_viewer.core.phantoms.dataset import (
        plan_patients,
        render_patient,
        write_patient_dicom,
    )

    plan = plan_patients(1, ["B"], seed=4)[0]
    pf = render_patient(plan, (160, 120))
    files = write_patient_dicom(tmp_path, pf, seed=4, jpeg_quality=90)
    ds = pydicom.dcmread(files[0][0])
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    spacing = pf.frames[0].meta["spacing_mm"][0]
    assert ds.SequenceOfUltrasoundRegions[0].PhysicalDeltaX * 10.0 == pytest.approx(spacing)
    reg = ds.SequenceOfUltrasoundRegions[0]
    region = (reg.RegionLocationMinX0, reg.RegionLocationMinY0)
    region += (reg.RegionLocationMaxX1, reg.RegionLocationMaxY1)
    assert region == pf.frames[0].meta["region"]
    assert ds.DepthOfScanField == round(pf.frames[0].meta["depth_mm"])
    decoded = ds.pixel_array if len(pf.frames) == 1 or not pf.cine else ds.pixel_array[0]
    assert np.abs(decoded.astype(int) - pf.frames[0].image.astype(int)).mean() < 6.0


def test_dicom_reloads_through_the_project_loader(dicom_set: Path) -> None:
    from fetal_viewer.core import io

    rows = read_manifest(dicom_set)
    result = io.open_path(dicom_set.parent / "dicom")
    assert not result.problems
    patients = {p.identity.patient_id: p for p in result.patients}
    assert set(patients) == {r["patient_id"] for r in rows}
    for pid, patient in patients.items():
        mine = [r for r in rows if r["patient_id"] == pid]
        n_frames = sum(len(s) for st in patient.studies for s in st.series)
        assert n_frames == len(mine)
        for st in patient.studies:
            for series in st.series:
                assert series.modality == "US"
                assert series.burned_in_annotation is True
                assert series.calibration.spacing_mm is not None
                assert series.ga_weeks == pytest.approx(float(mine[0]["ga_weeks"]), abs=0.01)
                frame = series.frame(0)
                assert frame.shape == (96, 120, 3) and frame.dtype == np.uint8
