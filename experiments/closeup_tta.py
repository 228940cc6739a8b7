"""A second look at test time: score each frame whole and as the close-up of its head that
the product's second look reads (:func:`fetal_viewer.core.model.closeup.head_closeup`), and
keep both views' probabilities and guard scores, so that ways of combining them can be
compared (docs/real-anatomy.md)::

    .venv/bin/python experiments/closeup_tta.py score CARD MANIFEST OUT.json
    .venv/bin/python experiments/closeup_tta.py ood CARD OUT.json PATH...
    .venv/bin/python experiments/closeup_tta.py summary OUT.json

``score`` reads a manifest (paths relative to it or absolute) and keeps, per row, both
frames' probabilities and guard scores; ``ood`` does the same for every frame of PATHs
(files or folders, as ``evaluate --ood`` reads them); ``summary`` prints, for the whole frame
alone and for the pair (probabilities averaged, the domain the whole frame's, as the product's
second look reads them): patient accuracy and sensitivities (manifests), normals called normal
and in domain, lesions called an anomaly and in domain, and the share withheld (cine rule).
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import warnings
from pathlib import Path

import numpy as np

from fetal_viewer.core.io import read_frame
from fetal_viewer.core.measure.head import find_head
from fetal_viewer.core.model.checkpoint import load_checkpoint
from fetal_viewer.core.model.closeup import head_closeup
from fetal_viewer.core.model.guard import cine_flagged
from fetal_viewer.core.model.predictor import Predictor
from fetal_viewer.core.training.evaluate import PathFrames

BATCH = 16


def both(pred: Predictor, images: list[np.ndarray]) -> list[dict]:
    fits = [find_head(im) for im in images]
    views = [
        None if fit is None else head_closeup(im, fit) for im, fit in zip(images, fits, strict=True)
    ]
    whole = pred.predict(images)
    close = pred.predict([v if v is not None else im for v, im in zip(views, images, strict=True)])
    assert whole.domain_scores is not None and close.domain_scores is not None
    return [
        {
            "found": views[i] is not None,
            "pw": whole.probs[i].tolist(),
            "pc": close.probs[i].tolist(),
            "sw": float(whole.domain_scores[i]),
            "sc": float(close.domain_scores[i]),
            "thr": float(whole.domain_threshold or 0.0),
        }
        for i in range(len(images))
    ]


def score(card: str, manifest: Path, out: Path) -> None:
    pred = Predictor(load_checkpoint(card), backend="torch")
    pred.second_look = False  # both views are read here, each alone
    with manifest.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    result: list[dict] = []
    for start in range(0, len(rows), BATCH):
        chunk = rows[start : start + BATCH]
        images = []
        for r in chunk:
            path = Path(r["path"])
            path = path if path.is_absolute() else manifest.parent / path
            images.append(np.asarray(read_frame(path, int(r.get("frame") or 0))))
        for r, s in zip(chunk, both(pred, images), strict=True):
            result.append({"pid": r["patient_id"], "label": r["label"], "path": r["path"], **s})
    out.write_text(json.dumps(result))


def ood(card: str, out: Path, paths: list[str]) -> None:
    pred = Predictor(load_checkpoint(card), backend="torch")
    pred.second_look = False  # both views are read here, each alone
    frames = PathFrames(paths, option="ood")
    images = []
    for i in range(len(frames)):
        im = np.asarray(frames[i])
        images.append(np.stack([im] * 3, -1) if im.ndim == 2 else im)
    result: list[dict] = []
    for start in range(0, len(images), BATCH):
        result.extend(both(pred, images[start : start + BATCH]))
    for n, idx in enumerate(frames.by_file()):
        for i in idx:
            result[int(i)]["file"] = n
            result[int(i)]["label"] = "ood"
    out.write_text(json.dumps(result))


def decide(r: dict, pair: bool) -> tuple[np.ndarray, bool]:
    pw, pc = np.asarray(r["pw"]), np.asarray(r["pc"])
    inside = r["sw"] <= r["thr"]  # the guard reads the whole frame, as the product does
    if pair and r["found"]:
        return (pw + pc) / 2, inside
    return pw, inside


def summary(path: Path) -> None:
    rows = json.loads(path.read_text())
    classes = ["normal", "anencephaly", "encephalocele", "holoprosencephaly", "rachischisis"]
    for pair in (False, True):
        name = "whole frame + close-up" if pair else "whole frame"
        decided = [decide(r, pair) for r in rows]
        parts = [f"head found {np.mean([r['found'] for r in rows]):.3f}"]
        if rows[0]["label"] == "ood":
            inside = np.array([d[1] for d in decided])
            withheld = ~inside
            files = collections.defaultdict(list)
            for i, r in enumerate(rows):
                files[r["file"]].append(i)
            for idx in files.values():
                if cine_flagged(inside[idx]) is not None:
                    withheld[idx] = True
            parts.append(f"withheld {withheld.mean():.4f} (frame by frame {(~inside).mean():.4f})")
        else:
            patients: dict[str, list[np.ndarray]] = collections.defaultdict(list)
            label = {}
            for r, (p, _) in zip(rows, decided, strict=True):
                patients[r["pid"]].append(p)
                label[r["pid"]] = r["label"]
            called = {k: classes[int(np.mean(v, 0).argmax())] for k, v in patients.items()}
            parts.append(f"patient accuracy {np.mean([called[k] == label[k] for k in called]):.4f}")
            lesions = []
            for c in classes:
                sel = [d for r, d in zip(rows, decided, strict=True) if r["label"] == c]
                if not sel:
                    continue
                if c == "normal":
                    ok = np.mean([int(p.argmax()) == 0 and ins for p, ins in sel])
                    parts.append(f"normal & in domain {ok:.3f}")
                else:
                    ok = np.mean([int(p.argmax()) != 0 and ins for p, ins in sel])
                    lesions.append(ok)
                    parts.append(f"{c} anomaly & in domain {ok:.3f}")
            if lesions:
                parts.append(f"lesion mean {np.mean(lesions):.3f}")
        print(f"{name}: " + "; ".join(parts))


def main() -> None:
    warnings.simplefilter("ignore")
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score")
    s.add_argument("card")
    s.add_argument("manifest", type=Path)
    s.add_argument("out", type=Path)
    o = sub.add_parser("ood")
    o.add_argument("card")
    o.add_argument("out", type=Path)
    o.add_argument("paths", nargs="+")
    m = sub.add_parser("summary")
    m.add_argument("out", type=Path)
    args = ap.parse_args()
    if args.cmd == "score":
        score(args.card, args.manifest, args.out)
    elif args.cmd == "ood":
        ood(args.card, args.out, args.paths)
    else:
        summary(args.out)


if __name__ == "__main__":
    main()
