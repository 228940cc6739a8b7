"""Frames of a manifest as network inputs, through the model core's preprocessing.

Each frame is read once (:func:`fetal_viewer.core.io.read_frame`), cropped to its field of
view and resized/padded (:func:`preprocess.crop_to_fov`, :func:`preprocess.resize_pad`);
that uint8 square is cached. Per sample, training then applies :func:`augment.augment` and
:func:`preprocess.to_tensor_array` - the same normalisation as inference.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.model.preprocess import (
    PreprocessSpec,
    crop_to_fov,
    preprocess,
    resize_pad,
    to_tensor_array,
)
from fetal_viewer.core.phantoms.outliers import SyntheticOutliers
from fetal_viewer.core.progress import CancelToken, ProgressFn, completed, no_progress
from fetal_viewer.core.training.augment import AugmentSpec, augment, augment_pair
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


def read_frame_mask(path: Path, shape: tuple[int, ...]) -> NDArray[np.bool_]:
    """:func:`read_mask`, refused unless it has the frame's ``(height, width)``."""
    mask = read_mask(path)
    if mask.shape != tuple(shape):
        raise DataError(f"Mask shape {mask.shape} differs from the frame's {shape}.", path=path)
    return mask


def load_squares(
    record: Record, size: int, *, with_mask: bool
) -> tuple[NDArray[np.uint8], NDArray[np.uint8] | None]:
    """The row's frame cropped to its field of view and fitted into a ``size`` square, and,
    with ``with_mask``, its mask through the same crop and fit (``(S, S)`` uint8, 0-255;
    None when the row has no mask)."""
    frame = read_record_frame(record)
    crop, (x0, y0, x1, y1) = crop_to_fov(frame)
    square, _placement = resize_pad(crop, size)
    if not with_mask or record.mask_path is None:
        return square, None
    mask = read_frame_mask(record.mask_path, frame.shape[:2])
    box = np.ascontiguousarray(mask[y0:y1, x0:x1].astype(np.uint8) * np.uint8(255))
    mask_square, _ = resize_pad(box, size)
    return square, mask_square[:, :, 0]


class SquareCache:
    """Preprocessed-but-not-normalised ``(S, S, 3)`` uint8 squares of the manifest rows,
    and with ``masks`` their lesion masks through the same crop and fit."""

    def __init__(self, records: Sequence[Record], size: int, *, masks: bool = False) -> None:
        self.records = records
        self.size = size
        self.masks = masks
        self._cache: dict[int, NDArray[np.uint8]] = {}
        self._masks: dict[int, NDArray[np.uint8] | None] = {}

    def get(self, index: int) -> NDArray[np.uint8]:
        square = self._cache.get(index)
        if square is None:
            square, mask = self._read(index)
            self._cache[index] = square
            self._masks[index] = mask
        return square

    def get_mask(self, index: int) -> NDArray[np.uint8] | None:
        """The row's mask square (None without a mask, or when the cache keeps no masks)."""
        self.get(index)
        return self._masks[index]

    def preload(
        self,
        indices: Indices,
        progress: ProgressFn = no_progress,
        cancel: CancelToken | None = None,
    ) -> None:
        """Read every row of ``indices`` into the cache, on one thread per core (decoding
        and resizing release the GIL: 1.9x on two cores); an unreadable frame raises."""
        todo = [int(i) for i in indices if int(i) not in self._cache]
        if not todo:
            return
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for n, (i, (square, mask)) in enumerate(completed(pool, self._read, todo, cancel), 1):
                self._cache[i], self._masks[i] = square, mask
                progress(n, len(todo), "reading frames")

    def _read(self, index: int) -> tuple[NDArray[np.uint8], NDArray[np.uint8] | None]:
        return load_squares(self.records[index], self.size, with_mask=self.masks)


class FrameDataset:
    """A torch-style dataset of (normalised input, class index) for some manifest rows;
    with ``with_masks`` also each row's ``(S, S)`` float mask in [0, 1] (zeros without one),
    moved by the same augmentation as the image."""

    def __init__(
        self,
        cache: SquareCache,
        indices: Indices,
        targets: Indices,
        spec: PreprocessSpec,
        *,
        augment_spec: AugmentSpec | None = None,
        seed: int = 0,
        with_masks: bool = False,
    ) -> None:
        if with_masks and not cache.masks:
            raise ValueError("with_masks needs a SquareCache made with masks=True")
        self.cache = cache
        self.indices = [int(i) for i in indices]
        self.targets = [int(t) for t in targets]
        self.spec = spec
        self.augment_spec = augment_spec
        self.seed = seed
        self.with_masks = with_masks
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        import torch

        index = self.indices[i]
        square = self.cache.get(index)
        mask = self.cache.get_mask(index) if self.with_masks else None
        if self.augment_spec is not None:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            square, mask = augment_pair(square, mask, rng, self.augment_spec)
        x = torch.from_numpy(to_tensor_array(square, self.spec))
        if not self.with_masks:
            return x, self.targets[i]
        m = np.zeros(square.shape[:2], np.float32) if mask is None else mask / np.float32(255)
        return x, self.targets[i], torch.from_numpy(np.ascontiguousarray(m, np.float32))


class _Squares(Sequence[NDArray[np.uint8]]):
    """The cached input squares of some manifest rows, as frames."""

    def __init__(self, cache: SquareCache, indices: Indices) -> None:
        self.cache = cache
        self.indices = [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: Any) -> Any:
        return self.cache.get(self.indices[i])


class OutlierDataset:
    """Non-head frames as network inputs, for outlier exposure (``train --outlier-exposure``).

    Without ``real``: synthetic ones (:mod:`fetal_viewer.core.phantoms.outliers`), new ones
    every epoch; the jigsaw kinds are cut from the training rows' cached squares. With
    ``real`` (``train --outliers``: real views of other planes and organs): those frames,
    cropped and fitted as the training rows are, augmented with ``augment_spec`` and drawn in a
    new order every epoch; the synthetic ones are then left out.
    """

    def __init__(
        self,
        cache: SquareCache,
        indices: Indices,
        spec: PreprocessSpec,
        n: int,
        seed: int = 0,
        *,
        real: Sequence[NDArray[np.uint8]] | None = None,
        augment_spec: AugmentSpec | None = None,
    ) -> None:
        self.bases = _Squares(cache, indices)
        self.spec = spec
        self.n = n
        self.seed = seed
        self.real = real
        self.augment_spec = augment_spec
        self._squares: dict[int, NDArray[np.uint8]] = {}
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.real is None:
            self.frames = SyntheticOutliers(self.bases, self.n, seed=self.seed * 1000 + epoch)
            return
        rng = np.random.default_rng((self.seed, epoch))
        rounds = -(-self.n // len(self.real))
        self.order = np.concatenate([rng.permutation(len(self.real)) for _ in range(rounds)])

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        import torch

        if self.real is None:
            return torch.from_numpy(preprocess(self.frames[i], self.spec).array)
        k = int(self.order[i])
        square = self._squares.get(k)
        if square is None:
            square = self._squares[k] = resize_pad(
                crop_to_fov(self.real[k])[0], self.spec.input_size
            )[0]
        if self.augment_spec is not None:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            square = augment(square, rng, self.augment_spec)
        return torch.from_numpy(to_tensor_array(square, self.spec))


def collate(batch: list[tuple[Any, ...]]) -> tuple[torch.Tensor, ...]:
    """Stack (input, class index[, mask]) samples into batch tensors."""
    import torch

    columns = list(zip(*batch))
    xs, ys = torch.stack(list(columns[0])), torch.as_tensor(columns[1], dtype=torch.long)
    if len(columns) == 2:
        return xs, ys
    return xs, ys, torch.stack(list(columns[2]))
