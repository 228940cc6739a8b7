"""Pointing game of CAM methods read at different ResNet blocks, for one model and one center.

The product reads Grad-CAM at ``layer4`` (the paper's choice; a 4x4 grid at 128 px). This
script measures whether reading it one block earlier (``layer3``: 8x8 cells at 128 px), or
with another pytorch-grad-cam method, puts the map's maximum on the lesion more often: it
samples masked frames of one center (the same number per class, fixed seed), computes each
method's map of the true class through pytorch-grad-cam, samples the library's upsampled map
back at the block's cells and places each cell on its receptive field's centre as the product
does (``fetal_viewer.core.cam.gradcam.to_input_size``; cell ``j`` of ``layer3`` is centred on
input pixel ``16 j``), then maps it onto the frame. Each block's pointing-game ceiling (the
share of masks that hold any cell's peak, ``evaluate.pointing_reachable``) is printed beside it.

.venv/bin/python experiments/cam_layers.py --model resources/models/demo/card.json \\
    --manifest out/demo-phantoms/manifest.csv --center D --per-class 100
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np
import pytorch_grad_cam as pgc
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from fetal_viewer.core.cam.gradcam import STRIDE, grid_side, to_input_size
from fetal_viewer.core.model.checkpoint import load_checkpoint
from fetal_viewer.core.model.preprocess import Preprocessed, PreprocessSpec, preprocess
from fetal_viewer.core.training.data import read_frame_mask, read_record_frame
from fetal_viewer.core.training.evaluate import pointing_reachable
from fetal_viewer.core.training.manifest import Record, read_manifest
from fetal_viewer.core.training.metrics import energy_inside, pointing_game

#: block -> its stride relative to layer4's
BLOCK_SCALE = {"layer4": 1, "layer3": 2, "layer2": 4}
#: name -> (pytorch-grad-cam class, the ResNet block whose last unit is the target layer)
METHODS = {
    "Grad-CAM layer4 (the product's)": (pgc.GradCAM, "layer4"),
    "Grad-CAM layer3": (pgc.GradCAM, "layer3"),
    "Grad-CAM++ layer3": (pgc.GradCAMPlusPlus, "layer3"),
    "HiResCAM layer3": (pgc.HiResCAM, "layer3"),
    "LayerCAM layer3": (pgc.LayerCAM, "layer3"),
    "LayerCAM layer2": (pgc.LayerCAM, "layer2"),
}


def sample_arguments(doc: str | None) -> argparse.ArgumentParser:
    """The options :func:`masked_sample` reads, plus the model card; ``doc``'s first line
    describes the script."""
    ap = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    ap.add_argument("--model", required=True, help="model card (JSON)")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--center", required=True)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    return ap


def masked_sample(
    args: argparse.Namespace, classes: list[str], spec: PreprocessSpec
) -> tuple[list[Record], list[Preprocessed], list[np.ndarray]]:
    """``args.per_class`` frames of each class at ``args.center`` whose mask is not empty
    (as ``evaluate``: an empty mask is no case), drawn with ``args.seed``; their
    preprocessing and masks. ``experiments/cam_targets.py`` draws the same frames."""
    records = [
        r
        for r in read_manifest(args.manifest, classes).records
        if r.center == args.center and r.mask_path is not None
    ]
    rng = random.Random(args.seed)
    sample = []
    for c in classes:
        of_class = [r for r in records if r.label == c]
        sample += rng.sample(of_class, min(args.per_class, len(of_class)))
    pre = [preprocess(read_record_frame(r), spec) for r in sample]
    masks = [
        read_frame_mask(r.mask_path, p.geometry.frame_shape)
        for r, p in zip(sample, pre)
        if r.mask_path is not None
    ]
    keep = [i for i, m in enumerate(masks) if m.any()]
    return [sample[i] for i in keep], [pre[i] for i in keep], [masks[i] for i in keep]


def main() -> None:
    args = sample_arguments(__doc__).parse_args()

    loaded = load_checkpoint(args.model)
    model, spec = loaded.model.eval(), loaded.card.spec
    classes = list(loaded.card.classes)
    sample, pre, masks = masked_sample(args, classes, spec)
    x_all = torch.from_numpy(np.stack([p.array for p in pre]))
    targets = [classes.index(r.label) for r in sample]
    print(f"{len(sample)} masked frames of center {args.center}, {args.per_class} per class")

    figures: dict[str, dict[str, float]] = {}
    ceilings: dict[str, float] = {}
    for name, (cam_class, block) in METHODS.items():
        start = time.perf_counter()
        cells = grid_side(spec.input_size) * BLOCK_SCALE[block]
        assert cells * STRIDE // BLOCK_SCALE[block] >= spec.input_size
        if block not in ceilings:
            ceilings[block] = float(
                np.mean(
                    [pointing_reachable(p.geometry, (cells, cells), m) for p, m in zip(pre, masks)]
                )
            )
        hits: dict[str, list[bool]] = {c: [] for c in classes}
        energy: list[float] = []
        with cam_class(model=model, target_layers=[getattr(model, block)[-1]]) as cam:
            for s in range(0, len(sample), 32):
                maps = cam(
                    input_tensor=x_all[s : s + 32],
                    targets=[ClassifierOutputTarget(k) for k in targets[s : s + 32]],
                )
                for j, heat_in in enumerate(maps):
                    i = s + j
                    heat = pre[i].geometry.to_frame(to_input_size(heat_in, spec.input_size, cells))
                    hits[sample[i].label].append(pointing_game(heat, masks[i]))
                    energy.append(energy_inside(heat, masks[i]))
        row = {"pointing_game": float(np.mean([h for c in classes for h in hits[c]]))}
        row |= {c: float(np.mean(hits[c])) for c in classes if hits[c]}
        row["energy_inside"] = float(np.nanmean(energy))
        row["ceiling"] = ceilings[block]
        figures[name] = row
        per_class = ", ".join(f"{c} {row[c]:.2f}" for c in classes if c in row)
        print(
            f"{name:32s} pointing {row['pointing_game']:.3f} (ceiling {ceilings[block]:.3f})  "
            f"heat inside {row['energy_inside']:.3f}  ({per_class}; "
            f"{time.perf_counter() - start:.0f} s)"
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
