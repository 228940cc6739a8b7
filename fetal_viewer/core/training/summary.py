"""All the figures of an evaluation from per-image predictions: the paper's protocol.

Input is one :class:`PredictionTable` (every image, its patient/center/GA, reference class,
predicted probabilities and, where a mask exists, localisation results). Output is a plain
JSON-serialisable dict (``metrics.json``) plus :class:`~metrics.Curves` for the figures.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fetal_viewer.core.model.aggregation import DEFAULT_RULE
from fetal_viewer.core.training import metrics as M  # noqa: N812
from fetal_viewer.core.training.manifest import ga_band


@dataclass
class PredictionTable:
    classes: tuple[str, ...]
    paths: list[str]
    frames: list[int]
    patient_ids: list[str]
    centers: list[str]
    ga_weeks: list[float | None]
    folds: list[str]
    y: np.ndarray  # (N,) reference class index
    probs: np.ndarray  # (N, C)
    pointing: list[bool | None]  # pointing-game hit (true class heatmap), None: no mask
    energy: list[float | None]  # heatmap energy share inside the mask
    # whether a map at the model's heatmap resolution can hit the mask at all (see
    # evaluate.pointing_reachable); None: no mask, or a table written before this column
    reachable: list[bool | None]
    # pixels from the map's maximum to the mask (metrics.pointing_distance); None: no mask,
    # or a table written before this column
    distance: list[float | None]
    # the domain guard's score and verdict per image; empty when the model had no guard
    domain_scores: list[float] = field(default_factory=list)
    in_domain: list[bool] = field(default_factory=list)

    @property
    def guarded(self) -> bool:
        return len(self.in_domain) == len(self.paths) > 0

    def __len__(self) -> int:
        return len(self.paths)

    def write_csv(self, path: Path) -> None:
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(
                [
                    "path",
                    "frame",
                    "patient_id",
                    "center",
                    "ga_weeks",
                    "fold",
                    "label",
                    "predicted",
                    *[f"p_{c}" for c in self.classes],
                    "pointing_hit",
                    "energy_in_mask",
                    "pointing_reachable",
                    "pointing_distance_px",
                    *(["domain_score", "in_domain"] if self.guarded else []),
                ]
            )
            pred = self.probs.argmax(axis=1)
            for i in range(len(self)):
                w.writerow(
                    [
                        self.paths[i],
                        self.frames[i],
                        self.patient_ids[i],
                        self.centers[i],
                        "" if self.ga_weeks[i] is None else f"{self.ga_weeks[i]:g}",
                        self.folds[i],
                        self.classes[int(self.y[i])],
                        self.classes[int(pred[i])],
                        *[f"{p:.6f}" for p in self.probs[i]],
                        "" if self.pointing[i] is None else int(bool(self.pointing[i])),
                        "" if self.energy[i] is None else f"{self.energy[i]:.4f}",
                        "" if self.reachable[i] is None else int(bool(self.reachable[i])),
                        "" if self.distance[i] is None else f"{self.distance[i]:.1f}",
                        *(
                            [f"{self.domain_scores[i]:.4f}", int(self.in_domain[i])]
                            if self.guarded
                            else []
                        ),
                    ]
                )

    @classmethod
    def read_csv(cls, path: Path, classes: Sequence[str]) -> PredictionTable:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        index = {c: k for k, c in enumerate(classes)}
        return cls(
            classes=tuple(classes),
            paths=[r["path"] for r in rows],
            frames=[int(r["frame"]) for r in rows],
            patient_ids=[r["patient_id"] for r in rows],
            centers=[r["center"] for r in rows],
            ga_weeks=[float(r["ga_weeks"]) if r["ga_weeks"] else None for r in rows],
            folds=[r["fold"] for r in rows],
            y=np.array([index[r["label"]] for r in rows], dtype=np.int64),
            probs=np.array(
                [[float(r[f"p_{c}"]) for c in classes] for r in rows], dtype=np.float64
            ).reshape(len(rows), len(classes)),
            pointing=[bool(int(r["pointing_hit"])) if r["pointing_hit"] else None for r in rows],
            energy=[float(r["energy_in_mask"]) if r["energy_in_mask"] else None for r in rows],
            reachable=[bool(int(v)) if (v := r.get("pointing_reachable")) else None for r in rows],
            distance=[float(v) if (v := r.get("pointing_distance_px")) else None for r in rows],
            domain_scores=[float(r["domain_score"]) for r in rows]
            if rows and r0_has(rows, "in_domain")
            else [],
            in_domain=[bool(int(r["in_domain"])) for r in rows]
            if rows and r0_has(rows, "in_domain")
            else [],
        )

    @classmethod
    def concat(cls, tables: Sequence[PredictionTable]) -> PredictionTable:
        first = tables[0]
        return cls(
            classes=first.classes,
            paths=[p for t in tables for p in t.paths],
            frames=[p for t in tables for p in t.frames],
            patient_ids=[p for t in tables for p in t.patient_ids],
            centers=[p for t in tables for p in t.centers],
            ga_weeks=[p for t in tables for p in t.ga_weeks],
            folds=[p for t in tables for p in t.folds],
            y=np.concatenate([t.y for t in tables]),
            probs=np.concatenate([t.probs for t in tables]),
            pointing=[p for t in tables for p in t.pointing],
            energy=[p for t in tables for p in t.energy],
            reachable=[p for t in tables for p in t.reachable],
            distance=[p for t in tables for p in t.distance],
            # the verdicts pool only when every table has them
            domain_scores=[p for t in tables for p in t.domain_scores]
            if all(t.guarded for t in tables)
            else [],
            in_domain=[p for t in tables for p in t.in_domain]
            if all(t.guarded for t in tables)
            else [],
        )


def r0_has(rows: list[dict[str, str]], column: str) -> bool:
    """Whether a CSV's rows carry ``column`` with a value (older tables lack it)."""
    return bool(rows[0].get(column))


def _clean(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 6)


def _level(y: np.ndarray, probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    pred = probs.argmax(axis=1)
    cm = M.confusion_matrix(y, pred, len(classes))
    auc = M.auroc_summary(y, probs)
    return {
        "n": len(y),
        "accuracy": _clean(float((pred == y).mean())) if len(y) else None,
        "confusion_matrix": cm.tolist(),
        "per_class": {
            c: {k: _clean(v) for k, v in stats.items()} | {"auroc": _clean(auc[f"auroc/{k}"])}
            for k, (c, stats) in enumerate(M.per_class_stats(cm, classes).items())
        },
        "micro_auroc": _clean(auc["micro_auroc"]),
        "macro_auroc": _clean(auc["macro_auroc"]),
    }


def _subgroups(
    table: PredictionTable, pt: M.PatientTable, keys: list[str], classes: Sequence[str]
) -> dict[str, Any]:
    """Patient- and image-level figures for each value of ``keys`` (one key per image)."""
    out: dict[str, Any] = {}
    key_of_patient = [keys[int(r[0])] for r in pt.rows]
    for value in sorted(set(keys)):
        img = np.array([k == value for k in keys])
        pat = np.array([k == value for k in key_of_patient])
        pred_i = table.probs[img].argmax(1)
        pred_p = pt.probs[pat].argmax(1)
        auc = M.auroc_summary(pt.y[pat], pt.probs[pat])
        out[value] = {
            "patients": int(pat.sum()),
            "images": int(img.sum()),
            "patient_accuracy": _clean(float((pred_p == pt.y[pat]).mean())),
            "image_accuracy": _clean(float((pred_i == table.y[img]).mean())),
            "patient_macro_auroc": _clean(auc["macro_auroc"]),
            "patients_per_class": {c: int((pt.y[pat] == k).sum()) for k, c in enumerate(classes)},
        }
    return out


def _guard_figures(table: PredictionTable, rule: str) -> dict[str, Any]:
    """The domain guard on a labelled set: the share of frames it flags overall, by center
    and by reference class, and the figures over the frames it lets through (a patient none
    of whose frames pass has no assessable frames and drops out of the patient level)."""
    classes = table.classes
    ok = np.array(table.in_domain, dtype=bool)

    def flagged(keys: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for value in sorted(set(keys)):
            sel = np.array([k == value for k in keys])
            out[value] = {"images": int(sel.sum()), "flagged": _clean(float(1 - ok[sel].mean()))}
        return out

    ids = [p for p, keep in zip(table.patient_ids, ok, strict=True) if keep]
    inside: dict[str, Any] = {"images": int(ok.sum())}
    if ok.any():
        pt = M.by_patient(ids, table.y[ok], table.probs[ok], rule)
        for level, (yy, pp) in {
            "image_level": (table.y[ok], table.probs[ok]),
            "patient_level": (pt.y, pt.probs),
        }.items():
            block = _level(yy, pp, classes)
            inside[level] = {k: block[k] for k in ("n", "accuracy", "macro_auroc")}
    correct = table.probs.argmax(axis=1) == table.y
    return {
        "images_flagged": _clean(float(1 - ok.mean())),
        # what a reader is shown as right: the top class is the reference and not withheld
        "images_correct_and_in_domain": _clean(float((correct & ok).mean())),
        "patients_without_assessable_frames": len(set(table.patient_ids) - set(ids)),
        "by_center": flagged(table.centers),
        "by_class": flagged([classes[int(k)] for k in table.y]),
        "in_domain_only": inside,
    }


def summarise(
    table: PredictionTable, *, rule: str = DEFAULT_RULE, n_boot: int = 1000, seed: int = 0
) -> tuple[dict[str, Any], dict[str, M.Curves]]:
    """metrics.json content and the image-/patient-level curves; a patient's frames are
    aggregated by ``rule`` (one of :data:`AGGREGATION_RULES`)."""
    classes = table.classes
    pt = M.by_patient(table.patient_ids, table.y, table.probs, rule)
    image = _level(table.y, table.probs, classes)
    patient = _level(pt.y, pt.probs, classes)

    def stat(sample: np.ndarray) -> dict[str, float]:
        rows = np.concatenate([pt.rows[s] for s in sample])
        py, pp = pt.y[sample], pt.probs[sample]
        iy, ip = table.y[rows], table.probs[rows]
        out = {
            "patient/accuracy": float((pp.argmax(1) == py).mean()),
            "image/accuracy": float((ip.argmax(1) == iy).mean()),
        }
        for level, (yy, prob) in {"patient": (py, pp), "image": (iy, ip)}.items():
            for key, value in M.auroc_summary(yy, prob).items():
                if key.startswith("auroc/"):
                    key = f"auroc/{classes[int(key.split('/')[1])]}"
                out[f"{level}/{key}"] = value
        return out

    ci = M.bootstrap_ci(stat, len(pt.ids), n_boot=n_boot, seed=seed)
    for level, block in (("patient", patient), ("image", image)):
        block["accuracy_ci95"] = [_clean(v) for v in ci[f"{level}/accuracy"]]
        block["micro_auroc_ci95"] = [_clean(v) for v in ci[f"{level}/micro_auroc"]]
        block["macro_auroc_ci95"] = [_clean(v) for v in ci[f"{level}/macro_auroc"]]
        for c in classes:
            block["per_class"][c]["auroc_ci95"] = [_clean(v) for v in ci[f"{level}/auroc/{c}"]]

    loc: dict[str, Any] = {}
    has_mask = [p is not None for p in table.pointing]
    if any(has_mask):
        for k, c in enumerate([*classes, "all"]):
            sel = [
                i for i in range(len(table)) if has_mask[i] and (c == "all" or int(table.y[i]) == k)
            ]
            if not sel:
                continue
            hits = [bool(table.pointing[i]) for i in sel]
            energies = [
                float(e) for i in sel if (e := table.energy[i]) is not None and np.isfinite(e)
            ]
            known = [bool(r) for i in sel if (r := table.reachable[i]) is not None]
            dist = [table.distance[i] for i in sel]
            near = [d <= M.POINTING_TOLERANCE_PX for d in dist if d is not None]
            loc[c] = {
                "images": len(sel),
                "pointing_game": _clean(float(np.mean(hits))),
                # only when every frame has it (folds scored before the column lack it)
                "pointing_game_15px": _clean(float(np.mean(near)))
                if len(near) == len(sel)
                else None,
                "pointing_ceiling": _clean(float(np.mean(known))) if known else None,
                "energy_inside_mask": _clean(float(np.mean(energies))) if energies else None,
                # share of frames whose true-class map has no heat at all (scored as misses)
                "empty_heatmap": _clean(float(np.mean([d == float("inf") for d in dist])))
                if len(near) == len(sel)
                else None,
            }

    metrics: dict[str, Any] = {
        "classes": list(classes),
        "images": len(table),
        "patients": len(pt.ids),
        "bootstrap": {"resamples": n_boot, "unit": "patient", "seed": seed, "level": 0.95},
        "image_level": image,
        "patient_level": patient,
        "by_center": _subgroups(table, pt, table.centers, classes),
        "by_ga_band": _subgroups(table, pt, [ga_band(g) for g in table.ga_weeks], classes),
        "by_fold": _subgroups(table, pt, table.folds, classes),
        "localisation": loc,
    }
    if table.guarded:
        metrics["domain_guard"] = _guard_figures(table, rule)
    curves = {
        "image": M.curves(table.y, table.probs, classes),
        "patient": M.curves(pt.y, pt.probs, classes),
    }
    return metrics, curves
