"""Synthetic multi-center data sets: patients with several frames, PNG and/or DICOM,
masks and ``manifest.csv``.

Layout under ``out_dir``::

    manifest.csv                       path, frame, patient_id, center, label, ga_weeks, mask_path
    png/<center>/<patient>/fNNN.png    one RGB frame per file          (fmt png / both)
    dicom/<center>/<patient>/...       cine.dcm (multi-frame) or stillNN.dcm (fmt dicom / both)
    masks/<center>/<patient>/fNNN.png  diagnostic region, 0/255

Paths in the manifest are relative to its folder. With ``fmt="both"`` the manifest points
at the PNG files (the DICOM tree is the same frames, for the viewer). A patient belongs to
one center; every class appears at every center with the same style and age
distributions; patient numbers are shuffled so they say nothing about the class.
"""

from __future__ import annotations

import csv
import datetime as dt
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

from fetal_viewer.core.model.labels import CLASSES
from fetal_viewer.core.phantoms.anatomy import VIEWS, sample_case, sample_pose
from fetal_viewer.core.phantoms.biometry import GA_MAX_WEEKS, GA_MIN_WEEKS
from fetal_viewer.core.phantoms.overlay import Annotation
from fetal_viewer.core.phantoms.render import (
    FRAMED_SHARE,
    Phantom,
    choose_depth_mm,
    choose_sector_deg,
    frame_case,
    frame_exam,
    ga_text,
    lesion_view,
    render_case,
)
from fetal_viewer.core.phantoms.styles import ScannerStyle, first_styles, get_style
from fetal_viewer.core.progress import CancelToken, ProgressFn, completed, no_progress
from fetal_viewer.errors import DataError

MANIFEST_COLUMNS = ("path", "frame", "patient_id", "center", "label", "ga_weeks", "mask_path")
FORMATS = ("png", "dicom", "both")
#: frames per patient (inclusive range)
FRAMES_PER_PATIENT = (3, 6)


@dataclass(frozen=True)
class PatientPlan:
    """One synthetic patient: who, where, what, and the seed of everything drawn."""

    number: int
    center: ScannerStyle
    label: str
    seed: np.random.SeedSequence

    @property
    def patient_id(self) -> str:
        return f"PHANTOM-{self.number:04d}"

    @property
    def patient_name(self) -> str:
        return f"PHANTOM^CASE{self.number:04d}"


@dataclass(frozen=True)
class PatientFrames:
    plan: PatientPlan
    ga_weeks: float
    cine: bool
    frames: list[Phantom]
    study_date: dt.date
    study_time: dt.time
    birth_date: dt.date


def plan_patients(
    patients_per_class: int, centers: int | Sequence[str], seed: int
) -> list[PatientPlan]:
    """``patients_per_class`` patients of every class at every center."""
    if patients_per_class < 1:
        raise DataError(
            f"patients_per_class must be at least 1, got {patients_per_class}.",
            fix="Ask for one or more patients of each class.",
        )
    styles = first_styles(centers) if isinstance(centers, int) else tuple(map(get_style, centers))
    slots = [(st, lab, k) for st in styles for lab in CLASSES for k in range(patients_per_class)]
    root = np.random.SeedSequence(seed)
    shuffle_ss, *patient_ss = root.spawn(len(slots) + 1)
    numbers = np.random.default_rng(shuffle_ss).permutation(len(slots)) + 1
    return [
        PatientPlan(number=int(numbers[i]), center=st, label=lab, seed=patient_ss[i])
        for i, (st, lab, _) in enumerate(slots)
    ]


def render_patient(plan: PatientPlan, size: tuple[int, int] | None) -> PatientFrames:
    """All frames of one patient: a cine sweep of one view with slow probe motion, or
    stills of several views of the class with the probe moved between them."""
    rng = np.random.default_rng(plan.seed)
    style = plan.center
    ga = round(float(rng.uniform(GA_MIN_WEEKS, GA_MAX_WEEKS)) * 7.0) / 7.0
    n = int(rng.integers(FRAMES_PER_PATIENT[0], FRAMES_PER_PATIENT[1] + 1))
    cine = bool(rng.random() < 0.5)
    base = sample_case(plan.label, ga, rng)
    depth = choose_depth_mm(style, ga, float(rng.random()))
    sector = choose_sector_deg(style, float(rng.random()))
    gain = float(rng.uniform(-3.0, 3.0))
    study_date = dt.date(2020, 1, 1) + dt.timedelta(days=int(rng.integers(0, 4 * 365)))
    study_time = dt.time(
        int(rng.integers(8, 18)), int(rng.integers(0, 60)), int(rng.integers(0, 60))
    )
    birth_date = study_date - dt.timedelta(days=int(rng.integers(18 * 365, 42 * 365)))
    views = [v for v, _ in VIEWS[plan.label]]
    probs = np.array([p for _, p in VIEWS[plan.label]])
    size_px = style.native_size if size is None else size
    case, geom, share = frame_exam(base, style, size_px, depth, sector, rng)
    depth, sector = geom.depth_mm, geom.sector_deg
    frames: list[Phantom] = []
    for k in range(n):
        if cine and k > 0:
            # the probe drifts, but the sonographer keeps the diagnostic region in view
            moved = case.with_pose(case.pose.moved(rng, 0.35))
            moved_share = lesion_view(moved, geom)
            if moved_share >= min(FRAMED_SHARE, share):
                case, share = moved, moved_share
        elif k > 0:
            view = views[int(rng.choice(len(views), p=probs / probs.sum()))]
            case = frame_case(replace(base, view=view, pose=sample_pose(rng, view)), geom, rng)
        ann = Annotation(
            patient_name=plan.patient_name,
            patient_id=plan.patient_id,
            date=study_date.isoformat(),
            time=(dt.datetime.combine(study_date, study_time) + dt.timedelta(seconds=20 * k))
            .time()
            .isoformat(),
            ga_text=ga_text(ga),
            frame_text=f"{k + 1}/{n}" if cine else "",
        )
        frames.append(
            render_case(
                case,
                style,
                rng,
                size,
                depth_mm=depth,
                sector_deg=sector,
                annotation=ann,
                gain_db=gain,
                frame=False,
            )
        )
    return PatientFrames(plan, ga, cine, frames, study_date, study_time, birth_date)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", rgb[..., ::-1] if rgb.ndim == 3 else rgb)
    if not ok:
        raise DataError(f"Could not encode {path.name} as PNG.", path=path)
    path.write_bytes(buf.tobytes())


def write_patient_dicom(
    out_dir: Path, pf: PatientFrames, seed: int, jpeg_quality: int | None
) -> list[tuple[Path, int]]:
    """Write one patient's frames as DICOM; returns (file, frame index) per frame."""
    from fetal_viewer.core.phantoms.dicom import DicomPatient, uid, write_us_dicom

    plan = pf.plan
    folder = out_dir / "dicom" / plan.center.center / plan.patient_id
    key = (seed, plan.patient_id)
    patient = DicomPatient(
        patient_name=plan.patient_name,
        patient_id=plan.patient_id,
        birth_date=pf.birth_date,
        study_date=pf.study_date,
        study_time=pf.study_time,
        study_uid=uid(*key, "study"),
        accession=f"PH{plan.number:06d}",
        ga_weeks=pf.ga_weeks,
        center=plan.center.center,
    )
    first = pf.frames[0].meta
    common = {
        "patient": patient,
        "style": plan.center,
        "spacing_mm": float(first["spacing_mm"][0]),
        "region": first["region"],
        "apex": first["apex"],
        "depth_mm": float(first["depth_mm"]),
        "jpeg_quality": jpeg_quality,
    }
    out: list[tuple[Path, int]] = []
    if pf.cine:
        path = folder / "cine.dcm"
        write_us_dicom(
            path,
            [f.image for f in pf.frames],
            series_uid=uid(*key, "series", 1),
            sop_uid=uid(*key, "instance", 1, 1),
            series_number=1,
            instance_number=1,
            series_description="Fetal CNS cine (synthetic)",
            **common,
        )
        out = [(path, k) for k in range(len(pf.frames))]
    else:
        for k, frame in enumerate(pf.frames):
            path = folder / f"still{k + 1:02d}.dcm"
            write_us_dicom(
                path,
                [frame.image],
                series_uid=uid(*key, "series", 1),
                sop_uid=uid(*key, "instance", 1, k + 1),
                series_number=1,
                instance_number=k + 1,
                series_description="Fetal CNS stills (synthetic)",
                **common,
            )
            out.append((path, 0))
    return out


def _write_patient(
    out: Path,
    plan: PatientPlan,
    *,
    size: tuple[int, int] | None,
    fmt: str,
    seed: int,
    jpeg_quality: int | None,
) -> list[dict[str, str]]:
    """Render one planned patient, write its frames and masks, return its manifest rows."""
    pf = render_patient(plan, size)
    rel = Path(plan.center.center) / plan.patient_id
    mask_paths = []
    for k, frame in enumerate(pf.frames):
        mp = Path("masks") / rel / f"f{k:03d}.png"
        _write_png(out / mp, frame.mask.astype(np.uint8) * 255)
        mask_paths.append(mp)
    png_paths: list[tuple[Path, int]] = []
    if fmt in ("png", "both"):
        for k, frame in enumerate(pf.frames):
            pp = Path("png") / rel / f"f{k:03d}.png"
            _write_png(out / pp, frame.image)
            png_paths.append((pp, 0))
    dcm_paths: list[tuple[Path, int]] = []
    if fmt in ("dicom", "both"):
        dcm_paths = [
            (p.relative_to(out), k) for p, k in write_patient_dicom(out, pf, seed, jpeg_quality)
        ]
    listed = png_paths if png_paths else dcm_paths
    return [
        {
            "path": path.as_posix(),
            "frame": str(frame_idx),
            "patient_id": plan.patient_id,
            "center": plan.center.center,
            "label": plan.label,
            "ga_weeks": f"{pf.ga_weeks:.3f}",
            "mask_path": mp.as_posix(),
        }
        for (path, frame_idx), mp in zip(listed, mask_paths)
    ]


def generate_dataset(
    out_dir: str | Path,
    patients_per_class: int = 2,
    centers: int | Sequence[str] = 4,
    seed: int = 0,
    fmt: str = "png",
    size: tuple[int, int] | None = None,
    progress: ProgressFn = no_progress,
    *,
    jpeg_quality: int | None = None,
    cancel: CancelToken | None = None,
    workers: int = 1,
) -> Path:
    """Generate a multi-center phantom data set and return the path of its manifest.

    ``patients_per_class`` patients of each class at each of ``centers`` centers (a count,
    taking the first styles, or center letters); ``fmt`` is ``png``, ``dicom`` or ``both``;
    ``size`` is (width, height), the center's native matrix when None; ``jpeg_quality``
    writes JPEG Baseline DICOM instead of uncompressed; ``workers`` > 1 renders patients in
    that many processes. Same arguments (whatever ``workers``), same bytes.
    """
    if fmt not in FORMATS:
        raise DataError(f"Unknown phantom format {fmt!r}.", fix=f"Use one of {', '.join(FORMATS)}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plans = plan_patients(patients_per_class, centers, seed)
    rows: list[dict[str, str]] = []
    total = len(plans)
    progress(0, total, "phantom patients")
    job = partial(_write_patient, out, size=size, fmt=fmt, seed=seed, jpeg_quality=jpeg_quality)
    if workers <= 1 or total < 2:
        for i, plan in enumerate(plans):
            if cancel is not None:
                cancel.raise_if_cancelled()
            rows.extend(job(plan))
            progress(i + 1, total, plan.patient_id)
    else:
        # each patient has its own seed from the plan, so the files do not depend on which
        # process draws them; spawned workers, since a forked Qt or torch process is unsafe
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(workers, total), mp_context=ctx) as pool:
            for i, (plan, patient_rows) in enumerate(completed(pool, job, plans, cancel), 1):
                rows.extend(patient_rows)
                progress(i, total, plan.patient_id)
    rows.sort(key=lambda r: (r["patient_id"], r["path"], int(r["frame"])))
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(MANIFEST_COLUMNS), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return manifest
