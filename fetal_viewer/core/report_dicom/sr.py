"""The AI result of a study as a TID 1500 Comprehensive SR (highdicom), and reading one
back (see :mod:`fetal_viewer.core.report_dicom`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fetal_viewer import INTENDED_USE
from fetal_viewer.core.model.aggregation import NO_ASSESSABLE
from fetal_viewer.core.model.guard import CINE_SHARE, READ_MODALITIES
from fetal_viewer.core.report_dicom import MANUFACTURER
from fetal_viewer.errors import StudyLoadError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from fetal_viewer.core.report_dicom.analysis import StudyAnalysis

#: private coding scheme of the classes and of the guard's concepts
SCHEME = "99FETALVIEWER"
SR_SERIES_DESCRIPTION = "AI result (research use only, not for clinical use)"
#: series number of the new series, far from a scanner's
SR_SERIES_NUMBER = 9901


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
    # the header rule withholds whatever the guard says, guard or none (each parameter is an LO)
    read = ", ".join(sorted(m for m in READ_MODALITIES if m))
    params.append(f"header rule: Modality other than {read}, all out")
    if analysis.domain_threshold is not None:
        params.append(f"domain guard threshold {analysis.domain_threshold:.6g}")
        # why a frame under the threshold can be out of domain (each parameter is an LO)
        params.append(f"cine rule: over {CINE_SHARE:.0%} of a file's frames out, all out")
    params.extend(f"{c} logit offset {v:+.6g}" for c, v in analysis.logit_offsets if v)
    if analysis.second_look:
        params.append(f"second look {analysis.second_look}: probabilities of whole and close-up")
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
