"""A coordinator's use cases, written once for both faces: ``fetal-viewer study`` and the
Coordinator and reading windows call these.

- :func:`create_study`: cases from a folder plus a reference-standard CSV, or a manifest;
  the study's model card pinned by its sha256; the study stored.
- :func:`enrol_reader`: add the reader if new, then enrol them (their case order is seeded).
- The AI provider for a study: :class:`StudyModel` runs the study's model on a case (the
  reading window, and anything that reads with the real model), only ever called through
  the blinded :meth:`ReadingSession.get_ai`; headless reading replays AI outputs saved in
  a JSON file (:mod:`.headless`).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.io.study import Calibration
from fetal_viewer.core.model.artifacts import sha256_file
from fetal_viewer.core.readerstudy import cases as case_lists
from fetal_viewer.core.readerstudy.protocol import AIOutput, CaseView
from fetal_viewer.core.store import Enrolment, Store, Study
from fetal_viewer.errors import DataError, ModelLoadError


@dataclass(frozen=True)
class NewStudy:
    """What a coordinator asks for when creating a study (the CLI's arguments, the GUI's
    new-study form)."""

    name: str
    design: str
    seed: int
    washout_days: float
    labels: tuple[str, ...]  # empty: the model card's classes, else the five classes
    folder: str | None = None
    manifest: str | None = None
    reference_csv: str | None = None
    model_card: str | None = None
    require_ratings: bool = False  # Submit asks for both ratings
    show_ga: bool = False  # readers see the case's gestational age


def create_study(store: Store, req: NewStudy) -> Study:
    """Read the case list, pin the model card, store the study."""
    name = req.name.strip()
    if not name:
        raise DataError("A study needs a name.", fix="Give it one, e.g. pilot-2026.")
    if not (math.isfinite(req.washout_days) and req.washout_days >= 0):
        raise DataError(
            f"The washout must be 0 days or more, got {req.washout_days:g}.",
            fix="Give the days between a crossover's two sessions (0 for none).",
        )
    if req.folder:
        if not req.reference_csv:
            raise DataError(
                "A folder needs a reference-standard CSV (path,label).",
                fix="Choose the reference CSV (`study create --reference`), or create the "
                "study from a manifest.",
            )
        specs = case_lists.cases_from_reference(Path(req.folder), Path(req.reference_csv))
    elif req.manifest:
        ref = Path(req.reference_csv) if req.reference_csv else None
        specs = case_lists.cases_from_manifest(Path(req.manifest), ref)
    else:
        raise DataError("Choose a folder (with a reference CSV) or a manifest.")
    seen: dict[tuple[str, int], str] = {}
    twice = []
    for spec in specs:
        key = (str(Path(spec.source_path).resolve()), spec.frame)
        if key in seen:
            twice.append(
                f"{spec.source_path} frame {spec.frame} ({seen[key]}, {spec.reference_label})"
            )
        seen[key] = spec.reference_label
    if twice:
        raise DataError(
            f"The case list names the same image {len(twice)} more time(s).",
            why="Each image is one case, read once per condition: "
            + "; ".join(twice[:5])
            + (" …" if len(twice) > 5 else ""),
            fix="Keep one row per image in the reference CSV or manifest.",
        )
    card, sha, labels = case_lists.study_model(req.model_card, list(req.labels))
    return store.create_study(
        name,
        design=req.design,
        labels=labels,
        cases=specs,
        seed=req.seed,
        washout_days=req.washout_days,
        model_card=card,
        model_sha256=sha,
        require_ratings=req.require_ratings,
        show_ga=req.show_ga,
    )


@dataclass(frozen=True)
class Enrolled:
    """What :func:`enrol_reader` did: the enrolment, and in words what was already there
    (empty when the reader is new to the database and to the study)."""

    enrolment: Enrolment
    note: str = ""

    def words(self) -> str:
        e = self.enrolment
        return self.note or f"Reader {e.reader} enrolled in {e.study} (order seed {e.order_seed})."


def enrol_reader(
    store: Store, study: str, pseudonym: str, role: str = "radiologist", years: float = 0.0
) -> Enrolled:
    """Enrol ``pseudonym`` in ``study``, adding the reader first when they are new (an
    existing reader keeps their role and years, and :attr:`Enrolled.note` says so)."""
    pseudonym = pseudonym.strip()
    if not pseudonym:
        raise DataError("A reader needs a pseudonym.", fix="Give one, e.g. R1 (never a name).")
    if not (math.isfinite(years) and years >= 0):
        raise DataError(
            f"Years of experience must be 0 or more, got {years:g}.", fix="Give the reader's years."
        )
    known = next((r for r in store.list_readers() if r.pseudonym == pseudonym), None)
    enrolled = known is not None and pseudonym in {e.reader for e in store.enrolments(study)}
    if known is None:
        store.add_reader(pseudonym, role, years)
    enrolment = store.enrol(study, pseudonym)
    if known is None:
        return Enrolled(enrolment)
    kept = f"{known.role}, {known.years_experience:g} years"
    if (known.role, known.years_experience) != (role, years):
        kept += f"; the {role}, {years:g} years given now were not stored"
    where = (
        f"already enrolled in {study}" if enrolled else f"a reader already; now enrolled in {study}"
    )
    return Enrolled(enrolment, f"Reader {pseudonym} was {where} ({kept}).")


# ---------------------------------------------------------------------------------------
# the AI provider for a study
# ---------------------------------------------------------------------------------------
def read_case_frame(path: str | Path, index: int = 0) -> tuple[NDArray[np.uint8], Calibration]:
    """(frame as uint8 RGB, calibration) of one frame of one file, through the study loader."""
    from fetal_viewer.core.io.loader import open_series

    series = open_series(path)
    return series.frame(index), series.calibration


@dataclass(frozen=True)
class CaseImage:
    """A case's frame as the reader sees it: the ultrasound field of view only (the crop
    the exports make), so the names, IDs and dates scanners burn into the header stay off
    the screen. ``box`` is the crop ``(x0, y0, x1, y1)`` in the file's frame, whose shape
    is ``full_shape``: maps made over the whole frame are cropped the same way."""

    pseudonym: str
    frame: NDArray[np.uint8]  # (h, w, 3) uint8 RGB, the field of view
    spacing_mm: tuple[float, float] | None
    calibration_note: str
    box: tuple[int, int, int, int] = (0, 0, 0, 0)
    full_shape: tuple[int, int] = (0, 0)

    def crop(self, heatmap: NDArray[np.float32]) -> NDArray[np.float32] | None:
        """``heatmap`` over the whole frame, cropped to what the reader sees (None when it
        is not in the frame's geometry)."""
        if heatmap.shape == self.frame.shape[:2]:
            return heatmap
        if heatmap.shape != self.full_shape:
            return None
        x0, y0, x1, y1 = self.box
        return np.ascontiguousarray(heatmap[y0:y1, x0:x1])


def load_case_image(pseudonym: str, path: str | Path, index: int) -> CaseImage:
    """The frame a reader reads for a case, cropped to the field of view, with its
    calibration (pixel spacing does not change with a crop). The reading window and the
    coordinator's preview both load cases through this."""
    from fetal_viewer.core.model.preprocess import crop_to_fov

    frame, calibration = read_case_frame(path, index)
    fov, box = crop_to_fov(frame)
    spacing = calibration.spacing_mm
    note = "" if spacing else (calibration.reason or "not calibrated")
    h, w = frame.shape[:2]
    return CaseImage(pseudonym, fov, spacing, note, box, (h, w))


class StudyModel:
    """The protocol's ``AIProvider`` from the study's model card: the model run on a case's
    frame, with the Grad-CAM heatmap of the top class. Loading and inference hold one lock,
    so all model work is serial. ``expected_sha`` (the study's ``model_sha256``) refuses any
    other card."""

    def __init__(self, card_path: str | Path, expected_sha: str | None = None) -> None:
        self.card_path = Path(card_path)
        self.sha = sha256_file(self.card_path)
        if expected_sha and expected_sha != self.sha:
            raise ModelLoadError(
                "This model card is not the study's model.",
                why=f"The study was created with model sha256 {expected_sha[:12]}…, this card "
                f"has {self.sha[:12]}….",
                fix="Choose the model card the coordinator used for this study.",
                path=self.card_path,
            )
        self._lock = threading.Lock()
        self._predictor: Any = None
        self.classes: tuple[str, ...] = ()

    def ensure_loaded(self) -> StudyModel:
        with self._lock:
            if self._predictor is None:
                from fetal_viewer.core.model.checkpoint import load_checkpoint
                from fetal_viewer.core.model.predictor import Predictor

                loaded = load_checkpoint(self.card_path)
                self.classes = tuple(loaded.card.classes)
                self._predictor = Predictor(loaded)
        return self

    def __call__(self, case: CaseView) -> AIOutput:
        from fetal_viewer.core.io.loader import open_series
        from fetal_viewer.core.model.guard import foreign_modality

        self.ensure_loaded()
        series = open_series(case.source_path)
        with self._lock:
            # the guard's cine rule needs the verdict on every frame of a cine: one pass
            # over all of them; a still, a model without a guard, or a series withheld by
            # its header (not ultrasound) needs the case's frame
            whole = (
                len(series) > 1
                and self._predictor.guard is not None
                and foreign_modality(series.modality) is None
            )
            frames = series.frames() if whole else [series.frame(case.frame)]
            i = case.frame if whole else 0
            preds = self._predictor.predict(
                frames, with_cam=True, whole_series=whole, modality=series.header_modality
            )
            probs = np.asarray(preds.probs[i], dtype=np.float64)
            top = int(np.argmax(probs))
            heatmap = preds.heatmap(i, top) if preds.cams is not None else None
        scores = preds.domain_scores
        return AIOutput(
            model_sha=self.sha,
            probabilities={c: float(p) for c, p in zip(preds.classes, probs)},
            heatmap=None if heatmap is None else np.asarray(heatmap, dtype=np.float32),
            input_size=self._predictor.spec.input_size,
            domain_score=None if scores is None else float(scores[i]),
            domain_threshold=preds.domain_threshold,
            guard_note=self._predictor.guard_note,
            cine_flagged=preds.cine_flagged,
            foreign_modality=preds.foreign_modality,
        )
