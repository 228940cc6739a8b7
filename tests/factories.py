"""DICOM files for tests and benchmarks, written with pydicom into a folder the caller owns.

One writer, :func:`write_dicom`, makes any image file the tests need (photometric
interpretation, bit depth, transfer syntax, encapsulated or native pixels, any extra tags);
the helpers below are shapes of it that several tests share. The product's own writer,
``fetal_viewer.core.phantoms.dicom.write_us_dicom``, writes what ``fetal-viewer phantoms``
ships and is tested as such.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)


def write_dicom(
    path: Path,
    pixels: bytes,
    *,
    rows: int,
    cols: int,
    photometric: str = "MONOCHROME2",
    spp: int = 1,
    bits: int = 8,
    frames: int = 1,
    ts: str = ExplicitVRLittleEndian,
    encapsulated: bool = False,
    sop_class: str = UltrasoundMultiFrameImageStorage,
    **tags: object,
) -> Path:
    """An ultrasound image file: ``pixels`` as given (native bytes or an encapsulated
    buffer), the Image Pixel module from the arguments, then ``tags`` by keyword (they may
    override anything set before them). Number of Frames is written when ``frames`` > 1."""
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ts
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "US"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = spp
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if spp > 1:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = pixels
    ds["PixelData"].VR = "OB" if bits <= 8 or encapsulated else "OW"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def us_region(rows: int, cols: int, delta_cm: float) -> Dataset:
    """A Sequence of Ultrasound Regions item: one 2-D tissue region over the whole image,
    ``delta_cm`` cm per pixel both ways."""
    region = Dataset()
    region.RegionSpatialFormat = 1
    region.RegionDataType = 1
    region.RegionFlags = 0
    region.RegionLocationMinX0 = 0
    region.RegionLocationMinY0 = 0
    region.RegionLocationMaxX1 = cols - 1
    region.RegionLocationMaxY1 = rows - 1
    region.PhysicalUnitsXDirection = 3  # cm
    region.PhysicalUnitsYDirection = 3
    region.PhysicalDeltaX = delta_cm
    region.PhysicalDeltaY = delta_cm
    return region


def write_rgb_cine(
    path: Path,
    frames: np.ndarray,
    *,
    region_cm: float | None = None,
    ts: str = ExplicitVRLittleEndian,
    **tags: object,
) -> Path:
    """``frames`` (n, rows, cols, 3) uint8 as native RGB, Number of Frames always written;
    with ``region_cm``, a calibrated Sequence of Ultrasound Regions."""
    n, rows, cols, _ = frames.shape
    if region_cm is not None:
        tags.setdefault("SequenceOfUltrasoundRegions", [us_region(rows, cols, region_cm)])
    return write_dicom(
        path,
        np.ascontiguousarray(frames, dtype=np.uint8).tobytes(),
        rows=rows,
        cols=cols,
        photometric="RGB",
        spp=3,
        ts=ts,
        NumberOfFrames=n,
        **tags,
    )


def jpeg_frames(images: Sequence[np.ndarray], quality: int = 95) -> list[bytes]:
    """RGB uint8 images as baseline JPEGs with 4:2:2 chroma (OpenCV's libjpeg-turbo)."""
    params = [
        cv2.IMWRITE_JPEG_QUALITY, quality,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
    ]  # fmt: skip
    blobs = []
    for rgb in images:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
        assert ok
        blobs.append(buf.tobytes())
    return blobs


def write_jpeg_cine(
    path: Path, images: Sequence[np.ndarray], *, quality: int = 95, **tags: object
) -> Path:
    """Encapsulated JPEG baseline YBR_FULL_422 frames, one fragment each, with a Basic
    Offset Table."""
    rows, cols = images[0].shape[:2]
    return write_dicom(
        path,
        encapsulate(jpeg_frames(images, quality)),
        rows=rows,
        cols=cols,
        photometric="YBR_FULL_422",
        spp=3,
        frames=len(images),
        ts=JPEGBaseline8Bit,
        encapsulated=True,
        **tags,
    )


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``fetal-viewer ARGS...`` as a user runs it: a subprocess, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "fetal_viewer", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_mostly_foreign_cine(path: Path) -> Path:
    """A 6-frame RGB cine for the domain guard's cine rule: 2 frames of an unseen-seed
    phantom head (the shipped model's domain) and then 4 frames of pydicom-data's real colour
    Doppler echo cine, scaled to the same 256 x 256. Frame by frame, the shipped guard lets
    the first 2 through and flags the other 4 (measured), so the cine is withheld whole."""
    from pydicom.data import get_testdata_file

    from fetal_viewer.core.io import open_paths
    from fetal_viewer.core.phantoms.dataset import plan_patients, render_patient

    plan = plan_patients(1, 1, seed=31337)[0]
    heads = [f.image for f in render_patient(plan, (256, 256)).frames[:2]]
    echo = open_paths([Path(get_testdata_file("color3d_jpeg_baseline.dcm"))]).series[0]
    foreign = [
        cv2.resize(echo.frame(i), (256, 256), interpolation=cv2.INTER_AREA) for i in (0, 30, 60, 90)
    ]
    frames = np.stack([np.dstack([h] * 3) if h.ndim == 2 else h for h in heads] + foreign)
    return write_rgb_cine(
        path,
        frames,
        Modality="US",
        PatientID="MIXED-1",
        PatientName="Cine^Mixed",
        SeriesDescription="Mixed cine",
    )


def write_head_cine(path: Path, modality: str, n: int = 2) -> Path:
    """An ``n``-frame RGB cine of an unseen-seed phantom head (inside the shipped model's
    domain, frame by frame) whose header names ``modality``: the header rule's test file."""
    from fetal_viewer.core.phantoms.dataset import plan_patients, render_patient

    plan = plan_patients(1, 1, seed=31337)[0]
    heads = [f.image for f in render_patient(plan, (256, 256)).frames[:n]]
    frames = np.stack([np.dstack([h] * 3) if h.ndim == 2 else h for h in heads])
    return write_rgb_cine(
        path,
        frames,
        Modality=modality,
        PatientID="HEAD-1",
        PatientName="Cine^Head",
        SeriesDescription=f"Head labelled {modality}",
    )
