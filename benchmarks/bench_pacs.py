"""Retrieving a 200-frame cine from a local Orthanc: the app's retrieve against a bare
pynetdicom C-GET of the same study, measured in the same run.

Two cines, each one instance of one study: a JPEG Baseline 600 x 800 one (what scanners
send) and an uncompressed RGB 300 x 400 one (72 MB: the data path itself). For each:

- ``bare_default``: a bare pynetdicom C-GET, as pynetdicom's documentation writes it: one
  storage context per transfer syntax (so Orthanc sends what it holds), SCP role, and an
  ``EVT_C_STORE`` handler writing ``event.encoded_dataset()`` to a file; default maximum
  PDU (16 kB);
- ``bare_bigpdu``: the same with no PDU limit (what the app asks for);
- ``app_get``: :func:`fetal_viewer.core.net.retrieve.retrieve_study` by C-GET (a C-FIND for the
  instance count, the transfer state, atomic no-overwrite writes, progress callbacks);
- ``app_move``: the same by C-MOVE to the app's listener.

Each figure is the best of ``--repeat`` runs (the variants take turns), into a new folder
each time. Throughput is MiB/s of DICOM files written; the ratio is the app's throughput
over the fastest bare variant's (goal: ``app_get`` >= 0.8). Needs Debian's ``orthanc``
(``packaging/system-deps.sh``). The last line printed is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"


def make_cine(path: Path, n_frames: int, rows: int, cols: int, jpeg: bool) -> Path:
    """A multi-frame US cine of a moving synthetic sector, JPEG Baseline or native RGB."""
    import cv2
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    speckle = rng.gamma(2.0, 40.0, (rows, cols)).astype(np.float32)
    frames = []
    for i in range(n_frames):
        r = np.hypot(x - cols / 2 - 0.05 * cols * np.sin(i / 10), y - rows / 2)
        ring = np.exp(-(((r - 0.3 * rows) / (0.1 * rows)) ** 2))
        gray = np.clip(speckle * ring + 10, 0, 255).astype(np.uint8)
        blue = np.clip(gray.astype(np.int16) + 30, 0, 255).astype(np.uint8)
        frames.append(np.dstack([gray, gray, blue]))
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = US_MULTIFRAME
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = US_MULTIFRAME
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "BENCH-PACS", "BENCH^PACS", "US"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20260101", "120000", ""
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, n_frames
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.FrameTime = "33.3"
    if jpeg:
        params = [cv2.IMWRITE_JPEG_QUALITY, 90,
                  cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422]  # fmt: skip
        blobs = []
        for f in frames:
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(f[:, :, ::-1]), params)
            assert ok
            blobs.append(buf.tobytes())
        ds.PhotometricInterpretation = "YBR_FULL_422"
        ds.PixelData = encapsulate(blobs, has_bot=True)
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "01"
    else:
        ds.PhotometricInterpretation = "RGB"
        ds.PixelData = np.ascontiguousarray(np.stack(frames)).tobytes()
        ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def bare_get(
    host: str, port: int, calling: str, called: str, study_uid: str, out: Path, max_pdu: int
) -> int:
    """The bare pynetdicom C-GET; bytes written."""
    from pydicom.dataset import Dataset
    from pynetdicom import AE, build_role, evt

    written = [0]

    def handle_store(event: Any) -> int:
        data = event.encoded_dataset()
        with open(out / f"{event.request.AffectedSOPInstanceUID}.dcm", "wb") as f:
            f.write(data)
        written[0] += len(data)
        return 0x0000

    ae = AE(ae_title=calling)
    ae.add_requested_context(STUDY_ROOT_GET)
    for ts in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.1"):
        ae.add_requested_context(US_MULTIFRAME, ts)
    assoc = ae.associate(
        host,
        port,
        ae_title=called,
        max_pdu=max_pdu,
        ext_neg=[build_role(US_MULTIFRAME, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, handle_store)],
    )
    assert assoc.is_established, "bare association failed"
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    for status, _ in assoc.send_c_get(query, STUDY_ROOT_GET):
        assert "Status" in status and status.Status in (0x0000, 0xFF00), str(status)
    assoc.release()
    ae.shutdown()
    return written[0]


def bench_cine(
    name: str, path: Path, server: Any, listener: Any, tmp: Path, repeat: int
) -> dict[str, Any]:
    """Every variant on one uploaded cine, best of ``repeat``, variants taking turns."""
    from pydicom import dcmread

    from fetal_viewer.core.net import retrieve
    from fetal_viewer.core.net.storage import StudyStore
    from tests.net.orthanc import ORTHANC_AE, OUR_AE

    server.upload([path])
    uid = str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)
    node, local = server.node(timeout=120), server.local()
    runs = 0

    def folder() -> Path:
        nonlocal runs
        runs += 1
        d = tmp / "out" / f"{name}-{runs}"
        d.mkdir(parents=True)
        return d

    def bare(max_pdu: int) -> int:
        return bare_get("127.0.0.1", server.dicom_port, OUR_AE, ORTHANC_AE, uid, folder(), max_pdu)

    def app(method: str) -> int:
        store = StudyStore(folder())
        return retrieve.retrieve_study(
            node, local, uid, store=store, method=method, listener=listener
        ).nbytes

    variants: dict[str, Callable[[], int]] = {
        "bare_default": lambda: bare(16382),
        "bare_bigpdu": lambda: bare(0),
        "app_get": lambda: app("get"),
        "app_move": lambda: app("move"),
    }
    best: dict[str, float] = {}
    nbytes: dict[str, int] = {}
    for _ in range(repeat):
        for key, run in variants.items():
            t0 = time.perf_counter()
            nbytes[key] = run()
            dt = time.perf_counter() - t0
            best[key] = min(best.get(key, dt), dt)
    mib = {k: nbytes[k] / 2**20 for k in variants}
    rate = {k: mib[k] / best[k] for k in variants}
    fastest_bare = max(rate["bare_default"], rate["bare_bigpdu"])
    result = {
        "mib": round(mib["app_get"], 2),
        "seconds": {k: round(v, 4) for k, v in best.items()},
        "mib_per_s": {k: round(v, 1) for k, v in rate.items()},
        "ratio_app_get": round(rate["app_get"] / fastest_bare, 3),
        "ratio_app_move": round(rate["app_move"] / fastest_bare, 3),
    }
    print(
        f"{name} ({mib['app_get']:.1f} MiB): "
        + ", ".join(f"{k} {best[k]:.3f} s ({rate[k]:.0f} MiB/s)" for k in variants)
        + f"; app_get / fastest bare = {result['ratio_app_get']:.2f} (goal >= 0.8),"
        f" app_move = {result['ratio_app_move']:.2f}"
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args()
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)

    from fetal_viewer.core.net.listener import Listener
    from tests.net.orthanc import ORTHANC_AE, OrthancServer, free_port

    figures: dict[str, Any] = {"frames": args.frames, "repeat": args.repeat}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = OrthancServer(tmp / "orthanc", listener_port=free_port())
        server.start()
        try:
            cines = {
                "jpeg_600x800": make_cine(tmp / "jpeg.dcm", args.frames, 600, 800, jpeg=True),
                "rgb_300x400": make_cine(tmp / "rgb.dcm", args.frames, 300, 400, jpeg=False),
            }
            with Listener(server.local(), None, allowed_callers=[ORTHANC_AE]) as listener:
                for name, path in cines.items():
                    figures[name] = bench_cine(name, path, server, listener, tmp, args.repeat)
        finally:
            server.stop(kill=True)
    figures["goal_met"] = all(figures[k]["ratio_app_get"] >= 0.8 for k in cines)
    print(json.dumps({"bench": "pacs", **figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
