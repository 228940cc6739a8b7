"""What a training run is asked to do (:class:`TrainConfig`), the check that it can be done
before any work, and what it gives back (:class:`TrainResult`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from fetal_viewer.core.model.labels import CLASSES
from fetal_viewer.core.model.preprocess import PreprocessSpec
from fetal_viewer.core.training.manifest import Indices, Manifest
from fetal_viewer.errors import DataError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class TrainConfig:
    classes: tuple[str, ...] = CLASSES
    input_size: int = 224
    epochs: int = 30
    batch_size: int = 32
    optimizer: str = "adamw"  # or "sgd" (momentum 0.9, nesterov)
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.2
    patience: int = 5  # epochs without a better validation loss before stopping
    seed: int = 0
    pretrained: bool = False
    #: model card of a checkpoint to start from (fine-tuning; loaded through the verified safe
    #: path, its classes must match); "" starts from random (or ImageNet) weights
    init: str = ""
    augment: bool = True
    num_workers: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # mixed precision: float16 on CUDA, bfloat16 on CPUs that support it
    max_frames_per_patient: int = 0  # 0: all; else evenly spaced frames (cine is redundant)
    #: weight of the Grad-CAM guidance loss (0: labels only, as in the paper); see cam_outside
    cam_guidance: float = 0.0
    #: weight of the pointing term: the peak of the true class's map outside the lesion (or
    #: zero) against the peak inside it; see cam_miss
    cam_pointing: float = 0.0
    #: highest grey level of the augmentation's depth-rising noise floor (0: off); see augment
    noise_floor: float = 0.0
    #: weight of the outlier-exposure term (0: off): cross-entropy to the uniform
    #: distribution on synthetic non-head frames, half a batch of them with every batch
    outlier_exposure: float = 0.0
    #: images and DICOM files of other planes and organs (folders or files) to use for outlier
    #: exposure instead of the synthetic non-head frames, and among the guard's outliers
    outliers: tuple[str, ...] = ()

    @property
    def spec(self) -> PreprocessSpec:
        return PreprocessSpec(input_size=self.input_size)

    def fingerprint(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run it continues."""
        data = asdict(self)
        data.pop("num_workers")
        data.pop("device")
        data["classes"] = list(self.classes)
        if not self.cam_pointing:
            data.pop("cam_pointing")  # runs saved before the term existed resume as they were
        if not self.noise_floor:
            data.pop("noise_floor")  # likewise for runs saved before the noise floor
        if not self.outlier_exposure:
            data.pop("outlier_exposure")  # and before outlier exposure
        if not self.outliers:
            data.pop("outliers")  # and before real outliers
        else:
            data["outliers"] = list(self.outliers)
        return data


@dataclass
class TrainResult:
    model: torch.nn.Module  # best-validation weights, CPU, eval mode
    class_weights: dict[str, float]
    history: list[dict[str, float]]
    best_epoch: int
    best_val: dict[str, float]
    n_train_images: int
    n_val_images: int
    n_train_patients: int
    n_val_patients: int
    seconds: float
    rank: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def check_config(
    manifest: Manifest, indices: Indices, config: TrainConfig
) -> tuple[np.ndarray, bool]:
    """Every row's class index, and whether the run is Grad-CAM guided; refuses settings
    that cannot train."""
    records = manifest.records
    class_index = {c: k for k, c in enumerate(config.classes)}
    unknown = sorted({records[i].label for i in indices} - set(class_index))
    if unknown:
        raise DataError(
            f"Labels {unknown} are not among the model's classes {list(config.classes)}.",
            fix="Filter the manifest or pass the matching class list.",
        )
    targets = np.array([class_index[r.label] for r in records], dtype=np.int64)
    guided = config.cam_guidance > 0 or config.cam_pointing > 0
    if min(config.cam_guidance, config.cam_pointing) < 0 or (
        guided and all(records[i].mask_path is None for i in indices)
    ):
        raise DataError(
            "Grad-CAM guidance needs a positive weight and lesion masks.",
            why=f"The weights are {config.cam_guidance:g} (--cam-guidance) and "
            f"{config.cam_pointing:g} (--cam-pointing); the manifest's mask_path column "
            "gives the masks.",
            fix="Add masks to the manifest, or train without --cam-guidance and --cam-pointing.",
        )
    if config.outlier_exposure < 0:
        raise DataError(
            f"The outlier-exposure weight cannot be negative ({config.outlier_exposure:g}).",
            fix="Pass --outlier-exposure 0 (off) or a positive weight such as 0.5.",
        )
    if config.outliers and not config.outlier_exposure:
        raise DataError(
            "Real outlier frames (--outliers) are used by outlier exposure, which is off.",
            fix="Add --outlier-exposure W (such as 0.5), or leave out --outliers.",
        )
    if not 0.0 <= config.noise_floor <= 1.0:
        raise DataError(
            f"The noise floor is a grey level from 0 to 1, not {config.noise_floor:g}.",
            fix="Pass --noise-floor between 0 (off) and 1; the demo model's recipe uses 0.7.",
        )
    return targets, guided
