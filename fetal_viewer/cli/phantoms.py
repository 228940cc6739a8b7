"""``fetal-viewer phantoms``: generate a synthetic multi-center phantom data set."""

from __future__ import annotations

import argparse
import os
import sys

from fetal_viewer.cli.options import ranged
from fetal_viewer.errors import DataError


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH such as 800x600, got {text!r}") from None
    if not (32 <= w <= 4096 and 32 <= h <= 4096):
        raise argparse.ArgumentTypeError(f"each side must be 32-4096 pixels, got {text!r}")
    return w, h


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "phantoms",
        help="generate synthetic fetal ultrasound phantoms (PNG/DICOM + manifest.csv)",
        description=(
            "Generate a deterministic multi-center data set of synthetic fetal CNS "
            "ultrasound phantoms (normal, anencephaly, encephalocele, holoprosencephaly, "
            "rachischisis) with diagnostic-region masks and manifest.csv. Synthetic data "
            "for research and testing only."
        ),
    )
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument(
        "--patients-per-class",
        type=ranged(int, 1),
        default=2,
        metavar="N",
        help="patients of each class at each center (default 2)",
    )
    p.add_argument(
        "--centers", type=ranged(int, 1, 6), default=4, metavar="K", help="centers, 1-6 (default 4)"
    )
    p.add_argument("--seed", type=ranged(int, 0), default=0, help="random seed (default 0)")
    p.add_argument("--format", choices=("png", "dicom", "both"), default="png", dest="fmt")
    p.add_argument(
        "--size",
        type=_size,
        default=None,
        metavar="WxH",
        help="frame size in pixels (default: each center's native matrix)",
    )
    p.add_argument(
        "--jpeg",
        type=ranged(int, 1, 100),
        default=None,
        metavar="QUALITY",
        help="write JPEG Baseline compressed DICOM at this quality (1-100)",
    )
    p.add_argument(
        "--workers",
        type=ranged(int, 1),
        default=os.cpu_count() or 1,
        metavar="N",
        help="processes drawing patients (default: one per core); the files do not depend on it",
    )
    p.add_argument(
        "--backgrounds",
        metavar="DIR",
        default=None,
        help="instead of drawing heads: real normal head scans; each becomes a normal patient "
        "(with lesion-free sham edits) and the four anomalies synthesised into its anatomy",
    )
    p.add_argument(
        "--backgrounds-index",
        metavar="CSV",
        default=None,
        help="with --backgrounds: filename, subject (or subject_prefix), optional "
        "pixel_size_mm and ga_weeks per scan (HC18's index.csv has them); splits keep a "
        "subject's patients together",
    )
    p.add_argument("--center", default="R", help="with --backgrounds: the center name (default R)")
    p.add_argument(
        "--limit",
        type=ranged(int, 0),
        default=0,
        metavar="N",
        help="with --backgrounds: at most N scans",
    )
    p.add_argument(
        "--zoom-views",
        metavar="DIR",
        default=None,
        help="instead: a close-up view of every patient of a --backgrounds data set in DIR "
        "(cropped around the head, turned, resized to a square without keeping the aspect)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fetal_viewer.core.phantoms import generate_dataset
    from fetal_viewer.core.progress import tqdm_progress

    if args.jpeg is not None and not 1 <= args.jpeg <= 100:
        raise DataError(f"--jpeg {args.jpeg} is out of range.", fix="Use a quality of 1-100.")
    progress, close = tqdm_progress("phantoms", disable=args.no_progress)
    if args.zoom_views is not None:
        from fetal_viewer.core.phantoms.views import zoom_views

        if args.backgrounds is not None:
            raise DataError(
                "--zoom-views and --backgrounds make different data sets.",
                fix="Run phantoms --backgrounds first, then --zoom-views on its --out folder.",
            )
        try:
            manifest = zoom_views(args.zoom_views, args.out, seed=args.seed, progress=progress)
        finally:
            close()
        print(manifest, file=sys.stdout)
        return 0
    if args.backgrounds is not None:
        from fetal_viewer.core.phantoms.backgrounds import generate_on_backgrounds

        try:
            manifest = generate_on_backgrounds(
                args.backgrounds,
                args.out,
                index=args.backgrounds_index,
                center=args.center,
                seed=args.seed,
                fmt=args.fmt,
                workers=args.workers,
                limit=args.limit,
                progress=progress,
            )
        finally:
            close()
        with (manifest.parent / "no_head.csv").open(encoding="utf-8") as fh:
            missed = sum(1 for _ in fh) - 1
        if missed:
            print(
                f"{missed} scan(s) without a skull found were left out: "
                f"{manifest.parent / 'no_head.csv'}",
                file=sys.stderr,
            )
        print(manifest, file=sys.stdout)
        return 0
    try:
        manifest = generate_dataset(
            args.out,
            patients_per_class=args.patients_per_class,
            centers=args.centers,
            seed=args.seed,
            fmt=args.fmt,
            size=args.size,
            progress=progress,
            jpeg_quality=args.jpeg,
            workers=args.workers,
        )
    finally:
        close()
    print(manifest, file=sys.stdout)
    return 0
