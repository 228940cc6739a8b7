"""Frames of a manifest as network inputs, through the model core's preprocessing.

Each frame is read once (:func:`fetal_viewer.core.io.read_frame`), cropped to its field of
view and resized/padded (:func:`preprocess.crop_to_fov`, :func:`preprocess.resize_pad`);
that uint8 square is cached. Per sample, training then applies :func:`augment.augment` and
:func:`preprocess.to_tensor_array` - the same normalisation as inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.model.preprocess import (
    PreprocessSpec,
    crop_to_fov,
    resize_pad,
    to_tensor_array,
)
from fetal_viewer.core.progress import CancelToken, ProgressFn, no_progress
from fetal_viewer.core.training.augment import AugmentSpec, augment
from fetal_viewer.core.training.manifest import Indices, Record
from fetal_viewer.errors import DataError, FetalViewerError

if TYPE_CHECKING:
    import torch


def read_record_frame(record: Record) -> NDArray[np.uint8]:
    """The RGB uint8 frame a manifest row points at."""
    from fetal_viewer.core.io import read_frame

    try:
        return np.asarray(read_frame(record.path, record.frame))
    except FetalViewerError:
        raise
    except Exception as exc:
        raise DataError(
            f"Frame {record.frame} of this file could not be read (manifest row {record.row}).",
            why=str(exc),
            fix="Check the file and the frame index in the manifest.",
            path=record.path,
        ) from exc


def read_mask(path: Path) -> NDArray[np.bool_]:
    """A lesion mask image as a boolean array (non-zero is lesion)."""
    import cv2

    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False).astype(bool)
        raise DataError("Mask could not be read.", fix="Masks must be PNG images.", path=path)
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    return np.asarray(mask > 0)


def load_square(record: Record, size: int) -> NDArray[np.uint8]:
    crop, _box = crop_to_fov(read_record_frame(record))
    square, _placement = resize_pad(crop, size)
    return square


class SquareCache:
    """Preprocessed-but-not-normalised ``(S, S, 3)`` uint8 squares of the manifest rows."""

    def __init__(self, records: Sequence[Record], size: int) -> None:
        self.records = records
        self.size = size
        self._cache: dict[int, NDArray[np.uint8]] = {}

    def get(self, index: int) -> NDArray[np.uint8]:
        square = self._cache.get(index)
        if square is None:
            square = load_square(self.records[index], self.size)
            self._cache[index] = square
        return square

    def preload(
        self,
        indices: Indices,
        progress: ProgressFn = no_progress,
        cancel: CancelToken | None = None,
    ) -> None:
        todo = [int(i) for i in indices if int(i) not in self._cache]
        for n, i in enumerate(todo, start=1):
            if cancel is not None:
                cancel.raise_if_cancelled()
            self.get(i)
            progress(n, len(todo), "reading frames")


class FrameDataset:
    """A torch-style dataset of (normalised input, class index) for some manifest rows."""

    def __init__(
        self,
        cache: SquareCache,
        indices: Indices,
        targets: Indices,
        spec: PreprocessSpec,
        *,
        augment_spec: AugmentSpec | None = None,
        seed: int = 0,
    ) -> None:
        self.cache = cache
        self.indices = [int(i) for i in indices]
        self.targets = [int(t) for t in targets]
        self.spec = spec
        self.augment_spec = augment_spec
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        import torch

        index = self.indices[i]
        square = self.cache.get(index)
        if self.augment_spec is not None:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            square = augment(square, rng, self.augment_spec)
        return torch.from_numpy(to_tensor_array(square, self.spec)), self.targets[i]


def collate(batch: list[tuple[Any, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    xs, ys = zip(*batch)
    return torch.stack(list(xs)), torch.as_tensor(ys, dtype=torch.long)
