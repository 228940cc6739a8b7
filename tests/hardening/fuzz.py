"""Input fuzzer for study loading: mutated DICOM, PNG and JPEG files through ``core.io``.

Seeds are real files (pydicom-data and pydicom's own test files: US, RLE, JPEG, JPEG-LS,
JPEG 2000, deflated, big endian, palette) plus files made here (phantom DICOMs, native and
JPEG cines, PNG/JPEG images). Each case applies one to three mutations to one seed:
bit flips, truncation, garbage in a tag value, lying Rows/Columns/BitsAllocated/
NumberOfFrames (zero, negative, huge), a swapped transfer syntax, lying element or item
lengths, broken compressed streams (overwritten, cut or spliced bytes, lying JPEG SOF or
PNG IHDR dimensions with a valid CRC).

Every case runs in a worker process with an address-space limit (``RLIMIT_AS``) and a
per-case deadline enforced by the parent (the worker is killed and replaced when it
passes it). The case must end in a loaded study, whose frames then decode or raise
:class:`StudyLoadError`, or in :class:`StudyLoadError` problems; ``read_frame`` on the same
file must return an array or raise :class:`StudyLoadError`. Anything else is a failure:
another exception escaping, the worker dying (segfault, abort, out of memory), passing the
deadline, or a case's peak resident memory passing ``RSS_LIMIT``. A failing case's bytes are
kept so it can be replayed: ``python -m tests.hardening.fuzz replay FILE``.
"""

from __future__ import annotations

import collections
import contextlib
import io
import multiprocessing as mp
import os
import random
import resource
import struct
import sys
import tempfile
import time
import traceback
import zlib
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

#: per-case deadline (seconds) the issue sets
DEADLINE_S = 5.0
#: address space of a worker (bytes): bounds what any one case may allocate
AS_LIMIT = 3 * 1024**3
#: peak resident memory of one case above the worker's idle RSS that counts as a failure
RSS_LIMIT = 1024**3

# seed files by name; those found are used (pydicom-data is a dev dependency)
PYDICOM_DATA_SEEDS = (
    "US1_J2KI.dcm",
    "OBXXXX1A_rle_2frame.dcm",
    "SC_rgb_2frame.dcm",
    "SC_rgb_16bit.dcm",
    "SC_rgb_dcmtk_ebcynp_dcmd.dcm",
    "SC_ybr_full_uncompressed.dcm",
    "emri_small_jpeg_ls_lossless.dcm",
    "emri_small_RLE.dcm",
    "OT-PAL-8-face.dcm",
)
PYDICOM_TEST_SEEDS = (
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_small_odd_jpeg.dcm",
    "SC_rgb_rle_2frame.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
    "JPEG2000.dcm",
    "image_dfl.dcm",
    "ExplVR_BigEnd.dcm",
    "no_meta.dcm",
    "examples_palette.dcm",
    "JPEGLSNearLossless_08.dcm",
    "MR_small_implicit.dcm",
)

OUTCOMES_OK = ("loaded", "frame_error", "refused")


# --- seeds --------------------------------------------------------------------------------


def _phantom_frames(n: int, rows: int, cols: int, seed: int) -> np.ndarray:
    from fetal_viewer.core.phantoms.render import render

    rng = np.random.default_rng(seed)
    labels = ("normal", "anencephaly", "encephalocele", "holoprosencephaly", "rachischisis")
    return np.stack(
        [render(labels[i % 5], 22.0, "A", rng, size=(cols, rows)).image for i in range(n)]
    )


def _write_native_cine(path: Path, frames: np.ndarray, implicit: bool = False) -> None:
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

    from tests.factories import write_rgb_cine

    write_rgb_cine(
        path,
        frames,
        region_cm=0.02,
        ts=ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian,
        PatientID="FUZZ-1",
        PatientName="Fuzz^Seed",
        StudyInstanceUID=generate_uid(),
        StudyDate="20240101",
        LastMenstrualDate="20230801",
        FrameTime="33.3",
    )


def make_seeds(folder: Path, pydicom_data_dir: Path | None = None) -> list[Path]:
    """Write the generated seeds into ``folder`` and return every seed path (real ones too)."""
    import cv2
    import pydicom

    from fetal_viewer.core.phantoms.dataset import generate_dataset

    folder.mkdir(parents=True, exist_ok=True)
    seeds: list[Path] = []
    test_files = Path(pydicom.__file__).parent / "data" / "test_files"
    seeds += [test_files / n for n in PYDICOM_TEST_SEEDS if (test_files / n).is_file()]
    if pydicom_data_dir is not None:
        seeds += [
            pydicom_data_dir / n for n in PYDICOM_DATA_SEEDS if (pydicom_data_dir / n).is_file()
        ]
    # phantom DICOMs as the app's own generator writes them: JPEG baseline and native
    for fmt_q in (90, None):
        out = folder / f"phantoms-{fmt_q or 'raw'}"
        generate_dataset(out, 1, 1, seed=3, fmt="dicom", size=(96, 72), jpeg_quality=fmt_q)
        dcms = sorted(out.rglob("*.dcm"))
        seeds += dcms[:2]
    frames = _phantom_frames(4, 48, 64, seed=1)
    _write_native_cine(folder / "native_cine.dcm", frames)
    _write_native_cine(folder / "implicit_cine.dcm", frames[:2], implicit=True)
    img = frames[0]
    for name, data in (
        ("rgb.png", cv2.imencode(".png", img)[1]),
        ("gray.png", cv2.imencode(".png", img[:, :, 0])[1]),
        ("gray16.png", cv2.imencode(".png", img[:, :, 0].astype(np.uint16) * 257)[1]),
        ("rgb.jpg", cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])[1]),
        ("gray.jpg", cv2.imencode(".jpg", img[:, :, 1])[1]),
        ("prog.jpg", cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1]),
    ):
        (folder / name).write_bytes(data.tobytes())
        seeds.append(folder / name)
    return seeds


# --- mutations ----------------------------------------------------------------------------

_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT",
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST",
    b"SV", b"TM", b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
}  # fmt: skip
_LONG = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
_TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.100",
    "1.2.3.4.5",
    "",
)
_NUMBERS = (0, 1, 2, 3, -1, 7, 12, 255, 256, 4096, 18000, 18001, 65535, 2**31 - 1, 10**9)
_GARBAGE_TEXT = (
    "",
    " ",
    "abc",
    "-1",
    "1e308",
    "nan",
    "inf",
    "0x10",
    "1\\2\\3",
    "\x00\xff",
    "9" * 64,
)


@dataclass
class SeedInfo:
    """One seed: its bytes, kind, and (DICOM) where its elements and items lie."""

    name: str
    suffix: str
    data: bytes
    kind: str  # "dicom", "png", "jpeg"
    elements: list[tuple[int, int]] = field(default_factory=list)  # (offset, length field size)
    items: list[int] = field(default_factory=list)  # offsets of FFFE,E000 item tags
    pixel_start: int = 0


def _scan(data: bytes) -> tuple[list[tuple[int, int]], list[int], int]:
    """Explicit-VR element headers and item tags found in raw bytes (a heuristic scan)."""
    elements = []
    for i in range(0, len(data) - 8):
        vr = data[i + 4 : i + 6]
        if vr in _VRS and data[i + 1] in (0x00, 0x7F) and data[i] % 2 == 0:
            elements.append((i + 8, 4) if vr in _LONG else (i + 6, 2))
        if len(elements) > 400:
            break
    items = [m for m in _find_all(data, b"\xfe\xff\x00\xe0")]
    pix = data.rfind(b"\xe0\x7f\x10\x00")
    return elements, items, max(pix, 0)


def _find_all(data: bytes, needle: bytes) -> list[int]:
    out, start = [], 0
    while (i := data.find(needle, start)) >= 0 and len(out) < 2000:
        out.append(i)
        start = i + 1
    return out


def load_seed(path: Path) -> SeedInfo:
    data = path.read_bytes()
    if data.startswith(b"\x89PNG"):
        kind = "png"
    elif data.startswith(b"\xff\xd8"):
        kind = "jpeg"
    else:
        kind = "dicom"
    info = SeedInfo(path.name, path.suffix or ".dcm", data, kind)
    if kind == "dicom":
        info.elements, info.items, info.pixel_start = _scan(data)
    return info


def _bitflip(rng: random.Random, seed: SeedInfo, buf: bytearray) -> str:
    n = rng.randint(1, 16)
    header = rng.random() < 0.5
    for _ in range(n):
        hi = min(len(buf), 4096) if header else len(buf)
        pos = rng.randrange(hi)
        buf[pos] ^= 1 << rng.randrange(8)
    return f"bitflip{n}{'h' if header else ''}"


def _truncate(rng: random.Random, seed: SeedInfo, buf: bytearray) -> str:
    cut = rng.randrange(1, len(buf))
    del buf[cut:]
    return f"truncate@{cut}"


def _overwrite(rng: random.Random, seed: SeedInfo, buf: bytearray) -> str:
    """A run of random, zero or 0xFF bytes, in the pixel stream when there is one."""
    lo = seed.pixel_start if seed.kind == "dicom" else min(64, len(buf) // 2)
    pos = rng.randrange(min(lo, len(buf) - 1), len(buf))
    n = rng.choice((1, 4, 16, 256, 4096))
    fill = rng.choice(("rand", "zero", "ff"))
    chunk = (
        bytes(rng.getrandbits(8) for _ in range(min(n, 4096)))
        if fill == "rand"
        else (b"\x00" if fill == "zero" else b"\xff") * n
    )
    buf[pos : pos + len(chunk)] = chunk[: max(0, len(buf) - pos)]
    return f"overwrite-{fill}{n}"


def _splice(rng: random.Random, seed: SeedInfo, buf: bytearray) -> str:
    pos = rng.randrange(len(buf))
    n = rng.choice((1, 2, 3, 8, 100, 1000))
    if rng.random() < 0.5:
        del buf[pos : pos + n]
        return f"delete{n}"
    src = rng.randrange(len(buf))
    buf[pos:pos] = buf[src : src + n]
    return f"insert{n}"


def _lying_length(rng: random.Random, seed: SeedInfo, buf: bytearray) -> str:
    cands: list[tuple[int, int]] = list(seed.elements) + [(i + 4, 4) for i in seed.items]
    cands = [(o, s) for o, s in cands if o + s <= len(buf)]
    if not cands:
        return _bitflip(rng, seed, buf)
    off, size = rng.choice(cands)
    if size == 2:
        value = rng.choice((0, 1, 3, 0xFFFF, 0x8000, rng.randrange(0x10000)))
        buf[off : off + 2] = struct.pack("<H", value)
    else:
        value = rng.choice((0, 1, 3, 0xFFFFFFFF, 0xFFFFFFFE, 0x7FFFFFFF, rng.randrange(1 << 32)))
        buf[off : off + 4] = struct.pack("<I", value)
    return f"length{size}={value}"


def _dicom_rewrite(rng: random.Random, seed: SeedInfo, buf: bytearray) -> str:
    """Garbage or lies in header values, written back by pydicom as the file was encoded."""
    from pydicom import dcmread

    try:
        ds = dcmread(io.BytesIO(bytes(buf)), force=True)
        ds.PixelData  # noqa: B018  (read it now; the rewrite must carry it)
    except Exception:
        return _bitflip(rng, seed, buf)
    what = rng.choice(("frames", "dims", "bits", "spp", "photometric", "ts", "garbage", "regions"))
    try:
        if what == "frames":
            ds.NumberOfFrames = rng.choice((*_NUMBERS, "abc", "", "1.5"))
        elif what == "dims":
            kw = rng.choice(("Rows", "Columns"))
            ds[kw].value = rng.choice(_NUMBERS[:13])
        elif what == "bits":
            kw = rng.choice(("BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation"))
            setattr(ds, kw, rng.choice((0, 1, 7, 8, 12, 16, 17, 32, 64, 255)))
        elif what == "spp":
            ds.SamplesPerPixel = rng.choice((0, 1, 2, 3, 4, 255))
            if rng.random() < 0.5:
                ds.PlanarConfiguration = rng.choice((0, 1, 2))
        elif what == "photometric":
            ds.PhotometricInterpretation = rng.choice(
                ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR",
                 "YBR_RCT", "YBR_ICT", "HSV", "", "XYZ")
            )  # fmt: skip
        elif what == "ts":
            ds.file_meta.TransferSyntaxUID = rng.choice(_TRANSFER_SYNTAXES)
        elif what == "regions":
            regions = ds.get("SequenceOfUltrasoundRegions")
            if not regions:
                return _bitflip(rng, seed, buf)
            r = regions[0]
            kw = rng.choice(
                ("PhysicalDeltaX", "PhysicalDeltaY", "RegionLocationMaxX1", "RegionLocationMinY0",
                 "PhysicalUnitsXDirection", "RegionSpatialFormat")
            )  # fmt: skip
            if kw.startswith("PhysicalDelta"):
                setattr(r, kw, rng.choice((0.0, -1.0, 1e308, float("nan"), float("inf"), 1e-300)))
            else:
                setattr(r, kw, rng.choice((0, 1, 65535, 2**31 - 1)))
        else:
            elems = [e for e in ds if e.tag != 0x7FE00010 and e.VR != "SQ"]
            if not elems:
                return _bitflip(rng, seed, buf)
            elem = rng.choice(elems)
            if rng.random() < 0.5:
                elem.value = rng.choice(_GARBAGE_TEXT) if elem.VR not in ("US", "UL", "SS", "SL", "FL", "FD", "AT") else rng.choice(_NUMBERS[:12])  # fmt: skip
            else:
                elem.value = bytes(rng.getrandbits(8) for _ in range(rng.choice((1, 2, 7, 64))))
            what = f"garbage:{elem.keyword or elem.tag}"
        out = io.BytesIO()
        implicit, little = getattr(ds, "original_encoding", (False, True))
        ds.save_as(
            out,
            implicit_vr=bool(implicit) if implicit is not None else False,
            little_endian=bool(little) if little is not None else True,
            enforce_file_format=False,
        )
    except Exception:
        return _bitflip(rng, seed, buf)
    buf[:] = out.getvalue()
    return f"dicom:{what}"


def _png_chunks(data: bytes) -> list[tuple[int, bytes, int]]:
    out, pos = [], 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        out.append((pos, data[pos + 4 : pos + 8], length))
        pos += 12 + length
    return out


def _image_header(rng: random.Random, seed: SeedInfo, buf: bytearray) -> str:
    """Lying PNG IHDR (CRC fixed, so the lie passes the checksum) or JPEG SOF dimensions."""
    dims = rng.choice(((0, 0), (1, 1), (65535, 65535), (8192, 8193), (1, 60000), (100000, 3)))
    if seed.kind == "png" and len(buf) > 33:
        w, h = dims
        buf[16:24] = struct.pack(">II", w & 0xFFFFFFFF, h & 0xFFFFFFFF)
        if rng.random() < 0.3:
            buf[24] = rng.choice((1, 2, 4, 8, 16, 3))  # bit depth
            buf[25] = rng.choice((0, 2, 3, 4, 6, 5))  # colour type
        buf[29:33] = struct.pack(">I", zlib.crc32(bytes(buf[12:29])) & 0xFFFFFFFF)
        return f"ihdr{w}x{h}"
    if seed.kind == "jpeg":
        for marker in (b"\xff\xc0", b"\xff\xc2", b"\xff\xc1"):
            i = bytes(buf).find(marker)
            if i >= 0 and i + 9 <= len(buf):
                h, w = (min(d, 65535) for d in dims)
                buf[i + 5 : i + 9] = struct.pack(">HH", h, w)
                return f"sof{w}x{h}"
    if seed.kind == "png":
        chunks = [c for c in _png_chunks(bytes(buf)) if c[1] == b"IDAT"]
        if chunks:
            pos, _, length = rng.choice(chunks)
            buf[pos : pos + 4] = struct.pack(">I", rng.choice((0, length * 2, 0x7FFFFFFF)))
            return "idat-length"
    return _overwrite(rng, seed, buf)


MUTATORS = {
    "dicom": (
        (_bitflip, 3), (_truncate, 2), (_overwrite, 2), (_splice, 1), (_lying_length, 3),
        (_dicom_rewrite, 5),
    ),
    "png": ((_bitflip, 3), (_truncate, 2), (_overwrite, 3), (_splice, 1), (_image_header, 3)),
    "jpeg": ((_bitflip, 3), (_truncate, 2), (_overwrite, 3), (_splice, 1), (_image_header, 3)),
}  # fmt: skip


def mutate(seed: SeedInfo, case_seed: int) -> tuple[bytes, str]:
    """The bytes of one case (deterministic for ``case_seed``) and what was done."""
    rng = random.Random(case_seed)
    buf = bytearray(seed.data)
    ops, weights = zip(*MUTATORS[seed.kind], strict=True)
    done = []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if len(buf) < 2:
            break
        op = rng.choices(ops, weights)[0]
        done.append(op(rng, seed, buf))
    return bytes(buf), "+".join(done)


# --- one case -----------------------------------------------------------------------------


def _rss_kb(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name):
                return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM (peak RSS) on Linux >= 4.0


def check_file(path: Path, seed_name: str = "", max_frames: int = 3) -> tuple[str, str]:
    """Run one file through the loader and the frame decoder: (outcome, detail).

    ``loaded``: a study, every tried frame decoded; ``frame_error``: a study whose frame
    raised StudyLoadError; ``refused``: only StudyLoadError problems; ``unexpected``: a
    StudyLoadError that wraps an exception the loader did not foresee (``the file could
    not be examined``); ``crash``: any other exception escaped.
    """
    from fetal_viewer.core.io import open_path, read_frame
    from fetal_viewer.errors import StudyLoadError

    try:
        result = open_path(path)
        outcome, detail = "refused", ""
        for problem in result.problems:
            if not isinstance(problem, StudyLoadError):
                return "crash", f"problem of type {type(problem).__name__}"
            if problem.what == "the file could not be examined":
                return "unexpected", problem.why
            detail = problem.what
        for series in result.series:
            outcome = "loaded"
            n = len(series)
            for i in sorted({0, n // 2, n - 1})[:max_frames]:
                try:
                    arr = series.frame(i)
                except StudyLoadError as exc:
                    outcome, detail = "frame_error", exc.what
                    break
                if arr.shape != (series.rows, series.cols, 3) or arr.dtype != np.uint8:
                    return "crash", f"frame {i} has shape {arr.shape} {arr.dtype}"
        with contextlib.suppress(StudyLoadError):
            read_frame(path, 0)
        return outcome, detail
    except Exception as exc:
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
        return "crash", f"{type(exc).__name__}: {exc}\n{''.join(tb[-6:])}"


def _worker(conn: Connection, seed_paths: list[str], workdir: str, check: str) -> None:
    import importlib
    import logging
    import warnings

    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # libpng/libjpeg/OpenCV complain on stderr about every bad file
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    import cv2

    cv2.setNumThreads(1)
    module, name = check.split(":")
    check_fn = getattr(importlib.import_module(module), name)
    seeds = [load_seed(Path(p)) for p in seed_paths]
    check_file(Path(seed_paths[0]))  # warm imports before the first deadline counts
    conn.send(("ready", _rss_kb("VmRSS")))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        case_id, seed_index, case_seed = msg
        seed = seeds[seed_index]
        data, ops = mutate(seed, case_seed)
        # a file name like a scanner export; images keep their suffix
        path = Path(workdir) / f"case{case_id % 4}{seed.suffix}"
        path.write_bytes(data)
        _reset_peak()
        base = _rss_kb("VmRSS")
        t0 = time.perf_counter()
        outcome, detail = check_fn(path, seed.name)
        dt = time.perf_counter() - t0
        peak = _rss_kb("VmHWM") - base
        conn.send((case_id, outcome, detail, ops, dt, peak * 1024))


@dataclass
class Failure:
    case_id: int
    seed: str
    case_seed: int
    outcome: str
    detail: str
    ops: str = ""
    saved: str = ""


@dataclass
class FuzzReport:
    cases: int = 0
    seconds: float = 0.0
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    by_kind: dict[str, collections.Counter[str]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    slowest_s: float = 0.0
    peak_case_rss_mb: float = 0.0
    seeds: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "seconds": round(self.seconds, 1),
            "cases_per_s": round(self.cases / self.seconds, 1) if self.seconds else 0.0,
            "seeds": self.seeds,
            "outcomes": dict(sorted(self.outcomes.items())),
            "by_kind": {k: dict(sorted(v.items())) for k, v in sorted(self.by_kind.items())},
            "failures": len(self.failures),
            "failure_examples": [
                {
                    "seed": f.seed,
                    "case_seed": f.case_seed,
                    "outcome": f.outcome,
                    "ops": f.ops,
                    "detail": f.detail[:300],
                    "saved": f.saved,
                }
                for f in self.failures[:10]
            ],
            "slowest_case_s": round(self.slowest_s, 3),
            "peak_case_rss_mb": round(self.peak_case_rss_mb, 1),
        }


class _Slot:
    def __init__(self, ctx: Any, seed_paths: list[str], workdir: Path, n: int, check: str) -> None:
        self.ctx, self.seed_paths, self.workdir, self.n = ctx, seed_paths, workdir, n
        self.check = check
        self.busy: tuple[int, int, int, float] | None = None
        self.start()

    def start(self) -> None:
        d = self.workdir / f"w{self.n}"
        d.mkdir(parents=True, exist_ok=True)
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(
            target=_worker, args=(child, self.seed_paths, str(d), self.check), daemon=True
        )
        self.proc.start()
        child.close()
        if not self.conn.poll(120):
            raise RuntimeError("fuzz worker did not start in 120 s")
        self.conn.recv()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.join()
        self.conn.close()


def run_fuzz(
    seed_paths: list[Path],
    n_cases: int,
    workers: int = 2,
    rng_seed: int = 0,
    workdir: Path | None = None,
    failures_dir: Path | None = None,
    deadline_s: float = DEADLINE_S,
    rss_limit: int = RSS_LIMIT,
    check: str = "tests.hardening.fuzz:check_file",
    round_robin: bool = False,
    progress: Any = None,
) -> FuzzReport:
    """Run ``n_cases`` mutated cases over ``seed_paths`` in ``workers`` processes.

    ``check`` (``module:function``) is what a worker runs on each case file, with the
    seed's name; it returns ``(outcome, detail)`` like :func:`check_file`.
    """
    seeds = [load_seed(p) for p in seed_paths]
    ctx = mp.get_context("spawn")
    report = FuzzReport(seeds=len(seeds))
    own_tmp = None
    if workdir is None:
        own_tmp = tempfile.TemporaryDirectory(prefix="fuzz-")
        workdir = Path(own_tmp.name)
    master = random.Random(rng_seed)
    plan = [
        (i, i % len(seeds) if round_robin else master.randrange(len(seeds)), master.getrandbits(48))
        for i in range(n_cases)
    ]
    t0 = time.perf_counter()
    slots = [_Slot(ctx, [str(p) for p in seed_paths], workdir, k, check) for k in range(workers)]
    pending = collections.deque(plan)

    def fail(case: tuple[int, int, int], outcome: str, detail: str, ops: str = "") -> None:
        case_id, si, cs = case
        saved = ""
        if failures_dir is not None:
            failures_dir.mkdir(parents=True, exist_ok=True)
            data, ops = mutate(seeds[si], cs)
            out = failures_dir / f"{outcome}-{case_id}-{seeds[si].name}{seeds[si].suffix}"
            out.write_bytes(data)
            saved = str(out)
        report.failures.append(Failure(case_id, seeds[si].name, cs, outcome, detail, ops, saved))

    try:
        while pending or any(s.busy for s in slots):
            for s in slots:
                if s.busy is None and pending:
                    case = pending.popleft()
                    s.conn.send(case)
                    s.busy = (*case, time.monotonic())
            ready = mp.connection.wait([s.conn for s in slots if s.busy], timeout=0.2)
            now = time.monotonic()
            for s in slots:
                if s.busy is None:
                    continue
                case = s.busy[:3]
                kind = seeds[case[1]].kind
                counter = report.by_kind.setdefault(kind, collections.Counter())
                if s.conn in ready:
                    try:
                        _, outcome, detail, ops, dt, peak = s.conn.recv()
                    except (EOFError, OSError):
                        s.proc.join()
                        code = s.proc.exitcode
                        outcome, detail, dt, peak = "died", f"worker exit code {code}", 0.0, 0
                        ops = ""
                        s.kill()
                        s.start()
                    if outcome in OUTCOMES_OK and peak > rss_limit:
                        outcome, detail = "memory", f"peak RSS +{peak >> 20} MiB ({detail})"
                    if outcome in OUTCOMES_OK and dt > deadline_s:
                        outcome, detail = "hang", f"took {dt:.1f} s"
                    report.outcomes[outcome] += 1
                    counter[outcome] += 1
                    report.cases += 1
                    report.slowest_s = max(report.slowest_s, dt)
                    report.peak_case_rss_mb = max(report.peak_case_rss_mb, peak / 2**20)
                    if outcome not in OUTCOMES_OK:
                        fail(case, outcome, detail, ops)
                    s.busy = None
                elif now - s.busy[3] > deadline_s:
                    s.kill()
                    report.outcomes["hang"] += 1
                    counter["hang"] += 1
                    report.cases += 1
                    fail(case, "hang", f"no answer within {deadline_s} s")
                    s.busy = None
                    s.start()
            if progress is not None:
                progress(report)
    finally:
        for s in slots:
            with contextlib.suppress(Exception):
                s.conn.send(None)
            s.proc.join(timeout=5)
            if s.proc.is_alive():
                s.kill()
        report.seconds = time.perf_counter() - t0
        if own_tmp is not None:
            own_tmp.cleanup()
    return report


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.hardening.fuzz replay FILE...``: run saved cases in this process."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "replay":
        print(__doc__)
        return 2
    bad = 0
    for name in args[1:]:
        outcome, detail = check_file(Path(name))
        print(f"{name}: {outcome} {detail}")
        bad += outcome not in OUTCOMES_OK
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
