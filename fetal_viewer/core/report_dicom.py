"""The AI result of a study as DICOM objects a PACS keeps: one Comprehensive SR and one
secondary capture per key frame.

* The SR is a TID 1500 Measurement Report (highdicom): the observer is the app (device)
  and the subject the fetus; one measurement group for the study (the aggregated
  per-class probabilities, the most probable class) and one per analysed frame, each
  referencing its source instance and frame number, with the per-class probabilities,
  the domain guard's score and verdict where the model has one, and the algorithm
  (model name, version, weights sha256). A "Qualitative Evaluations" container carries
  the intended use as text: research use only, not for clinical use.
* Each secondary capture is the key frame with the heatmap of the study's most probable
  class blended over it (:func:`fetal_viewer.core.cam.overlay.blend`) and a caption band
  below it naming class, probability, model and intended use; ``ImageType``
  DERIVED\\SECONDARY and a Source Image Sequence pointing at the frame it came from.

Both go into new series of the source study (same patient and study), so a PACS files
them beside the images. Class concepts use the private coding scheme
:data:`SCHEME` ("Probability of <class>"); the rest are DCM, SCT and UCUM codes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from fetal_viewer import INTENDED_USE
from fetal_viewer.core.model.aggregation import NO_ASSESSABLE
from fetal_viewer.core.progress import CancelToken, ProgressFn, no_progress
from fetal_viewer.errors import StudyLoadError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from fetal_viewer.core.io.study import Study

#: private coding scheme of the classes and of the guard's concepts
SCHEME = "99FETALVIEWER"
MANUFACTURER = "fetal-viewer"
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
SR_SERIES_DESCRIPTION = "AI result (research use only, not for clinical use)"
SC_SERIES_DESCRIPTION = "AI heatmaps (research use only, not for clinical use)"
#: series numbers of the new series, far from a scanner's
SR_SERIES_NUMBER = 9901
SC_SERIES_NUMBER = 9902


@dataclass(frozen=True)
class FrameResult:
    """One analysed frame: its source instance, 1-based frame number, per-class
    probabilities, and the domain guard's verdict and score when the model has a guard."""

    sop_instance_uid: str
    frame_number: int
    probs: Sequence[float]
    in_domain: bool | None = None
    domain_score: float | None = None


@dataclass(frozen=True)
class KeyFrame:
    """A frame shown as a secondary capture: the frame, and the heatmap of ``class_name``
    in its geometry (``(rows, cols)`` in [0, 1])."""

    sop_instance_uid: str
    frame_number: int
    class_name: str
    probability: float
    image: NDArray[np.uint8]
    heatmap: NDArray[np.float32]


@dataclass(frozen=True)
class StudyAnalysis:
    """What the model said about one study."""

    model_name: str
    model_version: str
    weights_sha256: str
    classes: tuple[str, ...]
    aggregation: str
    #: aggregated over the assessable frames; ``None`` when the domain guard let none through
    study_probs: Sequence[float] | None
    frames: tuple[FrameResult, ...]
    key_frames: tuple[KeyFrame, ...] = ()
    domain_threshold: float | None = None
    heatmap_method: str = "gradcam"

    @property
    def top(self) -> tuple[str, float] | None:
        """The study's most probable class, or ``None`` (no assessable frames)."""
        if self.study_probs is None:
            return None
        j = int(np.argmax(np.asarray(self.study_probs)))
        return self.classes[j], float(self.study_probs[j])

    @property
    def n_assessable(self) -> int:
        return sum(1 for f in self.frames if f.in_domain is not False)


@dataclass(frozen=True)
class ResultObjects:
    sr: Dataset
    captures: tuple[Dataset, ...]

    @property
    def all(self) -> list[Dataset]:
        return [self.sr, *self.captures]


def _code_value(name: str) -> str:
    return (re.sub(r"[^A-Z0-9]+", "-", name.upper()).strip("-") or "CLASS")[:16]


def class_code(name: str) -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(_code_value(name), SCHEME, name)


def probability_code(name: str) -> Any:
    from highdicom.sr import CodedConcept

    return CodedConcept(f"P-{_code_value(name)}"[:16], SCHEME, f"Probability of {name}")


def _concepts() -> dict[str, Any]:
    from highdicom.sr import CodedConcept

    return {
        "top": CodedConcept("TOP-CLASS", SCHEME, "Most probable class"),
        "in_domain": CodedConcept("IN-DOMAIN", SCHEME, "Within the model's training domain"),
        "domain_score": CodedConcept("DOMAIN-SCORE", SCHEME, "Domain guard score"),
        "threshold": CodedConcept("DOMAIN-THRESH", SCHEME, "Domain guard threshold"),
        "frames": CodedConcept("N-FRAMES", SCHEME, "Frames analysed"),
        "assessable": CodedConcept("N-ASSESSABLE", SCHEME, "Frames within the model's domain"),
    }


# ---------------------------------------------------------------------------------------
# source headers
# ---------------------------------------------------------------------------------------
def read_sources(paths: Sequence[Path]) -> dict[str, Dataset]:
    """Headers of the source instances, by SOP Instance UID (no pixel data)."""
    from pydicom import dcmread

    out: dict[str, Dataset] = {}
    for path in paths:
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except Exception as exc:
            raise StudyLoadError(
                "A source of the AI result is not a readable DICOM file.",
                why=f"{type(exc).__name__}: {exc}",
                fix="AI results as DICOM need the study's DICOM files.",
                path=path,
            ) from exc
        out[str(ds.SOPInstanceUID)] = ds
    return out


def _evidence(ds: Dataset) -> Dataset:
    """A header copy with the Type 2 patient/study attributes an SR copies present."""
    from copy import deepcopy

    out = deepcopy(ds)
    for key in (
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "AccessionNumber",
        "StudyID",
        "StudyDate",
        "StudyTime",
        "ReferringPhysicianName",
    ):
        if key not in out:
            setattr(out, key, "")
    return out


def _check_same_study(sources: dict[str, Dataset]) -> None:
    studies = {str(ds.get("StudyInstanceUID", "")) for ds in sources.values()}
    if len(studies) != 1 or "" in studies:
        raise StudyLoadError(
            "The AI result must come from one study.",
            why=f"its frames come from {len(studies)} studies",
            fix="Analyse and report one study at a time.",
        )


# ---------------------------------------------------------------------------------------
# the structured report
# ---------------------------------------------------------------------------------------
def build_sr(
    analysis: StudyAnalysis,
    sources: dict[str, Dataset],
    *,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    device_uid: str | None = None,
) -> Dataset:
    """The Comprehensive SR of ``analysis`` (see the module docstring)."""
    from highdicom.sr import (
        AlgorithmIdentification,
        CodedConcept,
        ComprehensiveSR,
        ContainerContentItem,
        ContentSequence,
        DeviceObserverIdentifyingAttributes,
        Measurement,
        MeasurementReport,
        MeasurementsAndQualitativeEvaluations,
        ObservationContext,
        ObserverContext,
        QualitativeEvaluation,
        RelationshipTypeValues,
        SourceImageForMeasurementGroup,
        SubjectContext,
        SubjectContextFetus,
        TextContentItem,
        TrackingIdentifier,
    )
    from pydicom.dataset import Dataset
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from fetal_viewer import __version__

    _check_same_study(sources)
    missing = sorted({f.sop_instance_uid for f in analysis.frames} - set(sources))
    if missing:
        raise StudyLoadError(
            "The AI result names frames whose source instance is not given.",
            why=f"{len(missing)} instance(s) missing, e.g. {missing[0]}",
        )
    concept = _concepts()
    unit = codes.UCUM.NoUnits
    params = [f"weights sha256 {analysis.weights_sha256 or 'unknown'}"]
    params.append(f"aggregation {analysis.aggregation}")
    if analysis.domain_threshold is not None:
        params.append(f"domain guard threshold {analysis.domain_threshold:.6g}")
    algorithm = AlgorithmIdentification(
        name=analysis.model_name[:64], version=analysis.model_version[:64], parameters=params
    )

    def probabilities(probs: Sequence[float]) -> list[Any]:
        return [
            Measurement(name=probability_code(c), value=round(float(p), 6), unit=unit)
            for c, p in zip(analysis.classes, probs)
        ]

    def top_class(probs: Sequence[float]) -> Any:
        name = analysis.classes[int(np.argmax(np.asarray(probs)))]
        return QualitativeEvaluation(concept["top"], class_code(name))

    top = analysis.top
    counts = [
        Measurement(concept["frames"], float(len(analysis.frames)), unit),
        Measurement(concept["assessable"], float(analysis.n_assessable), unit),
    ]
    study_group = MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=generate_uid(), identifier="Study (aggregated)"),
        algorithm_id=algorithm,
        measurements=[
            *(probabilities(analysis.study_probs) if analysis.study_probs is not None else []),
            *counts,
        ],
        qualitative_evaluations=(
            [top_class(analysis.study_probs)] if analysis.study_probs is not None else None
        ),
    )
    groups = [study_group]
    for k, frame in enumerate(analysis.frames):
        # a frame the domain guard flags keeps its verdict and score; its class output is
        # withheld, as the viewer withholds it
        shown = frame.in_domain is not False
        measurements = probabilities(frame.probs) if shown else []
        qualitative = [top_class(frame.probs)] if shown else []
        if frame.domain_score is not None:
            measurements.append(
                Measurement(concept["domain_score"], float(frame.domain_score), unit)
            )
        if analysis.domain_threshold is not None and frame.domain_score is not None:
            measurements.append(
                Measurement(concept["threshold"], float(analysis.domain_threshold), unit)
            )
        if frame.in_domain is not None:
            qualitative.append(
                QualitativeEvaluation(
                    concept["in_domain"], codes.SCT.Yes if frame.in_domain else codes.SCT.No
                )
            )
        source = sources[frame.sop_instance_uid]
        n_frames = int(source.get("NumberOfFrames", 1) or 1)
        groups.append(
            MeasurementsAndQualitativeEvaluations(
                tracking_identifier=TrackingIdentifier(
                    uid=generate_uid(), identifier=f"Frame {k + 1}"
                ),
                algorithm_id=algorithm,
                measurements=measurements or None,
                qualitative_evaluations=qualitative or None,
                source_images=[
                    SourceImageForMeasurementGroup.from_source_image(
                        source,
                        referenced_frame_numbers=[frame.frame_number] if n_frames > 1 else None,
                    )
                ],
            )
        )
    device = DeviceObserverIdentifyingAttributes(
        uid=device_uid or generate_uid(entropy_srcs=["fetal-viewer", analysis.model_name]),
        name="fetal-viewer",
        manufacturer_name=MANUFACTURER,
        model_name=f"{analysis.model_name} {analysis.model_version}"[:64],
    )
    context = ObservationContext(
        observer_device_context=ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        ),
        subject_context=SubjectContext(
            subject_class=codes.DCM.Fetus,
            subject_class_specific_context=SubjectContextFetus(subject_id="1"),
        ),
    )
    report = MeasurementReport(
        observation_context=context,
        procedure_reported=codes.SCT.ObstetricUSScan,
        imaging_measurements=groups,
    )
    # TID 1500 row 12: Qualitative Evaluations, which may hold TEXT: the intended use
    evaluations = ContainerContentItem(
        name=CodedConcept("C0034375", "UMLS", "Qualitative Evaluations"),
        relationship_type=RelationshipTypeValues.CONTAINS,
    )
    evaluations.ContentSequence = ContentSequence(
        [
            TextContentItem(
                name=codes.DCM.Comment,
                value=f"{INTENDED_USE} AI output of {analysis.model_name} "
                f"{analysis.model_version}; "
                + (
                    f"most probable class of the study: {top[0]}."
                    if top is not None
                    else f"{NO_ASSESSABLE}: every frame lies outside the model's training "
                    "domain, so no class is given."
                ),
                relationship_type=RelationshipTypeValues.CONTAINS,
            )
        ]
    )
    report[0].ContentSequence.append(evaluations)
    evidence = [_evidence(sources[uid]) for uid in dict.fromkeys(sources)]
    sr = ComprehensiveSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=series_uid or generate_uid(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=sop_uid or generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description=SR_SERIES_DESCRIPTION,
    )
    sr.SoftwareVersions = f"fetal-viewer {__version__}"
    sr.ManufacturerModelName = analysis.model_name[:64]
    scheme = Dataset()
    scheme.CodingSchemeDesignator = SCHEME
    scheme.CodingSchemeName = "fetal-viewer class and domain guard concepts"
    scheme.CodingSchemeResponsibleOrganization = MANUFACTURER
    sr.CodingSchemeIdentificationSequence = [scheme]
    return sr


# ---------------------------------------------------------------------------------------
# secondary captures
# ---------------------------------------------------------------------------------------
def caption_band(width: int, lines: Sequence[str]) -> NDArray[np.uint8]:
    """A black band with white text lines, as wide as the image; each line is shrunk to
    fit the width."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    base = max(0.35, min(0.6, width / 900.0))
    scales = []
    for text in lines:
        (w, _), _ = cv2.getTextSize(text, font, 1.0, 1)
        scales.append(max(0.2, min(base, (width - 8) / max(w, 1))))
    heights = [round(26 * sc) + 4 for sc in scales]
    band = np.zeros((sum(heights) + 4, width, 3), np.uint8)
    y = 0
    for text, sc, h in zip(lines, scales, heights):
        y += h
        cv2.putText(band, text, (4, y - 3), font, sc, (255, 255, 255), 1, cv2.LINE_AA)
    return band


def build_capture(
    key: KeyFrame,
    source: Dataset,
    analysis: StudyAnalysis,
    *,
    series_uid: str,
    instance_number: int,
    sop_uid: str | None = None,
    alpha: float = 0.4,
) -> Dataset:
    """The secondary capture of one key frame (see the module docstring)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

    from fetal_viewer import __version__
    from fetal_viewer.core.cam.overlay import blend

    overlay = blend(key.image, key.heatmap, alpha=alpha)
    lines = [
        f"AI heatmap ({analysis.heatmap_method}): {key.class_name} p={key.probability:.3f}",
        f"{analysis.model_name} {analysis.model_version}"[:80],
        "RESEARCH USE ONLY - NOT FOR CLINICAL USE",
    ]
    pixels = np.ascontiguousarray(
        np.concatenate([overlay, caption_band(overlay.shape[1], lines)], axis=0)
    )
    sop_uid = sop_uid or generate_uid()
    now = dt.datetime.now()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(SC_STORAGE)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = source.get("SpecificCharacterSet", "ISO_IR 100")
    # Patient and General Study: the source's
    for key_name in (
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyDate",
        "StudyTime",
        "ReferringPhysicianName",
        "StudyID",
        "AccessionNumber",
        "StudyDescription",
    ):
        if key_name in source:
            setattr(ds, key_name, source.data_element(key_name).value)  # type: ignore[union-attr]
        elif key_name not in ("IssuerOfPatientID", "StudyDescription"):
            setattr(ds, key_name, "")
    # General Series: new, derived
    ds.Modality = "OT"
    # an obstetric scan images the gravid uterus (unpaired: no Laterality) unless the
    # scanner said otherwise
    ds.BodyPartExamined = str(source.get("BodyPartExamined", "") or "UTERUS")
    if source.get("Laterality"):
        ds.Laterality = source.Laterality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = SC_SERIES_NUMBER
    ds.SeriesDescription = SC_SERIES_DESCRIPTION
    ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    # General Equipment / SC Equipment
    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = f"fetal-viewer {__version__}"
    ds.ConversionType = "WSD"  # workstation
    ds.SecondaryCaptureDeviceManufacturer = MANUFACTURER
    ds.SecondaryCaptureDeviceManufacturerModelName = analysis.model_name[:64]
    ds.SecondaryCaptureDeviceSoftwareVersions = f"fetal-viewer {__version__}"
    ds.DateOfSecondaryCapture = ds.ContentDate
    ds.TimeOfSecondaryCapture = ds.ContentTime
    # General Image
    ds.InstanceNumber = instance_number
    ds.PatientOrientation = ""
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = (
        f"{analysis.heatmap_method} heatmap of {key.class_name} blended at {alpha:g} over "
        f"frame {key.frame_number}; caption band added below. {INTENDED_USE}"
    )[:1024]
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if int(source.get("NumberOfFrames", 1) or 1) > 1:
        ref.ReferencedFrameNumber = key.frame_number
    purpose = Dataset()
    purpose.CodeValue = "121322"
    purpose.CodingSchemeDesignator = "DCM"
    purpose.CodeMeaning = "Source image for image processing operation"
    ref.PurposeOfReferenceCodeSequence = [purpose]
    ds.SourceImageSequence = [ref]
    ds.BurnedInAnnotation = "YES"  # the caption, and whatever the scanner burned in
    ds.LossyImageCompression = str(source.get("LossyImageCompression", "00")) or "00"
    # Image Pixel
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    # SOP Common
    ds.SOPClassUID = SC_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = ds.ContentDate
    ds.InstanceCreationTime = ds.ContentTime
    return ds


def build_results(
    analysis: StudyAnalysis, sources: dict[str, Dataset], *, alpha: float = 0.4
) -> ResultObjects:
    """The SR and one secondary capture per key frame, in two new series of the study."""
    from pydicom.uid import generate_uid

    sr = build_sr(analysis, sources)
    sc_series = str(generate_uid())
    captures = tuple(
        build_capture(
            key,
            sources[key.sop_instance_uid],
            analysis,
            series_uid=sc_series,
            instance_number=i + 1,
            alpha=alpha,
        )
        for i, key in enumerate(analysis.key_frames)
    )
    return ResultObjects(sr, captures)


def write_results(objects: ResultObjects, folder: Path) -> list[Path]:
    """``folder/sr.dcm`` and ``folder/key_frame_NN.dcm``; files are never overwritten."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, ds in [
        ("sr.dcm", objects.sr),
        *((f"key_frame_{i + 1:02d}.dcm", c) for i, c in enumerate(objects.captures)),
    ]:
        path = folder / name
        if path.exists():
            raise StudyLoadError(
                "The output file exists already.",
                fix="Choose an empty --out folder.",
                path=path,
            )
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


# ---------------------------------------------------------------------------------------
# analysing a study
# ---------------------------------------------------------------------------------------
def analyse_study(
    study: Study,
    predictor: Any,
    *,
    max_key_frames: int = 4,
    batch_size: int = 16,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> StudyAnalysis:
    """Run ``predictor`` (:class:`fetal_viewer.core.model.predictor.Predictor`) over every
    frame of a DICOM study, aggregate the assessable frames by the model card's rule, and
    pick key frames: in each series the assessable frame most probable for the study's
    top class, best first.

    With a domain guard in the model, each frame carries its score and verdict; frames
    outside the domain are left out of the aggregate and of the key frames, and a study
    with none inside has no class (``study_probs`` is ``None``)."""
    from fetal_viewer.core.model.aggregation import aggregate_assessable

    card = predictor.card
    series_list = [s for s in study.series if len(s) > 0]
    for s in series_list:
        if not s.instance_uid or not s.transfer_syntax:
            raise StudyLoadError(
                "AI results as DICOM need a DICOM study.",
                why=f"series {s.description or s.uid} is not from a DICOM file",
                fix="Open the study's DICOM files (not exported images).",
                path=s.source,
            )
    n_total = sum(len(s) for s in series_list)
    done = 0
    frames: list[FrameResult] = []
    per_series: list[tuple[Any, Any]] = []
    all_probs = []
    all_ok = []
    threshold: float | None = None
    for series in series_list:
        offset = done

        def report(d: int, t: int, message: str = "", _o: int = offset) -> None:
            progress(_o + d, n_total, message)

        seq = _Frames(series)
        pred = predictor.predict(
            seq, batch_size=batch_size, progress=report, cancel=cancel, with_cam=True
        )
        done += len(seq)
        scores = pred.domain_scores
        inside = pred.in_domain
        threshold = pred.domain_threshold
        for i in range(len(seq)):
            frames.append(
                FrameResult(
                    sop_instance_uid=series.instance_uid,
                    frame_number=i + 1,
                    probs=tuple(round(float(p), 6) for p in pred.probs[i]),
                    in_domain=None if inside is None else bool(inside[i]),
                    domain_score=None if scores is None else round(float(scores[i]), 6),
                )
            )
        all_probs.append(pred.probs)
        all_ok.append(pred.assessable())
        per_series.append((series, pred))
    if not frames:
        raise StudyLoadError("The study has no frames to analyse.")
    classes = tuple(card.classes)
    study_probs = aggregate_assessable(
        np.concatenate(all_probs), np.concatenate(all_ok), card.aggregation
    )
    keys: tuple[KeyFrame, ...] = ()
    if study_probs is not None:
        top = int(np.argmax(study_probs))
        candidates = []
        for series, pred in per_series:
            p = np.where(pred.assessable(), pred.probs[:, top], -1.0)
            i = int(np.argmax(p))
            if p[i] >= 0:
                candidates.append((float(p[i]), series, pred, i))
        candidates.sort(key=lambda c: -c[0])
        keys = tuple(
            KeyFrame(
                sop_instance_uid=series.instance_uid,
                frame_number=i + 1,
                class_name=classes[top],
                probability=p,
                image=np.asarray(series.frame(i), dtype=np.uint8),
                heatmap=pred.heatmap(i, top),
            )
            for p, series, pred, i in candidates[:max_key_frames]
        )
    return StudyAnalysis(
        model_name=card.name,
        model_version=card.version,
        weights_sha256=card.weights_sha256,
        classes=classes,
        aggregation=card.aggregation,
        study_probs=None if study_probs is None else tuple(round(float(p), 6) for p in study_probs),
        frames=tuple(frames),
        key_frames=keys,
        domain_threshold=threshold,
    )


class _Frames(Sequence[Any]):
    def __init__(self, series: Any) -> None:
        self.series = series

    def __len__(self) -> int:
        return len(self.series)

    def __getitem__(self, i: Any) -> Any:
        return self.series.frame(i)


# ---------------------------------------------------------------------------------------
# reading a result back
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReadResult:
    """What :func:`read_sr` finds in one of our SRs."""

    model: str
    algorithm_parameters: tuple[str, ...]
    study_probs: dict[str, float]
    frames: tuple[tuple[str, int | None, dict[str, float], bool | None, float | None], ...]
    text: str


def _algorithm(group: Any) -> dict[str, Any]:
    """Algorithm name (111001), version (111003) and parameters (111002) of a group (the
    TID 4019 items right under its container)."""
    out: dict[str, Any] = {}

    def code(item: Any) -> str:
        name = item.get("ConceptNameCodeSequence")
        return str(name[0].CodeValue) if name else ""

    for item in group[0].get("ContentSequence", []):
        if code(item) in ("111001", "111003"):
            out[code(item)] = str(item.TextValue)
        elif code(item) == "111002":
            out.setdefault("111002", []).append(str(item.TextValue))
    return out


def read_sr(path_or_ds: Path | Dataset) -> ReadResult:
    """Parse an SR written by :func:`build_sr` (for the round trip and for display)."""
    from highdicom.sr import ComprehensiveSR
    from pydicom import dcmread
    from pydicom.dataset import Dataset

    ds = path_or_ds if isinstance(path_or_ds, Dataset) else dcmread(path_or_ds)
    sr = ComprehensiveSR.from_dataset(ds)
    content: Any = sr.content  # a MeasurementReport when the SR follows TID 1500
    if not hasattr(content, "get_image_measurement_groups"):
        raise StudyLoadError(
            "The SR is not a TID 1500 measurement report.",
            fix="Open an AI result written by fetal-viewer.",
        )
    groups = content.get_image_measurement_groups()

    def probs(group: Any) -> dict[str, float]:
        out = {}
        for m in group.get_measurements():
            meaning = str(m.name.meaning)
            if meaning.startswith("Probability of "):
                out[meaning[len("Probability of ") :]] = float(m.value)
        return out

    def guard(group: Any) -> tuple[bool | None, float | None]:
        inside: bool | None = None
        score: float | None = None
        for q in group.get_qualitative_evaluations():
            if q.name.value == "IN-DOMAIN":
                inside = q.value.value == "373066001"  # SCT Yes
        for m in group.get_measurements():
            if m.name.value == "DOMAIN-SCORE":
                score = float(m.value)
        return inside, score

    if not groups:
        raise StudyLoadError("The SR holds no measurement groups.")
    first = groups[0]
    algo = _algorithm(first)
    frames = []
    for g in groups[1:]:
        src = g.source_images[0] if g.source_images else None
        sop = str(src.referenced_sop_instance_uid) if src is not None else ""
        frame_numbers = src.referenced_frame_numbers if src is not None else None
        inside, score = guard(g)
        frames.append((sop, frame_numbers[0] if frame_numbers else None, probs(g), inside, score))
    texts = []
    for item in ds.ContentSequence:
        for sub in item.get("ContentSequence", []):
            if sub.get("ValueType") == "TEXT":
                texts.append(str(sub.TextValue))
    return ReadResult(
        model=f"{algo.get('111001', '')} {algo.get('111003', '')}".strip(),
        algorithm_parameters=tuple(algo.get("111002", [])),
        study_probs=probs(first),
        frames=tuple(frames),
        text=" ".join(texts),
    )
