"""Writing phantom frames the way an ultrasound scanner does.

* SOP classes: Ultrasound Image Storage (1.2.840.10008.5.1.4.1.1.6.1) for a still,
  Ultrasound Multi-frame Image Storage (1.2.840.10008.5.1.4.1.1.3.1) for a cine loop with
  Frame Time (0018,1063) and Frame Increment Pointer.
* Pixels: RGB, 8 bit, explicit VR little endian; or JPEG Baseline (1.2.840.10008.1.2.4.50),
  one JPEG per frame (YBR_FULL_422, 4:2:2 chroma subsampling), encapsulated with a basic
  offset table.
* Calibration: Sequence of Ultrasound Regions (0018,6011) with one 2-D tissue region
  covering the fan, Physical Units 3 (cm) and Physical Delta X/Y (cm per pixel) equal to
  the true spacing the phantom was drawn with; Reference Pixel = the probe apex.
* Gestational age, in two standard places:
  - Acquisition Context Sequence (0040,0555): one NUM item, concept (18185-9, LN,
    "Gestational age"), Numeric Value in weeks (UCUM ``wk``): the exact value;
  - Last Menstrual Date (0010,21D0): Study Date minus the age in whole days, so
    ``(StudyDate - LMP) / 7`` gives the age a scanner's OB package would.
* Burned In Annotation YES (the text is in the pixels); names and IDs are synthetic
  (``PHANTOM^CASE0007`` / ``PHANTOM-0007``), the issuer is ``FETAL-VIEWER-PHANTOM``.
* Determinism: every UID is ``pydicom.uid.generate_uid`` with entropy sources made of the
  seed and the patient/series/instance, and dates come from the seed, so the same seed
  gives the same bytes.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.phantoms.styles import ScannerStyle

GA_CONCEPT = ("18185-9", "LN", "Gestational age")


@dataclass(frozen=True)
class DicomPatient:
    """Synthetic identity and study of one phantom patient."""

    patient_name: str
    patient_id: str
    birth_date: dt.date
    study_date: dt.date
    study_time: dt.time
    study_uid: str
    accession: str
    ga_weeks: float
    center: str


def uid(*parts: object) -> str:
    """A valid UID under pydicom's root, derived only from ``parts`` (deterministic)."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["fetal-viewer-phantom", *map(str, parts)]))


def _jpeg(frame: NDArray[np.uint8], quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame, "RGB").save(buf, "JPEG", quality=quality, subsampling=1)
    return buf.getvalue()


def write_us_dicom(
    path: Path,
    frames: Sequence[NDArray[np.uint8]],
    *,
    patient: DicomPatient,
    style: ScannerStyle,
    series_uid: str,
    sop_uid: str,
    series_number: int,
    instance_number: int,
    series_description: str,
    spacing_mm: float,
    region: tuple[int, int, int, int],
    apex: tuple[float, float],
    depth_mm: float,
    frame_time_ms: float | None = None,
    jpeg_quality: int | None = None,
) -> Path:
    """Write ``frames`` (RGB uint8, same shape) as one US (multi-frame) DICOM file."""
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.tag import Tag
    from pydicom.uid import (
        PYDICOM_IMPLEMENTATION_UID,
        UID,
        ExplicitVRLittleEndian,
        JPEGBaseline8Bit,
        UltrasoundImageStorage,
        UltrasoundMultiFrameImageStorage,
    )

    multi = len(frames) > 1
    rows, cols = frames[0].shape[:2]
    sop_class = UltrasoundMultiFrameImageStorage if multi else UltrasoundImageStorage

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg_quality else ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "FETALVIEWER_PH"
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)

    date = patient.study_date.strftime("%Y%m%d")
    time = patient.study_time.strftime("%H%M%S")
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = time
    ds.AccessionNumber = patient.accession
    ds.Modality = "US"
    ds.Manufacturer = style.manufacturer
    ds.InstitutionName = f"PHANTOM CENTER {style.center} (synthetic)"
    ds.ReferringPhysicianName = ""
    ds.StationName = f"PHANTOM-{style.center}"
    ds.StudyDescription = "OB fetal CNS (synthetic phantom)"
    ds.SeriesDescription = series_description
    ds.ManufacturerModelName = style.model
    ds.PatientName = patient.patient_name
    ds.PatientID = patient.patient_id
    ds.IssuerOfPatientID = "FETAL-VIEWER-PHANTOM"
    ds.PatientBirthDate = patient.birth_date.strftime("%Y%m%d")
    ds.PatientSex = "F"
    ds.PatientComments = "Synthetic phantom made by fetal-viewer; not a real person."
    lmp = patient.study_date - dt.timedelta(days=round(patient.ga_weeks * 7.0))
    ds.LastMenstrualDate = lmp.strftime("%Y%m%d")
    ds.PregnancyStatus = 3
    ds.DeviceSerialNumber = f"SYN-{style.center}-0001"
    ds.SoftwareVersions = "fetal-viewer phantoms 1"
    ds.StudyInstanceUID = patient.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = patient.accession
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.PatientOrientation = ""
    ds.BurnedInAnnotation = "YES"
    ds.RecognizableVisualFeatures = "NO"

    ctx = Dataset()
    ctx.ValueType = "NUM"
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = GA_CONCEPT
    ctx.ConceptNameCodeSequence = DicomSequence([concept])
    ctx.NumericValue = f"{patient.ga_weeks:.4f}"
    unit = Dataset()
    unit.CodeValue, unit.CodingSchemeDesignator, unit.CodeMeaning = "wk", "UCUM", "week"
    ctx.MeasurementUnitsCodeSequence = DicomSequence([unit])
    ds.AcquisitionContextSequence = DicomSequence([ctx])

    x0, y0, x1, y1 = region
    reg = Dataset()
    reg.RegionSpatialFormat = 1  # 2-D
    reg.RegionDataType = 1  # tissue
    reg.RegionFlags = 0
    reg.RegionLocationMinX0, reg.RegionLocationMinY0 = x0, y0
    reg.RegionLocationMaxX1, reg.RegionLocationMaxY1 = x1, y1
    reg.ReferencePixelX0 = round(apex[0]) - x0
    reg.ReferencePixelY0 = round(apex[1]) - y0
    reg.PhysicalUnitsXDirection = 3  # cm
    reg.PhysicalUnitsYDirection = 3
    reg.ReferencePixelPhysicalValueX = 0.0
    reg.ReferencePixelPhysicalValueY = 0.0
    reg.PhysicalDeltaX = spacing_mm / 10.0
    reg.PhysicalDeltaY = spacing_mm / 10.0
    reg.TransducerFrequency = round(style.freq_mhz * 1000)  # kHz
    ds.SequenceOfUltrasoundRegions = DicomSequence([reg])
    ds.DepthOfScanField = round(depth_mm)

    ds.SamplesPerPixel = 3
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.Rows, ds.Columns = rows, cols
    if multi:
        ft = frame_time_ms if frame_time_ms is not None else 1000.0 / style.frame_rate_hz
        ds.NumberOfFrames = len(frames)
        ds.FrameTime = f"{ft:.3f}"
        ds.FrameIncrementPointer = Tag(0x0018, 0x1063)
        ds.CineRate = round(1000.0 / ft)
        ds.RecommendedDisplayFrameRate = round(1000.0 / ft)
    if jpeg_quality:
        chunks = [_jpeg(np.ascontiguousarray(f), jpeg_quality) for f in frames]
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.PixelData = encapsulate(chunks, has_bot=True)
        ds["PixelData"].VR = "OB"
        raw = rows * cols * 3 * len(frames)
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = f"{raw / sum(len(c) for c in chunks):.2f}"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    else:
        ds.PhotometricInterpretation = "RGB"
        ds.PixelData = np.ascontiguousarray(np.stack(frames)).tobytes()
        ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path
