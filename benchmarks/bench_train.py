"""Training throughput with data loading on and off, measured in the same run.

Baseline: training steps on batches already in memory as tensors (no data loading at all).
Against it: the training pipeline's own loader (``FrameDataset`` + ``DataLoader``: cached
FOV-cropped squares, ultrasound augmentation, normalisation) feeding the same steps. The
loader is not the bottleneck when ``loader_over_preloaded`` is close to 1 and the loader
alone delivers many times the images per second that training consumes. The cold path
(reading PNG + FOV crop + resize per image, the first epoch) is measured on its own.

The training's own step (channels-last tensors; bfloat16 autocast only on CPUs with native
bfloat16 instructions, float16 on CUDA, else float32) is also measured against the choices
it did not make, on the same preloaded batches: the default contiguous (NCHW) layout, and
the other precision (bfloat16 where training runs float32 on the CPU, float32 where it runs
mixed precision).

Phantom frames at their native size, ResNet34, CPU unless CUDA is present. Steps are
interleaved (A, B, A, B...) so machine load hits both alike. Last line: one JSON object.

    .venv/bin/python benchmarks/bench_train.py [--input-size 128] [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from fetal_viewer.core.model.labels import CLASSES
from fetal_viewer.core.model.network import build_resnet34
from fetal_viewer.core.model.preprocess import PreprocessSpec
from fetal_viewer.core.phantoms import generate_dataset
from fetal_viewer.core.training.augment import AugmentSpec
from fetal_viewer.core.training.data import FrameDataset, SquareCache, collate
from fetal_viewer.core.training.manifest import read_manifest
from fetal_viewer.core.training.train import autocast_dtype


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=6, help="timed steps per mode")
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    amp_dtype = autocast_dtype(device)
    size, bs = args.input_size, args.batch_size

    with tempfile.TemporaryDirectory() as tmp:
        manifest_path = generate_dataset(Path(tmp), patients_per_class=1, centers=2, seed=11)
        manifest = read_manifest(manifest_path, CLASSES)
        n = len(manifest)
        targets = [CLASSES.index(r.label) for r in manifest.records]
        spec = PreprocessSpec(input_size=size)

        t = time.perf_counter()
        cache = SquareCache(manifest.records, size)
        cache.preload(range(n))
        cold_img_s = n / (time.perf_counter() - t)  # read + FOV crop + resize, per image

        ds = FrameDataset(cache, range(n), targets, spec, augment_spec=AugmentSpec(), seed=0)
        loader = DataLoader(
            ds,  # type: ignore[arg-type]
            batch_size=bs,
            shuffle=True,
            collate_fn=collate,
            num_workers=args.workers,
            drop_last=True,
            persistent_workers=args.workers > 0,
        )

        def batches():  # endless stream from the real loader, new augmentation each pass
            epoch = 0
            while True:
                ds.set_epoch(epoch)
                yield from loader
                epoch += 1

        stream = batches()
        t = time.perf_counter()
        for _ in range(args.steps):
            next(stream)
        loader_only_img_s = args.steps * bs / (time.perf_counter() - t)

        preloaded = [next(stream) for _ in range(2)]
        channels_last = torch.channels_last  # the layout train_model uses
        preloaded = [(x.to(device), y.to(device)) for x, y in preloaded]
        other_dtype = (
            torch.bfloat16 if amp_dtype is None and device.type == "cpu" else None
        )  # the precision training did not pick (None: float32)

        loss_fn = torch.nn.CrossEntropyLoss()
        trainers = {}  # one model and optimizer per layout
        for layout in (channels_last, torch.contiguous_format):
            net = build_resnet34(len(CLASSES)).to(device, memory_format=layout).train()
            trainers[layout] = (net, torch.optim.AdamW(net.parameters(), lr=1e-3))

        def step(
            x: torch.Tensor,
            y: torch.Tensor,
            dtype: torch.dtype | None = amp_dtype,
            layout: torch.memory_format = channels_last,
        ) -> None:
            model, opt = trainers[layout]
            opt.zero_grad(set_to_none=True)
            x = x.to(device, non_blocking=True, memory_format=layout)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = loss_fn(model(x).float(), y.to(device, non_blocking=True))
            loss.backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()

        def nchw(x: torch.Tensor, y: torch.Tensor) -> None:
            step(x, y, layout=torch.contiguous_format)

        def timed(fn: Callable[..., None], *a: object) -> float:
            t = time.perf_counter()
            fn(*a)
            return time.perf_counter() - t

        for x, y in preloaded:  # warm-up of every path
            step(x, y)
            step(x, y, dtype=other_dtype)
            nchw(x, y)
        t_pre: list[float] = []
        t_load: list[float] = []
        t_other: list[float] = []
        t_nchw: list[float] = []
        for i in range(args.steps):
            x, y = preloaded[i % 2]
            t_other.append(timed(step, x, y, other_dtype))
            t_pre.append(timed(step, x, y))
            t_nchw.append(timed(nchw, x, y))
            x, y = next(stream)
            t_load.append(timed(step, x, y))

    pre = bs / float(np.median(t_pre))
    load = bs / float(np.median(t_load))
    other = bs / float(np.median(t_other))
    contiguous = bs / float(np.median(t_nchw))

    def name(dtype: torch.dtype | None) -> str:
        return str(dtype).removeprefix("torch.") if dtype is not None else "float32"

    precision, other_precision = name(amp_dtype), name(other_dtype)
    figures = {
        "device": device.type,
        "input_size": size,
        "batch_size": bs,
        "threads": torch.get_num_threads(),
        "train_img_s_preloaded": round(pre, 2),
        "train_img_s_with_loader": round(load, 2),
        "loader_over_preloaded": round(load / pre, 3),
        "precision": precision,
        "other_precision": other_precision,
        "train_img_s_other_precision": round(other, 2),
        "training_over_other_precision": round(pre / other, 3),
        "train_img_s_contiguous": round(contiguous, 2),
        "channels_last_over_contiguous": round(pre / contiguous, 3),
        "loader_only_img_s": round(loader_only_img_s, 1),
        "loader_only_over_training": round(loader_only_img_s / pre, 1),
        "cold_read_img_s": round(cold_img_s, 1),
        "images": n,
    }
    print(
        f"training ({precision}, channels-last) {pre:.1f} img/s on preloaded tensors, "
        f"{load:.1f} img/s with the loader (ratio {load / pre:.3f}); the loader alone delivers "
        f"{loader_only_img_s:.0f} img/s ({loader_only_img_s / pre:.0f}x what training "
        f"consumes); cold read+crop {cold_img_s:.0f} img/s; {other_precision} steps "
        f"{other:.1f} img/s ({pre / other:.2f}x); contiguous layout {contiguous:.1f} img/s "
        f"(channels-last {pre / contiguous:.2f}x)"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
