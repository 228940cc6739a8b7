"""Processes and devices for training: ranks under ``torchrun`` (``WORLD_SIZE > 1``; NCCL
on CUDA, gloo on the CPU), sums across ranks, the device and its mixed-precision type."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fetal_viewer.errors import DataError

if TYPE_CHECKING:
    import torch


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


def init_dist(info: DistInfo, use_cuda: bool) -> None:
    import torch.distributed as dist

    if info.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")


def all_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
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


def pick_device(name: str, info: DistInfo) -> torch.device:
    import torch

    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise DataError(
                "CUDA was requested but no CUDA device is available.", fix="--device cpu"
            )
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def finish_distributed() -> None:
    """Tear the process group down (call once at the end of a ``torchrun`` process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
