"""Plain image files (PNG, JPEG, BMP, TIFF): gray, RGB, RGBA, 16-bit, multi-page TIFF.

The header (size, page count) is read with Pillow, which decodes nothing until asked;
pixels are decoded with OpenCV (``IMREAD_UNCHANGED`` keeps 16-bit data). 16-bit images
are mapped to 8 bits by their min/max; an alpha channel is dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fetal_viewer.core.io.display import _minmax_u8
from fetal_viewer.core.io.study import MAX_FRAME_PIXELS, MAX_FRAMES, Calibration, Series
from fetal_viewer.core.warncatch import collect_warnings
from fetal_viewer.errors import StudyLoadError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*")


def looks_like_image(head: bytes) -> bool:
    return any(head.startswith(m) for m in _MAGIC)


def to_rgb_u8(img: np.ndarray) -> np.ndarray:
    """An OpenCV ``IMREAD_UNCHANGED`` result as ``(rows, cols, 3)`` uint8 RGB."""
    import cv2

    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.dtype != np.uint8:
        img = _minmax_u8(img)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    channels = img.shape[2]
    if channels == 2:  # gray + alpha
        return cv2.cvtColor(np.ascontiguousarray(img[:, :, 0]), cv2.COLOR_GRAY2RGB)
    if channels == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class ImageFrames:
    """Lazy decoding of a plain image file (a :class:`FrameSource`)."""

    def __init__(self, path: Path, n_frames: int) -> None:
        self.path = path
        self.n_frames = n_frames

    def read(self, index: int) -> np.ndarray:
        import cv2

        data = np.fromfile(self.path, np.uint8)
        if self.n_frames == 1:
            img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        else:
            ok, pages = cv2.imdecodemulti(data, cv2.IMREAD_UNCHANGED)
            img = pages[index] if ok and index < len(pages) else None
        if img is None:
            raise StudyLoadError(
                f"image {'page ' + str(index) + ' ' if self.n_frames > 1 else ''}could not be decoded",
                why="OpenCV could not decode the pixel data (damaged or unsupported encoding)",
                fix="Re-save the image as PNG, or re-copy the file.",
                path=self.path,
            )
        return to_rgb_u8(img)


def read_image(path: Path) -> Series:
    """Header facts of one image file, as a single-file series; decodes nothing."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        # warnings (a DecompressionBombWarning above all) are dropped: the size check decides
        with collect_warnings(), Image.open(path) as im:
            cols, rows = im.size
            n_frames = int(getattr(im, "n_frames", 1) or 1)
            mode = im.mode
    except Image.DecompressionBombError as exc:
        raise StudyLoadError(
            "the image header declares absurd dimensions; refused before decoding",
            why=str(exc),
            fix="The file is corrupt or not an ultrasound image.",
            path=path,
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise StudyLoadError(
            "the image file could not be read",
            why=f"{type(exc).__name__}: {exc}",
            fix="The file is damaged or not a PNG/JPEG/BMP/TIFF image; re-save or re-copy it.",
            path=path,
        ) from exc
    if rows <= 0 or cols <= 0 or rows * cols > MAX_FRAME_PIXELS or n_frames > MAX_FRAMES:
        raise StudyLoadError(
            "the image header declares absurd dimensions; refused before decoding",
            why=f"{cols} x {rows} pixels, {n_frames} page(s); at most {MAX_FRAME_PIXELS} "
            "pixels per frame are accepted",
            fix="The file is corrupt or not an ultrasound image.",
            path=path,
        )
    return Series(
        uid=f"image:{path.name}",
        description=path.stem,
        modality="OT",
        manufacturer="",
        model_name="",
        rows=rows,
        cols=cols,
        n_frames=n_frames,
        frame_time_ms=None,
        calibration=Calibration.none("plain image: no Sequence of Ultrasound Regions"),
        burned_in_annotation=None,
        ga_weeks=None,
        source=path,
        photometric=mode,
        _frames=ImageFrames(path, n_frames),
    )
