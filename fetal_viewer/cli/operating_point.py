"""``fetal-viewer operating-point fit``: set how much evidence a model needs to call an anomaly.

A model trained with class-weighted cross-entropy weighs its classes as if all were equally
common, so an unremarkable frame is called an anomaly more often than a reading room can
live with. The operating point adds an offset to the normal logit, the smallest at which at
least ``--rate`` of the inner-validation normal frames of every center are called normal
(see :mod:`fetal_viewer.core.training.operating_point`). It is stored in the card (the
weights are untouched) and every AI surface follows it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "operating-point",
        help="set a model's operating point (how often a normal frame may be called an anomaly)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    sub = p.add_subparsers(dest="op_command", metavar="ACTION", required=True)
    fit = sub.add_parser(
        "fit",
        help="fit the normal-logit offset on the model's validation frames; store it in the card",
        description=(
            "Run the model on the inner-validation frames of MANIFEST (split as `train` split "
            "them) and store in the card the smallest offset on the --class logit at which at "
            "least --rate of that class's frames in every center are called that class, with "
            "what it costs the other classes."
        ),
    )
    fit.add_argument("--model", type=Path, required=True, help="model card (card.json)")
    fit.add_argument("--manifest", type=Path, required=True, help="the model's training CSV")
    fit.add_argument(
        "--rate",
        type=float,
        default=None,
        help="share of validation normal frames of every center to call normal (default 0.95)",
    )
    fit.add_argument("--class", dest="cls", default="normal", help="default: normal")
    fit.add_argument("--val-fraction", type=float, default=None, help="default: the card's")
    fit.add_argument("--seed", type=int, default=None, help="default: the card's")
    fit.add_argument("--no-progress", action="store_true")
    fit.set_defaults(func=run_fit)


def run_fit(args: argparse.Namespace) -> int:
    import sys

    from fetal_viewer.core.model.checkpoint import load_checkpoint
    from fetal_viewer.core.progress import tqdm_progress
    from fetal_viewer.core.training.guard_fit import training_split
    from fetal_viewer.core.training.manifest import read_manifest
    from fetal_viewer.core.training.operating_point import (
        DEFAULT_RATE,
        fit_operating_point,
        store_operating_point,
    )

    loaded = load_checkpoint(args.model)
    manifest = read_manifest(args.manifest, loaded.card.classes)
    val_fraction, seed = training_split(loaded)
    split = (
        args.val_fraction if args.val_fraction is not None else val_fraction,
        args.seed if args.seed is not None else seed,
    )
    progress, close = tqdm_progress(
        "operating point", disable=args.no_progress or not sys.stderr.isatty()
    )
    try:
        point = fit_operating_point(
            loaded,
            manifest,
            rate=args.rate if args.rate is not None else DEFAULT_RATE,
            cls=args.cls,
            split=split,
            progress=progress,
        )
    finally:
        close()
    store_operating_point(loaded.card_path, point)
    print(
        f"{args.cls} logit offset {point.offset:+.3f} (target: {point.target_rate:g} of every center's validation {args.cls} frames)"
    )
    for center, fig in point.centers.items():
        own = f"{args.cls}_called_{args.cls}"
        parts = [f"center {center}:"]
        if f"{own}_before" in fig:
            parts.append(
                f"{args.cls} called {args.cls} {fig[f'{own}_before']:.3f} -> {fig[f'{own}_after']:.3f}"
                f" ({fig[f'{args.cls}_frames']:g} frames)"
            )
        if "others_called_other_before" in fig:
            parts.append(
                f"other classes called other {fig['others_called_other_before']:.3f} -> "
                f"{fig['others_called_other_after']:.3f} ({fig['other_frames']:g} frames)"
            )
        print(" ".join(parts))
    print(f"written: {loaded.card_path}")
    return 0
