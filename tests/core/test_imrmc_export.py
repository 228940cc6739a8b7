"""The iMRMC export: ``NAME.imrmc`` (RJafroc reads only that extension) with integer
reader, case and modality IDs (older iMRMC versions and RJafroc's reader want integers)
and a mapping file back to pseudonyms; read back with the project's own parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from fetal_viewer.core.readerstudy.export import export_all, long_rows, read_imrmc, truth_of
from fetal_viewer.core.readerstudy.simulate import simulate_study
from fetal_viewer.core.store import open_store
from fetal_viewer.errors import DataError


def test_imrmc_has_integer_ids_a_mapping_and_reads_back(tmp_path: Path) -> None:
    store = open_store(tmp_path / "s.db")
    simulate_study(store, "pilot study", n_readers=3, n_cases=10, seed=4)
    files = export_all(store, "pilot study", tmp_path / "out")
    rows = long_rows(store, "pilot study")
    store.close()
    path = files["imrmc"]
    assert path.name == "pilot_study.imrmc"
    data = read_imrmc(path, files["imrmc_ids"])
    lines = path.read_text().splitlines()
    body = lines[lines.index("BEGIN DATA:") + 1 :]
    assert all(len(line.split(",")) == 4 for line in body)
    for line in body:
        reader, case, modality, _score = line.split(",")
        int(reader), int(case), int(modality)  # integers only
    assert (data.n_readers, data.n_modalities) == (3, 2)
    assert data.n_normal + data.n_abnormal == 10
    assert data.modalities == {1: "unaided", 2: "aided"}
    # every read comes back with its reader, case, condition and score
    back = {(r.reader, r.case, r.modality): r.score for r in data.named_scores()}
    assert back == {(r.reader, r.case, r.condition): float(r.anomaly_prob) for r in rows}
    truth = {r.case: truth_of(r.reference) for r in rows}
    assert data.named_truth() == truth


def test_imrmc_reader_refuses_what_rjafroc_refuses(tmp_path: Path) -> None:
    bad = tmp_path / "x.imrmc"
    bad.write_text("NR: 1\nN0: 1\nN1: 1\nNM: 1\nBEGIN DATA:\n-1,c1,0,0\n-1,2,0,1\nR1,c1,1,5\n")
    with pytest.raises(DataError, match="integer"):
        read_imrmc(bad)
    wrong = tmp_path / "x.csv"
    wrong.write_text("NR: 1\n")
    with pytest.raises(DataError, match=r"\.imrmc"):
        read_imrmc(wrong)
