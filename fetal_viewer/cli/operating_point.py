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
from typing import Any

from fetal_viewer.cli.guard import add_fit_options, fit_inputs


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
    add_fit_options(fit)
    fit.add_argument(
        "--rate",
        type=float,
        default=None,
        help="share of validation normal frames of every center to call normal (default 0.95)",
    )
    fit.add_argument("--class", dest="cls", default="normal", help="default: normal")
    fit.set_defaults(func=run_fit)


def run_fit(args: argparse.Namespace) -> int:
    from fetal_viewer.core.training.operating_point import (
        DEFAULT_RATE,
        fit_operating_point,
        store_operating_point,
    )

    loaded, manifest, split, (progress, close) = fit_inputs(args, "operating point")
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
    c = args.cls
    print(
        f"{c} logit offset {point.offset:+.3f} (target: {point.target_rate:g} of every "
        f"center's validation {c} frames)"
    )
    for center, fig in point.centers.items():
        parts = [f"center {center}:"]
        if f"{c}_called_{c}_before" in fig:
            parts.append(
                f"{c} called {c} {fig[f'{c}_called_{c}_before']:.3f} -> "
                f"{fig[f'{c}_called_{c}_after']:.3f} ({fig[f'{c}_frames']:g} frames)"
            )
        if "others_called_other_before" in fig:
            parts.append(
                f"other classes called other {fig['others_called_other_before']:.3f} -> "
                f"{fig['others_called_other_after']:.3f} ({fig['other_frames']:g} frames)"
            )
        print(" ".join(parts))
    print(f"written: {loaded.card_path}")
    return 0
