"""Per-study AI summary as one self-contained HTML file (images embedded as PNG data URIs).

:func:`build_summary` runs in a worker: it decodes the key frames, maps their heatmaps back
onto the frames and blends them with :func:`fetal_viewer.core.cam.overlay.blend`.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fetal_viewer import INTENDED_USE, __version__

if TYPE_CHECKING:
    from fetal_viewer.core.io.study import Series, Study
    from fetal_viewer.core.viewer.results import FrameResult, ModelInfo


@dataclass(frozen=True)
class SeriesSummaryInput:
    series: Series
    indices: list[int]
    results: list[FrameResult]  # one per index


def _png_uri(rgb: np.ndarray) -> str:
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - cv2 always encodes uint8 RGB
        raise RuntimeError("PNG encoding failed")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _bars(classes: tuple[str, ...], probs: np.ndarray) -> str:
    rows = []
    top = int(np.argmax(probs))
    for i, name in enumerate(classes):
        p = float(probs[i])
        weight = "bold" if i == top else "normal"
        rows.append(
            f"<tr><td style='font-weight:{weight}'>{html.escape(name)}</td>"
            f"<td><div class='bar'><div style='width:{100 * p:.1f}%'></div></div></td>"
            f"<td>{100 * p:.1f} %</td></tr>"
        )
    return "<table class='bars'>" + "".join(rows) + "</table>"


def build_summary(
    out_path: str | Path,
    pseudonym: str,
    study: Study,
    inputs: list[SeriesSummaryInput],
    model: ModelInfo,
    colormap: str = "jet",
    alpha: float = 0.45,
    key_frames: int = 3,
) -> Path:
    from fetal_viewer.core.cam.overlay import blend
    from fetal_viewer.core.model.aggregation import NO_ASSESSABLE, aggregate_assessable
    from fetal_viewer.core.model.guard import (
        NO_GUARD_NOTE,
        WITHHELD_NOTE,
        cine_words,
        modality_words,
    )

    classes = tuple(model.classes)
    parts: list[str] = []
    results = [r for inp in inputs for r in inp.results]
    if not results:
        raise ValueError("no analysed frames")

    def assessable(rs: list[FrameResult]) -> np.ndarray:
        return np.array([r.in_domain is not False for r in rs], dtype=bool)

    patient_probs = aggregate_assessable(
        np.stack([r.probs for r in results]), assessable(results), model.aggregation
    )
    n_flagged = int((~assessable(results)).sum())
    guard = html.escape(model.guard_note or NO_GUARD_NOTE)
    if results[0].domain_threshold is not None:
        guard = (
            f"domain guard threshold {results[0].domain_threshold:.2f}; {n_flagged} of "
            f"{len(results)} analysed frames outside what the model was trained on "
            "(their output is withheld here)"
        )
    for inp in inputs:
        if not inp.results:
            continue
        probs = np.stack([r.probs for r in inp.results])
        ok = assessable(inp.results)
        series_probs = aggregate_assessable(probs, ok, model.aggregation)
        s = inp.series
        head = (
            f"<h2>{html.escape(s.description or 'Series')} "
            f"<small>({len(inp.results)} of {len(s)} frames analysed"
            + (f", {int((~ok).sum())} outside the model's domain" if (~ok).any() else "")
            + (
                f"; {cine_words(cine)}, so all are withheld"
                if (cine := inp.results[0].cine_flagged)
                else ""
            )
            + ")</small></h2>"
        )
        if series_probs is None:
            foreign = inp.results[0].foreign_modality
            why = WITHHELD_NOTE if foreign is None else modality_words(foreign)
            parts.append(
                f"<section>{head}<p class='withheld'>{html.escape(NO_ASSESSABLE.capitalize())}: "
                f"{html.escape(why)}.</p></section>"
            )
            continue
        top = int(np.argmax(series_probs))
        # key frames: the in-domain frames that support the series' top class most strongly
        order = [j for j in np.argsort(-probs[:, top]) if ok[j]][:key_frames]
        figures = []
        for j in order:
            index, result = inp.indices[int(j)], inp.results[int(j)]
            frame = np.asarray(inp.series.frame(index), dtype=np.uint8)
            heat = result.heatmap(top)
            overlay = frame if heat is None else blend(frame, heat, alpha, colormap)
            # cropped to the field of view the model saw: scanners burn the patient's name
            # and ID into the header outside it
            x0, y0, x1, y1 = result.geometry.box
            frame, overlay = frame[y0:y1, x0:x1], overlay[y0:y1, x0:x1]
            figures.append(
                "<figure>"
                f"<img src='{_png_uri(frame)}' alt='frame {index + 1}'>"
                f"<img src='{_png_uri(overlay)}' alt='frame {index + 1} heatmap'>"
                f"<figcaption>Frame {index + 1}: {html.escape(classes[top])} "
                f"{100 * float(probs[j, top]):.1f} %</figcaption></figure>"
            )
        parts.append(
            f"<section>{head}"
            f"{_bars(classes, series_probs)}<div class='frames'>{''.join(figures)}</div>"
            "</section>"
        )
    patient_block = (
        f"<p class='withheld'>{html.escape(NO_ASSESSABLE.capitalize())}: none of the analysed "
        "frames is inside what the model was trained on.</p>"
        if patient_probs is None
        else _bars(classes, patient_probs)
    )
    when = datetime.now().strftime("%Y-%m-%d %H:%M")
    study_label = study.description or "Study"  # no dates: they identify
    doc = f"""<!doctype html>
<html><head><meta charset='utf-8'><title>AI summary – {html.escape(pseudonym)}</title>
<style>
body {{ font-family: sans-serif; background:#1e1f22; color:#e6e6e6; margin:2em; }}
.banner {{ background:#8a5a00; color:#fff; padding:.6em 1em; font-weight:bold; }}
table.bars td {{ padding:2px 8px; }} .bar {{ width:240px; background:#333; height:12px; }}
.bar div {{ background:#4a9eff; height:12px; }}
.withheld {{ background:#5a2a2a; padding:.4em .8em; }}
.frames {{ display:flex; flex-wrap:wrap; gap:1em; }} figure img {{ max-width:320px; margin-right:4px; }}
</style></head><body>
<div class='banner'>{html.escape(INTENDED_USE)} {html.escape(model.intended_use)}</div>
<h1>AI summary: {html.escape(pseudonym)}</h1>
<p>Study: {html.escape(study_label)} (de-identified: the patient by pseudonym, images
cropped to the ultrasound field of view; text burned in inside it is kept)<br>
Model: {html.escape(model.name)} v{html.escape(model.version)} (weights sha256 {model.sha[:16]}),
aggregation: {html.escape(model.aggregation)}<br>
Domain check: {guard}<br>
{html.escape(model.operating_point.capitalize()) + "<br>" if model.operating_point else ""}
Made by fetal-viewer {__version__} on {when}.</p>
<h2>Patient-level probabilities</h2>{patient_block}
{"".join(parts)}
</body></html>
"""
    out = Path(out_path)
    out.write_text(doc, encoding="utf-8")
    return out
