"""What a model card says about a training run: :func:`make_card` (data, settings, inner
validation) and :func:`headline` (the few held-out figures a card and a README quote)."""

from __future__ import annotations

import json
from typing import Any

from fetal_viewer.core.model.card import ModelCard
from fetal_viewer.core.training.config import TrainConfig, TrainResult
from fetal_viewer.core.training.manifest import Indices, Manifest


def make_card(
    result: TrainResult,
    config: TrainConfig,
    manifest: Manifest,
    indices: Indices,
    name: str,
    metrics: dict[str, Any] | None = None,
    notes: str = "",
) -> ModelCard:
    """A model card describing a training run (data, settings, validation figures)."""
    data = manifest.subset(indices).describe()
    card_metrics: dict[str, Any] = {
        "inner_validation": {
            "best_epoch": result.best_epoch,
            **{k: round(v, 6) for k, v in result.best_val.items()},
            "patients": result.n_val_patients,
            "images": result.n_val_images,
        },
        "class_weights": {k: round(v, 6) for k, v in result.class_weights.items()},
        "training": {
            "epochs_run": len(result.history),
            "images": result.n_train_images,
            "patients": result.n_train_patients,
            "seconds": round(result.seconds, 1),
            "config": {k: v for k, v in config.fingerprint().items() if k != "classes"},
        },
    }
    if result.extra.get("initialised_from"):
        card_metrics["training"]["initialised_from"] = result.extra["initialised_from"]
    if metrics:
        card_metrics.update(metrics)
    return ModelCard(
        name=name,
        version="1",
        classes=tuple(config.classes),
        input_size=config.input_size,
        training_data=json.dumps(data, sort_keys=True),
        metrics=card_metrics,
        notes=notes,
    )


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """The few figures a model card and a README quote."""
    p = metrics["patient_level"]
    i = metrics["image_level"]
    loc = metrics.get("localisation", {}).get("all", {})
    setup = metrics.get("setup", {})
    recipe = (
        "folds",
        "input_size",
        "epochs",
        "batch_size",
        "optimizer",
        "lr",
        "weight_decay",
        "val_fraction",
        "patience",
        "seed",
        "augment",
        "max_frames_per_patient",
    )
    return {
        "protocol": setup.get("protocol", ""),
        "settings": {k: setup[k] for k in recipe if k in setup},
        "patients": metrics["patients"],
        "images": metrics["images"],
        "patient_accuracy": p["accuracy"],
        "patient_accuracy_ci95": p.get("accuracy_ci95"),
        "image_accuracy": i["accuracy"],
        "patient_macro_auroc": p["macro_auroc"],
        "patient_macro_auroc_ci95": p.get("macro_auroc_ci95"),
        "patient_micro_auroc": p["micro_auroc"],
        "image_macro_auroc": i["macro_auroc"],
        "pointing_game": loc.get("pointing_game"),
        "pointing_game_ceiling": loc.get("pointing_ceiling"),
        "pointing_game_15px": loc.get("pointing_game_15px"),
        "energy_inside_mask": loc.get("energy_inside_mask"),
        "images_flagged_by_guard": metrics.get("domain_guard", {}).get("images_flagged"),
    }
