"""How much of a folder of real files with no fetal head a model withholds, by the guard
alone (with its cine rule) and with the header rule as well (docs/domain-guard.md, "The
header rule"), as every AI surface reads a series::

    .venv/bin/python experiments/foreign_withheld.py resources/models/demo/card.json DIR...

prints, by DICOM Modality, the files and frames, the frames withheld by the guard and with
the header rule, and the frames still answered (with their top class); the last line is one
JSON object with the totals.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from fetal_viewer.core.io import open_paths
from fetal_viewer.core.model.checkpoint import load_checkpoint
from fetal_viewer.core.model.predictor import Predictor
from fetal_viewer.errors import StudyLoadError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("card", type=Path)
    parser.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args()
    predictor = Predictor(load_checkpoint(args.card))
    opened = open_paths(args.paths)
    files: Counter[str] = Counter()
    frames: Counter[str] = Counter()
    by_guard: Counter[str] = Counter()
    by_both: Counter[str] = Counter()
    answered: dict[str, Counter[str]] = defaultdict(Counter)
    undecodable = 0
    for series in opened.series:
        seq = series.frames()
        if len(seq) == 0:
            continue
        try:
            guard = predictor.predict(seq, whole_series=True)
        except StudyLoadError:
            undecodable += 1  # as `predict` does: a frame that fails to decode costs its series
            continue
        # the header rule needs no second pass: the same output read with the modality
        both = replace(guard, modality=series.modality)
        code = series.modality.strip().upper() or "(none)"
        files[code] += 1
        frames[code] += len(seq)
        by_guard[code] += int((~guard.assessable()).sum())
        kept = both.assessable()
        by_both[code] += int((~kept).sum())
        for i in np.flatnonzero(kept):
            answered[code][guard.top(int(i))[0]] += 1
    print(f"{len(opened.problems)} unreadable file(s), {undecodable} undecodable series")
    print("modality  files  frames  withheld by the guard  with the header rule  answered")
    for code in sorted(frames, key=lambda c: -frames[c]):
        said = ", ".join(f"{k} {v}" for k, v in answered[code].most_common()) or "-"
        print(
            f"{code:<8} {files[code]:>6} {frames[code]:>7} "
            f"{by_guard[code] / frames[code]:>22.1%} {by_both[code] / frames[code]:>21.1%}  {said}"
        )
    total = sum(frames.values())
    print(
        json.dumps(
            {
                "files": sum(files.values()),
                "frames": total,
                "withheld_guard": round(sum(by_guard.values()) / max(total, 1), 4),
                "withheld_with_header_rule": round(sum(by_both.values()) / max(total, 1), 4),
                "unreadable_files": len(opened.problems),
                "undecodable_series": undecodable,
            }
        )
    )


if __name__ == "__main__":
    main()
