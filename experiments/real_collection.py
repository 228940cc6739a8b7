"""Score a model on a folder of real, labelled fetal ultrasound images gathered from public
collections (docs/real-anatomy.md, "Real anomalies from a public collection"), with the
product's predictor (second look, domain guard) as every AI surface runs it.

INDEX is a CSV with at least ``path`` (absolute), ``label`` (a class of the model, or
``other-anomaly`` / ``non-head``) and ``base_case`` (the original image an augmented copy was
made from: publishers export several turned or re-toned copies of one scan, and a case is
counted once, by the verdict on most of its copies); an optional ``detail`` (the plane of an
image without a fetal head, say) splits each label's figure by it::

    .venv/bin/python experiments/real_collection.py resources/models/demo/card.json \\
        INDEX.csv out/real-collection/shipped.csv

writes one row per image and prints, per label, the share called as the issue's goals count
it (a normal: normal and in domain; an anomaly: any anomaly and in domain, and its own class;
a frame without a fetal head: withheld), per image and per case.
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter, defaultdict
from pathlib import Path

from fetal_viewer.core.io import read_frame
from fetal_viewer.core.model.checkpoint import load_checkpoint
from fetal_viewer.core.model.predictor import Predictor

BATCH = 16


def score(card: Path, index: Path, out: Path) -> list[dict[str, str]]:
    with open(index, newline="") as fh:
        rows = list(csv.DictReader(fh))
    predictor = Predictor(load_checkpoint(card))
    classes = predictor.classes
    done: list[dict[str, str]] = []
    for start in range(0, len(rows), BATCH):
        chunk = rows[start : start + BATCH]
        pred = predictor.predict([read_frame(r["path"], 0) for r in chunk])
        inside = pred.in_domain
        assert pred.domain_scores is not None and inside is not None
        for j, row in enumerate(chunk):
            probs = pred.probs[j]
            done.append(
                {
                    "path": row["path"],
                    "label": row["label"],
                    "detail": row.get("detail", ""),
                    "base_case": row.get("base_case") or row["path"],
                    "predicted": classes[int(probs.argmax())],
                    **{f"p_{c}": f"{p:.4f}" for c, p in zip(classes, probs, strict=True)},
                    "domain_score": f"{pred.domain_scores[j]:.3f}",
                    "in_domain": str(int(inside[j])),
                }
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(done[0]))
        writer.writeheader()
        writer.writerows(done)
    return done


def _share(hits: list[bool]) -> str:
    return f"{sum(hits)}/{len(hits)} ({sum(hits) / max(1, len(hits)):.2f})"


def summary(rows: list[dict[str, str]]) -> None:
    labels = sorted({r["label"] for r in rows}, key=lambda c: (c != "normal", c))
    for label in labels:
        rs = [r for r in rows if r["label"] == label]
        inside = [r["in_domain"] == "1" for r in rs]
        normal = label == "normal"
        if label == "non-head":
            goal, what = [not i for i in inside], "withheld"
        else:
            goal = [
                i and ((r["predicted"] == "normal") == normal)
                for i, r in zip(inside, rs, strict=True)
            ]
            what = "normal and in domain" if normal else "an anomaly and in domain"
        print(f"{label}: {len(rs)} images; in domain {_share(inside)}; {what} {_share(goal)}")
        own = [i and r["predicted"] == label for i, r in zip(inside, rs, strict=True)]
        if label not in ("normal", "other-anomaly", "non-head"):
            print(f"  {label} and in domain {_share(own)}")
        print(
            f"  in domain, called: {dict(Counter(r['predicted'] for r, i in zip(rs, inside, strict=True) if i))}"
        )
        details: dict[str, list[bool]] = defaultdict(list)
        cases: dict[str, list[bool]] = defaultdict(list)
        for r, g in zip(rs, goal, strict=True):
            cases[r["base_case"]].append(g)
            if r.get("detail"):
                details[r["detail"]].append(g)
        if details:
            print(
                f"  {what}, by detail: "
                + ", ".join(f"{d} {_share(v)}" for d, v in sorted(details.items()))
            )
        if len(cases) < len(rs):
            held = [2 * sum(v) > len(v) for v in cases.values()]
            print(f"  cases ({len(cases)}), most copies {what}: {_share(held)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("card", type=Path)
    ap.add_argument("index", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--summary-only", action="store_true", help="summarise OUT, score nothing")
    args = ap.parse_args()
    if args.summary_only:
        with open(args.out, newline="") as fh:
            rows = list(csv.DictReader(fh))
    else:
        rows = score(args.card, args.index, args.out)
    summary(rows)


if __name__ == "__main__":
    main()
