"""Training throughput with data loading on and off, measured in the same run.

Baseline: training steps on batches already in memory as tensors (no data loading at all).
Against it: the training pipeline's own loader (``FrameDataset`` + ``DataLoader``: cached
FOV-cropped squares, ultrasound augmentation, normalisation) feeding the same steps. The
loader is not the bottleneck when ``loader_over_preloaded`` is close to 1 and the loader
alone delivers many times the images per second that training consumes. The cold path
(reading PNG + FOV crop + resize per image, the first epoch) is measured on its own. The
training's mixed precision (bfloat16 autocast on CPUs with native support, float16 on CUDA)
is measured against full-precision steps on the same preloaded batches.

Phantom frames at their native size, ResNet34, CPU unless CUDA is present. Steps are
interleaved (A, B, A, B...) so machine load hits both alike. Last line: one JSON object.

    .venv/bin/python benchmarks/bench_train.py [--input-size 128] [--steps 6]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
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
        preloaded = [(x.to(device), y.to(device)) for x, y in preloaded]

        model = build_resnet34(len(CLASSES)).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step(x: torch.Tensor, y: torch.Tensor, amp: bool = True) -> None:
            opt.zero_grad(set_to_none=True)
            enabled = amp and amp_dtype is not None
            with torch.autocast(device.type, dtype=amp_dtype, enabled=enabled):
                loss = loss_fn(model(x).float(), y)
            loss.backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()

        for x, y in preloaded:  # warm-up
            step(x, y)
            step(x, y, amp=False)
        t_pre: list[float] = []
        t_load: list[float] = []
        t_fp32: list[float] = []
        for i in range(args.steps):
            t = time.perf_counter()
            x, y = preloaded[i % 2]
            step(x, y, amp=False)
            t_fp32.append(time.perf_counter() - t)
            t = time.perf_counter()
            x, y = preloaded[i % 2]
            step(x, y)
            t_pre.append(time.perf_counter() - t)
            t = time.perf_counter()
            x, y = next(stream)
            step(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
            t_load.append(time.perf_counter() - t)

    pre = bs / float(np.median(t_pre))
    load = bs / float(np.median(t_load))
    fp32 = bs / float(np.median(t_fp32))
    precision = str(amp_dtype).removeprefix("torch.") if amp_dtype is not None else "float32"
    figures = {
        "device": device.type,
        "input_size": size,
        "batch_size": bs,
        "threads": torch.get_num_threads(),
        "train_img_s_preloaded": round(pre, 2),
        "train_img_s_with_loader": round(load, 2),
        "loader_over_preloaded": round(load / pre, 3),
        "precision": precision,
        "train_img_s_float32": round(fp32, 2),
        "mixed_over_float32": round(pre / fp32, 3),
        "loader_only_img_s": round(loader_only_img_s, 1),
        "loader_only_over_training": round(loader_only_img_s / pre, 1),
        "cold_read_img_s": round(cold_img_s, 1),
        "images": n,
    }
    print(
        f"training {pre:.1f} img/s on preloaded tensors, {load:.1f} img/s with the loader "
        f"(ratio {load / pre:.3f}); the loader alone delivers {loader_only_img_s:.0f} img/s "
        f"({loader_only_img_s / pre:.0f}x what training consumes); cold read+crop "
        f"{cold_img_s:.0f} img/s; {precision} steps are {pre / fp32:.2f}x full precision "
        f"({fp32:.1f} img/s)"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
