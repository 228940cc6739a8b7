"""core.io on DICOM and image files made here: tricky encodings and every bad-input case."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import cv2
import imagecodecs
import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    MPEG2MPML,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from fetal_viewer.core.io import open_path, open_paths, read_frame
from fetal_viewer.errors import StudyLoadError
from tests.factories import write_dicom, write_jpeg_cine, write_rgb_cine

#: one patient and study, unless a test says otherwise
IDENTITY = {"StudyInstanceUID": "1.2.3.4", "PatientID": "PID-1", "PatientName": "Doe^Jane"}


def make_dicom(path: Path, pixels: bytes, **kw: Any) -> Path:
    return write_dicom(path, pixels, **{**IDENTITY, **kw})


def jpeg_cine(path: Path, images: list[np.ndarray], **tags: object) -> Path:
    """Encapsulated JPEG baseline YBR_FULL_422 frames made with OpenCV (4:2:2 sampling)."""
    return write_jpeg_cine(path, images, **{**IDENTITY, **tags})


def gradient(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    img = np.stack([x * 255 // cols, y * 255 // rows, (x + y) * 127 // (rows + cols)], -1)
    img = img + rng.integers(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


# -- photometric interpretations -----------------------------------------------------------


def test_monochrome1_8bit_is_inverted(tmp_path: Path) -> None:
    values = np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) % 256
    values = values.astype(np.uint8)
    p = make_dicom(
        tmp_path / "m1.dcm", values.tobytes(), rows=48, cols=64, photometric="MONOCHROME1"
    )
    frame = read_frame(p)
    assert np.array_equal(frame[..., 0], 255 - values)
    assert np.array_equal(frame[..., 0], frame[..., 2])


def test_16bit_uses_the_window_when_present_else_min_max(tmp_path: Path) -> None:
    values = np.linspace(1000, 3000, 32 * 32).reshape(32, 32).astype(np.uint16)
    windowed = make_dicom(
        tmp_path / "w.dcm", values.tobytes(), rows=32, cols=32, bits=16,
        WindowCenter=2000, WindowWidth=1001,
    )  # fmt: skip
    frame = read_frame(windowed)[..., 0].astype(int)
    assert frame[values <= 1499].max() == 0 and frame[values >= 2501].min() == 255
    mid = np.argmin(np.abs(values.astype(int) - 2000))
    assert abs(frame.flat[mid] - 128) <= 2
    plain = make_dicom(tmp_path / "mm.dcm", values.tobytes(), rows=32, cols=32, bits=16)
    frame = read_frame(plain)[..., 0]
    assert frame.min() == 0 and frame.max() == 255
    assert np.all(np.diff(frame.ravel().astype(int)) >= 0)  # monotonic mapping


def test_rgb_planar_configuration_1_equals_0(tmp_path: Path) -> None:
    rgb = gradient(40, 50)
    p0 = make_dicom(tmp_path / "p0.dcm", rgb.tobytes(), rows=40, cols=50, photometric="RGB", spp=3)
    planes = np.ascontiguousarray(rgb.transpose(2, 0, 1))
    p1 = make_dicom(
        tmp_path / "p1.dcm", planes.tobytes(), rows=40, cols=50, photometric="RGB", spp=3,
        PlanarConfiguration=1,
    )  # fmt: skip
    assert np.array_equal(read_frame(p0), rgb)
    assert np.array_equal(read_frame(p1), rgb)


def test_palette_colour_8bit_with_16bit_lut(tmp_path: Path) -> None:
    idx = (np.arange(16 * 16) % 4).astype(np.uint8).reshape(16, 16)
    red = np.array([0, 65535, 0, 32768] + [0] * 252, np.uint16)
    green = np.array([0, 0, 65535, 32768] + [0] * 252, np.uint16)
    blue = np.array([0, 0, 0, 65535] + [0] * 252, np.uint16)
    tags = {}
    for name, lut in (("Red", red), ("Green", green), ("Blue", blue)):
        tags[f"{name}PaletteColorLookupTableDescriptor"] = [256, 0, 16]
        tags[f"{name}PaletteColorLookupTableData"] = lut.tobytes()
    p = make_dicom(
        tmp_path / "pal.dcm", idx.tobytes(), rows=16, cols=16, photometric="PALETTE COLOR", **tags
    )
    frame = read_frame(p)
    assert frame[0, 1].tolist() == [255, 0, 0]
    assert frame[0, 2].tolist() == [0, 255, 0]
    assert frame[0, 3].tolist() == [128, 128, 255]


def test_multiframe_native_reads_the_requested_frame(tmp_path: Path) -> None:
    frames = np.stack([np.full((8, 12), 10 * (i + 1), np.uint8) for i in range(5)])
    p = make_dicom(
        tmp_path / "cine.dcm", frames.tobytes(), rows=8, cols=12, frames=5, FrameTime=33.3
    )
    (series,) = open_path(p).series
    assert series.n_frames == 5 and series.frame_time_ms == pytest.approx(33.3)
    for i in range(5):
        assert series.frame(i)[0, 0, 0] == 10 * (i + 1)
    with pytest.raises(IndexError):
        series.frame(5)


def test_generated_jpeg_cine_matches_its_source(tmp_path: Path) -> None:
    images = [gradient(48, 64, seed=i) for i in range(4)]
    images[2][:, :, 0] = 250  # a strongly red frame: a second YBR conversion would show
    p = jpeg_cine(tmp_path / "jpeg.dcm", images)
    (series,) = open_path(p).series
    assert series._frames is not None and series._frames.fast_jpeg
    for i, img in enumerate(images):
        diff = np.abs(series.frame(i).astype(int) - img.astype(int))
        assert diff.mean() < 3.0


@pytest.mark.parametrize("photometric", ["RGB", "MONOCHROME2"])
def test_htj2k_lossless_cine_decodes_exactly(tmp_path: Path, photometric: str) -> None:
    """High-Throughput JPEG 2000 (pydicom-data has no such file; imagecodecs' OpenJPH encodes
    one, pylibjpeg-openjpeg decodes it)."""
    images = [gradient(40, 56, seed=i) for i in range(3)]
    if photometric == "MONOCHROME2":
        images = [np.ascontiguousarray(img[:, :, 0]) for img in images]
    blobs = [imagecodecs.htj2k_encode(img, reversible=True) for img in images]
    p = make_dicom(
        tmp_path / "htj2k.dcm",
        encapsulate(blobs),
        rows=40,
        cols=56,
        photometric=photometric,
        spp=3 if photometric == "RGB" else 1,
        frames=len(images),
        ts=HTJ2KLossless,
        encapsulated=True,
    )
    (series,) = open_path(p).series
    assert series.n_frames == 3
    for i, img in enumerate(images):
        rgb = img if img.ndim == 3 else np.repeat(img[:, :, None], 3, axis=2)
        assert np.array_equal(series.frame(i), rgb)


# -- header facts ----------------------------------------------------------------------------


def _region(dx: float, dy: float, units: int = 3, fmt: int = 1, box=(0, 0, 63, 47)) -> Dataset:
    r = Dataset()
    r.RegionSpatialFormat = fmt
    r.RegionDataType = 1
    r.PhysicalUnitsXDirection = units
    r.PhysicalUnitsYDirection = units
    r.PhysicalDeltaX = dx
    r.PhysicalDeltaY = dy
    r.RegionLocationMinX0, r.RegionLocationMinY0, r.RegionLocationMaxX1, r.RegionLocationMaxY1 = box
    return r


@pytest.mark.parametrize(
    ("regions", "spacing", "reason"),
    [
        # unequal deltas: resampled to square pixels (48 rows of 0.3 mm -> 72 of 0.2 mm)
        ([_region(0.02, 0.03)], (0.2, 0.2), "square pixels (64 x 48 -> 64 x 72)"),
        ([_region(0.02, 0.02), _region(0.02, 0.02, fmt=4, box=(0, 30, 63, 47))], (0.2, 0.2), "2D"),
        ([_region(0.02, 0.02), _region(0.05, 0.05, box=(0, 0, 20, 20))], None, "disagree"),
        ([_region(0.02, 0.02, units=4)], None, "not cm"),
        ([_region(0.02, 0.02, fmt=3)], None, "not 2D"),
        # a negative delta gives the direction (fo-dicom's DIRW0007): the magnitude is the
        # physical spacing
        ([_region(-0.02, 0.03)], (0.2, 0.2), "2D region"),
        ([_region(0.0, 0.02)], None, "zero"),
        ([_region(0.02, 0.02, box=(0, 0, 500, 47))], None, "outside"),
        ([], None, "no Sequence"),
    ],
)
def test_calibration(tmp_path: Path, regions: list[Dataset], spacing, reason: str) -> None:
    tags = {"SequenceOfUltrasoundRegions": regions} if regions else {}
    p = make_dicom(tmp_path / "cal.dcm", bytes(48 * 64), rows=48, cols=64, **tags)
    series = open_path(p).series[0]
    cal = series.calibration
    if spacing is None:
        assert cal.spacing_mm is None and cal.region is None
    else:
        assert cal.spacing_mm == pytest.approx(spacing)
        assert cal.region == (0, 0, series.cols - 1, series.rows - 1)
        assert series.frame(0).shape == (series.rows, series.cols, 3)
    assert reason in cal.reason


def _disc(rows: int, cols: int) -> np.ndarray:
    """A bright disc in the middle of a dark ``rows`` x ``cols`` image."""
    img = np.zeros((rows, cols), np.uint8)
    cv2.circle(img, (cols // 2, rows // 2), min(rows, cols) // 3, 255, -1)
    return img


def _extent(frame: np.ndarray) -> tuple[int, int]:
    """Height and width of the bright pixels of an RGB frame."""
    ys, xs = np.nonzero(frame[..., 0] > 127)
    return int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)


@pytest.mark.parametrize("squash", ["rows", "cols"])
def test_non_square_calibrated_pixels_are_resampled_square(tmp_path: Path, squash: str) -> None:
    # a disc stored squashed to half its height (or width), with the spacing that says so,
    # is shown, measured and scored round
    disc = _disc(120, 120)
    if squash == "rows":
        stored, dx, dy = cv2.resize(disc, (120, 60), interpolation=cv2.INTER_AREA), 0.01, 0.02
    else:
        stored, dx, dy = cv2.resize(disc, (60, 120), interpolation=cv2.INTER_AREA), 0.02, 0.01
    rows, cols = stored.shape
    region = _region(dx, dy, box=(0, 0, cols - 1, rows - 1))
    p = make_dicom(
        tmp_path / "squashed.dcm",
        stored.tobytes(),
        rows=rows,
        cols=cols,
        SequenceOfUltrasoundRegions=[region],
    )
    series = open_path(p).series[0]
    assert (series.rows, series.cols) == (120, 120)
    assert series.calibration.spacing_mm == pytest.approx((0.1, 0.1))
    assert series.calibration.region == (0, 0, 119, 119)
    assert "resampled from" in series.calibration.reason
    height, width = _extent(series.frame(0))
    assert abs(height - width) <= 2, (height, width)


def test_pixel_aspect_ratio_is_honoured_without_calibration(tmp_path: Path) -> None:
    # Pixel Aspect Ratio 2\1: each stored pixel is twice as tall as it is wide
    stored = cv2.resize(_disc(120, 120), (120, 60), interpolation=cv2.INTER_AREA)
    p = make_dicom(
        tmp_path / "par.dcm", stored.tobytes(), rows=60, cols=120, PixelAspectRatio=[2, 1]
    )
    series = open_path(p).series[0]
    assert (series.rows, series.cols) == (120, 120)
    assert series.calibration.spacing_mm is None
    assert "Pixel Aspect Ratio 2:1" in series.calibration.reason
    height, width = _extent(series.frame(0))
    assert abs(height - width) <= 2, (height, width)
    # 1:1, a tiny rounding or a damaged 10:1 header: left as stored
    for ratio in ([1, 1], [1000, 1003], [10, 1]):
        q = make_dicom(
            tmp_path / "par1.dcm", stored.tobytes(), rows=60, cols=120, PixelAspectRatio=ratio
        )
        s = open_path(q).series[0]
        assert (s.rows, s.cols) == (60, 120)
        assert s.frame(0).shape == (60, 120, 3)


def test_square_pixels_shrink_the_finer_axis_at_the_size_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fetal_viewer.core.io import aspect

    # stretching 60 rows to 120 would pass the (lowered) limit: 120 columns shrink to 60
    monkeypatch.setattr(aspect, "MAX_FRAME_PIXELS", 120 * 100)
    stored = cv2.resize(_disc(120, 120), (120, 60), interpolation=cv2.INTER_AREA)
    region = _region(0.01, 0.02, box=(0, 0, 119, 59))
    p = make_dicom(
        tmp_path / "big.dcm",
        stored.tobytes(),
        rows=60,
        cols=120,
        SequenceOfUltrasoundRegions=[region],
    )
    series = open_path(p).series[0]
    assert (series.rows, series.cols) == (60, 60)
    assert series.calibration.spacing_mm == pytest.approx((0.2, 0.2))
    height, width = _extent(series.frame(0))
    assert abs(height - width) <= 2, (height, width)


def test_calibration_reasons_read_as_sentences(tmp_path: Path) -> None:
    from fetal_viewer.core.io.calibration import calibration_note

    tags = {"SequenceOfUltrasoundRegions": [_region(0.0, 0.0123456789)]}
    p = make_dicom(tmp_path / "cal.dcm", bytes(48 * 64), rows=48, cols=64, **tags)
    cal = open_path(p).series[0].calibration
    note = calibration_note(cal)
    assert note is not None and note.endswith(".") and note[0].isupper()
    assert "0.0123456789" not in note and "0.01235 cm" in note
    assert "measurements are in pixels, not millimetres" in note
    calibrated = make_dicom(
        tmp_path / "ok.dcm",
        bytes(48 * 64),
        rows=48,
        cols=64,
        SequenceOfUltrasoundRegions=[_region(0.02, 0.02)],
    )
    assert calibration_note(open_path(calibrated).series[0].calibration) is None


def test_gestational_age_burned_in_and_pseudonym(tmp_path: Path) -> None:
    p = make_dicom(
        tmp_path / "ga.dcm", bytes(16), rows=4, cols=4, LastMenstrualDate="20240101",
        StudyDate="20240603", BurnedInAnnotation="YES",
    )  # fmt: skip
    result = open_path(p)
    (patient,) = result.patients
    (series,) = result.series
    assert series.ga_weeks == pytest.approx(22.0)
    assert series.burned_in_annotation is True
    assert patient.identity.patient_id == "PID-1" and patient.identity.patient_name == "Doe^Jane"
    assert patient.pseudonym.startswith("P-") and "PID" not in patient.pseudonym
    assert "Doe" not in repr(patient) and "PID-1" not in repr(patient)
    assert open_path(p).patients[0].pseudonym == patient.pseudonym  # stable
    q = make_dicom(tmp_path / "ga2.dcm", bytes(16), rows=4, cols=4, ImageComments="GA 20w3d")
    assert open_path(q).series[0].ga_weeks == pytest.approx(20 + 3 / 7, abs=0.01)


# -- bad input ---------------------------------------------------------------------------------


def _only_problem(path: Path) -> StudyLoadError:
    result = open_path(path)
    assert result.patients == []
    (problem,) = result.problems
    assert isinstance(problem, StudyLoadError)
    assert problem.path == str(path) and problem.what and problem.fix
    return problem


def test_random_bytes(tmp_path: Path) -> None:
    p = tmp_path / "noise.bin"
    p.write_bytes(np.random.default_rng(1).bytes(4096))
    assert "not a DICOM or image" in _only_problem(p).what


def test_zero_length(tmp_path: Path) -> None:
    p = tmp_path / "empty.dcm"
    p.write_bytes(b"")
    assert "empty" in _only_problem(p).what


def test_dcm_name_that_is_not_dicom(tmp_path: Path) -> None:
    p = tmp_path / "report.dcm"
    p.write_text("this is a text file pretending to be DICOM\n" * 20)
    problem = _only_problem(p)
    assert "not a DICOM" in problem.what and "DICOM file" in problem.why


def test_truncated_native(tmp_path: Path) -> None:
    p = make_dicom(tmp_path / "t.dcm", bytes(64 * 64), rows=64, cols=64)
    p.write_bytes(p.read_bytes()[:-1000])
    assert "shorter than the header" in _only_problem(p).what


def test_truncated_encapsulated(tmp_path: Path) -> None:
    p = jpeg_cine(tmp_path / "t.dcm", [gradient(32, 32, i) for i in range(3)])
    p.write_bytes(p.read_bytes()[:-600])
    assert "truncated" in _only_problem(p).what


def test_corrupt_compressed_pixel_data(tmp_path: Path) -> None:
    blob = b"\xff\xd8\xff\xe0" + np.random.default_rng(2).bytes(3000) + b"\xff\xd9"
    p = make_dicom(
        tmp_path / "bad.dcm", encapsulate([blob]), rows=32, cols=32, photometric="YBR_FULL_422",
        spp=3, ts=JPEGBaseline8Bit, encapsulated=True,
    )  # fmt: skip
    (series,) = open_path(p).series  # the header is fine ...
    with pytest.raises(StudyLoadError) as info:  # ... the frame is not
        series.frame(0)
    err = info.value
    assert err.path == str(p) and "could not be decoded" in err.what
    assert "OpenCV" in err.why and "pydicom" in err.why and err.fix


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientID = "X"
    p = tmp_path / "nopix.dcm"
    ds.save_as(p, enforce_file_format=True)
    problem = _only_problem(p)
    assert "no image" in problem.what and "Secondary Capture" in problem.why
    assert "truncated" in problem.what  # an image class: its pixels went missing
    # a file cut short (a copy that failed) is told apart from a report without pixels
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(
        write_rgb_cine(tmp_path / "whole.dcm", np.zeros((1, 32, 32, 3), np.uint8)).read_bytes()[
            :300
        ]
    )
    assert "truncated" in _only_problem(cut).what


def test_unsupported_transfer_syntax(tmp_path: Path) -> None:
    p = make_dicom(
        tmp_path / "mpeg.dcm", encapsulate([b"\x00\x00\x01\xb3" + bytes(100)]), rows=16, cols=16,
        ts=MPEG2MPML, encapsulated=True,
    )  # fmt: skip
    problem = _only_problem(p)
    assert "unsupported transfer syntax" in problem.what and "MPEG2" in problem.what
    assert "gdcmconv" in problem.fix


def test_missing_decoder_names_the_package(tmp_path: Path) -> None:
    """With pylibjpeg's libjpeg plug-in unimportable, a JPEG-LS file names what to install."""
    from pydicom.data import get_testdata_file

    jls = get_testdata_file("MR_small_jpeg_ls_lossless.dcm")
    code = (
        "import sys\nfor m in ('libjpeg', 'pylibjpeg', 'jpeg_ls'): sys.modules[m] = None\n"
        "from fetal_viewer.core.io import open_path\n"
        f"r = open_path({str(jls)!r}); p = r.problems[0]\n"
        "print(p.what); print(p.why); print(p.fix)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "no decoder installed for JPEG-LS" in out.stdout
    assert "pylibjpeg-libjpeg" in out.stdout and "pip install" in out.stdout


@pytest.mark.parametrize(
    ("rows", "cols", "frames"), [(60000, 60000, 1), (512, 512, 10_000_000), (640, 480, 17_000)]
)
def test_absurd_dimensions_are_refused_before_allocation(
    tmp_path: Path, rows, cols, frames
) -> None:
    p = make_dicom(tmp_path / "huge.dcm", bytes(1024), rows=rows, cols=cols, frames=frames)
    tracemalloc.start()
    try:
        result = open_path(p)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    (problem,) = result.problems
    assert peak < 20 * 1024**2
    assert "absurd" in problem.what or "shorter than the header" in problem.what


def test_absurd_png_header_is_refused(tmp_path: Path) -> None:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(64)))
    p = tmp_path / "bomb.png"
    p.write_bytes(data + chunk(b"IEND", b""))
    assert "absurd" in _only_problem(p).what


# -- plain images and folders ------------------------------------------------------------------


def test_plain_images(tmp_path: Path) -> None:
    rgb = gradient(30, 40)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "rgb.png"), bgr)
    cv2.imwrite(str(folder / "rgba.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA))
    cv2.imwrite(str(folder / "gray.bmp"), rgb[..., 0])
    cv2.imwrite(str(folder / "gray16.png"), rgb[..., 0].astype(np.uint16) * 200 + 1000)
    cv2.imwrite(str(folder / "rgb16.tif"), bgr.astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "photo.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 98])
    cv2.imwritemulti(str(folder / "pages.tif"), [rgb[..., 0], 255 - rgb[..., 0]])
    result = open_path(folder)
    assert result.problems == []
    (patient,) = result.patients
    (study,) = patient.studies
    by_name = {s.source.name: s for s in study.series}
    assert set(by_name) == {
        "rgb.png",
        "rgba.png",
        "gray.bmp",
        "gray16.png",
        "rgb16.tif",
        "photo.jpg",
        "pages.tif",
    }
    assert np.array_equal(by_name["rgb.png"].frame(0), rgb)
    assert np.array_equal(by_name["rgba.png"].frame(0), rgb)
    assert np.array_equal(by_name["gray.bmp"].frame(0)[..., 1], rgb[..., 0])
    assert np.abs(by_name["photo.jpg"].frame(0).astype(int) - rgb).mean() < 3
    g16 = by_name["gray16.png"].frame(0)[..., 0]
    assert g16.min() == 0 and g16.max() == 255
    assert np.abs(by_name["rgb16.tif"].frame(0).astype(int) - rgb).max() <= 1
    pages = by_name["pages.tif"]
    assert pages.n_frames == 2
    assert np.array_equal(pages.frame(1)[..., 0], 255 - rgb[..., 0])


def test_folder_with_good_and_bad_files(tmp_path: Path) -> None:
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    good1 = make_dicom(sub / "good1.dcm", bytes(16), rows=4, cols=4)
    good2 = jpeg_cine(
        tmp_path / "good2.dcm", [gradient(16, 16)], PatientID="PID-2", StudyInstanceUID="9.9"
    )
    cv2.imwrite(str(tmp_path / "a" / "still.png"), gradient(8, 8))
    (tmp_path / "a" / "empty.dcm").write_bytes(b"")
    (tmp_path / "noise.dcm").write_bytes(np.random.default_rng(3).bytes(500))
    (tmp_path / "notes.txt").write_text("skipped")
    result = open_paths([tmp_path])
    sources = {s.source for s in result.series}
    assert sources == {good1, good2, tmp_path / "a" / "still.png"}
    assert {Path(p.path or "").name for p in result.problems} == {"empty.dcm", "noise.dcm"}
    assert len(result.patients) == 3  # two DICOM patients, one image folder


def test_series_come_in_acquisition_order(tmp_path: Path) -> None:
    """SeriesNumber decides the order, not the random UIDs."""
    pixels = bytes(16 * 16)
    for name, series_number, instance in (("c", 3, 1), ("a", 1, 2), ("b", 1, 1), ("d", None, 1)):
        tags: dict[str, object] = {"InstanceNumber": instance}
        if series_number is not None:
            tags["SeriesNumber"] = series_number
        make_dicom(tmp_path / f"{name}.dcm", pixels, rows=16, cols=16, **tags)
    (patient,) = open_path(tmp_path).patients
    numbers = [s.series_number for s in patient.studies[0].series]
    assert numbers == [1, 1, 3, None]  # unnumbered series last
