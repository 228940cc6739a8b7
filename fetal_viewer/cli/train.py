"""``fetal-viewer train``: train a classifier from a manifest into a safe checkpoint.

The manifest is validated first (unknown labels, missing files, a patient in several
centers); nothing is trained until it is clean. Run under ``torchrun`` for several GPUs or
machines, e.g. ``torchrun --nproc-per-node 2 -m fetal_viewer train ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fetal_viewer.cli.options import ranged

TASK_CHOICES = ("five-class", "anomalies")


def add_training_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``train`` and ``evaluate`` (which trains one model per fold)."""
    p.add_argument("--manifest", required=True, type=Path, help="manifest CSV")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--task",
        choices=TASK_CHOICES,
        default="five-class",
        help="five classes (normal + 4 anomalies) or the 4 anomalies only (default: five-class)",
    )
    g = p.add_argument_group("training")
    g.add_argument(
        "--input-size",
        type=ranged(int, 32, 1024),
        default=224,
        help="network input side (default 224)",
    )
    g.add_argument("--epochs", type=ranged(int, 1), default=30, help="maximum epochs (default 30)")
    g.add_argument("--batch-size", type=ranged(int, 1), default=32, help="per process (default 32)")
    g.add_argument("--optimizer", choices=("adamw", "sgd"), default="adamw")
    g.add_argument(
        "--lr",
        type=ranged(float, 0, above=True),
        default=None,
        help="default 1e-3 (adamw) / 1e-2 (sgd)",
    )
    g.add_argument("--weight-decay", type=ranged(float, 0), default=1e-4)
    g.add_argument(
        "--val-fraction",
        type=ranged(float, 0, 0.9),
        default=0.2,
        help="share of training patients held out (per class) for early stopping (default 0.2)",
    )
    g.add_argument(
        "--patience", type=ranged(int, 1), default=5, help="early-stopping patience in epochs"
    )
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--pretrained",
        action="store_true",
        help="start from ImageNet weights (only if already in the local torch hub cache)",
    )
    g.add_argument("--no-augment", action="store_true", help="switch augmentation off")
    g.add_argument(
        "--max-frames-per-patient",
        type=ranged(int, 0),
        default=0,
        metavar="N",
        help="train on at most N evenly spaced frames per patient (default 0: all)",
    )
    g.add_argument(
        "--cam-guidance",
        type=ranged(float, 0),
        default=0.0,
        metavar="W",
        help="add W x the share of the true class's Grad-CAM heat outside the lesion mask to "
        "the loss, on rows with masks (default 0: labels only, as in the paper)",
    )
    g.add_argument(
        "--cam-pointing",
        type=ranged(float, 0),
        default=0.0,
        metavar="W",
        help="add W x a smooth pointing-game miss (the true class's Grad-CAM peak outside the "
        "lesion mask, or no heat on it) to the loss, on rows with masks (default 0)",
    )
    g.add_argument(
        "--noise-floor",
        type=ranged(float, 0, 1),
        default=0.0,
        metavar="GREY",
        help="augment with a thermal noise floor rising with depth up to a grey level drawn "
        "from 0 to GREY (0-1) at the bottom of the fan, as a high-frequency probe's TGC shows "
        "it (default 0: off)",
    )
    g.add_argument(
        "--outlier-exposure",
        type=ranged(float, 0),
        default=0.0,
        metavar="W",
        help="add W x the cross-entropy to the uniform distribution on synthetic non-head "
        "frames (half a batch with every batch) to the loss, so that foreign images get no "
        "confident class and the domain guard separates them better (default 0: off)",
    )
    g.add_argument(
        "--outliers",
        nargs="+",
        default=[],
        metavar="PATH",
        help="with --outlier-exposure: real images or DICOM files of other planes and organs "
        "(files or folders) instead of the synthetic frames, also among the guard's outliers",
    )
    g.add_argument("--workers", type=ranged(int, 0), default=0, help="data-loader worker processes")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    g.add_argument(
        "--no-amp",
        action="store_true",
        help="full precision (default: float16 on CUDA, bfloat16 on CPUs with bfloat16 "
        "instructions)",
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in the same --out from its last finished epoch "
        "(evaluate: and reuse the folds already scored there)",
    )
    c = p.add_argument_group("checkpoint")
    c.add_argument(
        "--name",
        default="fetal-cns-resnet34",
        help="model name in the card (evaluate adds the fold to it)",
    )
    c.add_argument("--fp16", action="store_true", help="store the weights as float16")


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model from a manifest (class-weighted CE, early stopping, DDP)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_training_options(p)
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        metavar="CARD",
        help="start from this checkpoint's weights (fine-tuning; its card is verified as the "
        "viewer verifies it, and its classes must match --task)",
    )
    p.add_argument("--notes", default="", help="free text for the model card")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> Any:
    from fetal_viewer.core.training.evaluate import TASKS
    from fetal_viewer.core.training.train import TrainConfig

    lr = args.lr if args.lr is not None else (1e-3 if args.optimizer == "adamw" else 1e-2)
    return TrainConfig(
        classes=TASKS[args.task],
        input_size=args.input_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=lr,
        weight_decay=args.weight_decay,
        val_fraction=args.val_fraction,
        patience=args.patience,
        seed=args.seed,
        pretrained=args.pretrained,
        augment=not args.no_augment,
        num_workers=args.workers,
        device=args.device,
        amp=not args.no_amp,
        max_frames_per_patient=args.max_frames_per_patient,
        cam_guidance=args.cam_guidance,
        cam_pointing=args.cam_pointing,
        noise_floor=args.noise_floor,
        outlier_exposure=args.outlier_exposure,
        outliers=tuple(args.outliers),
        init=str(getattr(args, "init", None) or ""),
    )


def load_manifest(args: argparse.Namespace) -> Any:
    """Validate the manifest and restrict it to the task's classes; prints a summary."""
    from fetal_viewer.core.model.labels import CLASSES
    from fetal_viewer.core.training.evaluate import TASKS, restrict
    from fetal_viewer.core.training.manifest import read_manifest
    from fetal_viewer.core.training.train import dist_info

    manifest = restrict(read_manifest(args.manifest, CLASSES), TASKS[args.task])
    if dist_info().is_main:
        d = manifest.describe()
        per = ", ".join(f"{k} {v['patients']}p/{v['images']}i" for k, v in d["per_class"].items())
        print(
            f"manifest OK: {d['images']} images, {d['patients']} patients, "
            f"{len(d['centers'])} centers ({per})"
        )
    return manifest


def progress_for(args: argparse.Namespace, desc: str) -> tuple[Any, Any]:
    from fetal_viewer.core.progress import tqdm_progress
    from fetal_viewer.core.training.train import dist_info

    return tqdm_progress(desc, disable=not sys.stderr.isatty() or not dist_info().is_main)


def run(args: argparse.Namespace) -> int:
    from fetal_viewer.core.model.checkpoint import add_onnx, save_checkpoint
    from fetal_viewer.core.model.guard import describe
    from fetal_viewer.core.training.evaluate import make_card
    from fetal_viewer.core.training.guard_fit import PathFrames, fit_and_store_guard
    from fetal_viewer.core.training.train import dist_info, finish_distributed, train_model

    if (Path(args.out) / "card.json").is_file() and not args.resume:
        from fetal_viewer.errors import DataError

        raise DataError(
            "The output folder already holds a trained model; nothing was overwritten.",
            fix="Give another --out, add --resume to go on training it, or delete the folder.",
            path=args.out,
        )
    manifest = load_manifest(args)
    config = config_from_args(args)
    progress, close = progress_for(args, "train")
    try:
        result = train_model(
            manifest,
            range(len(manifest)),
            config,
            args.out,
            resume=args.resume,
            progress=progress,
        )
    except KeyboardInterrupt:
        print(
            "training stopped: the same command with --resume goes on from the last finished epoch",
            file=sys.stderr,
        )
        raise
    finally:
        close()
    if dist_info().is_main:
        card = make_card(
            result, config, manifest, range(len(manifest)), args.name, notes=args.notes
        )
        card_path = save_checkpoint(result.model, card, args.out, fp16=args.fp16)
        # the graph of the weights as saved (float16 ones too), for runtimes without torch
        add_onnx(card_path)
        guard = fit_and_store_guard(
            card_path,
            manifest,
            split=(config.val_fraction, config.seed),
            outliers=PathFrames(config.outliers) if config.outliers else (),
        )
        if guard is None:
            print(
                "domain guard: none (no validation split to set its threshold on); add one "
                "with `fetal-viewer guard fit --model CARD --manifest M.csv --val-fraction 0.2`"
            )
        else:
            print(f"domain guard: {describe(guard)}")
        (Path(args.out) / "history.json").write_text(json.dumps(result.history, indent=1))
        print(f"best epoch {result.best_epoch}: {result.best_val}")
        print(f"checkpoint: {card_path}")
    finish_distributed()
    return 0
