"""Fold generation never puts one patient on both sides of a split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fetal_viewer.core.training.folds import (
    check_no_leak,
    grouped_kfold,
    inner_split,
    leave_one_center_out,
    leave_one_patient_out,
    make_folds,
)
from fetal_viewer.core.training.manifest import Record
from fetal_viewer.errors import DataError

LABELS = ("normal", "anencephaly", "encephalocele", "holoprosencephaly", "rachischisis")


def _records(seed: int = 0) -> list[Record]:
    rng = np.random.default_rng(seed)
    out: list[Record] = []
    row = 0
    for c in range(4):
        for p in range(12):
            label = LABELS[(p + c) % 5]
            for f in range(int(rng.integers(1, 5))):
                row += 1
                out.append(
                    Record(
                        Path(f"c{c}p{p}_{f}.png"), f, f"c{c}p{p}", f"c{c}", label, 22.0, None, row
                    )
                )
    rng.shuffle(out)  # frames of a patient are not contiguous
    return out


def _patients(records: list[Record], idx: np.ndarray) -> set[str]:
    return {records[i].patient_id for i in idx}


@pytest.mark.parametrize("mode", ["leave-one-center-out", "leave-one-patient-out", "grouped-kfold"])
def test_folds_partition_rows_and_never_split_a_patient(mode: str) -> None:
    records = _records()
    folds = make_folds(records, mode, k=5, seed=3)
    tested = np.concatenate([f.test for f in folds])
    # every row is tested exactly once
    assert sorted(tested.tolist()) == list(range(len(records)))
    for f in folds:
        assert not _patients(records, f.train) & _patients(records, f.test)
        assert len(f.train) + len(f.test) == len(records)


def test_loco_holds_out_exactly_one_center() -> None:
    records = _records()
    folds = leave_one_center_out(records)
    assert [f.name for f in folds] == ["center=c0", "center=c1", "center=c2", "center=c3"]
    for f in folds:
        held = f.name.split("=")[1]
        assert {records[i].center for i in f.test} == {held}
        assert held not in {records[i].center for i in f.train}


def test_lopo_has_one_fold_per_patient() -> None:
    records = _records()
    folds = leave_one_patient_out(records)
    assert len(folds) == len({r.patient_id for r in records})
    assert all(len(_patients(records, f.test)) == 1 for f in folds)


def test_grouped_kfold_is_balanced_stratified_and_seeded() -> None:
    records = _records()
    folds = grouped_kfold(records, k=4, seed=1)
    sizes = [len(_patients(records, f.test)) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    for f in folds:
        labels = {records[i].label for i in f.test}
        assert labels == set(LABELS)  # 48 patients, ~10 per class: every fold sees every class
    again = grouped_kfold(records, k=4, seed=1)
    assert all(np.array_equal(a.test, b.test) for a, b in zip(folds, again))
    other = grouped_kfold(records, k=4, seed=2)
    assert any(not np.array_equal(a.test, b.test) for a, b in zip(folds, other))


def test_inner_split_grouped_and_keeps_each_class_in_training() -> None:
    records = _records()
    idx = np.arange(len(records))
    tr, val = inner_split(records, idx, 0.25, seed=0)
    assert not _patients(records, tr) & _patients(records, val)
    assert sorted(np.concatenate([tr, val]).tolist()) == idx.tolist()
    assert {records[i].label for i in tr} == set(LABELS)
    assert {records[i].label for i in val} == set(LABELS)


def test_leak_check_raises() -> None:
    records = _records()
    same = [i for i, r in enumerate(records) if r.patient_id == "c0p0"]
    with pytest.raises(DataError, match="both sides"):
        check_no_leak(records, same[:1], same)


def test_loco_needs_two_centers() -> None:
    records = [r for r in _records() if r.center == "c0"]
    with pytest.raises(DataError, match="two centers"):
        leave_one_center_out(records)


def test_inner_split_zero_fraction_keeps_everything_in_training() -> None:
    records = _records()
    tr, val = inner_split(records, np.arange(len(records)), 0.0)
    assert len(val) == 0 and len(tr) == len(records)


def _grouped_records() -> list[Record]:
    """Five patients (one per class) made from each of 20 subjects' scans, one center."""
    return [
        Record(Path(f"s{s}_{k}.png"), 0, f"P{s:02d}{k}", "H", label, None, None, 5 * s + k, f"S{s}")
        for s in range(20)
        for k, label in enumerate(LABELS)
    ]


def test_splits_keep_a_subjects_patients_together() -> None:
    records = _grouped_records()
    subject = {r.patient_id: r.group for r in records}
    train, val = inner_split(records, range(len(records)), 0.2, seed=1)
    assert len(val) > 0
    assert {subject[records[i].patient_id] for i in train}.isdisjoint(
        {subject[records[i].patient_id] for i in val}
    )
    for fold in grouped_kfold(records, k=4, seed=0):
        a = {records[i].group for i in fold.train}
        b = {records[i].group for i in fold.test}
        assert a.isdisjoint(b) and len(a | b) == 20
    # two patients of one subject on both sides is a leak even though the patients differ
    with pytest.raises(DataError, match="both sides"):
        check_no_leak(records, [0], [1])
