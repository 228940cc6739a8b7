"""The training loop: class-weighted cross-entropy, augmentation, cosine schedule, early
stopping on a patient-grouped inner validation split, resume, and DDP under ``torchrun``.

One call trains one model on some rows of a manifest. Everything random is seeded from
``TrainConfig.seed`` and the epoch number, so a run that is resumed after an interruption
continues exactly as if it had not stopped. Under ``torchrun`` (``WORLD_SIZE > 1``) each
process trains on its shard of every epoch (``DistributedSampler``), gradients are averaged
by ``DistributedDataParallel`` (NCCL on CUDA, gloo on the CPU) and only rank 0 writes files.

The resume state is a safetensors file (model, best model and optimiser tensors) plus a JSON
file (epoch, schedule, history); nothing is pickled.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fetal_viewer.core.model.labels import CLASSES
from fetal_viewer.core.model.preprocess import PreprocessSpec
from fetal_viewer.core.progress import CancelToken, ProgressFn, no_progress
from fetal_viewer.core.training.augment import AugmentSpec
from fetal_viewer.core.training.data import FrameDataset, SquareCache, collate
from fetal_viewer.core.training.folds import inner_split
from fetal_viewer.core.training.manifest import Indices, Manifest
from fetal_viewer.errors import DataError

if TYPE_CHECKING:
    import torch

    from fetal_viewer.core.model.checkpoint import LoadedModel

LogFn = Callable[[str], None]
STATE_DIR = "state"
_STATE_TENSORS = "last.safetensors"
_STATE_JSON = "last.json"


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


# --------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    """Rank and world size as ``torchrun`` sets them (a single process otherwise)."""
    return DistInfo(
        rank=int(os.environ.get("RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def _init_dist(info: DistInfo, use_cuda: bool) -> None:
    import torch.distributed as dist

    if info.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")


def _all_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    if not info.enabled:
        return values
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [float(v) for v in t.cpu()]


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision type for ``device``: float16 on CUDA, bfloat16 on a CPU with
    native bfloat16 instructions (AVX512-BF16 or AMX; 1.6-1.8x faster ResNet34 steps there),
    and ``None`` (full precision) elsewhere: oneDNN runs bfloat16 on any AVX-512 CPU, but
    emulated, at half the speed of float32 (Ice Lake Xeon, ``benchmarks/bench_train.py``)."""
    import torch

    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and any(
        getattr(torch.cpu, probe, lambda: False)()
        for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    ):
        return torch.bfloat16
    return None


def _pick_device(name: str, info: DistInfo) -> torch.device:
    import torch

    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise DataError(
                "CUDA was requested but no CUDA device is available.", fix="--device cpu"
            )
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


# --------------------------------------------------------------------------- state


def _state_paths(out_dir: Path) -> tuple[Path, Path]:
    return out_dir / STATE_DIR / _STATE_TENSORS, out_dir / STATE_DIR / _STATE_JSON


def _save_state(
    out_dir: Path,
    model: torch.nn.Module,
    best_state: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    meta: dict[str, Any],
) -> None:
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous()
    for k, v in best_state.items():
        tensors[f"best.{k}"] = v.contiguous()
    opt = optimizer.state_dict()
    opt_scalars: dict[str, dict[str, Any]] = {}
    for pid, slots in opt["state"].items():
        for name, value in slots.items():
            if hasattr(value, "detach"):
                tensors[f"optim.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                opt_scalars.setdefault(str(pid), {})[name] = value
    tensor_path, json_path = _state_paths(out_dir)
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tensor_path.with_suffix(".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(tensor_path)
    payload = dict(meta)
    payload["optimizer_param_groups"] = opt["param_groups"]
    payload["optimizer_scalars"] = opt_scalars
    payload["scheduler"] = scheduler.state_dict()
    tmpj = json_path.with_suffix(".tmp")
    tmpj.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    tmpj.replace(json_path)


def _load_state(
    out_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    fingerprint: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    from safetensors.torch import load_file

    tensor_path, json_path = _state_paths(out_dir)
    if not (tensor_path.is_file() and json_path.is_file()):
        return None
    meta = json.loads(json_path.read_text(encoding="utf-8"))
    if meta.get("config") != fingerprint:
        raise DataError(
            "Cannot resume: the saved run used other training settings.",
            why=f"saved {meta.get('config')}, now {fingerprint}",
            fix="Resume with the same options, or train into a new --out folder.",
            path=json_path,
        )
    tensors = load_file(str(tensor_path), device="cpu")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
    state: dict[Any, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, scalars in meta.get("optimizer_scalars", {}).items():
        state.setdefault(int(pid), {}).update(scalars)
    groups = meta["optimizer_param_groups"]
    for group in groups:  # JSON turned tuples into lists
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    scheduler.load_state_dict(meta["scheduler"])
    return meta, best


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
    from torch.utils.data import DataLoader, DistributedSampler

    from fetal_viewer.core.model.network import build_resnet34

    started = time.perf_counter()
    out = Path(out_dir)
    info = dist_info()
    device = _pick_device(config.device, info)
    use_cuda = device.type == "cuda"
    _init_dist(info, use_cuda)
    say: LogFn = log if info.is_main else (lambda _msg: None)
    tick: ProgressFn = progress if info.is_main else no_progress

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
    if not 0.0 <= config.noise_floor <= 1.0:
        raise DataError(
            f"The noise floor is a grey level from 0 to 1, not {config.noise_floor:g}.",
            fix="Pass --noise-floor between 0 (off) and 1; the demo model's recipe uses 0.7.",
        )
    start = _start_from(config, say)
    tr_idx, val_idx = inner_split(records, indices, config.val_fraction, config.seed)
    tr_idx = cap_frames(records, tr_idx, config.max_frames_per_patient)
    val_idx = cap_frames(records, val_idx, config.max_frames_per_patient)
    weights = class_weights(targets[tr_idx], len(config.classes))
    named_weights = {c: float(w) for c, w in zip(config.classes, weights)}
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

    torch.manual_seed(config.seed)
    np.random.seed(config.seed % (2**32))
    cache = cache or SquareCache(records, config.input_size, masks=guided)
    if cache.size != config.input_size or (guided and not cache.masks):
        raise ValueError("the cache's input size or masks differ from the configuration")
    my_val = val_idx[info.rank :: info.world_size]
    cache.preload(np.concatenate([tr_idx, my_val]), tick, cancel)

    spec = config.spec
    train_ds = FrameDataset(
        cache,
        tr_idx,
        targets[tr_idx],
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

    # channels-last activations: 1.35x faster ResNet34 steps on the CPU (oneDNN's native
    # layout) and what tensor cores want on CUDA; saved weights are made contiguous again
    model = build_resnet34(len(config.classes), pretrained=config.pretrained)
    source: dict[str, str] = {}
    if start is not None:
        model.load_state_dict(start.model.state_dict())
        source = {"name": start.card.name, "weights_sha256": start.card.weights_sha256}
        del start
    model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
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

    start_epoch = 0
    best_loss = math.inf
    best_epoch = -1
    bad_epochs = 0
    history: list[dict[str, float]] = []
    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if resume:
        loaded = _load_state(out, model, optimizer, scheduler, config.fingerprint())
        if loaded is not None:
            meta, best_state = loaded
            start_epoch = int(meta["epoch"]) + 1
            best_loss = float(meta["best_loss"])
            best_epoch = int(meta["best_epoch"])
            bad_epochs = int(meta["bad_epochs"])
            history = list(meta["history"])
            say(f"resuming after epoch {start_epoch} of {config.epochs}")
            if meta.get("stopped"):
                start_epoch = config.epochs

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
        weight=torch.as_tensor(weights, dtype=torch.float32, device=device)
    )
    features: list[torch.Tensor] = []
    if guided:
        say(
            f"Grad-CAM guidance: weight {config.cam_guidance:g} on the heat outside the masks, "
            f"{config.cam_pointing:g} on the map's peak missing them"
        )
        model.layer4.register_forward_hook(lambda _m, _i, out: features.append(out))  # type: ignore[union-attr]

    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(config.seed * 1000 + epoch)
        train_ds.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        generator.manual_seed(config.seed * 1000 + epoch)
        net.train()
        seen = correct = 0
        loss_sum = outside_sum = miss_sum = 0.0
        steps = len(loader)
        t0 = time.perf_counter()
        for step, batch in enumerate(loader, start=1):
            if cancel is not None:
                cancel.raise_if_cancelled()
            x = batch[0].to(device, non_blocking=True, memory_format=torch.channels_last)
            y = batch[1].to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            features.clear()
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                logits = net(x)
                loss = loss_fn(logits.float(), y)
            if guided:
                fc: Any = model.fc
                feats, fc_w, masks = features[0].float(), fc.weight.float(), batch[2].to(device)
                outside = cam_outside(feats, fc_w, y, masks)
                miss = cam_miss(feats, fc_w, y, masks)
                loss = loss + config.cam_guidance * outside + config.cam_pointing * miss
                outside_sum += float(outside.detach()) * len(y)
                miss_sum += float(miss.detach()) * len(y)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            seen += len(y)
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += float(loss.detach()) * len(y)
            tick(
                step,
                steps,
                f"epoch {epoch + 1}/{config.epochs} loss {loss_sum / seen:.3f} "
                f"acc {correct / seen:.3f}",
            )
        train_seconds = time.perf_counter() - t0  # the training pass alone, not validation
        scheduler.step()
        train_loss, train_acc, train_n, outside_total, miss_total = _all_sum(
            [loss_sum, correct, seen, outside_sum, miss_sum], info, device
        )
        val = _validate(net, val_loader, loss_fn, device, amp_dtype, info)
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
        history.append(row)
        monitored = val["val_loss"] if not math.isnan(val["val_loss"]) else row["train_loss"]
        if monitored < best_loss - 1e-4:
            best_loss = monitored
            best_epoch = epoch + 1
            bad_epochs = 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        stop = bad_epochs >= config.patience
        say(
            f"epoch {epoch + 1}/{config.epochs}: train loss {row['train_loss']:.4f} acc "
            f"{row['train_acc']:.3f}"
            + (
                f" heat outside masks {row['train_cam_outside']:.3f}"
                f" peak missing {row['train_cam_miss']:.3f}"
                if guided
                else ""
            )
            + f" | val loss {val['val_loss']:.4f} acc {val['val_acc']:.3f} "
            f"| {row['images_per_s']:.1f} img/s" + (" | early stop" if stop else "")
        )
        if info.is_main:
            _save_state(
                out,
                model,
                best_state,
                optimizer,
                scheduler,
                {
                    "epoch": epoch,
                    "best_loss": best_loss,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs,
                    "history": history,
                    "stopped": stop,
                    "config": config.fingerprint(),
                },
            )
        if stop:
            break

    model.load_state_dict(best_state)
    model.to("cpu", memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    model.eval()
    best_row = next((h for h in history if int(h["epoch"]) == best_epoch), {})
    return TrainResult(
        model=model,
        class_weights=named_weights,
        history=history,
        best_epoch=best_epoch,
        best_val={k: v for k, v in best_row.items() if k.startswith("val_")},
        n_train_images=len(tr_idx),
        n_val_images=len(val_idx),
        n_train_patients=n_tr_pat,
        n_val_patients=n_val_pat,
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


def cam_outside(
    features: torch.Tensor, fc_weight: torch.Tensor, y: torch.Tensor, masks: torch.Tensor
) -> torch.Tensor:
    """Share of the true class's Grad-CAM heat that falls outside the lesion mask, averaged
    over the samples whose mask is not empty (0 when none is).

    ``features`` is the ``layer4`` output (B, K, h, w) and ``fc_weight`` the final layer's
    (C, K): for this network Grad-CAM is ``relu(sum_k w_ck A_k)`` up to a positive factor
    (the viewer's analytic Grad-CAM), so the term is cheap and differentiable. The heat is
    taken through softplus instead of ReLU: with ReLU a map pushed below zero everywhere has
    no heat outside the mask, a perfect score, and a fine-tune at weight 2 learned to erase
    the maps of hard frames (half of center D's encephaloceles) instead of moving them. With
    softplus a map below zero still weighs its cells (as a softmax would), and where the map
    is well above zero (tens, in trained models) softplus and ReLU agree. ``masks``
    (B, S, S) in [0, 1] are pooled to the (h, w) grid with the weights that draw each cell
    onto the input (:func:`~fetal_viewer.core.cam.gradcam.cell_weights`), so "inside" means
    inside where the viewer shows the heat.
    """
    import torch

    from fetal_viewer.core.cam.gradcam import cell_weights

    raw = torch.einsum("bkhw,bk->bhw", features, fc_weight[y]).float()
    # log softplus, exactly enough and without log(0): softplus(c) = e^c (1 + O(e^c)) below -15
    log_heat = torch.where(
        raw < -15.0, raw, torch.log(torch.nn.functional.softplus(raw.clamp(min=-15.0)))
    )
    h, w = (int(n) for n in features.shape[-2:])
    wy = torch.from_numpy(cell_weights(int(masks.shape[-2]), h)).to(masks)
    wx = torch.from_numpy(cell_weights(int(masks.shape[-1]), w)).to(masks)
    inside = torch.einsum("bst,sj,tk->bjk", masks, wy, wx) / torch.outer(wy.sum(0), wx.sum(0))
    has = masks.flatten(1).amax(1) > 0
    if not bool(has.any()):
        return raw.sum() * 0.0
    # each cell's share of the heat: a softmax of the log heat (no constant in a denominator
    # that a map of tiny heat could hide behind)
    weight = torch.softmax(log_heat.flatten(1), dim=1)
    share = (weight * (1.0 - inside).flatten(1)).sum(1)
    return share[has].mean()


def cam_miss(
    features: torch.Tensor, fc_weight: torch.Tensor, y: torch.Tensor, masks: torch.Tensor
) -> torch.Tensor:
    """A smooth pointing-game miss: how far the peak of the true class's Grad-CAM lies below
    the higher of the map's peak outside the lesion and zero, in units of the map's spread
    (``softplus`` of that gap over the cells' standard deviation, which is not trained),
    averaged over the samples whose lesion holds a cell centre (0 when none does).

    The viewer draws a map linearly between the cells' centres, so its maximum lies on the
    centre of its highest cell and the pointing game is won when that centre is inside the
    mask and the map is not empty (:func:`~fetal_viewer.core.cam.gradcam.is_empty`): the
    term compares the raw map (as in :func:`cam_outside`) at the centres inside the mask with
    those outside, and with zero, so an erased map misses as it does in ``evaluate``. A lesion
    between centres cannot be hit at this resolution and does not count.
    """
    import torch

    from fetal_viewer.core.cam.gradcam import cell_weights

    raw = torch.einsum("bkhw,bk->bhw", features, fc_weight[y]).float()
    h, w = (int(n) for n in features.shape[-2:])
    cy = torch.from_numpy(cell_weights(int(masks.shape[-2]), h).argmax(0)).to(masks.device)
    cx = torch.from_numpy(cell_weights(int(masks.shape[-1]), w).argmax(0)).to(masks.device)
    inside = masks[:, cy][:, :, cx] > 0.5  # (B, h, w): the mask at each cell's centre
    has = inside.flatten(1).any(1)
    if not bool(has.any()):
        return raw.sum() * 0.0
    low = torch.finfo(raw.dtype).min
    peak_in = raw.masked_fill(~inside, low).flatten(1).amax(1)
    peak_out = raw.masked_fill(inside, low).flatten(1).amax(1).clamp(min=0.0)
    spread = raw.detach().flatten(1).std(1).clamp(min=1e-3)
    gap = torch.nn.functional.softplus((peak_out - peak_in) / spread)
    return gap[has].mean()


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
    loss_sum, correct, seen = _all_sum([loss_sum, float(correct), float(seen)], info, device)
    if seen == 0:
        return {"val_loss": float("nan"), "val_acc": float("nan")}
    return {"val_loss": loss_sum / seen, "val_acc": correct / seen}


def finish_distributed() -> None:
    """Tear the process group down (call once at the end of a ``torchrun`` process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
