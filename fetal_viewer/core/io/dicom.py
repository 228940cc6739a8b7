"""DICOM files: header facts without decoding pixels, and lazy one-frame decoding.

Opening a file (:func:`read_dicom`) parses the header with ``stop_before_pixels``, then
locates the Pixel Data element and checks it against the header without reading it: a
native frame's byte range, or the item headers of encapsulated fragments (pydicom's
``encaps.parse_fragments``; so truncated files and absurd dimensions are refused before any
allocation). A frame is decoded only when asked for; an encapsulated frame's bytes are read
with pydicom's ``encaps`` helpers, that frame's fragments only:

- encapsulated JPEG baseline with YBR_FULL(_422) or monochrome data: the frame's fragments
  are read and handed to OpenCV's libjpeg-turbo (``cv2.imdecode``), which applies the JPEG
  YCbCr -> RGB transform itself. Tests check it against pydicom's result.
- native 8-bit little-endian data: the frame's bytes are read and reshaped.
- anything else: pydicom's decoder for the transfer syntax, on a file object positioned
  at the pixel data, for that frame only (pydicom returns RGB for YBR; no second
  conversion happens).

The facts read from the header alone (dates, gestational age, cine timing, which decoder
is needed) are in :mod:`fetal_viewer.core.io.header`.
"""

from __future__ import annotations

import logging
import struct
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from fetal_viewer.core.io.aspect import SquarePixels, squaring
from fetal_viewer.core.io.calibration import calibration_from_regions
from fetal_viewer.core.io.display import palette_shift, to_display_rgb
from fetal_viewer.core.io.header import (
    REEXPORT_FIX,
    burned_in,
    check_decoder,
    frame_time_ms,
    gestational_age_weeks,
    parse_da,
    refuse_dimensions,
    tag_text,
    ts_name,
)
from fetal_viewer.core.io.study import (
    Calibration,
    FrameSource,
    PatientIdentity,
    Series,
)
from fetal_viewer.core.io.values import whole_number
from fetal_viewer.core.warncatch import collect_warnings
from fetal_viewer.errors import StudyLoadError

log = logging.getLogger(__name__)

_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"SQ", b"UT", b"UC", b"UR"}
_PIXEL_TAG = (0x7FE0, 0x0010)
_SEQ_END = b"\xfe\xff\xdd\xe0"  # (FFFE,E0DD) little endian: the end of the fragments


@dataclass(frozen=True)
class DicomInstance:
    """One DICOM image file: its series and what groups it into patient and study."""

    series: Series
    patient_key: str
    identity: PatientIdentity
    study_uid: str
    study_description: str
    study_date: date | None


def _read_element_header(f: Any, implicit: bool, little: bool) -> tuple[int, int, str]:
    """At the Pixel Data tag: (value offset, value length, VR). Length 0xFFFFFFFF = encapsulated."""
    start = f.tell()
    head = f.read(12)
    if len(head) < 8:
        return -1, 0, ""
    fmt = "<HH" if little else ">HH"
    tag = struct.unpack(fmt, head[:4])
    if tag != _PIXEL_TAG:
        return -1, 0, ""
    if implicit or not (head[4:6].isalpha() and head[4:6].isupper()):
        # implicit VR (also when a file says explicit but encodes this element implicitly)
        (length,) = struct.unpack("<I" if little else ">I", head[4:8])
        return start + 8, length, "OW"
    vr = head[4:6]
    if vr in _LONG_VRS:
        (length,) = struct.unpack("<I" if little else ">I", head[8:12])
        return start + 12, length, vr.decode("ascii")
    (length,) = struct.unpack("<H" if little else ">H", head[6:8])
    return start + 8, length, vr.decode("ascii", "replace")


def _fragment_items(f: Any, offset: int, file_size: int, path: Path) -> list[int]:
    """File offsets of the fragment items after the Basic Offset Table.

    pydicom parses the items (their headers only); this checks that the last fragment and
    the sequence delimiter are in the file, so a truncated file is refused at open.
    """
    from pydicom.encaps import parse_basic_offsets, parse_fragments

    f.seek(offset)
    try:
        parse_basic_offsets(f)
        _count, items = parse_fragments(f)
    except (ValueError, struct.error) as exc:
        if f.tell() >= file_size:  # pydicom stopped at the end of the file
            raise StudyLoadError(
                "the file is truncated inside its compressed pixel data",
                why=f"the encapsulated pixel data ends at byte {file_size} without a sequence "
                f"delimiter ({exc})",
                fix=REEXPORT_FIX,
                path=path,
            ) from None
        raise StudyLoadError(
            "the compressed pixel data is malformed",
            why=str(exc),
            fix=REEXPORT_FIX,
            path=path,
        ) from None
    end = f.tell()  # parse_fragments returns to the first fragment item
    if items:
        f.seek(items[-1] + 4)
        (length,) = struct.unpack("<I", f.read(4))
        end = items[-1] + 8 + length
        if end > file_size:
            raise StudyLoadError(
                "the file is truncated inside its compressed pixel data",
                why=f"a fragment of {length} bytes at byte {items[-1] + 8} runs past the end "
                f"of the {file_size}-byte file",
                fix=REEXPORT_FIX,
                path=path,
            )
    f.seek(end)
    if f.read(4) != _SEQ_END:
        raise StudyLoadError(
            "the file is truncated inside its compressed pixel data",
            why=f"the encapsulated pixel data ends after {len(items)} fragment(s) without "
            "a sequence delimiter",
            fix=REEXPORT_FIX,
            path=path,
        )
    return items


def _extended_offsets(ds: Any, n_frames: int) -> tuple[bytes, bytes] | None:
    """The Extended Offset Table (offsets, lengths) when it lists every frame."""
    offsets, lengths = ds.get("ExtendedOffsetTable"), ds.get("ExtendedOffsetTableLengths")
    if not isinstance(offsets, bytes) or not isinstance(lengths, bytes):
        return None
    return (offsets, lengths) if len(offsets) == len(lengths) == 8 * n_frames else None


class DicomFrames:
    """Lazy frame decoding for one DICOM file (a :class:`FrameSource`)."""

    def __init__(
        self,
        path: Path,
        header: Any,
        ts: str,
        value_offset: int,
        vr: str,
        items: list[int] | None,
        bare_length: int | None = None,
    ) -> None:
        """``items``: the fragment items of encapsulated pixel data; ``bare_length``: a
        compressed frame stored as one defined-length value at ``value_offset``."""
        from pydicom.uid import (
            DeflatedExplicitVRLittleEndian,
            ExplicitVRLittleEndian,
            ImplicitVRLittleEndian,
            JPEGBaseline8Bit,
        )

        self.path = path
        self.header = header
        self.ts = ts
        self.value_offset = value_offset
        self.vr = vr
        self.items = items
        self.bare_length = bare_length
        self.encapsulated = items is not None or bare_length is not None
        self.deflated = ts == DeflatedExplicitVRLittleEndian
        self.rows = int(header.Rows)
        self.cols = int(header.Columns)
        self.spp = whole_number(header.get("SamplesPerPixel"), 1) or 1
        self.bits_allocated = whole_number(header.get("BitsAllocated"), 8) or 8
        self.bits_stored = (
            whole_number(header.get("BitsStored"), self.bits_allocated) or self.bits_allocated
        )
        self.signed = (whole_number(header.get("PixelRepresentation"), 0) or 0) == 1
        self.photometric = tag_text(header, "PhotometricInterpretation").upper() or "MONOCHROME2"
        self.planar = whole_number(header.get("PlanarConfiguration"), 0) or 0
        self.n_frames = whole_number(header.get("NumberOfFrames"), 1) or 1
        self.extended_offsets = _extended_offsets(header, self.n_frames)
        # frames whose fragments are known without pydicom's JPEG-marker heuristics
        indexed = (
            bare_length is not None
            or self.n_frames == 1
            or (items is not None and len(items) == self.n_frames)
            or self.extended_offsets is not None
        )
        self._deflated: Any = None
        self._palette_shift: int | None = None
        self._lock = threading.Lock()
        self.fast_jpeg = (
            self.encapsulated
            and ts == JPEGBaseline8Bit
            and indexed
            and self.bits_allocated == 8
            and (
                (self.spp == 3 and self.photometric in {"YBR_FULL_422", "YBR_FULL"})
                or (self.spp == 1 and self.photometric in {"MONOCHROME1", "MONOCHROME2"})
            )
        )
        self.fast_native = (
            not self.encapsulated
            and ts in {ImplicitVRLittleEndian, ExplicitVRLittleEndian}
            and self.bits_allocated == 8
            and self.bits_stored == 8
            and not self.signed
            and self.photometric in {"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR", "RGB"}
        )

    # -- decoding paths -------------------------------------------------------------------
    def frame_bytes(self, index: int) -> bytes:
        """The compressed bytes of one encapsulated frame (its fragments joined)."""
        from pydicom.encaps import generate_fragments, get_frame

        with open(self.path, "rb") as f:
            if self.bare_length is not None:
                f.seek(self.value_offset)
                return f.read(self.bare_length)
            assert self.items is not None
            if self.n_frames == 1:  # every fragment, whatever the offset tables say
                f.seek(self.items[0])
                return b"".join(generate_fragments(f))
            if len(self.items) == self.n_frames:  # one fragment per frame
                f.seek(self.items[index])
                return next(generate_fragments(f))
            # the offset tables, else pydicom's search for JPEG end-of-image markers
            f.seek(self.value_offset)
            return get_frame(
                f, index, number_of_frames=self.n_frames, extended_offsets=self.extended_offsets
            )

    def _decode_jpeg_cv2(self, index: int) -> np.ndarray | None:
        import cv2

        buf = np.frombuffer(self.frame_bytes(index), np.uint8)
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        if img is None or img.shape[:2] != (self.rows, self.cols):
            return None
        if img.ndim == 3 and img.shape[2] == 3:
            if self.spp != 3:
                return None
            return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        if img.ndim == 2 and self.spp == 1:
            return img
        return None

    def _read_native(self, index: int) -> np.ndarray:
        frame_len = self.rows * self.cols * self.spp
        with open(self.path, "rb") as f:
            f.seek(self.value_offset + index * frame_len)
            raw = f.read(frame_len)
        if len(raw) != frame_len:
            raise StudyLoadError(
                f"frame {index} is cut short",
                why=f"read {len(raw)} of {frame_len} bytes",
                fix=REEXPORT_FIX,
                path=self.path,
            )
        arr = np.frombuffer(raw, np.uint8)
        if self.spp == 1:
            return arr.reshape(self.rows, self.cols)
        if self.planar == 1:
            return arr.reshape(self.spp, self.rows, self.cols).transpose(1, 2, 0)
        return arr.reshape(self.rows, self.cols, self.spp)

    def _options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "rows": self.rows,
            "columns": self.cols,
            "samples_per_pixel": self.spp,
            "bits_allocated": self.bits_allocated,
            "bits_stored": self.bits_stored,
            "pixel_representation": 1 if self.signed else 0,
            "photometric_interpretation": self.photometric,
            "number_of_frames": self.n_frames,
            "pixel_keyword": "PixelData",
            "pixel_vr": self.vr if self.vr in {"OB", "OW"} else "OW",
        }
        if self.spp > 1:
            opts["planar_configuration"] = self.planar
        return opts

    def _decode_pydicom(self, index: int) -> np.ndarray:
        from pydicom.pixels import get_decoder  # type: ignore[attr-defined]

        decoder = get_decoder(self.ts)
        with collect_warnings():
            if self.deflated:
                with self._lock:
                    if self._deflated is None:
                        from pydicom import dcmread

                        self._deflated = dcmread(self.path)
                return decoder.as_array(self._deflated, index=index)[0]
            if self.encapsulated:
                from pydicom.encaps import encapsulate

                opts = self._options()
                opts["number_of_frames"] = 1
                src = encapsulate([self.frame_bytes(index)])
                arr, _meta = decoder.as_array(src, index=0, **opts)
                return arr
            with open(self.path, "rb") as f:
                f.seek(self.value_offset)
                arr, _meta = decoder.as_array(f, index=index, **self._options())
        return arr

    def read_raw(self, index: int) -> np.ndarray:
        """Frame ``index`` as decoded (pydicom layout, YBR already RGB), not yet for display."""
        if self.fast_native:
            return self._read_native(index)
        if self.fast_jpeg:
            img = self._decode_jpeg_cv2(index)
            if img is not None:
                return img
            log.debug("cv2 could not decode frame %d of %s; trying pydicom", index, self.path)
        try:
            return self._decode_pydicom(index)
        except StudyLoadError:
            raise
        except Exception as exc:
            tried = ("OpenCV (libjpeg-turbo), then " if self.fast_jpeg else "") + "pydicom"
            raise StudyLoadError(
                f"frame {index} could not be decoded ({ts_name(self.ts)})",
                why=f"tried {tried}: {type(exc).__name__}: {exc}",
                fix="The compressed pixel data looks damaged. " + REEXPORT_FIX,
                path=self.path,
            ) from exc

    def read(self, index: int) -> np.ndarray:
        raw = self.read_raw(index)
        if raw.ndim == 3 and raw.shape[0] == 1 and self.spp == 1:
            raw = raw[0]
        if self.photometric == "PALETTE COLOR" and self._palette_shift is None:
            with collect_warnings():
                self._palette_shift = palette_shift(self.header)
        with collect_warnings():
            return to_display_rgb(raw, self.header, self._palette_shift)


def read_dicom(path: Path, force: bool = False) -> DicomInstance:
    """Parse one DICOM image file's header and check its pixel data; decode nothing."""
    with collect_warnings() as caught:
        try:
            instance = _read_dicom(Path(path), force)
        except StudyLoadError:
            raise
        except Exception as exc:
            # pydicom raises many kinds on damaged headers, and converts values lazily: a
            # damaged element can fail on first access (unknown VR, bad length,
            # undecodable text), long after dcmread returned
            raise StudyLoadError(
                "the DICOM header could not be read",
                why=f"{type(exc).__name__}: {exc}",
                fix="The file is damaged or truncated. " + REEXPORT_FIX,
                path=path,
            ) from exc
    for w in caught:
        log.debug("%s: %s", path, w.message)
    return instance


def _read_dicom(path: Path, force: bool) -> DicomInstance:
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import (
        UID,
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        MediaStorageDirectoryStorage,
    )

    native = {
        ImplicitVRLittleEndian,
        ExplicitVRLittleEndian,
        DeflatedExplicitVRLittleEndian,
        ExplicitVRBigEndian,
    }
    path = Path(path)
    file_size = path.stat().st_size
    with open(path, "rb") as f:
        try:
            ds = dcmread(f, stop_before_pixels=True, force=force)
        except InvalidDicomError as exc:
            raise StudyLoadError(
                "not a DICOM file",
                why=str(exc),
                fix="Open a DICOM (.dcm) or image (PNG, JPEG, BMP, TIFF) file.",
                path=path,
            ) from exc
        # any other failure of a damaged header becomes a StudyLoadError in read_dicom
        after_header = f.tell()
        meta = getattr(ds, "file_meta", None)
        ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
        sop_class = str(
            ds.get("SOPClassUID", "")
            or (meta.get("MediaStorageSOPClassUID", "") if meta is not None else "")
        )
        if not ts:
            implicit, little = getattr(ds, "original_encoding", (True, True))
            ts = (
                ImplicitVRLittleEndian
                if implicit
                else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
            )
        if sop_class == MediaStorageDirectoryStorage or "DirectoryRecordSequence" in ds:
            raise StudyLoadError(
                "this is a DICOMDIR index, not an image",
                why="a DICOMDIR lists the files of a disc or folder",
                fix="Open the DICOMDIR with open_path() / `fetal-viewer info DICOMDIR`, or its folder.",
                path=path,
            )
        value_offset, length, vr = -1, 0, ""
        deflated = ts == DeflatedExplicitVRLittleEndian
        if not deflated:
            f.seek(after_header)
            implicit, little = getattr(
                ds,
                "original_encoding",
                (ts == ImplicitVRLittleEndian, ts != ExplicitVRBigEndian),
            )
            if implicit is None:
                implicit, little = ts == ImplicitVRLittleEndian, ts != ExplicitVRBigEndian
            value_offset, length, vr = _read_element_header(f, bool(implicit), bool(little))
        if deflated:
            full = dcmread(path, force=force)
            has_pixels = "PixelData" in full
        else:
            has_pixels = value_offset >= 0
        if not has_pixels:
            kind = UID(sop_class).name if sop_class else "an object of unknown class"
            if "Image Storage" in kind or "Rows" in ds:  # an image class with no image
                raise StudyLoadError(
                    "the DICOM file has no image: its pixel data is missing (a truncated copy?)",
                    why=f"its SOP class is {kind}, which holds an image, but the "
                    f"{path.stat().st_size}-byte file has no Pixel Data element",
                    fix=REEXPORT_FIX,
                    path=path,
                )
            raise StudyLoadError(
                "the DICOM file has no image (no Pixel Data element)",
                why=f"its SOP class is {kind}",
                fix="Open the image files of the study; reports and other objects without "
                "pixels cannot be shown. If it should be an image, "
                + REEXPORT_FIX[0].lower()
                + REEXPORT_FIX[1:],
                path=path,
            )
        rows = whole_number(ds.get("Rows"), 0) or 0
        cols = whole_number(ds.get("Columns"), 0) or 0
        spp = whole_number(ds.get("SamplesPerPixel"), 1) or 1
        bits = whole_number(ds.get("BitsAllocated"), 0) or 0
        n_frames = whole_number(ds.get("NumberOfFrames"), 1)
        n_frames = 1 if n_frames is None else n_frames
        if rows <= 0 or cols <= 0:
            raise StudyLoadError(
                "the DICOM header lacks the image size",
                why=f"Rows is {rows or 'missing'} and Columns is {cols or 'missing'}",
                fix="The file is not a displayable image or its header is damaged. " + REEXPORT_FIX,
                path=path,
            )
        refuse_dimensions(path, rows, cols, spp, bits, n_frames)
        check_decoder(ts, path)
        items: list[int] | None = None
        bare_length: int | None = None
        if length == 0xFFFFFFFF:
            if ts in native:
                raise StudyLoadError(
                    "the pixel data is encapsulated but the transfer syntax is uncompressed",
                    why=f"transfer syntax {ts_name(ts)} with undefined-length Pixel Data",
                    fix=REEXPORT_FIX,
                    path=path,
                )
            items = _fragment_items(f, value_offset, file_size, path)
            if len(items) == 0:
                raise StudyLoadError(
                    "the compressed pixel data holds no frames",
                    why="no fragment follows the offset table",
                    fix=REEXPORT_FIX,
                    path=path,
                )
            if len(items) < n_frames:
                raise StudyLoadError(
                    f"the header declares {n_frames} frames but the compressed pixel data holds "
                    f"only {len(items)} fragment(s)",
                    why="frames are missing (a truncated or inconsistent file)",
                    fix=REEXPORT_FIX,
                    path=path,
                )
        elif ts not in native:
            # compressed transfer syntax, but one defined-length value: a single bare frame
            if n_frames != 1 or value_offset + length > file_size or length == 0:
                raise StudyLoadError(
                    "the compressed pixel data is not encapsulated",
                    why=f"{ts_name(ts)} needs encapsulated fragments; found one {length}-byte "
                    f"value for {n_frames} frame(s)",
                    fix=REEXPORT_FIX,
                    path=path,
                )
            bare_length = length
        elif not deflated:
            photometric = tag_text(ds, "PhotometricInterpretation").upper()
            samples = 2 if photometric == "YBR_FULL_422" and spp == 3 else spp
            expected = (rows * cols * samples * bits * n_frames + 7) // 8
            if length < expected or value_offset + expected > file_size:
                have = min(length, max(file_size - value_offset, 0))
                raise StudyLoadError(
                    "the pixel data is shorter than the header declares (truncated file?)",
                    why=f"{n_frames} frame(s) of {cols} x {rows} x {spp} at {bits} bits need "
                    f"{expected} bytes; the file holds {have}",
                    fix=REEXPORT_FIX,
                    path=path,
                )

    decoder = DicomFrames(path, ds, ts, value_offset, vr, items, bare_length)
    modality = tag_text(ds, "Modality")
    if modality == "US" or "SequenceOfUltrasoundRegions" in ds:
        calibration = calibration_from_regions(ds, rows, cols)
    else:
        calibration = Calibration.none(f"modality {modality or 'unknown'}: not an ultrasound image")
    square_rows, square_cols, calibration = squaring(ds, rows, cols, n_frames, calibration)
    source: FrameSource = decoder
    if (square_rows, square_cols) != (rows, cols):
        source = SquarePixels(decoder, square_rows, square_cols)
    rows, cols = square_rows, square_cols
    series = Series(
        uid=tag_text(ds, "SeriesInstanceUID") or f"file:{path.name}",
        description=tag_text(ds, "SeriesDescription"),
        modality=modality,
        manufacturer=tag_text(ds, "Manufacturer"),
        model_name=tag_text(ds, "ManufacturerModelName"),
        rows=rows,
        cols=cols,
        n_frames=n_frames,
        frame_time_ms=frame_time_ms(ds, n_frames),
        calibration=calibration,
        burned_in_annotation=burned_in(ds),
        ga_weeks=gestational_age_weeks(ds),
        source=path,
        instance_uid=tag_text(ds, "SOPInstanceUID"),
        instance_number=whole_number(ds.get("InstanceNumber")),
        series_number=whole_number(ds.get("SeriesNumber")),
        transfer_syntax=ts_name(ts),
        photometric=decoder.photometric,
        _frames=source,
    )
    patient_id = tag_text(ds, "PatientID")
    patient_name = tag_text(ds, "PatientName")
    study_uid = tag_text(ds, "StudyInstanceUID") or f"file:{path.parent}"
    key = patient_id or patient_name or f"study:{study_uid}"
    return DicomInstance(
        series=series,
        patient_key=key,
        identity=PatientIdentity(
            patient_id=patient_id,
            patient_name=patient_name,
            birth_date=parse_da(ds.get("PatientBirthDate")),
        ),
        study_uid=study_uid,
        study_description=tag_text(ds, "StudyDescription"),
        study_date=parse_da(ds.get("StudyDate")),
    )
