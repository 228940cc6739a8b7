"""The resume state of a training run: a safetensors file (model, best model and optimiser
tensors) plus a JSON file (epoch, schedule, history, the settings); nothing is pickled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fetal_viewer.errors import DataError

if TYPE_CHECKING:
    import torch

STATE_DIR = "state"
_STATE_TENSORS = "last.safetensors"
_STATE_JSON = "last.json"


def state_paths(out_dir: Path) -> tuple[Path, Path]:
    return out_dir / STATE_DIR / _STATE_TENSORS, out_dir / STATE_DIR / _STATE_JSON


def save_state(
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
    tensor_path, json_path = state_paths(out_dir)
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(meta)
    payload["optimizer_param_groups"] = opt["param_groups"]
    payload["optimizer_scalars"] = opt_scalars
    payload["scheduler"] = scheduler.state_dict()
    tmp = tensor_path.with_name(tensor_path.name + ".tmp")
    tmpj = json_path.with_name(json_path.name + ".tmp")
    try:
        save_file(tensors, str(tmp))
        tmpj.write_text(json.dumps(payload, indent=1), encoding="utf-8")
        tmp.replace(tensor_path)
        tmpj.replace(json_path)
    except BaseException:  # interrupted (Ctrl+C) or failed: no half-written file is left
        tmp.unlink(missing_ok=True)
        tmpj.unlink(missing_ok=True)
        raise


def load_state(
    out_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    fingerprint: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
    from safetensors.torch import load_file

    tensor_path, json_path = state_paths(out_dir)
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
