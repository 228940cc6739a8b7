"""HTML report of an :class:`Analysis` (tables and plots) plus a JSON of the figures."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from fetal_viewer.core.readerstudy.analysis import CONDS, Analysis, analyze
from fetal_viewer.core.readerstudy.export import LongRow, long_rows, rated, truth_of
from fetal_viewer.core.readerstudy.mrmc import ORResult
from fetal_viewer.core.store import Store
from fetal_viewer.errors import DataError


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _roc(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    thr = np.unique(scores)[::-1]
    tpr = [0.0] + [float((scores[truth] >= t).mean()) for t in thr]
    fpr = [0.0] + [float((scores[~truth] >= t).mean()) for t in thr]
    return np.array(fpr), np.array(tpr)


def figures(a: Analysis, rows: Sequence[LongRow]) -> dict[str, Any]:
    """The report's matplotlib figures by name (the caller closes them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    # legends sit outside the axes (constrained layout makes room), never over the data
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.2), sharey=True, layout="constrained")
    for ax, cond in zip(axes, CONDS):
        for rd in a.readers:
            rs = rated([r for r in rows if r.reader == rd and r.condition == cond])
            truth = np.array([truth_of(r.reference) for r in rs], bool)
            if not rs or truth.all() or not truth.any():
                continue
            fpr, tpr = _roc(np.array([r.anomaly_prob for r in rs], float), truth)
            ax.plot(fpr, tpr, lw=1.2, label=rd)
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_title(f"ROC, {cond} (normal vs any anomaly)")
        ax.set_xlabel("1 - specificity")
    axes[0].set_ylabel("sensitivity")
    handles, labels = axes[1].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, fontsize=7, loc="outside right center", title="reader")
    out["roc"] = fig
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.9), layout="constrained")
    x = np.arange(len(a.readers))
    for ax, metric in zip(axes, ("auc", "accuracy")):
        for k, cond in enumerate(CONDS):
            vals = [
                next(
                    (
                        getattr(p, metric)
                        for p in a.per_reader
                        if p.reader == rd and p.condition == cond
                    ),
                    np.nan,
                )
                for rd in a.readers
            ]
            ax.bar(x + (k - 0.5) * 0.38, vals, 0.38, label=cond)
        ax.set_xticks(x, a.readers, rotation=45, ha="right", fontsize=7)
        ax.set_title(f"per-reader {metric}")
        ax.set_ylim(0, 1)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="outside upper center", ncols=len(CONDS))
    out["readers"] = fig
    fig, ax = plt.subplots(figsize=(6, 3.6), layout="constrained")
    # reads without active time (headless) have no reading time to show
    data = [
        [r.active_ms / 1000 for r in rows if r.condition == c and r.active_ms is not None]
        for c in CONDS
    ]
    ax.boxplot(data, tick_labels=list(CONDS), showfliers=False)
    ax.set_ylabel("active reading time (s)")
    ax.set_title("reading time per read")
    out["times"] = fig
    return out


def _plots(a: Analysis, rows: Sequence[LongRow]) -> dict[str, str]:
    import matplotlib.pyplot as plt

    out = {}
    for name, fig in figures(a, rows).items():
        out[name] = _png(fig)
        plt.close(fig)
    return out


def _f(v: float, nd: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.{nd}f}"


def _table(head: Sequence[str], body: Sequence[Sequence[object]]) -> str:
    h = "".join(f"<th>{html.escape(str(x))}</th>" for x in head)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in body
    )
    return f"<table><tr>{h}</tr>{rows}</table>"


def _or_table(res: ORResult) -> str:
    lo, hi = res.ci
    flo, fhi = res.fixed_readers_ci
    return _table(
        ["", "value"],
        [
            [
                "readers x cases (positive)",
                f"{len(res.readers)} x {res.n_cases} ({res.n_positive})",
            ],
            ["covariance", res.cov_method],
            *[[f"mean {res.fom_name}, {t}", _f(m, 4)] for t, m in zip(res.tests, res.test_means)],
            [f"difference ({res.tests[-1]} - {res.tests[0]})", _f(res.diff, 4)],
            [
                "random readers & cases: F, df, p",
                f"{_f(res.f)}, (1, {res.df2:.2f}), {_f(res.p, 4)}",
            ],
            [f"{100 * (1 - res.alpha):.0f}% CI (Hillis df)", f"({lo:.4f}, {hi:.4f})"],
            [
                "fixed readers: chi2, p",
                f"{_f(res.fixed_readers_chi2)}, {_f(res.fixed_readers_p, 4)}",
            ],
            ["fixed readers CI", f"({flo:.4f}, {fhi:.4f})"],
            [
                "Var(error), Cov1, Cov2, Cov3",
                ", ".join(f"{v:.6f}" for v in (res.var_error, res.cov1, res.cov2, res.cov3)),
            ],
        ],
    )


def to_jsonable(a: Analysis) -> dict[str, Any]:
    def clean(o: Any) -> Any:
        if isinstance(o, float) and (np.isnan(o) or np.isinf(o)):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, list | tuple):
            return [clean(v) for v in o]
        return o

    return dict(clean(asdict(a)))


def report_study(
    store: Store, study: str, out_dir: Path, cov_method: str = "jackknife"
) -> tuple[Analysis, dict[str, Path]]:
    """Analyse a stored study and write its report (``analyze --db`` and the coordinator's
    Analyse): a study not finished says so in the report's notes, its figures interim."""
    from fetal_viewer.core.readerstudy.protocol import study_progress

    rows = long_rows(store, study)
    if not rows:
        raise DataError(
            f"Study {study!r} has no reads yet; there is nothing to analyse.",
            fix="Wait until readers have submitted reads.",
        )
    result = analyze(rows, store.get_study(study).labels, cov_method=cov_method)
    progress = study_progress(store, study)
    if progress.done < progress.total:
        result = replace(
            result,
            notes=(
                f"The study is not finished: {progress.done} of {progress.total} reads are "
                "in, so these figures are interim.",
                *result.notes,
            ),
        )
    return result, write_report(result, rows, Path(out_dir))


def write_report(a: Analysis, rows: Sequence[LongRow], out_dir: Path) -> dict[str, Path]:
    """Write ``report.html`` and ``analysis.json`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    img = _plots(a, rows)
    per = _table(
        ["reader", "condition", "n", "accuracy", "AUC", "Cohen kappa", "time median (IQR) s"],
        [
            [
                p.reader,
                p.condition,
                p.n,
                _f(p.accuracy),
                _f(p.auc),
                _f(p.cohen_kappa),
                "n/a (no timed reads)"
                if np.isnan(p.time_median_s)
                else f"{p.time_median_s:.1f} ({p.time_q1_s:.1f}-{p.time_q3_s:.1f})",
            ]
            for p in a.per_reader
        ],
    )
    metrics = sorted({k for d in a.average.values() for k in d})
    avg = _table(
        ["metric", *a.average],
        [[m, *(_f(a.average[c].get(m, float("nan"))) for c in a.average)] for m in metrics],
    )
    sw = _table(
        [
            "reader",
            "pairs",
            "changed",
            "correct->wrong",
            "wrong->correct",
            "c->w (AI right)",
            "w->c (AI right)",
            "c->w (AI wrong)",
            "w->c (AI wrong)",
            "McNemar p",
        ],
        [
            [
                s.reader,
                s.n_pairs,
                s.changed,
                s.correct_to_wrong,
                s.wrong_to_correct,
                s.ai_right_correct_to_wrong,
                s.ai_right_wrong_to_correct,
                s.ai_wrong_correct_to_wrong,
                s.ai_wrong_wrong_to_correct,
                _f(s.mcnemar_p, 4),
            ]
            for s in a.switches
        ],
    )
    fl = _table(["condition", "Fleiss kappa"], [[c, _f(v)] for c, v in a.fleiss_kappa.items()])
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>Reader study {html.escape(a.study)}</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;"
        "padding:2px 6px;font-size:13px}</style></head><body>",
        f"<h1>Reader study: {html.escape(a.study)}</h1>",
        "<p>Research use only, not for clinical use.</p>",
        f"<p>{len(a.readers)} readers, {a.n_cases} cases; labels {html.escape(', '.join(a.labels))}.</p>",
    ]
    parts += [f"<p><i>{html.escape(n)}</i></p>" for n in a.notes]
    if a.auc_mrmc:
        parts += [
            "<h2>MRMC (Obuchowski-Rockette, Hillis df): AUC, normal vs any anomaly</h2>",
            _or_table(a.auc_mrmc),
        ]
    if a.accuracy_mrmc:
        parts += ["<h2>MRMC: accuracy (jackknife)</h2>", _or_table(a.accuracy_mrmc)]
    parts += [
        "<h2>Reader-averaged</h2>",
        avg,
        fl,
        "<h2>Per reader</h2>",
        per,
        "<h2>Switches (unaided to aided) and McNemar</h2>",
        sw,
        *(
            [
                "<h2>Aided reads by the domain guard's verdict on the AI shown</h2>",
                _table(
                    ["AI shown", "reads", "aided accuracy", "unaided accuracy", "agrees with AI"],
                    [
                        [
                            group,
                            int(v["reads"]),
                            _f(v["aided_accuracy"]),
                            _f(v["unaided_accuracy"]),
                            _f(v["agrees_with_ai"]),
                        ]
                        for group, v in a.by_ai_domain.items()
                    ],
                ),
            ]
            if a.by_ai_domain
            else []
        ),
        "<h2>Plots</h2>",
        *[f"<img alt='{k}' src='data:image/png;base64,{v}'>" for k, v in img.items()],
        "</body></html>",
    ]
    html_path = out_dir / "report.html"
    html_path.write_text("\n".join(parts), encoding="utf-8")
    json_path = out_dir / "analysis.json"
    json_path.write_text(json.dumps(to_jsonable(a), indent=1), encoding="utf-8")
    return {"html": html_path, "json": json_path}
