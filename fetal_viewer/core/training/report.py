"""``report.html`` (figures embedded as base64 PNG), ``metrics.json``, predictions CSV.

Figures are drawn with matplotlib's Agg backend (no display needed) and can also be written
as PNG files (``figure_dir``) for documentation.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.model.aggregation import AGGREGATION_RULES, DEFAULT_RULE
from fetal_viewer.core.training.metrics import Curves
from fetal_viewer.core.training.summary import PredictionTable

RESEARCH_NOTE = "Research use only. Not for clinical use."


@dataclass
class HeatmapExample:
    """One test frame with its true-class heatmap and lesion mask, for the report."""

    label: str
    predicted: str
    frame: NDArray[np.uint8]
    heatmap: NDArray[np.float32]
    mask: NDArray[np.bool_] | None


@dataclass
class ReportInputs:
    title: str
    table: PredictionTable
    metrics: dict[str, Any]
    curves: dict[str, Curves]
    setup: dict[str, Any] = field(default_factory=dict)
    histories: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    examples: list[HeatmapExample] = field(default_factory=list)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _figures(inputs: ReportInputs) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = list(inputs.table.classes)
    figs: dict[str, bytes] = {}

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, level in zip(axes, ("image_level", "patient_level")):
        cm = np.asarray(inputs.metrics[level]["confusion_matrix"], dtype=float)
        norm = cm / np.clip(cm.sum(axis=1, keepdims=True), 1, None)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for r in range(len(classes)):
            for c in range(len(classes)):
                ax.text(
                    c,
                    r,
                    f"{int(cm[r, c])}",
                    ha="center",
                    va="center",
                    color="white" if norm[r, c] > 0.5 else "black",
                    fontsize=9,
                )
        ax.set_xticks(range(len(classes)), classes, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(len(classes)), classes, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("reference")
        ax.set_title(level.replace("_", " ") + f" (n={int(cm.sum())})")
    figs["confusion"] = _png(fig)

    for kind in ("roc", "pr"):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
        for ax, level in zip(axes, ("image", "patient")):
            cv = inputs.curves[level]
            data = cv.roc if kind == "roc" else cv.pr
            score = cv.auroc if kind == "roc" else cv.ap
            for name, (x, y) in data.items():
                style = {"micro": ":", "macro": "--"}.get(name, "-")
                ax.plot(x, y, style, lw=1.6, label=f"{name} ({score.get(name, float('nan')):.3f})")
            if kind == "roc":
                ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
                ax.set_xlabel("1 - specificity")
                ax.set_ylabel("sensitivity")
                ax.set_title(f"ROC, {level} level (AUROC)")
            else:
                ax.set_xlabel("recall (sensitivity)")
                ax.set_ylabel("precision (PPV)")
                ax.set_title(f"Precision-recall, {level} level (AP)")
            ax.set_xlim(-0.01, 1.01)
            ax.set_ylim(-0.01, 1.01)
            ax.legend(fontsize=7, loc="lower right" if kind == "roc" else "lower left")
            ax.grid(alpha=0.3)
        figs[kind] = _png(fig)

    if inputs.histories:
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        for name, hist in inputs.histories.items():
            ep = [h["epoch"] for h in hist]
            axes[0].plot(ep, [h["train_loss"] for h in hist], "-", label=f"{name} train")
            nan = float("nan")  # epochs without a validation split
            axes[0].plot(ep, [h.get("val_loss", nan) for h in hist], "--", label=f"{name} val")
            axes[1].plot(ep, [h.get("val_acc", nan) for h in hist], "-", label=name)
        axes[0].set_title("loss (weighted CE)")
        axes[1].set_title("inner-validation accuracy (images)")
        for ax in axes:
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
        figs["training"] = _png(fig)

    if inputs.examples:
        n = len(inputs.examples)
        fig, axes = plt.subplots(1, n, figsize=(2.6 * n, 2.9), squeeze=False)
        for ax, ex in zip(axes[0], inputs.examples):
            ax.imshow(ex.frame)
            ax.imshow(ex.heatmap, cmap="jet", alpha=0.4, vmin=0, vmax=max(ex.heatmap.max(), 1e-6))
            if ex.mask is not None and ex.mask.any():
                ax.contour(ex.mask.astype(float), levels=[0.5], colors="white", linewidths=0.8)
            peak = np.unravel_index(int(np.argmax(ex.heatmap)), ex.heatmap.shape)
            ax.plot([peak[1]], [peak[0]], "w+", ms=9)
            ax.set_title(f"{ex.label}\npred {ex.predicted}", fontsize=8)
            ax.axis("off")
        figs["heatmaps"] = _png(fig)
    return figs


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return html.escape(str(v))


def _ci(value: Any, ci: Sequence[Any] | None) -> str:
    if ci is None or ci[0] is None:
        return _fmt(value)
    return f"{_fmt(value)} <span class=ci>({_fmt(ci[0])}-{_fmt(ci[1])})</span>"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _level_html(block: dict[str, Any], classes: Sequence[str]) -> str:
    summary = _table(
        ["accuracy", "micro AUROC", "macro AUROC", "n"],
        [
            [
                _ci(block["accuracy"], block.get("accuracy_ci95")),
                _ci(block["micro_auroc"], block.get("micro_auroc_ci95")),
                _ci(block["macro_auroc"], block.get("macro_auroc_ci95")),
                str(block["n"]),
            ]
        ],
    )
    per = _table(
        ["class", "n", "sensitivity", "specificity", "PPV", "NPV", "F1", "AUROC (95% CI)"],
        [
            [
                html.escape(c),
                _fmt(int(s["support"] or 0)),
                _fmt(s["sensitivity"]),
                _fmt(s["specificity"]),
                _fmt(s["ppv"]),
                _fmt(s["npv"]),
                _fmt(s["f1"]),
                _ci(s["auroc"], s.get("auroc_ci95")),
            ]
            for c, s in block["per_class"].items()
        ],
    )
    return summary + per


def _groups_html(groups: dict[str, Any], what: str) -> str:
    return _table(
        [what, "patients", "images", "patient accuracy", "image accuracy", "patient macro AUROC"],
        [
            [
                html.escape(k),
                str(g["patients"]),
                str(g["images"]),
                _fmt(g["patient_accuracy"]),
                _fmt(g["image_accuracy"]),
                _fmt(g["patient_macro_auroc"]),
            ]
            for k, g in groups.items()
        ],
    )


def render_html(inputs: ReportInputs, figs: dict[str, bytes]) -> str:
    m = inputs.metrics
    classes = m["classes"]

    def img(name: str, alt: str) -> str:
        if name not in figs:
            return ""
        data = base64.b64encode(figs[name]).decode("ascii")
        return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'

    setup_rows = [[html.escape(k), html.escape(str(v))] for k, v in inputs.setup.items()]
    rule = str(inputs.setup.get("patient_aggregation", DEFAULT_RULE))
    loc = m.get("localisation", {})
    loc_html = (
        _table(
            [
                "class",
                "images with mask",
                "pointing game",
                "pointing ceiling at this heatmap resolution",
                "pointing game, 15 px tolerance",
                "energy inside mask",
                "empty maps",
            ],
            [
                [
                    html.escape(c),
                    str(v["images"]),
                    _fmt(v["pointing_game"]),
                    _fmt(v.get("pointing_ceiling")),
                    _fmt(v.get("pointing_game_15px")),
                    _fmt(v["energy_inside_mask"]),
                    _fmt(v.get("empty_heatmap")),
                ]
                for c, v in loc.items()
            ],
        )
        if loc
        else "<p>No lesion masks in this manifest: localisation not measured.</p>"
    )
    b = m["bootstrap"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(inputs.title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.6em 0 1.2em}td,th{border:1px solid #ccc;"
        "padding:3px 8px;font-size:13px;text-align:right}th{background:#f2f2f2}"
        "td:first-child{text-align:left}.ci{color:#666;font-size:11px}"
        "img{max-width:100%}.warn{background:#fff3cd;padding:.5em 1em;border-radius:4px}"
        "</style></head><body>",
        f"<h1>{html.escape(inputs.title)}</h1>",
        f"<p class=warn><b>{RESEARCH_NOTE}</b></p>",
        f"<p>{m['images']} images of {m['patients']} patients; classes: "
        f"{html.escape(', '.join(classes))}. 95% confidence intervals: percentile bootstrap "
        f"over patients ({b['resamples']} resamples). Patient level: "
        f"{html.escape(AGGREGATION_RULES[rule])}.</p>",
        "<h2>Setup</h2>",
        _table(["setting", "value"], setup_rows),
        "<h2>Patient level</h2>",
        _level_html(m["patient_level"], classes),
        "<h2>Image level</h2>",
        _level_html(m["image_level"], classes),
        "<h2>Confusion matrices</h2>",
        img("confusion", "confusion matrices"),
        "<h2>ROC curves</h2>",
        img("roc", "ROC curves"),
        "<h2>Precision-recall curves</h2>",
        img("pr", "precision-recall curves"),
        "<h2>By center</h2>",
        _groups_html(m["by_center"], "center"),
        "<h2>By gestational age (weeks)</h2>",
        _groups_html(m["by_ga_band"], "GA band"),
        "<h2>By fold</h2>",
        _groups_html(m["by_fold"], "fold"),
        "<h2>Heatmap localisation</h2>",
        "<p>Heatmap of the reference class (Grad-CAM at the last block). Pointing game: its "
        "maximum lies inside the lesion mask (no pixel tolerance). Pointing ceiling: share of "
        "masks that a map at the model's heatmap resolution (input size / 32 cells a side) "
        "can hit at all, since an upsampled map peaks at one of its cells; no model can "
        "score above it. Energy: share of the heatmap inside the mask.</p>",
        loc_html,
        img("heatmaps", "heatmap examples"),
        "<h2>Training</h2>" if "training" in figs else "",
        img("training", "training curves"),
        "</body></html>",
    ]
    return "\n".join(parts)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")


def write_report(
    inputs: ReportInputs, out_dir: str | Path, figure_dir: str | Path | None = None
) -> Path:
    """Write report.html, metrics.json and predictions.csv; return the report path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = _figures(inputs)
    (out / "metrics.json").write_text(
        json.dumps({"setup": inputs.setup, **inputs.metrics}, indent=1, default=_json_default),
        encoding="utf-8",
    )
    inputs.table.write_csv(out / "predictions.csv")
    report = out / "report.html"
    report.write_text(render_html(inputs, figs), encoding="utf-8")
    if figure_dir is not None:
        fdir = Path(figure_dir)
        fdir.mkdir(parents=True, exist_ok=True)
        for name, data in figs.items():
            (fdir / f"{name}.png").write_bytes(data)
    return report
