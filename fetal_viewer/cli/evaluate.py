"""``fetal-viewer evaluate``: the paper's protocol, or scoring of an existing model.

With ``--cv`` it trains one model per fold (patients never split across folds) and scores
each held-out fold; with ``--model CARD`` it scores that model on the whole manifest without
training; with ``--pool DIR ...`` it writes one report over the predictions of earlier runs
(each center's held-out scoring by its own model, say). Each way ``--out`` receives
report.html (figures embedded), metrics.json and predictions.csv.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fetal_viewer.cli.options import ranged

CV_CHOICES = ("leave-one-center-out", "leave-one-patient-out", "grouped-kfold")


def add_parser(subparsers: Any) -> None:
    from fetal_viewer.cli.train import add_training_options
    from fetal_viewer.core.runtime.backends import CHOICES as BACKEND_CHOICES

    p = subparsers.add_parser(
        "evaluate",
        help="cross-validate (LOCO / LOPO / grouped k-fold) or score a model; writes report.html",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_training_options(p)
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--cv", choices=CV_CHOICES, help="cross-validation protocol (trains)")
    how.add_argument("--model", type=Path, help="model card to score without training")
    how.add_argument(
        "--pool",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="one report over the predictions of these earlier evaluate runs' --out folders "
        "(disjoint patients of this manifest, one heatmap method); no model runs",
    )
    p.add_argument(
        "--folds", type=ranged(int, 2), default=5, help="k for grouped-kfold (default 5)"
    )
    p.add_argument(
        "--only-fold",
        action="append",
        default=[],
        metavar="FOLD",
        help="with --cv, train only this fold (e.g. center=D; repeatable); the report covers "
        "it and every fold already scored in OUT, so folds run on several machines are "
        "gathered by copying their OUT/folds/ together",
    )
    p.add_argument(
        "--bootstrap", type=ranged(int, 1), default=1000, help="bootstrap resamples (default 1000)"
    )
    p.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default="auto",
        help="inference backend of the predictor (default auto: the fastest measured on this "
        "machine whose outputs agree with float32 torch; name one to force it)",
    )
    p.add_argument(
        "--cam-method",
        choices=("gradcam", "gradcam-stitch"),
        default="gradcam",
        help="with --model: the heatmap scored against the masks; gradcam-stitch samples "
        "the same Grad-CAM on a grid twice as fine from four shifted passes (default gradcam)",
    )
    p.add_argument(
        "--ood",
        nargs="+",
        type=Path,
        default=[],
        metavar="PATH",
        help="with --model: files or folders that are not the model's domain (other organs, "
        "other modalities); reports the domain guard's AUROC against the manifest's frames "
        "and the share it flags",
    )
    p.add_argument("--figures", type=Path, help="also write the figures as PNG files here")
    p.add_argument(
        "--update-card",
        type=Path,
        metavar="CARD",
        help="write the headline figures into this model card's metrics (weights untouched); "
        "with --cv it may be one of the fold cards under OUT/folds/",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fetal_viewer.cli.train import config_from_args, load_manifest, progress_for
    from fetal_viewer.core.model.card import write_card_metrics
    from fetal_viewer.core.training.evaluate import (
        TASKS,
        cross_validate,
        headline,
        pool_scored,
        score_model,
    )
    from fetal_viewer.core.training.train import dist_info, finish_distributed
    from fetal_viewer.errors import DataError

    if args.model is None and args.ood:
        raise DataError("--ood applies to --model only.", fix="Score one model with --ood.")
    if args.model is None and args.cam_method != "gradcam":
        raise DataError(
            "--cam-method applies to --model only.",
            fix="Score a model (a fold's card, say) with evaluate --model ... --cam-method; "
            "--pool pools such runs.",
        )
    manifest = load_manifest(args)
    progress, close = progress_for(args, "evaluate")
    try:
        if args.pool is not None:
            metrics = pool_scored(
                manifest,
                args.pool,
                args.out,
                classes=TASKS[args.task],
                n_boot=args.bootstrap,
                figure_dir=args.figures,
            )
        elif args.model is not None:
            metrics = score_model(
                args.model,
                manifest,
                args.out,
                n_boot=args.bootstrap,
                backend=args.backend,
                cam_method=args.cam_method,
                figure_dir=args.figures,
                ood=args.ood,
                progress=progress,
            )
        else:
            metrics = cross_validate(
                manifest,
                args.cv,
                config_from_args(args),
                args.out,
                k=args.folds,
                only=args.only_fold,
                resume=args.resume,
                name=args.name,
                fp16=args.fp16,
                n_boot=args.bootstrap,
                backend=args.backend,
                figure_dir=args.figures,
                progress=progress,
            )
    finally:
        close()
    if dist_info().is_main:
        head = headline(metrics)
        if args.update_card is not None:
            write_card_metrics(
                args.update_card, args.cv or ("pooled" if args.pool else "held_out"), head
            )
            print(f"card updated: {args.update_card}")
        print(f"report: {Path(args.out) / 'report.html'}")
        print(json.dumps(head))
    finish_distributed()
    return 0
