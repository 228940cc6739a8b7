"""core.io against real files: pydicom-data, pydicom's bundled test files, ../shared samples."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from fetal_viewer.core.io import open_path, read_frame
from fetal_viewer.core.io.display import to_display_rgb

PYDICOM_TEST_FILES = Path(__import__("pydicom").__file__).parent / "data" / "test_files"
DATA_STORE = Path(__import__("data_store").__file__).resolve().parent / "data"


def _header(path: Path):
    import pydicom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            return None


def _us_or_colour_files() -> list[Path]:
    out = []
    for path in sorted(DATA_STORE.glob("*.dcm")) + sorted(PYDICOM_TEST_FILES.glob("*.dcm")):
        ds = _header(path)
        if ds is None or "PhotometricInterpretation" not in ds:
            continue
        colour = (
            int(ds.get("SamplesPerPixel", 1)) == 3
            or ds.PhotometricInterpretation == "PALETTE COLOR"
        )
        if ds.get("Modality") == "US" or colour:
            out.append(path)
    return out


US_OR_COLOUR = _us_or_colour_files()


def _reference_frame(path: Path, index: int) -> np.ndarray:
    """pydicom's own decoding of one frame, mapped for display (independent of our readers)."""
    import pydicom
    from pydicom.pixels import pixel_array

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path.stat().st_size > 4_000_000:  # a long cine: pydicom's frame-wise API
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            return to_display_rgb(pixel_array(str(path), index=index), ds)
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            arr = arr[index]
        return to_display_rgb(arr, ds)


def test_the_file_list_covers_ultrasound_and_colour() -> None:
    names = {p.name for p in US_OR_COLOUR}
    assert len(US_OR_COLOUR) >= 40
    for expected in (
        "color3d_jpeg_baseline.dcm",
        "US1_J2KR.dcm",
        "OBXXXX1A_rle_2frame.dcm",
        "gdcm-US-ALOKA-16_big.dcm",
        "examples_ybr_color.dcm",
        "color-pl.dcm",
        "SC_rgb_jls_lossy_sample.dcm",
    ):
        assert expected in names


def _square_size(ds) -> tuple[int, int]:
    """Rows and columns once non-square pixels are made square. Among these files only
    color-pl/px declare them (Pixel Aspect Ratio 4\\3, no ultrasound calibration): the
    coarser axis is stretched."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    ratio = ds.get("PixelAspectRatio")
    if ratio is None or int(ratio[0]) == int(ratio[1]):
        return rows, cols
    v, h = int(ratio[0]), int(ratio[1])
    return (round(rows * v / h), cols) if v > h else (rows, round(cols * h / v))


def test_a_real_file_with_non_square_pixels_is_shown_square() -> None:
    (series,) = open_path(_find("color-pl.dcm")).series
    assert (series.rows, series.cols) == (160, 256)  # 120 rows of 4:3 pixels
    assert "Pixel Aspect Ratio 1.333:1" in series.calibration.reason


@pytest.mark.parametrize("path", US_OR_COLOUR, ids=lambda p: p.name)
def test_every_us_and_colour_file_loads(path: Path) -> None:
    import cv2

    result = open_path(path)
    assert result.problems == []
    (series,) = result.series
    ds = _header(path)
    assert series.n_frames == int(ds.get("NumberOfFrames", 1) or 1)
    rows, cols = _square_size(ds)
    assert (series.rows, series.cols) == (rows, cols)
    for index in {0, series.n_frames - 1}:
        frame = series.frame(index)
        assert frame.shape == (rows, cols, 3) and frame.dtype == np.uint8
        assert frame.flags.c_contiguous
        ref = _reference_frame(path, index)
        if ref.shape[:2] != (rows, cols):
            ref = cv2.resize(ref, (cols, rows), interpolation=cv2.INTER_LINEAR)
        diff = np.abs(frame.astype(int) - ref.astype(int))
        # our fast paths (cv2 libjpeg-turbo, direct reads) against pydicom's decoders:
        # identical except JPEG upsampling/IDCT rounding
        assert diff.mean() < 1.0, f"{path.name} frame {index}: mean diff {diff.mean():.2f}"
        assert np.percentile(diff, 99) <= 8


# (compressed or re-encoded file, uncompressed reference, max mean abs difference)
COLOUR_PAIRS = [
    ("US1_J2KR.dcm", "US1_UNCR.dcm", 0.0),  # YBR_RCT lossless vs RGB
    ("US1_J2KI.dcm", "US1_UNCI.dcm", 0.5),  # YBR_ICT lossy vs RGB
    ("color-pl.dcm", "color-px.dcm", 0.0),  # planar configuration 1 vs 0
    ("OBXXXX1A_rle.dcm", "OBXXXX1A.dcm", 0.0),
    ("OBXXXX1A_expb.dcm", "OBXXXX1A.dcm", 0.0),
    ("gdcm-US-ALOKA-16_big.dcm", "gdcm-US-ALOKA-16.dcm", 0.0),
    ("SC_ybr_full_uncompressed.dcm", "SC_rgb.dcm", 1.0),
    ("SC_ybr_full_422_uncompressed.dcm", "SC_rgb.dcm", 2.0),
    ("SC_rgb_rle.dcm", "SC_rgb.dcm", 0.0),
    ("SC_rgb_expb_16bit.dcm", "SC_rgb.dcm", 0.0),
    ("SC_rgb_rle_32bit.dcm", "SC_rgb.dcm", 0.0),
    ("SC_rgb_gdcm_KY.dcm", "SC_rgb.dcm", 0.0),  # JPEG 2000 lossless
    ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb.dcm", 0.0),  # JPEG lossless
    ("SC_rgb_jpeg_dcmtk.dcm", "SC_rgb.dcm", 3.0),  # JPEG baseline YBR_FULL (cv2 path)
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", "SC_rgb.dcm", 3.0),  # YBR_FULL_422 (cv2 path)
    ("SC_rgb_dcmtk_+eb+cy+s2.dcm", "SC_rgb.dcm", 3.0),
    ("SC_rgb_dcmtk_+eb+cr.dcm", "SC_rgb.dcm", 3.0),  # JPEG baseline stored as RGB
    ("SC_rgb_jls_lossy_sample.dcm", "SC_rgb.dcm", 3.0),
]


def _find(name: str) -> Path:
    for folder in (DATA_STORE, PYDICOM_TEST_FILES):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(name)


@pytest.mark.parametrize(("name", "ref", "tol"), COLOUR_PAIRS, ids=[p[0] for p in COLOUR_PAIRS])
def test_colour_matches_uncompressed_reference(name: str, ref: str, tol: float) -> None:
    got = read_frame(_find(name)).astype(int)
    want = read_frame(_find(ref)).astype(int)
    assert got.shape == want.shape
    assert np.abs(got - want).mean() <= tol


def test_rgb_stripes_have_their_true_colours() -> None:
    """SC_rgb's stripes: a second YBR->RGB conversion would turn red green/magenta."""
    expected = [
        (255, 0, 0), (255, 128, 128), (0, 255, 0), (128, 255, 128), (0, 0, 255),
        (128, 128, 255), (0, 0, 0), (64, 64, 64), (192, 192, 192), (255, 255, 255),
    ]  # fmt: skip
    for name in (
        "SC_rgb.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "SC_rgb_dcmtk_+eb+cy+np.dcm",
        "SC_ybr_full_uncompressed.dcm",
    ):
        frame = read_frame(_find(name)).astype(int)
        for k, colour in enumerate(expected):
            assert np.abs(frame[5 + 10 * k, 50] - colour).max() <= 8, (name, k)


def test_jpeg_cine_takes_the_fast_path_and_matches_pydicom() -> None:
    (series,) = open_path(_find("color3d_jpeg_baseline.dcm")).series
    assert series.n_frames == 120
    assert series._frames is not None and series._frames.fast_jpeg
    assert series.frame_time_ms is not None and series.frame_time_ms > 0
    for i in (0, 57, 119):
        diff = np.abs(series.frame(i).astype(int) - _reference_frame(series.source, i).astype(int))
        assert diff.mean() < 1.0
    # frames differ from each other: the index is honoured
    assert not np.array_equal(series.frame(0), series.frame(60))


def test_monochrome1_is_inverted() -> None:
    """RG1 (CR, MONOCHROME1): lossless J2K equals the uncompressed file, and air is white."""
    unc = read_frame(_find("RG1_UNCR.dcm"))
    j2k = read_frame(_find("RG1_J2KR.dcm"))
    assert np.array_equal(unc, j2k)
    import pydicom

    ds = pydicom.dcmread(_find("RG1_UNCR.dcm"))
    raw = ds.pixel_array
    # where the stored value is lowest the display is brightest (inverted)
    lo = np.unravel_index(np.argmin(raw), raw.shape)
    hi = np.unravel_index(np.argmax(raw), raw.shape)
    assert unc[lo][0] > unc[hi][0]


def test_ultrasound_calibration_from_regions() -> None:
    (series,) = open_path(_find("color3d_jpeg_baseline.dcm")).series
    cal = series.calibration
    assert cal.spacing_mm is not None
    ds = _header(series.source)
    region = ds.SequenceOfUltrasoundRegions[0]
    assert cal.spacing_mm[0] == pytest.approx(float(region.PhysicalDeltaY) * 10)
    assert cal.spacing_mm[1] == pytest.approx(float(region.PhysicalDeltaX) * 10)
    (plain,) = open_path(_find("US1_UNCR.dcm")).series
    assert plain.calibration.spacing_mm is None and "no Sequence" in plain.calibration.reason


def test_dicomdir_lists_its_files() -> None:
    dicomdir = PYDICOM_TEST_FILES / "dicomdirtests" / "DICOMDIR"
    result = open_path(dicomdir)
    assert result.problems == []
    folder_result = open_path(dicomdir.parent)
    assert len(result.series) == len(folder_result.series) > 10
    import pydicom

    index = pydicom.dcmread(dicomdir)
    patient_ids = {
        r.PatientID for r in index.DirectoryRecordSequence if r.DirectoryRecordType == "PATIENT"
    }
    assert {p.identity.patient_id for p in result.patients} == patient_ids
    for s in result.series[:3]:
        assert s.frame(0).shape == (s.rows, s.cols, 3)


def test_real_samples_load(real_samples: Path) -> None:
    result = open_path(real_samples)
    assert result.problems == []
    kinds = {s.source.suffix.lower() for s in result.series}
    assert {".dcm", ".png", ".jpg"} <= kinds
    # one study per image folder
    image_folders = {s.source.parent for s in result.series if s.source.suffix != ".dcm"}
    image_studies = [
        st for p in result.patients for st in p.studies if st.uid.startswith("folder:")
    ]
    assert len(image_studies) == len(image_folders)
    for s in result.series:
        assert s.frame(0).shape == (s.rows, s.cols, 3)
