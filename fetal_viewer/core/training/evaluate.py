"""The paper's protocol end to end: cross-validated training and scoring, and the report.

:func:`cross_validate` trains one model per fold (leave-one-center-out, leave-one-patient-
out or grouped k-fold; patients never split), saves each fold's checkpoint, scores the
held-out fold through the product's own :class:`~fetal_viewer.core.model.predictor.Predictor`
(so what is measured is what the viewer runs), then writes the report.
:func:`score_model` scores an existing checkpoint on a manifest without training.
:func:`pool_scored` (:mod:`.pool`) writes one report over the predictions of several
earlier runs.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fetal_viewer.core.cam.gradcam import FAST_METHOD, STITCH_METHOD, frame_heatmap, grid_side
from fetal_viewer.core.model.aggregation import DEFAULT_RULE
from fetal_viewer.core.model.card import write_card_metrics
from fetal_viewer.core.model.checkpoint import (
    LoadedModel,
    ModelCard,
    load_checkpoint,
    save_checkpoint,
)
from fetal_viewer.core.model.labels import ANOMALY_CLASSES, CLASSES
from fetal_viewer.core.model.preprocess import Geometry, preprocess
from fetal_viewer.core.progress import CancelToken, ProgressFn, no_progress
from fetal_viewer.core.training.cards import headline, make_card
from fetal_viewer.core.training.data import read_frame_mask, read_mask, read_record_frame
from fetal_viewer.core.training.folds import make_folds
from fetal_viewer.core.training.guard_fit import PathFrames, fit_and_store_guard
from fetal_viewer.core.training.manifest import Indices, Manifest
from fetal_viewer.core.training.metrics import energy_inside, pointing_distance, pointing_game
from fetal_viewer.core.training.pool import manifest_paths, pool_scored
from fetal_viewer.core.training.report import HeatmapExample, ReportInputs, write_report
from fetal_viewer.core.training.summary import PredictionTable, summarise
from fetal_viewer.core.training.train import (
    STATE_DIR,
    LogFn,
    TrainConfig,
    dist_info,
    train_model,
)
from fetal_viewer.errors import DataError

TASKS: dict[str, tuple[str, ...]] = {"five-class": CLASSES, "anomalies": ANOMALY_CLASSES}
_PRED_CHUNK = 64
_EXAMPLE_SIDE = 256


def restrict(manifest: Manifest, classes: Sequence[str]) -> Manifest:
    """Only the rows whose label is among ``classes`` (anomaly-only mode drops ``normal``)."""
    keep = [i for i, r in enumerate(manifest.records) if r.label in set(classes)]
    if not keep:
        raise DataError("No manifest rows have the requested classes.", why=str(list(classes)))
    return manifest.subset(keep)


@dataclass
class Scored:
    table: PredictionTable
    examples: list[HeatmapExample]


def _thumb(frame: np.ndarray, heat: np.ndarray, mask: np.ndarray | None) -> HeatmapExample:
    import cv2

    h, w = frame.shape[:2]
    s = min(1.0, _EXAMPLE_SIDE / max(h, w))
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small: np.ndarray = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    hs: np.ndarray = cv2.resize(heat.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    ms = (
        cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
        if mask is not None
        else None
    )
    return HeatmapExample("", "", small, hs, ms)


def pointing_reachable(geometry: Geometry, grid: tuple[int, int], mask: np.ndarray) -> bool:
    """Whether a class map of ``grid`` cells can put its maximum inside ``mask`` at all.

    Maps are upsampled bilinearly, so a map's maximum lies at (within a pixel of) the peak
    of one of its cells; each cell is tried alone. The share of reachable masks bounds the
    pointing game from above: a lesion that covers no cell's peak cannot be hit at this
    heatmap resolution, however well the model attends to it.
    """
    for k in range(grid[0] * grid[1]):
        cell = np.zeros(grid, dtype=np.float32)
        cell.flat[k] = 1.0
        if pointing_game(frame_heatmap(cell, geometry), mask):
            return True
    return False


def _fill_reachable(
    table: PredictionTable, manifest: Manifest, indices: Indices, card: ModelCard
) -> None:
    """Add the ``pointing_reachable`` column to a fold scored before it existed."""
    spec = card.spec
    side = grid_side(spec.input_size)
    for j, i in enumerate(indices):
        r = manifest.records[i]
        if table.pointing[j] is None or r.mask_path is None:
            continue
        frame = read_record_frame(r)
        mask = read_frame_mask(r.mask_path, frame.shape[:2])
        table.reachable[j] = pointing_reachable(
            preprocess(frame, spec).geometry, (side, side), mask
        )


def score(
    loaded: LoadedModel,
    manifest: Manifest,
    indices: Indices,
    fold_name: str,
    *,
    backend: str = "auto",
    stitch: bool = False,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> Scored:
    """Predict the rows ``indices`` with the product's predictor; localise where masks exist
    (with ``stitch``, on the shift-and-stitch Grad-CAM grid)."""
    from fetal_viewer.core.model.predictor import Predictor

    classes = tuple(loaded.card.classes)
    index = {c: k for k, c in enumerate(classes)}
    predictor = Predictor(loaded, backend=backend)
    rows = [manifest.records[i] for i in indices]
    unknown = sorted({r.label for r in rows} - set(index))
    if unknown:
        raise DataError(
            f"The manifest has labels {unknown} that the model does not know.",
            why=f"The model's classes are {list(classes)}.",
            fix="Use --task anomalies for an anomaly-only model, or filter the manifest.",
        )
    probs: list[np.ndarray] = []
    domain: list[np.ndarray] = []
    pointing: list[bool | None] = []
    energy: list[float | None] = []
    reachable: list[bool | None] = []
    distance: list[float | None] = []
    examples: dict[str, HeatmapExample] = {}
    for start in range(0, len(rows), _PRED_CHUNK):
        chunk = rows[start : start + _PRED_CHUNK]
        frames = [read_record_frame(r) for r in chunk]
        with_cam = any(r.mask_path is not None for r in chunk)
        pred = predictor.predict(frames, with_cam=with_cam, stitch=stitch, cancel=cancel)
        probs.append(pred.probs)
        if pred.domain_scores is not None:
            domain.append(pred.domain_scores)
        grid = (0, 0) if pred.cams is None else (pred.cams.shape[-2], pred.cams.shape[-1])
        for j, r in enumerate(chunk):
            mask = heat = None
            if r.mask_path is not None and pred.cams is not None:
                heat = pred.heatmap(j, index[r.label])
                mask = read_frame_mask(r.mask_path, heat.shape)
            if heat is None or mask is None or not mask.any():
                pointing.append(None)
                energy.append(None)
                reachable.append(None)
                distance.append(None)
                continue
            d = pointing_distance(heat, mask)  # 0 inside the mask: a pointing-game hit
            pointing.append(d == 0.0)
            distance.append(d)
            energy.append(energy_inside(heat, mask))
            reachable.append(pointing_reachable(pred.geometries[j], grid, mask))
            if r.label not in examples:
                ex = _thumb(frames[j], heat, mask)
                ex.label = r.label
                ex.predicted = classes[int(np.argmax(pred.probs[j]))]
                examples[r.label] = ex
        progress(min(start + _PRED_CHUNK, len(rows)), len(rows), f"scoring {fold_name}")
    table = PredictionTable(
        classes=classes,
        # as the manifest names them (relative to its folder), so the table joins with the
        # manifest and a results folder that is passed on does not show the local folders
        paths=manifest_paths(manifest, rows),
        frames=[r.frame for r in rows],
        patient_ids=[r.patient_id for r in rows],
        centers=[r.center for r in rows],
        ga_weeks=[r.ga_weeks for r in rows],
        folds=[fold_name] * len(rows),
        y=np.array([index[r.label] for r in rows], dtype=np.int64),
        probs=np.concatenate(probs) if probs else np.zeros((0, len(classes))),
        pointing=pointing,
        energy=energy,
        reachable=reachable,
        distance=distance,
    )
    if loaded.guard is not None and domain:
        scores = np.concatenate(domain)
        table.domain_scores = [float(v) for v in scores]
        table.in_domain = [bool(v) for v in loaded.guard.in_domain(scores)]
    return Scored(table, [examples[c] for c in classes if c in examples])


def _scored(out: Path, fold_name: str) -> bool:
    """Whether ``out`` holds a finished fold: its predictions and training history."""
    fold_dir = out / "folds" / _safe(fold_name)
    return (fold_dir / "predictions.csv").is_file() and (fold_dir / "history.json").is_file()


def _check_same_settings(card_path: Path, config: TrainConfig) -> None:
    """Refuse to report a scored fold together with this run when its card records other
    training settings (cards written before they were recorded are taken as they are)."""
    if not card_path.is_file():
        return
    card = ModelCard.from_json(card_path.read_text(encoding="utf-8"), path=card_path)
    saved = card.metrics.get("training", {}).get("config")
    if not isinstance(saved, dict):
        return
    now = json.loads(json.dumps({k: v for k, v in config.fingerprint().items() if k != "classes"}))
    differ = sorted(k for k in saved.keys() | now.keys() if saved.get(k) != now.get(k))
    if differ:
        shown = "; ".join(f"{k}: saved {saved.get(k)!r}, now {now.get(k)!r}" for k in differ)
        raise DataError(
            f"The scored fold in {card_path.parent} was trained with other settings than this "
            "run; one report would mix two recipes.",
            why=shown,
            fix="Run with that fold's options, or move its folder out of this --out folder.",
            path=card_path,
        )


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def cross_validate(
    manifest: Manifest,
    mode: str,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    k: int = 5,
    only: Sequence[str] = (),
    resume: bool = False,
    name: str = "",
    fp16: bool = False,
    n_boot: int = 1000,
    backend: str = "auto",
    figure_dir: str | Path | None = None,
    log: LogFn = print,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """Train and score every fold, then write the report; returns metrics.json's content.

    Each fold's checkpoint lands in ``out_dir/folds/<fold>/`` (named ``"<name>, <mode>
    <fold>"``, float16 weights with ``fp16``); a fold whose held-out set has every class also
    gets its own held-out figures in its card (``metrics["held_out"]``), so any fold model can
    be shipped with the figures of the patients it never saw.

    ``only`` names the folds to run (``center=D``); the others are not trained, but those
    already scored in ``out_dir`` (a fold run earlier, or copied in from another machine) are
    gathered into the report, so the report always covers every scored fold. ``resume`` also
    reuses scored folds among those to run, and continues an interrupted fold from its last
    epoch. A reused fold must have been trained with this run's settings (its card records
    them); otherwise nothing runs and the error names the settings that differ.
    """
    out = Path(out_dir)
    info = dist_info()
    folds = make_folds(manifest.records, mode, k=k, seed=config.seed)
    say: LogFn = log if info.is_main else (lambda _m: None)
    say(f"{mode}: {len(folds)} folds over {len(manifest.patients)} patients")
    if only:
        names, wanted = [f.name for f in folds], set(only)
        unknown = sorted(wanted - set(names))
        if unknown:
            shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            raise DataError(
                f"No fold named {', '.join(unknown)} in {mode}.",
                why=f"This manifest's folds are: {shown}.",
                fix="Name a fold as listed (for example --only-fold center=A).",
            )
        say(f"  running only {', '.join(f.name for f in folds if f.name in wanted)}")
        gathered = [f.name for f in folds if f.name not in wanted and _scored(out, f.name)]
        if gathered:
            say(f"  gathering the scored {', '.join(gathered)} into the report")
        folds = [f for f in folds if f.name in wanted or f.name in gathered]
    else:
        wanted = {f.name for f in folds}
    reused = {f.name for f in folds if _scored(out, f.name) and (resume or f.name not in wanted)}
    for fold_name in sorted(reused):
        _check_same_settings(out / "folds" / _safe(fold_name) / "card.json", config)
    tables: list[PredictionTable] = []
    histories: dict[str, list[dict[str, float]]] = {}
    examples: list[HeatmapExample] = []
    outliers = PathFrames(config.outliers) if config.outliers else ()
    for n, fold in enumerate(folds, start=1):
        fold_dir = out / "folds" / _safe(fold.name)
        done = fold_dir / "predictions.csv"
        say(
            f"fold {n}/{len(folds)} ({fold.name}): train {len(fold.train)} / test {len(fold.test)} images"
        )
        if fold.name in reused:
            say("  already scored; reusing its predictions")
            table = PredictionTable.read_csv(done, config.classes)
            card_path = fold_dir / "card.json"
            if any(p is not None for p in table.pointing) and all(
                r is None for r in table.reachable
            ):
                say("  adding the pointing-game ceiling to its predictions")
                card = ModelCard.from_json(card_path.read_text(encoding="utf-8"), path=card_path)
                _fill_reachable(table, manifest, fold.test, card)
                table.write_csv(done)
            tables.append(table)
            histories[fold.name] = json.loads((fold_dir / "history.json").read_text())
            if not examples and info.is_main and card_path.is_file():
                # the report's heatmap examples come from the first fold; score just the
                # rows they are drawn from (the first masked frame of each class)
                examples = score(
                    load_checkpoint(card_path),
                    manifest,
                    _example_rows(manifest, fold.test),
                    fold.name,
                    backend=backend,
                    cancel=cancel,
                ).examples
            continue
        result = train_model(
            manifest,
            fold.train,
            config,
            fold_dir,
            resume=resume,
            log=log,
            progress=progress,
            cancel=cancel,
        )
        if not info.is_main:
            _barrier(info)
            continue
        title = f"{name}, {mode} {fold.name}" if name else f"{mode} {fold.name}"
        card = make_card(result, config, manifest, fold.train, title)
        card_path = save_checkpoint(result.model, card, fold_dir, fp16=fp16)
        fit_and_store_guard(
            card_path,
            manifest.subset(fold.train),
            split=(config.val_fraction, config.seed),
            progress=progress,
            cancel=cancel,
            outliers=outliers,
        )
        scored = score(
            load_checkpoint(card_path),
            manifest,
            fold.test,
            fold.name,
            backend=backend,
            progress=progress,
            cancel=cancel,
        )
        scored.table.write_csv(done)
        (fold_dir / "history.json").write_text(json.dumps(result.history, indent=1))
        shutil.rmtree(fold_dir / STATE_DIR, ignore_errors=True)  # resume state no longer needed
        # summarise what predictions.csv holds (rounded), so a resumed run reports the same
        tables.append(PredictionTable.read_csv(done, config.classes))
        histories[fold.name] = result.history
        if not examples:
            examples = scored.examples
        acc = float((scored.table.probs.argmax(1) == scored.table.y).mean())
        say(f"  fold image accuracy {acc:.3f}")
        _barrier(info)
    if not info.is_main:
        return {}
    table = PredictionTable.concat(tables)
    metrics, curves = summarise(table, n_boot=n_boot, seed=config.seed)
    setup = {
        "protocol": mode,
        "folds": len(folds),
        "classes": ", ".join(config.classes),
        "patient_aggregation": DEFAULT_RULE,  # the rule of the cards it trains
        "manifest": str(manifest.source),
        **{k2: v for k2, v in config.fingerprint().items() if k2 != "classes"},
    }
    for fold, fold_table in zip(folds, tables, strict=True):
        card_path = out / "folds" / _safe(fold.name) / "card.json"
        if card_path.is_file() and len(set(fold_table.y.tolist())) == len(config.classes):
            fold_metrics, _ = summarise(fold_table, n_boot=n_boot, seed=config.seed)
            fold_setup = {**setup, "protocol": f"{mode} {fold.name} held out", "folds": 1}
            held_out = headline({"setup": fold_setup, **fold_metrics})
            write_card_metrics(card_path, "held_out", held_out)
    write_report(
        ReportInputs(
            title=f"fetal-viewer evaluation: {mode}",
            table=table,
            metrics=metrics,
            curves=curves,
            setup=setup,
            histories=histories,
            examples=examples,
        ),
        out,
        figure_dir=figure_dir,
    )
    return {"setup": setup, **metrics}


def _example_rows(manifest: Manifest, indices: Indices) -> list[int]:
    """The first row with a non-empty mask of each class among ``indices`` (where
    :func:`score` takes its heatmap examples from)."""
    first: dict[str, int] = {}
    for i in indices:
        record = manifest.records[int(i)]
        if record.label in first or record.mask_path is None:
            continue
        if read_mask(record.mask_path).any():
            first[record.label] = int(i)
    return sorted(first.values())


def _barrier(info: Any) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def score_model(
    card_path: str | Path,
    manifest: Manifest,
    out_dir: str | Path,
    *,
    n_boot: int = 1000,
    backend: str = "auto",
    cam_method: str = FAST_METHOD,
    figure_dir: str | Path | None = None,
    ood: Sequence[str | Path] = (),
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """Score an existing checkpoint on every row of a manifest (a held-out set); heatmaps
    by ``cam_method``, :data:`FAST_METHOD` or :data:`STITCH_METHOD`. ``ood`` names files or
    folders that are not the model's domain: the domain guard is measured against them."""
    if cam_method not in (FAST_METHOD, STITCH_METHOD):
        raise DataError(
            f"Heatmap localisation is scored with {FAST_METHOD} or {STITCH_METHOD}, "
            f"not {cam_method!r}."
        )
    loaded = load_checkpoint(card_path)
    scored = score(
        loaded,
        manifest,
        range(len(manifest)),
        "held-out",
        backend=backend,
        stitch=cam_method == STITCH_METHOD,
        progress=progress,
        cancel=cancel,
    )
    rule = loaded.card.aggregation
    metrics, curves = summarise(scored.table, rule=rule, n_boot=n_boot)
    if ood:
        metrics.setdefault("domain_guard", {})["ood"] = guard_vs_ood(
            loaded, scored.table, ood, backend=backend, cancel=cancel
        )
    setup = {
        "protocol": "held-out scoring of an existing model",
        "model": f"{loaded.card.name} (version {loaded.card.version})",
        "model_card": str(loaded.card_path),
        "classes": ", ".join(loaded.card.classes),
        "input_size": loaded.card.input_size,
        "heatmap": cam_method,
        "patient_aggregation": rule,
        "operating_point": loaded.card.operating_point_words(),
        "second_look": loaded.card.second_look or "none (the whole frame alone)",
        "manifest": str(manifest.source),
    }
    write_report(
        ReportInputs(
            title=f"fetal-viewer evaluation of {loaded.card.name}",
            table=scored.table,
            metrics=metrics,
            curves=curves,
            setup=setup,
            examples=scored.examples,
        ),
        out_dir,
        figure_dir=figure_dir,
    )
    return {"setup": setup, **metrics}


def guard_vs_ood(
    loaded: LoadedModel,
    table: PredictionTable,
    paths: Sequence[str | Path],
    *,
    backend: str = "auto",
    cancel: CancelToken | None = None,
) -> dict[str, Any]:
    """How the domain guard separates the manifest's frames (in domain) from every frame
    of ``paths`` (out of domain): AUROC of the score, and the share withheld at the
    threshold, frame by frame and with the header and cine rules (a file whose Modality is
    not ultrasound, or whose frames are mostly flagged, is withheld as a whole), as every AI
    surface applies them."""
    from fetal_viewer.core.model.guard import cine_flagged, foreign_modality
    from fetal_viewer.core.model.predictor import Predictor
    from fetal_viewer.core.training.metrics import roc_auc

    if loaded.guard is None or not table.guarded:
        raise DataError(
            "--ood measures the domain guard, and this model has none.",
            why=loaded.guard_note,
            fix="Fit one with `fetal-viewer guard fit --model CARD --manifest TRAIN.csv`.",
        )
    frames = PathFrames(paths, option="--ood")
    pred = Predictor(loaded, backend=backend).predict(frames, cancel=cancel)
    assert pred.domain_scores is not None
    out_scores = pred.domain_scores
    inside = loaded.guard.in_domain(out_scores)
    withheld = ~inside
    cines = foreign = 0
    for series, idx in zip(frames.series, frames.by_file(), strict=True):
        if foreign_modality(series.modality) is not None:
            withheld[idx] = True
            foreign += 1
        elif cine_flagged(inside[idx]) is not None:
            withheld[idx] = True
            cines += 1
    in_scores = np.asarray(table.domain_scores)
    y = np.r_[np.zeros(len(in_scores)), np.ones(len(out_scores))]
    return {
        "files": len(frames.series),
        "frames": len(out_scores),
        "unreadable_files": len(frames.problems),
        "flagged": round(float(np.mean(withheld)), 6),
        "flagged_frame_by_frame": round(float(np.mean(~inside)), 6),
        "cines_withheld_whole": cines,
        "files_not_ultrasound": foreign,
        "auroc": round(float(roc_auc(y, np.r_[in_scores, out_scores])), 6),
        "threshold": round(loaded.guard.threshold, 4),
    }


__all__ = [
    "TASKS",
    "Scored",
    "cross_validate",
    "headline",
    "make_card",
    "pool_scored",
    "restrict",
    "score",
    "score_model",
]
