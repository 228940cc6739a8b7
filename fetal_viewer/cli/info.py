"""``fetal-viewer info PATH...``: what studies a path holds, and (``--check``) whether they decode."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from fetal_viewer.cli.options import ranged


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "info",
        help="list the patients, studies, series and frames in files, folders or DICOMDIRs",
        description=(
            "List the patients, studies, series and frames found in PATH (files, folders "
            "searched recursively, DICOMDIR). Patients are shown by pseudonym unless "
            "--show-phi is given. Exit code 1 when nothing could be loaded, or with --check "
            "when any frame fails to decode."
        ),
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="file, folder or DICOMDIR")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument(
        "--check", action="store_true", help="decode every frame and report each that fails"
    )
    p.add_argument(
        "--head",
        action="store_true",
        help="find the fetal head in every frame and report its circumference and Hadlock "
        "age (automatic, a measurement aid to check before use); needs pixel spacing from "
        "the DICOM's ultrasound regions or --pixel-size",
    )
    p.add_argument(
        "--pixel-size",
        type=ranged(float, 0, above=True),
        default=None,
        metavar="MM",
        help="pixel size in mm for frames without a calibration (plain images); implies --head",
    )
    p.add_argument(
        "--show-phi",
        action="store_true",
        help="show patient IDs, names and birth dates (hidden by default)",
    )
    p.set_defaults(func=run)


def _error_dict(exc: Any) -> dict[str, Any]:
    return {"path": exc.path, "what": exc.what, "why": exc.why, "fix": exc.fix}


def _series_dict(series: Any) -> dict[str, Any]:
    cal = series.calibration
    return {
        "source": str(series.source),
        "uid": series.uid,
        "instance_uid": series.instance_uid,
        "description": series.description,
        "modality": series.modality,
        "manufacturer": series.manufacturer,
        "model_name": series.model_name,
        "rows": series.rows,
        "cols": series.cols,
        "n_frames": series.n_frames,
        "frame_time_ms": series.frame_time_ms,
        "transfer_syntax": series.transfer_syntax,
        "photometric": series.photometric,
        "burned_in_annotation": series.burned_in_annotation,
        "ga_weeks": series.ga_weeks,
        "calibration": {
            "spacing_mm": list(cal.spacing_mm) if cal.spacing_mm else None,
            "region": list(cal.region) if cal.region else None,
            "reason": cal.reason,
        },
    }


def _check(series: Any) -> list[tuple[int, Any]]:
    """(frame index, StudyLoadError) for each frame of ``series`` that fails to decode."""
    from fetal_viewer.errors import StudyLoadError

    failures = []
    for i in range(series.n_frames):
        try:
            series.frame(i)
        except StudyLoadError as exc:
            failures.append((i, exc))
    return failures


def _heads(series: Any, pixel_size: float | None) -> list[dict[str, Any]]:
    """The automatic head measurement of each frame of ``series``."""
    from fetal_viewer.core.measure.head import measure_head
    from fetal_viewer.errors import StudyLoadError

    cal = series.calibration
    spacing = cal.spacing_mm if cal.spacing_mm else pixel_size
    region = cal.region if cal.spacing_mm else None
    out: list[dict[str, Any]] = []
    for i in range(series.n_frames):
        try:
            frame = series.frame(i)
        except StudyLoadError as exc:
            out.append({"frame": i, "head": None, "reason": f"frame failed to decode: {exc.what}"})
            continue
        m = measure_head(frame, spacing, region)
        out.append({"frame": i, "head": m.to_dict(), "reason": m.reason, "text": m.text()})
    return out


def run(args: argparse.Namespace) -> int:
    from fetal_viewer.core.io import open_paths

    want_head = args.head or args.pixel_size is not None

    result = open_paths(args.paths)
    doc: dict[str, Any] = {"patients": [], "problems": [], "frame_failures": []}
    frames_total = 0
    for patient in result.patients:
        pdoc: dict[str, Any] = {"pseudonym": patient.pseudonym, "studies": []}
        if args.show_phi:
            ident = patient.identity
            pdoc["identity"] = {
                "patient_id": ident.patient_id,
                "patient_name": ident.patient_name,
                "birth_date": ident.birth_date.isoformat() if ident.birth_date else None,
            }
        for study in patient.studies:
            sdoc: dict[str, Any] = {
                "uid": study.uid,
                "description": study.description,
                "date": study.date.isoformat() if study.date else None,
                "series": [],
            }
            for series in study.series:
                frames_total += series.n_frames
                entry = _series_dict(series)
                if args.check:
                    failures = _check(series)
                    entry["frames_failed"] = len(failures)
                    doc["frame_failures"].extend(
                        {"frame": i, **_error_dict(e)} for i, e in failures
                    )
                if want_head:
                    entry["heads"] = _heads(series, args.pixel_size)
                sdoc["series"].append(entry)
            pdoc["studies"].append(sdoc)
        doc["patients"].append(pdoc)
    doc["problems"] = [_error_dict(p) for p in result.problems]
    n_series = len(result.series)
    doc["summary"] = {
        "patients": len(result.patients),
        "studies": sum(len(p.studies) for p in result.patients),
        "series": n_series,
        "frames": frames_total,
        "problems": len(result.problems),
        "frames_failed": len(doc["frame_failures"]),
    }
    if args.json:
        for sdoc in (st for pd in doc["patients"] for st in pd["studies"]):
            for entry in sdoc["series"]:
                for h in entry.get("heads", []):
                    h.pop("text", None)  # the terminal's line; JSON has the figures
        print(json.dumps(doc, indent=2))
    else:
        _print_text(doc, args.show_phi)
    if n_series == 0:
        return 1
    if args.check and doc["frame_failures"]:
        return 1
    return 0


def _print_text(doc: dict[str, Any], show_phi: bool) -> None:
    out = sys.stdout
    for p in doc["patients"]:
        line = f"Patient {p['pseudonym']}"
        if show_phi:
            ident = p["identity"]
            line += f"  id={ident['patient_id']!r} name={ident['patient_name']!r} birth={ident['birth_date']}"
        print(line, file=out)
        for st in p["studies"]:
            print(
                f"  Study {st['date'] or '(no date)'}  {st['description'] or '(no description)'}  [{st['uid']}]",
                file=out,
            )
            for s in st["series"]:
                cal = s["calibration"]
                spacing = (
                    f"{cal['spacing_mm'][0]:.4f} x {cal['spacing_mm'][1]:.4f} mm/px"
                    if cal["spacing_mm"]
                    else f"uncalibrated ({cal['reason']})"
                )
                rate = f", {1000.0 / s['frame_time_ms']:.1f} fps" if s["frame_time_ms"] else ""
                ga = f", GA {s['ga_weeks']:.1f} w" if s["ga_weeks"] is not None else ""
                burned = {True: ", burned-in text", False: "", None: ""}[s["burned_in_annotation"]]
                print(
                    f"    {s['modality'] or '?'} {s['cols']}x{s['rows']} x {s['n_frames']} frame(s){rate}"
                    f"{ga}{burned}  {s['photometric']} {s['transfer_syntax']}".rstrip(),
                    file=out,
                )
                print(f"      {s['source']}", file=out)
                print(f"      {spacing}", file=out)
                if s.get("frames_failed"):
                    print(f"      {s['frames_failed']} frame(s) failed to decode", file=out)
                for h in s.get("heads", []):
                    text = h.get("text") or f"head (automatic): none ({h['reason']})"
                    print(f"      frame {h['frame']}: {text}", file=out)
    sm = doc["summary"]
    print(
        f"{sm['patients']} patient(s), {sm['studies']} study(ies), {sm['series']} series, "
        f"{sm['frames']} frame(s); {sm['problems']} problem file(s)",
        file=out,
    )
    for prob in doc["problems"] + doc["frame_failures"]:
        where = f"frame {prob['frame']}: " if "frame" in prob else ""
        print(f"problem: {prob['path']}: {where}{prob['what']}", file=out)
        if prob["why"]:
            print(f"  why: {prob['why']}", file=out)
        if prob["fix"]:
            print(f"  fix: {prob['fix']}", file=out)
    if doc["frame_failures"]:
        print(f"{len(doc['frame_failures'])} frame(s) failed to decode", file=out)
