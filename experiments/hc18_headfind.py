"""Automatic head circumference against HC18's experts: ``find_head`` on all 999 images.

Reads ``../shared/hc18-train`` (HC18 training set, van den Heuvel et al., PLoS ONE 2018,
Zenodo 1327317, CC BY 4.0): ``index.csv`` gives each image's pixel size and the expert's
head circumference (HC). The images are never copied into the project.

Subjects (``subject_prefix``, several scans of one pregnancy share it) are split in two:
even prefixes are the *tune* half (constants were chosen looking at it), odd ones the
*report* half. The script prints, per half and over all images: mean absolute error (mm
and %), median, 90th percentile, by trimester, and the images where no head is found.
Those are **failures**: they are left out of the error figures and counted on their own
line, and a second line counts each as a 100% error (HC 0) for a figure with them in.
It also times ``detect_head`` per image (image read excluded) and, with ``--samples``,
runs it over ``../shared/real-samples``.

    .venv/bin/python experiments/hc18_headfind.py [--data DIR] [--step N] [--json OUT]
        [--samples DIR] [--figure PNG]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fetal_viewer.core.measure.head import detect_head, head_circumference_mm

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def halves(prefix: str) -> str:
    return "tune" if int(prefix) % 2 == 0 else "report"


def run_hc18(data: Path, step: int, half: str | None = None) -> list[dict[str, Any]]:
    with open(data / "index.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows = [r for r in rows if half is None or halves(r["subject_prefix"]) == half][::step]
    out = []
    for i, r in enumerate(rows):
        grey = cv2.imread(str(data / "images" / r["filename"]), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            raise SystemExit(f"cannot read {r['filename']}")
        t0, c0 = time.perf_counter(), time.process_time()
        search = detect_head(grey)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        hc = float(r["hc_mm"])
        rec: dict[str, Any] = {
            "file": r["filename"],
            "subject": r["subject_prefix"],
            "half": halves(r["subject_prefix"]),
            "trimester": int(r["trimester"]),
            "pixel_mm": float(r["pixel_size_mm"]),
            "hc_mm": hc,
            "seconds": dt,
            "cpu_seconds": cpu,
            "reason": search.reason,
            "fit": search.fit.to_dict() if search.fit else None,
            "best": search.best.to_dict() if search.best else None,
        }
        if search.fit is not None:
            est = head_circumference_mm(search.fit, float(r["pixel_size_mm"]))
            rec["est_mm"] = est
            rec["err_mm"] = est - hc
        out.append(rec)
        if (i + 1) % 100 == 0:
            print(f"  {i + 1}/{len(rows)} images", file=sys.stderr)
    return out


def summary(recs: list[dict[str, Any]], title: str) -> dict[str, Any]:
    found = [r for r in recs if "est_mm" in r]
    fails = [r for r in recs if "est_mm" not in r]
    abs_mm = np.array([abs(r["err_mm"]) for r in found])
    abs_pc = np.array([100.0 * abs(r["err_mm"]) / r["hc_mm"] for r in found])
    bias = np.array([100.0 * r["err_mm"] / r["hc_mm"] for r in found])
    res: dict[str, Any] = {"n": len(recs), "found": len(found), "failures": len(fails)}
    if len(found):
        res.update(
            mae_mm=float(abs_mm.mean()),
            mae_pct=float(abs_pc.mean()),
            median_mm=float(np.median(abs_mm)),
            median_pct=float(np.median(abs_pc)),
            p90_mm=float(np.percentile(abs_mm, 90)),
            p90_pct=float(np.percentile(abs_pc, 90)),
            bias_pct=float(np.median(bias)),
            within_5pct=float((abs_pc <= 5.0).mean()),
        )
        with_fails = np.concatenate([abs_pc, np.full(len(fails), 100.0)])
        res["mae_pct_failures_as_100"] = float(with_fails.mean())
    print(f"\n== {title}: {len(recs)} images, head found in {len(found)}")
    if len(found):
        print(
            f"  MAE {res['mae_mm']:.2f} mm, {res['mae_pct']:.2f} %;"
            f" median {res['median_mm']:.2f} mm ({res['median_pct']:.2f} %);"
            f" 90th pct {res['p90_mm']:.2f} mm ({res['p90_pct']:.2f} %);"
            f" median signed {res['bias_pct']:+.2f} %; within 5 %: {res['within_5pct']:.1%}"
        )
        for t in (1, 2, 3):
            sub = [r for r in found if r["trimester"] == t]
            if sub:
                m = np.mean([abs(r["err_mm"]) for r in sub])
                p = np.mean([100.0 * abs(r["err_mm"]) / r["hc_mm"] for r in sub])
                n_all = sum(1 for r in recs if r["trimester"] == t)
                print(f"  trimester {t}: {len(sub)}/{n_all} found, MAE {m:.2f} mm, {p:.2f} %")
    print(
        f"  failures (no head found, left out above): {len(fails)}"
        + (f": {', '.join(r['file'] for r in fails)}" if fails else "")
    )
    if len(found):
        print(
            f"  MAE with each failure counted as a 100 % error: {res['mae_pct_failures_as_100']:.2f} %"
        )
    return res


def border_study(recs: list[dict[str, Any]], data: Path) -> dict[str, Any]:
    """Which edge of the skull echo do HC18's experts measure? For each head found within
    12 % of the expert's HC, profiles along the fit's normals give the echo's peak (its
    middle) and candidate outer borders beyond it: the steepest fall, or the half-way
    level between the peak and the lowest grey, within R pixels. HC is recomputed with the
    fit moved to each (median over the ring) and compared with the expert's."""
    from fetal_viewer.core.measure.hadlock import ellipse_perimeter
    from fetal_viewer.core.measure.head import _profiles

    rules = ["echo middle (peak)"]
    rules += [f"steepest fall within {r} px" for r in (8, 16, 24)]
    rules += [f"half-max within {r} px" for r in (8, 16, 24)]
    errs: dict[str, dict[str, list[float]]] = {"tune": {}, "report": {}}
    step = 0.5
    offsets = np.arange(-40.0, 40.01, step)
    zero = round(40.0 / step)
    for r in recs:
        f = r["fit"]
        if f is None or abs(r["err_mm"]) > 0.12 * r["hc_mm"]:
            continue
        grey = cv2.imread(str(data / "images" / r["file"]), cv2.IMREAD_GRAYSCALE)
        img = cv2.GaussianBlur(grey.astype(np.float32), (0, 0), 1.0)
        e = (f["cx"], f["cy"], f["a"], f["b"], np.radians(f["angle_deg"]))
        _, _, _, _, vals = _profiles(img, e, offsets)
        vals = vals[(vals >= 0).all(axis=1)]
        if len(vals) < 12:
            continue
        # the echo's peak: just inside the fitted outer border
        lo = zero - round((f["skull_px"] + 4.0) / step)
        j = lo + np.argmax(vals[:, lo : zero + 5], axis=1)
        peak = vals[np.arange(len(j)), j]
        strong = peak > np.percentile(peak, 30)
        pos = {"echo middle (peak)": offsets[j]}
        diff = np.diff(vals, axis=1)
        cols = np.arange(vals.shape[1])[None, :]
        for reach in (8, 16, 24):
            end = j + int(reach / step)
            after = np.where(
                (cols[:, :-1] >= j[:, None]) & (cols[:, :-1] < end[:, None]), diff, np.inf
            )
            pos[f"steepest fall within {reach} px"] = (
                offsets[0] + (after.argmin(axis=1) + 0.5) * step
            )
            window = (cols >= j[:, None]) & (cols <= end[:, None])
            low = np.where(window, vals, np.inf).min(axis=1)
            level = low + 0.5 * (peak - low)
            below = window & (cols > j[:, None]) & (vals < level[:, None])
            first = np.where(below.any(axis=1), below.argmax(axis=1), end)
            pos[f"half-max within {reach} px"] = offsets[np.minimum(first, len(offsets) - 1)]
        for rule in rules:
            d = float(np.median(pos[rule][strong]))
            hc = ellipse_perimeter(f["a"] + d, f["b"] + d) * r["pixel_mm"]
            errs[r["half"]].setdefault(rule, []).append(100.0 * (hc - r["hc_mm"]) / r["hc_mm"])
    out: dict[str, Any] = {}
    print("\n== which border do the experts measure? (heads found within 12 %)")
    for half in ("tune", "report"):
        if not errs[half]:
            continue
        n = len(next(iter(errs[half].values())))
        print(f"  {half} half, {n} heads:   MAE %   median signed %")
        for rule in rules:
            e = np.array(errs[half][rule])
            out.setdefault(half, {})[rule] = {
                "mae_pct": float(np.abs(e).mean()),
                "bias_pct": float(np.median(e)),
            }
            print(f"    {rule:28s} {np.abs(e).mean():6.2f}   {np.median(e):+6.2f}")
    return out


def negative_crops(recs: list[dict[str, Any]], data: Path) -> list[dict[str, Any]]:
    """Head-free negatives from HC18 itself: strips of each frame beside a head that was
    found within 5 % of the expert's HC, clear of 1.15 x its ellipse, at least 30 % of the
    frame and 150 pixels on their short side (uterus, placenta, fetal body, fluid)."""
    out = []
    for r in recs:
        f = r["fit"]
        if f is None or abs(r["err_mm"]) > 0.05 * r["hc_mm"]:
            continue
        grey = cv2.imread(str(data / "images" / r["file"]), cv2.IMREAD_GRAYSCALE)
        h, w = grey.shape
        mask = np.zeros((h, w), np.uint8)
        box = ((f["cx"], f["cy"]), (2.3 * f["a"], 2.3 * f["b"]), f["angle_deg"])
        cv2.ellipse(mask, box, 1, -1)
        cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
        strips = [(0, 0, cols[0], h), (cols[-1] + 1, 0, w, h), (0, 0, w, rows[0])]
        strips.append((0, rows[-1] + 1, w, h))
        for x0, y0, x1, y1 in strips:
            if (x1 - x0) * (y1 - y0) < 0.3 * h * w or min(x1 - x0, y1 - y0) < 150:
                continue
            search = detect_head(np.ascontiguousarray(grey[y0:y1, x0:x1]))
            out.append(
                {
                    "file": r["file"],
                    "half": r["half"],
                    "crop": [int(x0), int(y0), int(x1), int(y1)],
                    "found": search.fit is not None,
                    "score": search.best.score if search.best else 0.0,
                }
            )
    for half in ("tune", "report", None):
        sub = [n for n in out if half is None or n["half"] == half]
        if sub:
            n_found = sum(n["found"] for n in sub)
            print(
                f"  negatives ({half or 'all'}): a head found in {n_found} of {len(sub)} "
                f"head-free crops ({n_found / len(sub):.1%})"
            )
    return out


def run_samples(folder: Path) -> list[dict[str, Any]]:
    from fetal_viewer.core.io import open_paths
    from fetal_viewer.core.measure.head import measure_head

    result = open_paths([folder])
    out = []
    print(f"\n== real samples in {folder}")
    # HC18 samples come with their pixel size and the expert's HC
    known: dict[str, tuple[float, float]] = {}
    for table in folder.rglob("pixel_size_and_hc.csv"):
        with open(table, newline="") as fh:
            for r in csv.DictReader(fh):
                name = Path(r["path"]).name
                known[name] = (float(r["pixel_size_mm"]), float(r["hc_mm"]))
    for series in result.series:
        cal = series.calibration
        spacing, expert = cal.spacing_mm, None
        if spacing is None and series.source.name in known:
            spacing, expert = known[series.source.name]
        for i in range(series.n_frames):
            m = measure_head(series.frame(i), spacing, cal.region)
            name = f"{series.source.parent.name}/{series.source.name}"
            if series.n_frames > 1:
                name += f" frame {i}"
            note = f" [expert HC {expert:.1f} mm]" if expert is not None else ""
            print(f"  {name}: {m.text()}{note}")
            out.append({"file": name, "head": m.to_dict(), "reason": m.reason, "expert": expert})
    return out


def figure(recs: list[dict[str, Any]], data: Path, out: Path) -> None:
    """A grid of fits on real scans: typical ones per trimester and the worst ones."""
    found = [r for r in recs if "est_mm" in r]
    rng = np.random.default_rng(0)
    picks: list[dict[str, Any]] = []
    for t in (1, 2, 3):
        sub = [r for r in found if r["trimester"] == t and abs(r["err_mm"]) / r["hc_mm"] < 0.03]
        picks += [sub[k] for k in rng.choice(len(sub), size=min(2, len(sub)), replace=False)]
    worst = sorted(found, key=lambda r: -abs(r["err_mm"]) / r["hc_mm"])[:4]
    picks += worst
    fails = [r for r in recs if "est_mm" not in r][:2]
    picks += fails
    tiles = []
    tw, th = 280, 189
    for r in picks:
        grey = cv2.imread(str(data / "images" / r["file"]), cv2.IMREAD_GRAYSCALE)
        img = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
        f = r["fit"] or r["best"]
        if f is not None:
            colour = (60, 220, 60) if r["fit"] else (60, 60, 230)
            box = ((f["cx"], f["cy"]), (2 * f["a"], 2 * f["b"]), f["angle_deg"])
            cv2.ellipse(img, box, colour, 3, cv2.LINE_AA)
        img = cv2.resize(img, (tw, round(grey.shape[0] * tw / grey.shape[1])), cv2.INTER_AREA)
        tile = np.zeros((th + 18, tw, 3), np.uint8)
        tile[18 : 18 + min(th, img.shape[0])] = img[:th]
        if "est_mm" in r:
            text = f"{r['file']} T{r['trimester']} {r['est_mm']:.0f}/{r['hc_mm']:.0f} mm"
        else:
            text = f"{r['file']} T{r['trimester']} no head"
        cv2.putText(tile, text, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
        tiles.append(tile)
    while len(tiles) % 4:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.vstack([np.hstack(tiles[i : i + 4]) for i in range(0, len(tiles), 4)])
    foot = np.zeros((36, grid.shape[1], 3), np.uint8)
    lines = (
        "green: head found (automatic fit, outer skull border); red: best ring, rejected."
        " Label: automatic/expert HC.",
        "Images: HC18 (van den Heuvel et al., PLoS ONE 2018; Zenodo 1327317), CC BY 4.0.",
    )
    for k, text in enumerate(lines):
        cv2.putText(foot, text, (4, 14 + 16 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
    grid = np.vstack([grid, foot])
    out.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    # a fixed palette of 128 greys and the two line colours: a third of the bytes
    colours = [(2 * k, 2 * k, 2 * k) for k in range(128)] + [(60, 220, 60), (230, 60, 60)]
    palette = Image.new("P", (1, 1))
    palette.putpalette([v for c in colours for v in c] + [0] * 3 * (256 - len(colours)))
    rgb = Image.fromarray(np.ascontiguousarray(grid[:, :, ::-1]))
    rgb.quantize(palette=palette, dither=Image.Dither.NONE).save(out, optimize=True)
    print(f"\nwrote {out} ({out.stat().st_size // 1024} KB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED / "hc18-train")
    ap.add_argument("--step", type=int, default=1, help="every N-th image (quick looks)")
    ap.add_argument("--half", choices=("tune", "report"), default=None, help="only this half")
    ap.add_argument("--json", type=Path, default=None, help="write per-image results here")
    ap.add_argument("--samples", type=Path, default=None, help="real-samples folder to run on")
    ap.add_argument("--figure", type=Path, default=None, help="write the fits grid PNG here")
    ap.add_argument(
        "--negatives", action="store_true", help="also run on head-free crops of the frames"
    )
    ap.add_argument(
        "--borders", action="store_true", help="compare skull borders with the experts' HC"
    )
    args = ap.parse_args()
    if not (args.data / "index.csv").is_file():
        raise SystemExit(f"no HC18 index at {args.data / 'index.csv'}: pass --data DIR")
    cv2.setNumThreads(1)
    recs = run_hc18(args.data, args.step, args.half)
    doc: dict[str, Any] = {}
    for half in ("tune", "report"):
        sub = [r for r in recs if r["half"] == half]
        if sub:
            doc[half] = summary(sub, f"{half} half")
    doc["all"] = summary(recs, "all")
    print()
    for key, label in (("seconds", "wall"), ("cpu_seconds", "CPU")):
        secs = np.array([r[key] for r in recs])
        doc[key] = {
            "mean": float(secs.mean()),
            "median": float(np.median(secs)),
            "p95": float(np.percentile(secs, 95)),
            "max": float(secs.max()),
        }
        print(
            f"time per image, {label} (OpenCV on one thread): mean {1000 * secs.mean():.0f} ms,"
            f" median {1000 * np.median(secs):.0f} ms, 95th pct"
            f" {1000 * np.percentile(secs, 95):.0f} ms, max {1000 * secs.max():.0f} ms"
        )
    if args.borders:
        doc["borders"] = border_study(recs, args.data)
    if args.negatives:
        print("\n== head-free crops of HC18 frames (no head should be found)")
        doc["negatives"] = negative_crops(recs, args.data)
    if args.samples is not None:
        doc["samples"] = run_samples(args.samples)
    if args.figure is not None:
        figure(recs, args.data, args.figure)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"summary": doc, "images": recs}, indent=1))
    keys = ("tune", "report", "all", "seconds", "cpu_seconds")
    print(json.dumps({k: doc[k] for k in keys if k in doc}))


if __name__ == "__main__":
    main()
