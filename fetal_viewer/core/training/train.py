"""The training loop: class-weighted cross-entropy, augmentation, cosine schedule, early
stopping on a patient-grouped inner validation split, resume, and DDP under ``torchrun``.

One call trains one model on some rows of a manifest. Everything random is seeded from
``TrainConfig.seed`` and the epoch number, so a run that is resumed after an interruption
continues exactly as if it had not stopped. Under ``torchrun`` (``WORLD_SIZE > 1``) each
process trains on its shard of every epoch (``DistributedSampler``), gradients are averaged
by ``DistributedDataParallel`` (NCCL on CUDA, gloo on the CPU) and only rank 0 writes files.

``train_model`` runs in steps: check the configuration (:mod:`.config`), split the rows and
weigh the classes, build the loaders, the network and its optimiser, resume, then one epoch at
a time.
Processes and devices are in :mod:`.distributed`, the resume state (safetensors + JSON,
nothing pickled) in :mod:`.state`, the Grad-CAM loss terms in :mod:`.camloss`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fetal_viewer.core.progress import CancelToken, ProgressFn, no_progress
from fetal_viewer.core.training.augment import AugmentSpec
from fetal_viewer.core.training.camloss import cam_miss, cam_outside
from fetal_viewer.core.training.config import TrainConfig, TrainResult, check_config
from fetal_viewer.core.training.data import FrameDataset, OutlierDataset, SquareCache, collate
from fetal_viewer.core.training.distributed import (
    DistInfo,
    all_sum,
    autocast_dtype,
    dist_info,
    finish_distributed,
    init_dist,
    pick_device,
)
from fetal_viewer.core.training.folds import inner_split
from fetal_viewer.core.training.guard_fit import PathFrames
from fetal_viewer.core.training.manifest import Indices, Manifest
from fetal_viewer.core.training.state import STATE_DIR
from fetal_viewer.core.training.state import load_state as _load_state
from fetal_viewer.core.training.state import save_state as _save_state
from fetal_viewer.errors import DataError

if TYPE_CHECKING:
    import torch

    from fetal_viewer.core.model.checkpoint import LoadedModel

LogFn = Callable[[str], None]
__all__ = [  # names other modules import from here
    "STATE_DIR",
    "LogFn",
    "TrainConfig",
    "TrainResult",
    "autocast_dtype",
    "cam_miss",
    "cam_outside",
    "cap_frames",
    "class_weights",
    "dist_info",
    "finish_distributed",
    "train_model",
]


def cap_frames(records: Sequence[Any], indices: Indices, cap: int) -> np.ndarray:
    """At most ``cap`` evenly spaced rows per patient (all when ``cap`` is 0), sorted."""
    idx = np.sort(np.asarray(indices, dtype=np.int64))
    if cap <= 0:
        return idx
    groups: dict[str, list[int]] = {}
    for i in idx.tolist():
        groups.setdefault(records[i].patient_id, []).append(i)
    keep: list[int] = []
    for rows in groups.values():
        picks = np.unique(np.linspace(0, len(rows) - 1, min(cap, len(rows))).round().astype(int))
        keep.extend(rows[j] for j in picks)
    return np.sort(np.asarray(keep, dtype=np.int64))


def class_weights(targets: Sequence[int], n_classes: int) -> np.ndarray:
    """Cross-entropy weights ``N / (C * n_k)`` from class frequencies (mean weight 1 per image).

    Raises :class:`DataError` when a class has no training image: it could not be learnt.
    """
    counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=n_classes)
    if (counts == 0).any():
        raise DataError(
            "A class has no training images in this fold.",
            why=f"Images per class: {counts.tolist()}.",
            fix="Add patients of that class, or use fewer folds / another --cv mode.",
        )
    return (counts.sum() / (n_classes * counts)).astype(np.float64)


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class _Split:
    """The rows a run trains on and stops early on, and the class weights of its loss."""

    train: np.ndarray
    val: np.ndarray
    weights: np.ndarray
    n_train_patients: int
    n_val_patients: int


def _split(
    manifest: Manifest,
    indices: Indices,
    targets: np.ndarray,
    config: TrainConfig,
    say: LogFn,
    device: torch.device,
    info: DistInfo,
) -> _Split:
    records = manifest.records
    tr_idx, val_idx = inner_split(records, indices, config.val_fraction, config.seed)
    tr_idx = cap_frames(records, tr_idx, config.max_frames_per_patient)
    val_idx = cap_frames(records, val_idx, config.max_frames_per_patient)
    weights = class_weights(targets[tr_idx], len(config.classes))
    counts = np.bincount(targets[tr_idx], minlength=len(config.classes))
    say(
        "class weights (training images per class -> weight): "
        + ", ".join(
            f"{c} {n} -> {w:.3f}" for c, n, w in zip(config.classes, counts.tolist(), weights)
        )
    )
    n_tr_pat = len({records[i].patient_id for i in tr_idx})
    n_val_pat = len({records[i].patient_id for i in val_idx})
    say(
        f"training on {len(tr_idx)} images of {n_tr_pat} patients, early stopping on "
        f"{len(val_idx)} images of {n_val_pat} held-out patients; device {device}"
        + (f", {info.world_size} processes" if info.enabled else "")
    )
    return _Split(tr_idx, val_idx, weights, n_tr_pat, n_val_pat)


@dataclass
class _Loaders:
    train_ds: FrameDataset
    sampler: Any  # DistributedSampler under torchrun, else None
    generator: torch.Generator
    train: Any  # DataLoader
    val: Any  # DataLoader
    outliers: OutlierDataset | None = None
    outlier_loader: Any = None  # DataLoader, with outlier exposure


def _loaders(
    cache: SquareCache,
    split: _Split,
    targets: np.ndarray,
    config: TrainConfig,
    info: DistInfo,
    guided: bool,
    real: PathFrames | None,
) -> _Loaders:
    """The shuffled, augmented training loader (this process's shard under ``torchrun``)
    and the validation loader over this process's share of the validation rows."""
    import torch
    from torch.utils.data import DataLoader, DistributedSampler

    my_val = split.val[info.rank :: info.world_size]
    spec = config.spec
    train_ds = FrameDataset(
        cache,
        split.train,
        targets[split.train],
        spec,
        augment_spec=AugmentSpec(noise_floor=config.noise_floor) if config.augment else None,
        seed=config.seed,
        with_masks=guided,
    )
    val_ds = FrameDataset(cache, my_val, targets[my_val], spec)
    sampler: Any = (
        DistributedSampler(
            train_ds,  # type: ignore[arg-type]
            num_replicas=info.world_size,
            rank=info.rank,
            shuffle=True,
            seed=config.seed,
        )
        if info.enabled
        else None
    )
    generator = torch.Generator().manual_seed(config.seed)
    loader: Any = DataLoader(
        train_ds,  # type: ignore[arg-type]
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=config.num_workers,
        collate_fn=collate,
        drop_last=len(train_ds) > config.batch_size * info.world_size,
        generator=generator,
        persistent_workers=config.num_workers > 0,
    )
    val_loader: Any = DataLoader(
        val_ds,  # type: ignore[arg-type]
        batch_size=config.batch_size,
        shuffle=False,
        num_workers=0,
        collate_fn=collate,
    )
    loaders = _Loaders(train_ds, sampler, generator, loader, val_loader)
    if config.outlier_exposure > 0:
        # half a batch of outliers with every batch of this process's shard
        per_batch = max(1, config.batch_size // 2)
        n = per_batch * max(1, len(loader))
        seed = config.seed * 100 + info.rank
        loaders.outliers = OutlierDataset(
            cache,
            split.train,
            spec,
            n,
            seed=seed,
            real=real,
            augment_spec=train_ds.augment_spec,
        )
        loaders.outlier_loader = DataLoader(
            loaders.outliers,  # type: ignore[arg-type]
            batch_size=per_batch,
            shuffle=False,
            num_workers=config.num_workers,
        )
    return loaders


def _optimiser(model: torch.nn.Module, config: TrainConfig) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW or SGD (momentum 0.9, Nesterov) with a cosine schedule to 1% of the rate."""
    import torch

    if config.optimizer == "adamw":
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
    elif config.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=0.9,
            nesterov=True,
            weight_decay=config.weight_decay,
        )
    else:
        raise DataError(f"Unknown optimizer {config.optimizer!r}.", fix="Use adamw or sgd.")
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, config.epochs), eta_min=config.lr * 0.01
    )
    return optimizer, scheduler


@dataclass
class _Progress:
    """Where a run stands between epochs: what the resume state saves."""

    best_state: dict[str, torch.Tensor]
    start_epoch: int = 0
    best_loss: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def meta(self, epoch: int, stopped: bool, config: TrainConfig) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "best_loss": self.best_loss,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "stopped": stopped,
            "config": config.fingerprint(),
        }


def _resume(
    out: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    config: TrainConfig,
    say: LogFn,
) -> _Progress:
    """The progress saved in ``out``, or a fresh start from the model's weights."""
    progress = _Progress({k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
    loaded = _load_state(out, model, optimizer, scheduler, config.fingerprint())
    if loaded is None:
        return progress
    meta, progress.best_state = loaded
    progress.start_epoch = int(meta["epoch"]) + 1
    progress.best_loss = float(meta["best_loss"])
    progress.best_epoch = int(meta["best_epoch"])
    progress.bad_epochs = int(meta["bad_epochs"])
    progress.history = list(meta["history"])
    say(f"resuming after epoch {progress.start_epoch} of {config.epochs}")
    if meta.get("stopped"):
        progress.start_epoch = config.epochs
    return progress


@dataclass
class _Step:
    """What one training epoch needs besides its data."""

    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: Any  # torch.amp.GradScaler
    loss_fn: torch.nn.Module
    device: torch.device
    amp_dtype: torch.dtype | None
    features: list[torch.Tensor]  # layer4 outputs, when guided
    guided: bool


def _train_epoch(
    step: _Step,
    loaders: _Loaders,
    epoch: int,
    config: TrainConfig,
    tick: ProgressFn,
    cancel: CancelToken | None,
) -> tuple[list[float], float]:
    """One pass over the training loader: ([loss, correct, seen, outside, miss] sums of this
    process, seconds)."""
    import torch
    from torch.nn.functional import log_softmax

    amp = step.amp_dtype is not None
    step.net.train()
    seen = correct = 0
    loss_sum = outside_sum = miss_sum = 0.0
    loader = loaders.train
    steps = len(loader)
    outliers = iter(loaders.outlier_loader) if loaders.outlier_loader is not None else None
    t0 = time.perf_counter()
    for i, batch in enumerate(loader, start=1):
        if cancel is not None:
            cancel.raise_if_cancelled()
        x = batch[0].to(step.device, non_blocking=True, memory_format=torch.channels_last)
        y = batch[1].to(step.device, non_blocking=True)
        n = len(y)
        if outliers is not None:
            # outlier exposure (Hendrycks et al., ICLR 2019): the same pass, so that batch
            # normalisation sees both
            extra = next(outliers).to(step.device, memory_format=torch.channels_last)
            x = torch.cat([x, extra])
        step.optimizer.zero_grad(set_to_none=True)
        step.features.clear()
        with torch.autocast(step.device.type, dtype=step.amp_dtype, enabled=amp):
            out = step.net(x)
            logits = out[:n]
            loss = step.loss_fn(logits.float(), y)
            if outliers is not None:
                uniform_ce = -log_softmax(out[n:].float(), dim=1).mean(dim=1).mean()
                loss = loss + config.outlier_exposure * uniform_ce
        if step.guided:
            fc: Any = step.model.fc
            feats, fc_w = step.features[0][:n].float(), fc.weight.float()
            masks = batch[2].to(step.device)
            outside = cam_outside(feats, fc_w, y, masks)
            miss = cam_miss(feats, fc_w, y, masks)
            loss = loss + config.cam_guidance * outside + config.cam_pointing * miss
            outside_sum += float(outside.detach()) * len(y)
            miss_sum += float(miss.detach()) * len(y)
        step.scaler.scale(loss).backward()
        step.scaler.step(step.optimizer)
        step.scaler.update()
        seen += len(y)
        correct += int((logits.argmax(1) == y).sum())
        loss_sum += float(loss.detach()) * len(y)
        tick(
            i,
            steps,
            f"epoch {epoch + 1}/{config.epochs} loss {loss_sum / seen:.3f} "
            f"acc {correct / seen:.3f}",
        )
    seconds = time.perf_counter() - t0  # the training pass alone, not validation
    return [loss_sum, correct, seen, outside_sum, miss_sum], seconds


# --------------------------------------------------------------------------- loop


def train_model(
    manifest: Manifest,
    indices: Indices,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    log: LogFn = print,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
    cache: SquareCache | None = None,
) -> TrainResult:
    """Train one model on the manifest rows ``indices``; see the module docstring."""
    import torch

    from fetal_viewer.core.model.network import build_resnet34

    started = time.perf_counter()
    out = Path(out_dir)
    info = dist_info()
    device = pick_device(config.device, info)
    use_cuda = device.type == "cuda"
    init_dist(info, use_cuda)
    say: LogFn = log if info.is_main else (lambda _msg: None)
    tick: ProgressFn = progress if info.is_main else no_progress

    targets, guided = check_config(manifest, indices, config)
    # the real outlier files are listed before any frame is read, so a wrong path fails at once
    outliers = PathFrames(config.outliers) if config.outliers else None
    if outliers is not None and outliers.problems:
        say(f"--outliers: {len(outliers.problems)} file(s) could not be read and are left out")
    start = _start_from(config, say)
    split = _split(manifest, indices, targets, config, say, device, info)

    torch.manual_seed(config.seed)
    np.random.seed(config.seed % (2**32))
    cache = cache or SquareCache(manifest.records, config.input_size, masks=guided)
    if cache.size != config.input_size or (guided and not cache.masks):
        raise ValueError("the cache's input size or masks differ from the configuration")
    my_val = split.val[info.rank :: info.world_size]
    cache.preload(np.concatenate([split.train, my_val]), tick, cancel)
    loaders = _loaders(cache, split, targets, config, info, guided, outliers)

    # channels-last activations: 1.35x faster ResNet34 steps on the CPU (oneDNN's native
    # layout) and what tensor cores want on CUDA; saved weights are made contiguous again
    model = build_resnet34(len(config.classes), pretrained=config.pretrained)
    source: dict[str, str] = {}
    if start is not None:
        model.load_state_dict(start.model.state_dict())
        source = {"name": start.card.name, "weights_sha256": start.card.weights_sha256}
        del start
    model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer, scheduler = _optimiser(model, config)
    if resume:
        run = _resume(out, model, optimizer, scheduler, config, say)
    else:
        run = _Progress({k: v.detach().cpu().clone() for k, v in model.state_dict().items()})

    net: torch.nn.Module = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if use_cuda else None)
    amp_dtype = autocast_dtype(device) if config.amp else None
    amp = amp_dtype is not None
    scaler = torch.amp.GradScaler("cuda", enabled=amp and use_cuda)
    if amp:
        say(f"mixed precision: {str(amp_dtype).removeprefix('torch.')} autocast on {device.type}")
    loss_fn = torch.nn.CrossEntropyLoss(
        weight=torch.as_tensor(split.weights, dtype=torch.float32, device=device)
    )
    features: list[torch.Tensor] = []
    if guided:
        say(
            f"Grad-CAM guidance: weight {config.cam_guidance:g} on the heat outside the masks, "
            f"{config.cam_pointing:g} on the map's peak missing them"
        )
        model.layer4.register_forward_hook(lambda _m, _i, out: features.append(out))  # type: ignore[union-attr]
    step = _Step(net, model, optimizer, scaler, loss_fn, device, amp_dtype, features, guided)
    if loaders.outliers is not None:
        real = loaders.outliers.real
        kind = "synthetic non-head" if real is None else f"real outlier (of {len(real)})"
        say(
            f"outlier exposure: weight {config.outlier_exposure:g} on the cross-entropy to "
            f"uniform of {loaders.outlier_loader.batch_size} {kind} frames a batch"
        )

    for epoch in range(run.start_epoch, config.epochs):
        torch.manual_seed(config.seed * 1000 + epoch)
        loaders.train_ds.set_epoch(epoch)
        if loaders.sampler is not None:
            loaders.sampler.set_epoch(epoch)
        loaders.generator.manual_seed(config.seed * 1000 + epoch)
        if loaders.outliers is not None:
            loaders.outliers.set_epoch(epoch)
        sums, train_seconds = _train_epoch(step, loaders, epoch, config, tick, cancel)
        scheduler.step()
        train_loss, train_acc, train_n, outside_total, miss_total = all_sum(sums, info, device)
        val = _validate(net, loaders.val, loss_fn, device, amp_dtype, info)
        row = {
            "epoch": float(epoch + 1),
            "lr": float(optimizer.param_groups[0]["lr"]),
            "train_loss": train_loss / max(train_n, 1),
            "train_acc": train_acc / max(train_n, 1),
            "images": train_n,
            "images_per_s": train_n / max(train_seconds, 1e-9),
            **val,
        }
        if guided:
            row["train_cam_outside"] = outside_total / max(train_n, 1)
            row["train_cam_miss"] = miss_total / max(train_n, 1)
        run.history.append(row)
        monitored = val.get("val_loss", row["train_loss"])
        if monitored < run.best_loss - 1e-4:
            run.best_loss = monitored
            run.best_epoch = epoch + 1
            run.bad_epochs = 0
            run.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            run.bad_epochs += 1
        stop = run.bad_epochs >= config.patience
        say(
            f"epoch {epoch + 1}/{config.epochs}: train loss {row['train_loss']:.4f} acc "
            f"{row['train_acc']:.3f}"
            + (
                f" heat outside masks {row['train_cam_outside']:.3f}"
                f" peak missing {row['train_cam_miss']:.3f}"
                if guided
                else ""
            )
            + (f" | val loss {val['val_loss']:.4f} acc {val['val_acc']:.3f}" if val else "")
            + f" | {row['images_per_s']:.1f} img/s"
            + (" | early stop" if stop else "")
        )
        if info.is_main:
            meta = run.meta(epoch, stop, config)
            _save_state(out, model, run.best_state, optimizer, scheduler, meta)
        if stop:
            break

    model.load_state_dict(run.best_state)
    model.to("cpu", memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    model.eval()
    best_row = next((h for h in run.history if int(h["epoch"]) == run.best_epoch), {})
    return TrainResult(
        model=model,
        class_weights={c: float(w) for c, w in zip(config.classes, split.weights)},
        history=run.history,
        best_epoch=run.best_epoch,
        best_val={k: v for k, v in best_row.items() if k.startswith("val_")},
        n_train_images=len(split.train),
        n_val_images=len(split.val),
        n_train_patients=split.n_train_patients,
        n_val_patients=split.n_val_patients,
        seconds=time.perf_counter() - started,
        rank=info.rank,
        extra={"initialised_from": source} if source else {},
    )


def _start_from(config: TrainConfig, say: LogFn) -> LoadedModel | None:
    """The verified checkpoint ``config.init`` names, checked against the run (or None)."""
    if not config.init:
        return None
    from fetal_viewer.core.model.checkpoint import load_checkpoint

    if config.pretrained:
        raise DataError(
            "Start from ImageNet weights or from a checkpoint, not both.",
            fix="Drop --pretrained or --init.",
        )
    loaded = load_checkpoint(config.init)
    card = loaded.card
    if tuple(card.classes) != tuple(config.classes):
        raise DataError(
            f"The checkpoint to start from has classes {list(card.classes)}, this run "
            f"{list(config.classes)}.",
            fix="Start from a model of the same task (--task), or train from scratch.",
        )
    size = "" if card.input_size == config.input_size else f", trained at {card.input_size} px"
    say(f"starting from {card.name} (weights sha256 {card.weights_sha256[:12]}...{size})")
    return loaded


def _validate(
    net: torch.nn.Module,
    loader: Any,
    loss_fn: torch.nn.Module,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    info: DistInfo,
) -> dict[str, float]:
    import torch

    net.eval()
    loss_sum = 0.0
    correct = seen = 0.0
    with torch.no_grad():
        for x, y in loader:
            x = x.to(device, memory_format=torch.channels_last)
            y = y.to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = net(x).float()
            loss_sum += float(loss_fn(logits, y)) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
    loss_sum, correct, seen = all_sum([loss_sum, float(correct), float(seen)], info, device)
    if seen == 0:  # no validation split: no figures (JSON has no NaN)
        return {}
    return {"val_loss": loss_sum / seen, "val_acc": correct / seen}
