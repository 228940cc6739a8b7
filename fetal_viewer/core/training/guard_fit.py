"""Fit a model's domain guard on its training frames and store it in its checkpoint.

The statistics come from the frames of the inner-training split of the model's training
manifest, the thresholds from the inner-validation split (patients the statistics never
saw), split exactly as ``train`` split them: same ``val_fraction`` and ``seed``, read from
the card's training record when it has one. The outlier probe is fitted against synthetic
non-head frames made from the inner-training frames
(:class:`~fetal_viewer.core.phantoms.outliers.SyntheticOutliers`) and any frames of other
views and organs the caller names (``guard fit --outliers``). ``train`` and ``evaluate --cv`` call
:func:`fit_and_store_guard` on each model they write; ``fetal-viewer guard fit`` adds a guard to an existing card (the
shipped demo model, a clinic's model) without retraining.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.io import open_paths
from fetal_viewer.core.model.artifacts import add_artifact
from fetal_viewer.core.model.card import write_card_metrics
from fetal_viewer.core.model.checkpoint import LoadedModel
from fetal_viewer.core.model.guard import (
    DEFAULT_PERCENTILE,
    GUARD_ARTIFACT,
    GUARD_FILE,
    DomainGuard,
    fit_guard,
    save_guard,
)
from fetal_viewer.core.phantoms.outliers import SyntheticOutliers
from fetal_viewer.core.progress import CancelToken, ProgressFn, no_progress
from fetal_viewer.core.training.data import read_record_frame
from fetal_viewer.core.training.folds import inner_split
from fetal_viewer.core.training.manifest import Manifest, Record
from fetal_viewer.errors import DataError


class RecordFrames(Sequence[NDArray[np.uint8]]):
    """Manifest rows' frames, decoded when the predictor asks for them."""

    def __init__(self, records: Sequence[Record]) -> None:
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: Any) -> Any:
        return read_record_frame(self.records[i])


#: synthetic outlier frames per guard fit: a quarter of the training frames, 80 to 2,000
MIN_SYNTHETIC, MAX_SYNTHETIC = 80, 2000


def synthetic_count(n_train: int) -> int:
    return int(min(MAX_SYNTHETIC, max(MIN_SYNTHETIC, n_train // 4)))


class PathFrames(Sequence[NDArray[np.uint8]]):
    """Every frame of the images and DICOM files under ``paths`` (given as ``option`` on the
    command line: ``--outliers``, ``--ood``), decoded when asked for."""

    def __init__(self, paths: Sequence[str | Path], option: str = "--outliers") -> None:
        result = open_paths([Path(p) for p in paths])
        self.series = [s for pt in result.patients for st in pt.studies for s in st.series]
        self._where = [(k, i) for k, s in enumerate(self.series) for i in range(len(s))]
        self.problems = result.problems
        if not self._where:
            raise DataError(
                f"No frames could be read from the {option} paths.",
                why=f"{len(result.problems)} file(s) failed to load.",
                fix="Name folders of images or DICOM files that are not the model's domain.",
            )

    def __len__(self) -> int:
        return len(self._where)

    def __getitem__(self, i: Any) -> Any:
        k, j = self._where[i]
        return self.series[k].frame(j)

    def by_file(self) -> list[NDArray[np.int64]]:
        """The frame indices of each file, in order."""
        k = np.array([w[0] for w in self._where], dtype=np.int64)
        return [np.flatnonzero(k == i) for i in range(len(self.series))]


def training_split(loaded: LoadedModel) -> tuple[float, int]:
    """``(val_fraction, seed)`` the card's model was trained with (0.2 and 0 otherwise)."""
    config = loaded.card.metrics.get("training", {}).get("config", {})
    return float(config.get("val_fraction", 0.2)), int(config.get("seed", 0))


def split_for(
    loaded: LoadedModel, manifest: Manifest, what: str, split: tuple[float, int] | None = None
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The inner-training and inner-validation rows of ``manifest`` (the model's training
    manifest), split as ``train`` split them (``split``: ``(val_fraction, seed)``, by default
    the card's); ``what`` (the guard's threshold, the operating point) names what the
    validation rows are for in the errors."""
    unknown = sorted({r.label for r in manifest.records} - set(loaded.card.classes))
    if unknown:
        raise DataError(
            f"The manifest has labels the model does not know: {', '.join(unknown)}.",
            fix=f"Fit {what} on the manifest the model was trained on.",
            path=manifest.source,
        )
    val_fraction, seed = split or training_split(loaded)
    records = manifest.records
    train_idx, val_idx = inner_split(records, range(len(records)), val_fraction, seed)
    if len(val_idx) == 0:
        raise DataError(
            f"The manifest gives no validation patients to set {what} on.",
            why=f"val_fraction {val_fraction} over {len(manifest.patients)} patient(s).",
            fix="Use a manifest with several patients per class.",
            path=manifest.source,
        )
    return train_idx, val_idx


def fit_model_guard(
    loaded: LoadedModel,
    manifest: Manifest,
    percentile: float = DEFAULT_PERCENTILE,
    split: tuple[float, int] | None = None,
    batch_size: int = 32,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    outliers: Sequence[NDArray[np.uint8]] = (),
) -> DomainGuard:
    """Fit ``loaded``'s guard on ``manifest`` (its training manifest), its probe against
    synthetic outliers and ``outliers``; see the module doc."""
    from fetal_viewer.core.model.predictor import Predictor

    classes = list(loaded.card.classes)
    records = manifest.records
    train_idx, val_idx = split_for(loaded, manifest, "the guard's threshold", split)
    # float32 whatever `auto` would pick on this machine, so that the statistics and the
    # threshold do not depend on where the guard was fitted; the guard's own scores are not
    # needed while fitting it
    predictor = Predictor(loaded, backend="onnxruntime")
    predictor.guard = None
    predictor.second_look = False
    train_frames = RecordFrames([records[i] for i in train_idx])
    synthetic = SyntheticOutliers(train_frames, synthetic_count(len(train_idx)), seed=0)
    n_all = len(train_idx) + len(val_idx) + len(synthetic) + len(outliers)

    def features(frames: Sequence[NDArray[np.uint8]], offset: int) -> NDArray[np.float32]:
        def report(done: int, total: int, message: str = "") -> None:
            progress(offset + done, n_all, "guard features")

        pred = predictor.predict(
            frames, batch_size=batch_size, progress=report, cancel=cancel, with_features=True
        )
        assert pred.features is not None
        return pred.features

    train = features(train_frames, 0)
    val = features(RecordFrames([records[i] for i in val_idx]), len(train_idx))
    done = len(train_idx) + len(val_idx)
    outside = [features(synthetic, done)]
    if len(outliers):
        outside.append(features(outliers, done + len(synthetic)))
    labels = np.array([classes.index(records[i].label) for i in train_idx])
    return fit_guard(train, labels, val, percentile, outliers=np.concatenate(outside))


def store_guard(loaded: LoadedModel, guard: DomainGuard) -> Path:
    """Write ``guard`` beside ``loaded``'s weights and name it in its card (with sha256)."""
    folder = loaded.card_path.parent
    path = save_guard(guard, folder / GUARD_FILE)
    add_artifact(loaded.card_path, GUARD_ARTIFACT, path)
    write_card_metrics(loaded.card_path, "domain_guard", dict(guard.summary()))
    return path


def fit_and_store_guard(
    card_path: str | Path,
    manifest: Manifest,
    split: tuple[float, int] | None = None,
    percentile: float = DEFAULT_PERCENTILE,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    outliers: Sequence[NDArray[np.uint8]] = (),
) -> DomainGuard | None:
    """Fit the guard of the checkpoint at ``card_path`` on ``manifest`` and store it;
    ``None`` (the card keeps no guard) when the split has no validation patients to set
    the threshold on: training without a validation split leaves that to ``guard fit``.
    ``outliers``: frames of other views and organs for its probe, beside the synthetic ones."""
    from fetal_viewer.core.model.checkpoint import load_checkpoint

    if split is not None and split[0] <= 0:
        return None
    loaded = load_checkpoint(card_path)
    guard = fit_model_guard(
        loaded,
        manifest,
        percentile,
        split=split,
        progress=progress,
        cancel=cancel,
        outliers=outliers,
    )
    store_guard(loaded, guard)
    return guard
