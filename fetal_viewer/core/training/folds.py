"""Cross-validation folds grouped by subject: a patient's frames, and the patients made from
one subject's scan (:attr:`Record.subject`), never sit on both sides.

Indices refer to ``Manifest.records``. Every split here is built from the list of subjects,
so leakage is impossible by construction; :func:`check_no_leak` verifies it anyway and
runs before every training.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fetal_viewer.core.training.manifest import Indices, Record
from fetal_viewer.errors import DataError

CV_MODES: tuple[str, ...] = ("leave-one-center-out", "leave-one-patient-out", "grouped-kfold")


@dataclass(frozen=True)
class Fold:
    name: str
    train: np.ndarray  # int64 indices into the records
    test: np.ndarray


def _patients(records: Sequence[Record], indices: Indices) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i in indices:
        groups[records[i].subject].append(int(i))
    return dict(sorted(groups.items()))


def _patient_label(records: Sequence[Record], rows: list[int]) -> str:
    return records[rows[0]].label


def _fold(name: str, records: Sequence[Record], test_patients: set[str]) -> Fold:
    test = np.array(
        [i for i, r in enumerate(records) if r.subject in test_patients], dtype=np.int64
    )
    train = np.array(
        [i for i, r in enumerate(records) if r.subject not in test_patients], dtype=np.int64
    )
    return Fold(name, train, test)


def leave_one_center_out(records: Sequence[Record]) -> list[Fold]:
    centers = sorted({r.center for r in records})
    if len(centers) < 2:
        raise DataError(
            "Leave-one-center-out needs at least two centers.",
            why=f"The manifest has {len(centers)} center(s).",
            fix="Use --cv grouped-kfold or leave-one-patient-out.",
        )
    return [
        _fold(f"center={c}", records, {r.subject for r in records if r.center == c})
        for c in centers
    ]


def leave_one_patient_out(records: Sequence[Record]) -> list[Fold]:
    return [_fold(f"patient={p}", records, {p}) for p in sorted({r.subject for r in records})]


def _stratified_patient_groups(
    records: Sequence[Record], indices: Indices, k: int, seed: int
) -> list[list[str]]:
    """Deal each class's patients round-robin (after a seeded shuffle) into ``k`` groups."""
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[str]] = defaultdict(list)
    for pid, rows in _patients(records, indices).items():
        by_label[_patient_label(records, rows)].append(pid)
    groups: list[list[str]] = [[] for _ in range(k)]
    offset = 0
    for label in sorted(by_label):
        pids = by_label[label]
        order = rng.permutation(len(pids))
        for j, o in enumerate(order):
            groups[(offset + j) % k].append(pids[o])
        offset += len(pids)  # keep group sizes balanced across classes
    return groups


def grouped_kfold(records: Sequence[Record], k: int = 5, seed: int = 0) -> list[Fold]:
    n_patients = len({r.subject for r in records})
    if not 2 <= k <= n_patients:
        raise DataError(
            f"Grouped k-fold needs 2 <= k <= number of patients ({n_patients}); got k={k}.",
            fix="Pass a smaller --folds.",
        )
    groups = _stratified_patient_groups(records, range(len(records)), k, seed)
    return [_fold(f"fold={j + 1}/{k}", records, set(g)) for j, g in enumerate(groups)]


def make_folds(records: Sequence[Record], mode: str, k: int = 5, seed: int = 0) -> list[Fold]:
    if mode == "leave-one-center-out":
        folds = leave_one_center_out(records)
    elif mode == "leave-one-patient-out":
        folds = leave_one_patient_out(records)
    elif mode == "grouped-kfold":
        folds = grouped_kfold(records, k, seed)
    else:
        raise DataError(f"Unknown cross-validation mode {mode!r}.", fix=f"Use one of {CV_MODES}.")
    for fold in folds:
        check_no_leak(records, fold.train, fold.test)
    return folds


def inner_split(
    records: Sequence[Record], indices: Indices, val_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (train, validation) by patient, stratified by label.

    Each class keeps at least one training patient; a class with a single patient stays
    wholly in training; ``val_fraction`` 0 means no validation split. Used for early
    stopping inside one training run.
    """
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[str]] = defaultdict(list)
    groups = _patients(records, indices)
    for pid, rows in groups.items():
        by_label[_patient_label(records, rows)].append(pid)
    val_patients: set[str] = set()
    for label in sorted(by_label):
        pids = by_label[label]
        n_val = min(len(pids) - 1, max(1, round(val_fraction * len(pids))))
        if val_fraction <= 0:
            n_val = 0
        if n_val <= 0:
            continue
        chosen = rng.choice(len(pids), size=n_val, replace=False)
        val_patients.update(pids[c] for c in chosen)
    train = np.array(
        [i for pid, rows in groups.items() if pid not in val_patients for i in rows],
        dtype=np.int64,
    )
    val = np.array(
        [i for pid, rows in groups.items() if pid in val_patients for i in rows], dtype=np.int64
    )
    check_no_leak(records, train, val)
    return np.sort(train), np.sort(val)


def check_no_leak(records: Sequence[Record], train: Indices, test: Indices) -> None:
    shared = {records[i].subject for i in train} & {records[i].subject for i in test}
    if shared:
        raise DataError(
            f"{len(shared)} patient(s) are on both sides of a split.",
            why=", ".join(sorted(shared)[:10]),
            fix="This is a bug in fold generation; please report it.",
        )
