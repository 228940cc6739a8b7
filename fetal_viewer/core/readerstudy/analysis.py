"""Built-in analysis of a reader study from its long table (:class:`LongRow` list).

Per reader and averaged over readers, unaided vs aided: accuracy, per-class sensitivity
and specificity, Cohen's kappa against the reference, Fleiss' kappa across readers,
reading time (median, IQR), switch rates (split by whether the AI was right), McNemar
per reader (exact), and the Obuchowski-Rockette MRMC analysis of the AUC (normal vs any
anomaly, on the reader's anomaly probability) and of the accuracy, aided minus unaided.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from fetal_viewer.core.readerstudy.export import NORMAL, LongRow, rated, truth_of
from fetal_viewer.core.readerstudy.mrmc import ORResult, empirical_auc, obuchowski_rockette
from fetal_viewer.errors import DataError

CONDS = ("unaided", "aided")


@dataclass(frozen=True)
class ReaderCondition:
    reader: str
    condition: str
    n: int
    accuracy: float
    auc: float
    cohen_kappa: float
    sensitivity: dict[str, float]
    specificity: dict[str, float]
    time_median_s: float
    time_q1_s: float
    time_q3_s: float


@dataclass(frozen=True)
class Switches:
    reader: str
    n_pairs: int
    correct_to_wrong: int
    wrong_to_correct: int
    changed: int
    ai_right_correct_to_wrong: int
    ai_right_wrong_to_correct: int
    ai_wrong_correct_to_wrong: int
    ai_wrong_wrong_to_correct: int
    mcnemar_p: float  # exact two-sided on the discordant pairs


@dataclass(frozen=True)
class Analysis:
    study: str
    labels: tuple[str, ...]
    readers: tuple[str, ...]
    n_cases: int
    per_reader: tuple[ReaderCondition, ...]
    average: dict[str, dict[str, float]]  # condition -> metric -> reader-averaged value
    fleiss_kappa: dict[str, float]
    switches: tuple[Switches, ...]
    auc_mrmc: ORResult | None
    accuracy_mrmc: ORResult | None
    mrmc_cases_used: int
    notes: tuple[str, ...] = field(default=())
    #: aided reads split by the domain guard's verdict on the AI shown (see ai_domain_split)
    by_ai_domain: dict[str, dict[str, float]] = field(default_factory=dict)


def cohen_kappa(a: Sequence[str], b: Sequence[str], labels: Sequence[str]) -> float:
    idx = {lab: i for i, lab in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)))
    for x, y in zip(a, b):
        m[idx[x], idx[y]] += 1
    n = m.sum()
    if n == 0:
        return float("nan")
    po = np.trace(m) / n
    pe = float((m.sum(0) * m.sum(1)).sum()) / n**2
    return float((po - pe) / (1 - pe)) if pe < 1 else 1.0


def fleiss_kappa(table: np.ndarray) -> float:
    """Fleiss' kappa from an (items, categories) table of counts, equal raters per item."""
    table = np.asarray(table, float)
    if table.shape[0] == 0:
        return float("nan")
    n = table.sum(1)[0]
    if n < 2:
        return float("nan")
    p_j = table.sum(0) / table.sum()
    p_i = ((table**2).sum(1) - n) / (n * (n - 1))
    pbar, pe = p_i.mean(), float((p_j**2).sum())
    return float((pbar - pe) / (1 - pe)) if pe < 1 else 1.0


def mcnemar_exact(b: int, c: int) -> float:
    if b + c == 0:
        return 1.0
    return float(stats.binomtest(b, b + c, 0.5).pvalue)


def _mean_of_defined(values: Sequence[float]) -> float:
    """Mean over the readers for whom a figure is defined; NaN when it is defined for none
    (e.g. no case of that class was read), without numpy's empty-slice warning."""
    defined = [v for v in values if not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def _labels_of(rows: Sequence[LongRow]) -> tuple[str, ...]:
    found = sorted({r.reference for r in rows} | {r.label for r in rows})
    if NORMAL in found:
        found.remove(NORMAL)
        found.insert(0, NORMAL)
    return tuple(found)


def analyze(
    rows: Sequence[LongRow],
    labels: Sequence[str] | None = None,
    *,
    cov_method: str = "jackknife",
    alpha: float = 0.05,
) -> Analysis:
    if not rows:
        raise DataError("There are no reads to analyse.", fix="Check the study name or CSV.")
    labels = tuple(labels) if labels else _labels_of(rows)
    bad = {r.condition for r in rows} - set(CONDS)
    if bad:
        raise DataError(f"Unknown conditions {sorted(bad)}; expected unaided/aided.")
    readers = tuple(sorted({r.reader for r in rows}))
    cases = sorted({r.case for r in rows})
    ref = {r.case: r.reference for r in rows}
    by: dict[tuple[str, str], list[LongRow]] = defaultdict(list)
    for r in rows:
        by[(r.reader, r.condition)].append(r)
    per = []
    for rd in readers:
        for cond in CONDS:
            rs = by.get((rd, cond), [])
            if not rs:
                continue
            y = [r.reference for r in rs]
            p = [r.label for r in rs]
            sens, spec = {}, {}
            for lab in labels:
                pos = [yy == lab for yy in y]
                hit = [pp == lab for pp in p]
                npos = sum(pos)
                nneg = len(pos) - npos
                sens[lab] = sum(a and b for a, b in zip(pos, hit)) / npos if npos else float("nan")
                spec[lab] = (
                    sum((not a) and (not b) for a, b in zip(pos, hit)) / nneg
                    if nneg
                    else float("nan")
                )
            # unset ratings are missing: the AUC is of the reads the reader rated
            scored = rated(rs)
            truth = np.array([truth_of(r.reference) for r in scored], bool)
            sc = np.array([r.anomaly_prob for r in scored], np.float64)
            auc = empirical_auc(sc, truth) if 0 < truth.sum() < len(truth) else float("nan")
            t = np.array([r.active_ms for r in rs if r.active_ms is not None], float) / 1000.0
            q1, med, q3 = np.percentile(t, [25, 50, 75]) if len(t) else (np.nan,) * 3
            per.append(
                ReaderCondition(
                    reader=rd,
                    condition=cond,
                    n=len(rs),
                    accuracy=float(np.mean([a == b for a, b in zip(y, p)])),
                    auc=auc,
                    cohen_kappa=cohen_kappa(p, y, labels),
                    sensitivity=sens,
                    specificity=spec,
                    time_median_s=float(med),
                    time_q1_s=float(q1),
                    time_q3_s=float(q3),
                )
            )
    average: dict[str, dict[str, float]] = {}
    for cond in CONDS:
        pcs = [x for x in per if x.condition == cond]
        if not pcs:
            continue
        avg = {
            "accuracy": float(np.mean([x.accuracy for x in pcs])),
            "auc": _mean_of_defined([x.auc for x in pcs]),
            "cohen_kappa": float(np.mean([x.cohen_kappa for x in pcs])),
            "time_median_s": _mean_of_defined([x.time_median_s for x in pcs]),
        }
        for lab in labels:
            avg[f"sensitivity[{lab}]"] = _mean_of_defined([x.sensitivity[lab] for x in pcs])
            avg[f"specificity[{lab}]"] = _mean_of_defined([x.specificity[lab] for x in pcs])
        average[cond] = avg
    # Fleiss' kappa over cases read by every reader in the condition
    fleiss = {}
    lab_idx = {lab: i for i, lab in enumerate(labels)}
    for cond in CONDS:
        votes: dict[str, list[str]] = defaultdict(list)
        for r in rows:
            if r.condition == cond:
                votes[r.case].append(r.label)
        full = [v for v in votes.values() if len(v) == len(readers)]
        table = np.zeros((len(full), len(labels)))
        for i, v in enumerate(full):
            for lab in v:
                table[i, lab_idx[lab]] += 1
        if full and len(readers) > 1:
            fleiss[cond] = fleiss_kappa(table)
    # switches and McNemar
    sw = []
    pairs: dict[tuple[str, str], dict[str, LongRow]] = defaultdict(dict)
    for r in rows:
        pairs[(r.reader, r.case)][r.condition] = r
    for rd in readers:
        counts = dict.fromkeys(("n", "cw", "wc", "ch", "rcw", "rwc", "wcw", "wwc"), 0)
        for (reader, _), pr in pairs.items():
            if reader != rd or len(pr) < 2:
                continue
            u, a = pr["unaided"], pr["aided"]
            counts["n"] += 1
            counts["ch"] += int(u.label != a.label)
            ai_right = a.ai_top_label == a.reference if a.ai_top_label else None
            if u.correct and not a.correct:
                counts["cw"] += 1
                counts["rcw" if ai_right else "wcw"] += 1
            elif a.correct and not u.correct:
                counts["wc"] += 1
                counts["rwc" if ai_right else "wwc"] += 1
        sw.append(
            Switches(
                rd,
                counts["n"],
                counts["cw"],
                counts["wc"],
                counts["ch"],
                counts["rcw"],
                counts["rwc"],
                counts["wcw"],
                counts["wwc"],
                mcnemar_exact(counts["cw"], counts["wc"]),
            )
        )
    # MRMC on the fully crossed part
    notes: list[str] = []
    unset = sum(r.anomaly_prob is None for r in rows)
    if unset:
        notes.append(
            f"{unset} of {len(rows)} reads have no any-anomaly rating (not set by the "
            "reader): they are missing from the AUCs, never counted as 50."
        )
    untimed = sum(r.active_ms is None for r in rows)
    if untimed:
        notes.append(
            f"{untimed} of {len(rows)} reads were stored without active time (headless "
            "reading): they are left out of the reading-time figures."
        )
    cell: dict[tuple[str, str, str], LongRow] = {(r.condition, r.reader, r.case): r for r in rows}
    full_cases = [c for c in cases if all((cd, rd, c) in cell for cd in CONDS for rd in readers)]
    if len(full_cases) < len(cases):
        notes.append(
            f"MRMC uses the {len(full_cases)} of {len(cases)} cases read by every reader in "
            "both conditions."
        )
    auc_res = acc_res = None
    truth = np.array([truth_of(ref[c]) for c in full_cases], bool)
    scored_cases = [
        c
        for c in full_cases
        if all(cell[(cd, rd, c)].anomaly_prob is not None for cd in CONDS for rd in readers)
    ]
    if len(scored_cases) < len(full_cases):
        notes.append(
            f"The AUC MRMC uses the {len(scored_cases)} of those cases that every reader "
            "rated in both conditions."
        )
    s_truth = np.array([truth_of(ref[c]) for c in scored_cases], bool)
    if len(readers) >= 2 and len(full_cases) >= 3:
        s = np.array(
            [
                [[cell[(cd, rd, c)].anomaly_prob for c in scored_cases] for rd in readers]
                for cd in CONDS
            ],
            np.float64,
        )
        k = np.array(
            [[[cell[(cd, rd, c)].correct for c in full_cases] for rd in readers] for cd in CONDS],
            np.float64,
        )
        if len(scored_cases) >= 3 and 0 < s_truth.sum() < len(s_truth):
            auc_res = obuchowski_rockette(
                s, s_truth, tests=CONDS, readers=readers, cov_method=cov_method, alpha=alpha
            )
        else:
            notes.append("AUC MRMC skipped: the cases are all normal or all anomalous.")
        acc_res = obuchowski_rockette(
            k, truth, tests=CONDS, readers=readers, fom="accuracy", alpha=alpha
        )
    else:
        notes.append("MRMC needs at least two readers who read cases in both conditions.")
    return Analysis(
        study=rows[0].study,
        labels=labels,
        readers=readers,
        n_cases=len(cases),
        per_reader=tuple(per),
        average=average,
        fleiss_kappa=fleiss,
        switches=tuple(sw),
        auc_mrmc=auc_res,
        accuracy_mrmc=acc_res,
        mrmc_cases_used=len(full_cases),
        notes=tuple(notes),
        by_ai_domain=ai_domain_split(rows),
    )


#: the groups of :func:`ai_domain_split` and the ``ai_out_of_domain`` value of each
AI_DOMAIN_GROUPS: dict[str, str] = {
    "AI in domain": "false",
    "AI out of domain": "true",
    "no domain check": "",
}


def ai_domain_split(rows: Sequence[LongRow]) -> dict[str, dict[str, float]]:
    """Aided reads split by whether the model's domain guard flagged the AI shown: per group
    the number of reads, aided accuracy, the same readers' unaided accuracy on those cases,
    and how often the final label is the AI's top class. A group without reads is left out."""
    unaided = {(r.reader, r.case): r for r in rows if r.condition == "unaided"}
    out: dict[str, dict[str, float]] = {}
    for name, flag in AI_DOMAIN_GROUPS.items():
        aided = [
            r
            for r in rows
            if r.condition == "aided" and r.ai_model_sha and r.ai_out_of_domain == flag
        ]
        if not aided:
            continue
        before = [unaided[k].correct for r in aided if (k := (r.reader, r.case)) in unaided]
        followed = [r.label == r.ai_top_label for r in aided if r.ai_top_label]
        out[name] = {
            "reads": float(len(aided)),
            "aided_accuracy": float(np.mean([r.correct for r in aided])),
            "unaided_accuracy": float(np.mean(before)) if before else float("nan"),
            "agrees_with_ai": float(np.mean(followed)) if followed else float("nan"),
        }
    return out


def time_saving(rows: Sequence[LongRow]) -> dict[str, float]:
    """Reader-averaged median reading time per condition and the saving (unaided - aided)."""
    med: dict[str, list[float]] = defaultdict(list)
    by: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        if r.active_ms is not None:  # untimed (headless) reads have no reading time
            by[(r.reader, r.condition)].append(r.active_ms / 1000.0)
    for (_, cond), ts in by.items():
        med[cond].append(float(np.median(ts)))
    out = {c: float(np.mean(v)) for c, v in med.items()}
    if "unaided" in out and "aided" in out:
        out["saving_s"] = out["unaided"] - out["aided"]
    return out
