"""One report over the predictions of earlier ``evaluate`` runs (``evaluate --pool``),
without running a model."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fetal_viewer.core.cam.gradcam import FAST_METHOD
from fetal_viewer.core.model.aggregation import DEFAULT_RULE
from fetal_viewer.core.model.labels import CLASSES
from fetal_viewer.core.training.manifest import Manifest, Record
from fetal_viewer.core.training.report import ReportInputs, write_report
from fetal_viewer.core.training.summary import PredictionTable, summarise
from fetal_viewer.core.training.train import LogFn
from fetal_viewer.errors import DataError


def manifest_paths(manifest: Manifest, records: Sequence[Record]) -> list[str]:
    """The records' paths as prediction tables name them (relative to the manifest's folder)."""
    base = manifest.source.resolve().parent
    return [
        str(r.path.relative_to(base)) if r.path.is_relative_to(base) else str(r.path)
        for r in records
    ]


def pool_scored(
    manifest: Manifest,
    sources: Sequence[str | Path],
    out_dir: str | Path,
    *,
    classes: Sequence[str] = CLASSES,
    n_boot: int = 1000,
    figure_dir: str | Path | None = None,
    log: LogFn = print,
) -> dict[str, Any]:
    """One report over the per-case predictions of earlier ``evaluate`` runs (each source
    folder's predictions.csv and metrics.json), without running a model: for example each
    center's held-out scoring by the model that never saw it, pooled into one
    leave-one-center-out report with CIs over all their patients.

    Every row must be a frame of ``manifest`` with the same patient and label, no patient may
    come from two sources (it would count twice), and the sources' heatmaps must be made the
    same way, so the pooled localisation figures mean one thing. A held-out scoring's rows
    are named after their folder in the report's by-fold table.
    """
    if not sources:
        raise DataError("Nothing to pool.", fix="Name the output folders of earlier evaluate runs.")
    classes = tuple(classes)
    paths = manifest_paths(manifest, manifest.records)
    known = {(path, r.frame): r for path, r in zip(paths, manifest.records, strict=True)}
    tables: list[PredictionTable] = []
    described: list[dict[str, Any]] = []
    folders = [Path(src) for src in sources]
    owner: dict[str, int] = {}  # patient -> index of the folder it came from
    for n, src in enumerate(folders):
        csv_path, metrics_path = src / "predictions.csv", src / "metrics.json"
        if not csv_path.is_file() or not metrics_path.is_file():
            raise DataError(
                f"{src} holds no scored predictions.",
                why="A folder to pool needs the predictions.csv and metrics.json that "
                "evaluate writes.",
                fix="Name the --out folder of an earlier evaluate run.",
            )
        setup = json.loads(metrics_path.read_text(encoding="utf-8")).get("setup", {})
        scored_classes = tuple(c.strip() for c in str(setup.get("classes", "")).split(","))
        if scored_classes != classes:
            raise DataError(
                f"{src} was scored on the classes {', '.join(scored_classes)}; this manifest "
                f"and task have {', '.join(classes)}.",
                fix="Pool runs of one task (--task) on this manifest's classes.",
            )
        table = PredictionTable.read_csv(csv_path, classes)
        for path, frame, patient, y in zip(
            table.paths, table.frames, table.patient_ids, table.y.tolist(), strict=True
        ):
            record = known.get((path, frame))
            if record is None or record.patient_id != patient or record.label != classes[y]:
                raise DataError(
                    f"{src}: {path} (frame {frame}) is not in {manifest.source.name} as "
                    f"patient {patient}, {classes[y]}.",
                    fix="Pool runs scored on frames of this manifest.",
                )
            first = owner.setdefault(patient, n)
            if first != n:
                raise DataError(
                    f"Patient {patient} is in both {folders[first].name} and {src.name}.",
                    why="A pooled report counts each patient once.",
                    fix="Pool runs over disjoint patients (one held-out set per run).",
                )
        table.folds = [src.name if f == "held-out" else f for f in table.folds]
        tables.append(table)
        described.append(
            {
                "folder": str(src),
                "what": setup.get("model") or setup.get("protocol", ""),
                "heatmap": setup.get("heatmap", FAST_METHOD),
                # runs from before the rule was recorded all used the mean
                "rule": setup.get("patient_aggregation", DEFAULT_RULE),
                "patients": len(set(table.patient_ids)),
            }
        )
    heatmaps = sorted({d["heatmap"] for d in described})
    if len(heatmaps) > 1:
        raise DataError(
            f"The runs to pool made their heatmaps in different ways ({', '.join(heatmaps)}).",
            fix="Pool runs scored with one --cam-method.",
        )
    rules = sorted({d["rule"] for d in described})
    if len(rules) > 1:
        raise DataError(
            f"The runs to pool aggregated a patient's frames by different rules "
            f"({', '.join(rules)}).",
            why="Pooled patient-level figures need one rule; it comes from each model's card.",
            fix="Pool runs of models whose cards name the same aggregation rule.",
        )
    log(
        f"pooling {len(owner)} of the manifest's {len(manifest.patients)} patients "
        f"from {len(tables)} runs"
    )
    table = PredictionTable.concat(tables)
    metrics, curves = summarise(table, rule=rules[0], n_boot=n_boot)
    setup = {
        "protocol": f"pooled predictions of {len(described)} runs",
        "classes": ", ".join(classes),
        "heatmap": heatmaps[0],
        "patient_aggregation": rules[0],
        "manifest": str(manifest.source),
        **{
            f"run {k}": f"{d['folder']}: {d['what']}, {d['patients']} patients"
            for k, d in enumerate(described, start=1)
        },
    }
    write_report(
        ReportInputs(
            title="fetal-viewer evaluation: pooled predictions",
            table=table,
            metrics=metrics,
            curves=curves,
            setup=setup,
        ),
        out_dir,
        figure_dir=figure_dir,
    )
    return {"setup": setup, **metrics}
