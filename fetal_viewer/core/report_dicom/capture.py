"""A key frame as a secondary capture: the frame with the heatmap of the study's most
probable class blended over it and a caption band below (see
:mod:`fetal_viewer.core.report_dicom`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from fetal_viewer import INTENDED_USE
from fetal_viewer.core.report_dicom import MANUFACTURER

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from fetal_viewer.core.report_dicom.analysis import KeyFrame, StudyAnalysis

SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
SC_SERIES_DESCRIPTION = "AI heatmaps (research use only, not for clinical use)"
#: series number of the new series, far from a scanner's
SC_SERIES_NUMBER = 9902


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
