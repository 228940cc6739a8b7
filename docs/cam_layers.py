"""Pointing game of CAM methods read at different ResNet blocks, for one model and one center.

The product reads Grad-CAM at ``layer4`` (the paper's choice; a 4x4 grid at 128 px). This
script measures whether reading it earlier, or with another pytorch-grad-cam method, puts the
map's maximum on the lesion more often: it samples masked frames of one center (the same
number per class, fixed seed), computes each method's map of the true class through
pytorch-grad-cam and maps it back onto the frame with the library's own upsampling
(``cv2.resize``; ``evaluate`` now places each cell on its receptive field's centre instead, see
``fetal_viewer.core.cam.gradcam``), so its figures are those of the library's maps.

.venv/bin/python docs/cam_layers.py --model resources/models/demo/card.json \\
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

from fetal_viewer.core.model.checkpoint import load_checkpoint
from fetal_viewer.core.model.preprocess import preprocess
from fetal_viewer.core.training.data import read_frame_mask, read_record_frame
from fetal_viewer.core.training.manifest import read_manifest
from fetal_viewer.core.training.metrics import energy_inside, pointing_game

#: name -> (pytorch-grad-cam class, ResNet blocks whose last unit is a target layer)
METHODS = {
    "Grad-CAM layer4 (the product's)": (pgc.GradCAM, ("layer4",)),
    "Grad-CAM layer3": (pgc.GradCAM, ("layer3",)),
    "Grad-CAM layers 3+4": (pgc.GradCAM, ("layer3", "layer4")),
    "Grad-CAM++ layers 3+4": (pgc.GradCAMPlusPlus, ("layer3", "layer4")),
    "HiResCAM layer3": (pgc.HiResCAM, ("layer3",)),
    "LayerCAM layer3": (pgc.LayerCAM, ("layer3",)),
    "LayerCAM layers 2+3+4": (pgc.LayerCAM, ("layer2", "layer3", "layer4")),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="model card (JSON)")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--center", required=True)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    loaded = load_checkpoint(args.model)
    model, spec = loaded.model.eval(), loaded.card.spec
    classes = list(loaded.card.classes)
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
    masks = [read_frame_mask(r.mask_path, p.geometry.frame_shape) for r, p in zip(sample, pre)]
    x_all = torch.from_numpy(np.stack([p.array for p in pre]))
    targets = [classes.index(r.label) for r in sample]
    print(f"{len(sample)} masked frames of center {args.center}, {args.per_class} per class")

    figures: dict[str, dict[str, float]] = {}
    for name, (cam_class, blocks) in METHODS.items():
        start = time.perf_counter()
        hits: dict[str, list[bool]] = {c: [] for c in classes}
        energy: list[float] = []
        layers = [getattr(model, b)[-1] for b in blocks]
        with cam_class(model=model, target_layers=layers) as cam:
            for s in range(0, len(sample), 32):
                maps = cam(
                    input_tensor=x_all[s : s + 32],
                    targets=[ClassifierOutputTarget(k) for k in targets[s : s + 32]],
                )
                for j, heat_in in enumerate(maps):
                    i = s + j
                    if not masks[i].any():
                        continue
                    heat = pre[i].geometry.to_frame(heat_in)
                    hits[sample[i].label].append(pointing_game(heat, masks[i]))
                    energy.append(energy_inside(heat, masks[i]))
        row = {"pointing_game": float(np.mean([h for c in classes for h in hits[c]]))}
        row |= {c: float(np.mean(hits[c])) for c in classes if hits[c]}
        row["energy_inside"] = float(np.nanmean(energy))
        figures[name] = row
        per_class = ", ".join(f"{c} {row[c]:.2f}" for c in classes if c in row)
        print(
            f"{name:32s} pointing {row['pointing_game']:.3f}  heat inside "
            f"{row['energy_inside']:.3f}  ({per_class}; {time.perf_counter() - start:.0f} s)"
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
