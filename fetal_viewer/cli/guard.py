"""``fetal-viewer guard fit``: add a domain guard to an existing model card.

The guard says when a frame lies outside what the model was trained on (see
:mod:`fetal_viewer.core.model.guard`). ``train`` fits one for every model it writes; this
command fits one for a card that has none (the shipped demo model, a clinic's model), from
the manifest the model was trained on, without retraining.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fetal_viewer.core.model.checkpoint import LoadedModel
    from fetal_viewer.core.progress import ProgressFn
    from fetal_viewer.core.training.manifest import Manifest


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "guard",
        help="fit a model's domain guard (says when a frame is outside what it knows)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    sub = p.add_subparsers(dest="guard_command", metavar="ACTION", required=True)
    fit = sub.add_parser(
        "fit",
        help="fit the guard on the model's training manifest and store it in its card",
        description=(
            "Fit the class means and covariance of the model's pooled layer4 features on "
            "the inner-training frames of MANIFEST, and the outlier probe against synthetic "
            "non-head frames and the frames under --outliers; set the threshold of their joint "
            "score at --percentile of the inner-validation frames' scores (split as `train` "
            "split them). Writes guard.safetensors beside the weights and names it in the card "
            "with its sha256."
        ),
    )
    add_fit_options(fit)
    fit.add_argument(
        "--outliers",
        nargs="+",
        type=Path,
        default=[],
        metavar="PATH",
        help="images or DICOM files that are not the model's domain (other views and organs "
        "from your archive), added to the synthetic outliers",
    )
    fit.add_argument(
        "--percentile",
        type=float,
        default=None,
        help="percentile of in-domain validation scores that sets the threshold (default 97)",
    )
    fit.set_defaults(func=run_fit)


def add_fit_options(fit: argparse.ArgumentParser) -> None:
    """What every fit on a model's own training manifest takes (guard, operating point)."""
    fit.add_argument("--model", type=Path, required=True, help="model card (card.json)")
    fit.add_argument("--manifest", type=Path, required=True, help="the model's training CSV")
    fit.add_argument("--val-fraction", type=float, default=None, help="default: the card's")
    fit.add_argument("--seed", type=int, default=None, help="default: the card's")
    fit.add_argument("--no-progress", action="store_true")


def fit_inputs(
    args: argparse.Namespace, label: str
) -> tuple[LoadedModel, Manifest, tuple[float, int], tuple[ProgressFn, Callable[[], None]]]:
    """The loaded model, its manifest, the split (the card's unless given) and a progress
    callback labelled ``label`` with its closer, from :func:`add_fit_options`'s options."""
    import sys

    from fetal_viewer.core.model.checkpoint import load_checkpoint
    from fetal_viewer.core.progress import tqdm_progress
    from fetal_viewer.core.training.guard_fit import training_split
    from fetal_viewer.core.training.manifest import read_manifest

    loaded = load_checkpoint(args.model)
    manifest = read_manifest(args.manifest, loaded.card.classes)
    val_fraction, seed = training_split(loaded)
    split = (
        args.val_fraction if args.val_fraction is not None else val_fraction,
        args.seed if args.seed is not None else seed,
    )
    progress = tqdm_progress(label, disable=args.no_progress or not sys.stderr.isatty())
    return loaded, manifest, split, progress


def run_fit(args: argparse.Namespace) -> int:
    from fetal_viewer.core.model.guard import DEFAULT_PERCENTILE, describe
    from fetal_viewer.core.training.guard_fit import PathFrames, fit_model_guard, store_guard

    loaded, manifest, split, (progress, close) = fit_inputs(args, "guard")
    outliers = PathFrames(args.outliers) if args.outliers else ()
    try:
        guard = fit_model_guard(
            loaded,
            manifest,
            percentile=args.percentile or DEFAULT_PERCENTILE,
            split=split,
            progress=progress,
            outliers=outliers,
        )
    finally:
        close()
    path = store_guard(loaded, guard)
    print(f"domain guard: {describe(guard)}")
    print(f"written: {path} (named in {loaded.card_path})")
    return 0
