"""Which of a held-out center's scanner settings cost a model accuracy there?

Re-renders the same phantom patients of one center (same plan, same seeds: the "as is" row is
byte-identical to the generated data set) with one field of the center's scanner style taken
from a training center at a time, and scores every variant with one model. A setting whose
swap lifts accuracy is one the model did not learn to ignore: a gap in the augmentation.

.venv/bin/python experiments/style_swap.py --model out/p160-loco/folds/center_D/card.json \\
    --patients-per-class 160 --seed 2026 --center D --label normal --patients 60
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Any

import numpy as np

from fetal_viewer.core.model.checkpoint import load_checkpoint
from fetal_viewer.core.model.predictor import Predictor
from fetal_viewer.core.phantoms.dataset import plan_patients, render_patient
from fetal_viewer.core.phantoms.styles import ScannerStyle, get_style


def variants(a: ScannerStyle, c: ScannerStyle) -> dict[str, dict[str, Any]]:
    """Name -> fields replaced, taken from training centers ``a`` and ``c``."""
    return {
        "as is": {},
        f"text layout of {a.center}": dict(
            layout=a.layout, bar_side=a.bar_side, text_rgb=a.text_rgb
        ),
        f"text layout of {c.center}": dict(
            layout=c.layout, bar_side=c.bar_side, text_rgb=c.text_rgb
        ),
        f"point-spread function of {c.center}": dict(
            psf_axial_mm=c.psf_axial_mm, psf_lateral_mm=c.psf_lateral_mm
        ),
        f"transmit frequency of {a.center}": dict(freq_mhz=a.freq_mhz),
        f"grey-map gamma of {c.center}": dict(gamma=c.gamma),
        f"dynamic range of {a.center}": dict(
            dynamic_range_db=a.dynamic_range_db, white_db=a.white_db
        ),
        f"noise floor of {a.center}": dict(noise_db=a.noise_db),
        f"TGC of {a.center}": dict(tgc_compensation=a.tgc_compensation),
        f"probe shape of {a.center}": dict(
            probe_radius_mm=a.probe_radius_mm, sector_deg=a.sector_deg
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="model card (JSON)")
    ap.add_argument("--patients-per-class", type=int, required=True, help="as generated")
    ap.add_argument("--centers", default="ABCD", help="as generated (letters)")
    ap.add_argument("--seed", type=int, required=True, help="as generated")
    ap.add_argument("--center", default="D", help="the held-out center")
    ap.add_argument("--label", default="normal", help="class of the patients re-rendered")
    ap.add_argument("--patients", type=int, default=60)
    ap.add_argument("--from-centers", default="AC", help="two training centers to take from")
    args = ap.parse_args()

    plans = [
        p
        for p in plan_patients(args.patients_per_class, list(args.centers), args.seed)
        if p.center.center == args.center and p.label == args.label
    ][: args.patients]
    predictor = Predictor(load_checkpoint(args.model), backend="torch")
    classes = np.array(predictor.classes)
    held_out = get_style(args.center)
    a, c = (get_style(x) for x in args.from_centers)
    figures: dict[str, float] = {}
    for name, change in variants(a, c).items():
        t0 = time.perf_counter()
        style = dataclasses.replace(held_out, **change)
        frames, owner = [], []
        for plan in plans:
            for f in render_patient(dataclasses.replace(plan, center=style), None).frames:
                frames.append(f.image)
                owner.append(plan.patient_id)
        probs = predictor.predict(frames, batch_size=32).probs
        ids = np.array(owner)
        per_patient = np.array([predictor.aggregate(probs[ids == p]) for p in dict.fromkeys(owner)])
        called = classes[per_patient.argmax(1)]
        acc = float(np.mean(called == args.label))
        wrong = {
            str(k): int(v)
            for k, v in zip(*np.unique(called[called != args.label], return_counts=True))
        }
        figures[name] = round(acc, 3)
        print(
            f"{name:34s} patient accuracy {acc:.3f}  called instead: {wrong or '-'}"
            f"  ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    print(
        json.dumps({"center": args.center, "label": args.label, "patients": len(plans), **figures})
    )


if __name__ == "__main__":
    main()
