"""Coordinator CLI end to end: create from a folder of DICOMs with fake PHI + reference CSV,
readers in their own DB copies, merge (idempotent), export (no PHI anywhere), analyse."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np

from tests.factories import run_cli

PHI = {
    "PatientName": "Doe^Janet^Q",
    "PatientID": "MRN-KQ7734-ZX2291",
    "PatientBirthDate": "19870412",
}


def write_dicom(path: Path, i: int) -> None:
    from pydicom.uid import UltrasoundImageStorage

    from tests.factories import write_dicom as write

    write(
        path,
        np.full((8, 8), i, np.uint8).tobytes(),
        rows=8,
        cols=8,
        sop_class=UltrasoundImageStorage,
        PatientName=f"{PHI['PatientName']}{i}",
        PatientID=f"{PHI['PatientID']}-{i}",
        PatientBirthDate=PHI["PatientBirthDate"],
    )


def test_coordinator_workflow_and_exports_without_phi(tmp_path: Path) -> None:
    folder = tmp_path / "Doe_Janet_exams"
    folder.mkdir()
    names = []
    with open(tmp_path / "reference.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "source"])
        for i in range(12):
            name = f"MRN-KQ7734-ZX2291_{i}_Doe.dcm"
            write_dicom(folder / name, i)
            names.append(name)
            w.writerow([name, "normal" if i % 2 else "anencephaly", "postnatal follow-up"])
    db = tmp_path / "coord.db"
    r = run_cli(
        "study",
        "--db",
        str(db),
        "create",
        "pilot",
        "--folder",
        str(folder),
        "--reference",
        str(tmp_path / "reference.csv"),
        "--seed",
        "3",
    )
    assert r.returncode == 0, r.stderr
    for reader in ("R1", "R2"):
        assert run_cli("study", "--db", str(db), "add-reader", "pilot", reader).returncode == 0
    # each reader reads into a copy of the coordinator's database
    from fetal_viewer.core.store import open_store

    store = open_store(db)
    ai = {
        c.pseudonym: {"model_sha": "abc123", "probabilities": {"normal": 0.3, "anencephaly": 0.7}}
        for c in store.list_cases("pilot")
    }
    store.close()
    (tmp_path / "ai.json").write_text(json.dumps(ai))
    with open(tmp_path / "answers.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "confidence", "anomaly_prob"])
        for k in range(24):
            w.writerow(["anencephaly" if k % 3 else "normal", 60, (k * 37) % 101])
    for reader in ("R1", "R2"):
        copy = tmp_path / f"{reader}.db"
        shutil.copy(db, copy)
        r = run_cli(
            "study",
            "--db",
            str(copy),
            "read",
            "pilot",
            reader,
            "--answers",
            str(tmp_path / "answers.csv"),
            "--ai-json",
            str(tmp_path / "ai.json"),
        )
        assert r.returncode == 0, r.stderr
        m = run_cli("study", "--db", str(db), "merge", "pilot", "--from", str(copy))
        assert m.returncode == 0 and "reads added 24" in m.stdout, m.stdout + m.stderr
    again = run_cli("study", "--db", str(db), "merge", "pilot", "--from", str(tmp_path / "R1.db"))
    assert "reads added 0" in again.stdout and "already present 24" in again.stdout
    status = run_cli("study", "--db", str(db), "status", "pilot")
    assert "study\t48/48" in status.stdout, status.stdout
    out = tmp_path / "exports"
    assert run_cli("study", "--db", str(db), "export", "pilot", "--out", str(out)).returncode == 0
    files = sorted(out.iterdir())
    assert len(files) == 5  # reads CSV, JSON, .imrmc and its IDs, MRMCaov
    forbidden = [
        str(tmp_path),
        folder.name,
        "Doe",
        "Janet",
        "KQ7734",  # parts of the ID that no timestamp or UUID can contain
        "ZX2291",
        "19870412",
        "1987-04-12",
        *names,
    ]
    for p in files:
        text = p.read_text()
        for bad in forbidden:
            assert bad not in text, (p.name, bad)
    rows = list(csv.DictReader((out / "pilot_reads.csv").read_text().splitlines()))
    assert len(rows) == 48 and {r["condition"] for r in rows} == {"unaided", "aided"}
    assert all(r["ai_model_sha"] == "abc123" for r in rows if r["condition"] == "aided")
    imrmc = (out / "pilot.imrmc").read_text().splitlines()
    i = imrmc.index("BEGIN DATA:")
    assert sum(line.startswith("-1,") for line in imrmc[i + 1 :]) == 12
    assert len(imrmc) - i - 1 == 12 + 48
    head = (out / "pilot_mrmcaov.csv").read_text().splitlines()[0]
    assert head == "reader,treatment,case,truth,rating"
    # analysis from the DB and from the exported CSV agree
    a1 = run_cli("analyze", "--db", str(db), "--study", "pilot", "--out", str(tmp_path / "a1"))
    a2 = run_cli("analyze", "--reads", str(out / "pilot_reads.csv"), "--out", str(tmp_path / "a2"))
    assert a1.returncode == 0 and a2.returncode == 0, a1.stderr + a2.stderr
    assert a1.stdout.splitlines()[0] == a2.stdout.splitlines()[0]
    report = (tmp_path / "a1" / "report.html").read_text()
    assert "Obuchowski-Rockette" in report and "data:image/png;base64" in report
    for bad in forbidden:
        assert bad not in report and bad not in (tmp_path / "a1" / "analysis.json").read_text()


def test_errors_are_reported(tmp_path: Path) -> None:
    from fetal_viewer.core.store import open_store

    open_store(tmp_path / "x.db").close()
    r = run_cli("study", "--db", str(tmp_path / "x.db"), "status", "nope")
    assert r.returncode == 1 and "No study named" in r.stderr and "Fix:" in r.stderr


def _small_study(tmp_path: Path) -> Path:
    folder = tmp_path / "cases"
    folder.mkdir()
    with open(tmp_path / "reference.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for i in range(3):
            write_dicom(folder / f"c{i}.dcm", i)
            w.writerow([f"c{i}.dcm", "normal" if i % 2 else "anencephaly"])
    db = tmp_path / "s.db"
    args = ["--folder", str(folder), "--reference", str(tmp_path / "reference.csv")]
    assert run_cli("study", "--db", str(db), "create", "s", *args).returncode == 0
    assert run_cli("study", "--db", str(db), "add-reader", "s", "R1").returncode == 0
    return db


def _reads(db: Path) -> list:  # type: ignore[type-arg]
    from fetal_viewer.core.store import open_store

    store = open_store(db)
    try:
        return store.reads(store.get_study("s").id)
    finally:
        store.close()


def test_headless_reading_checks_everything_before_storing(tmp_path: Path) -> None:
    db = _small_study(tmp_path)
    order = run_cli("study", "--db", str(db), "order", "s", "R1")
    assert order.returncode == 0, order.stderr
    steps = [line.split("\t") for line in order.stdout.strip().splitlines()[1:]]
    assert [s[2] for s in steps] == ["unaided", "aided"] * 3  # sequential: each case twice
    answers = tmp_path / "answers.csv"
    answers.write_text("label,confidence,anomaly_prob\n" + "normal,60,\n" * 6)
    # no AI for the aided steps: one clear error, listing each, and nothing stored
    r = run_cli("study", "--db", str(db), "read", "s", "R1", "--answers", str(answers))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "nothing was stored" in r.stderr and r.stderr.count("no AI output for case") == 3
    assert _reads(db) == []
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("diagnosis,conf,p\nnormal,1,2\n")
    r = run_cli("study", "--db", str(db), "read", "s", "R1", "--answers", str(wrong))
    assert r.returncode == 1 and "'label'" in r.stderr and "unknown columns" in r.stderr
    assert _reads(db) == []
    # the AI file the aided step needs, from the order's case names; then it reads
    ai = {
        s[1]: {"model_sha": "abc", "probabilities": {"normal": 0.2, "anencephaly": 0.8}}
        for s in steps
    }
    (tmp_path / "ai.json").write_text(json.dumps(ai))
    # a probability on a 0-1 scale would be stored as 0: refused, with the scale
    fractions = tmp_path / "fractions.csv"
    fractions.write_text("label,confidence,anomaly_prob\nnormal,60,0.24\nnormal,60.5,14\n")
    r = run_cli("study", "--db", str(db), "read", "s", "R1", "--answers", str(fractions))
    assert (
        r.returncode == 1
        and "line 2: anomaly_prob 0.24 is not a whole number from 0 to 100" in r.stderr
    )
    assert "line 3: confidence 60.5 is not a whole number" in r.stderr and _reads(db) == []
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("label,case\nnormal,NO-SUCH-CASE\n")
    r = run_cli("study", "--db", str(db), "read", "s", "R1", "--answers", str(unknown))
    assert r.returncode == 1 and "unknown case 'NO-SUCH-CASE'" in r.stderr
    r = run_cli(
        "study", "--db", str(db), "read", "s", "R1", "--answers", str(answers),
        "--ai-json", str(tmp_path / "ai.json"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    reads = _reads(db)
    assert len(reads) == 6 and all(x.active_ms is None and x.anomaly_prob is None for x in reads)
    assert all(x.confidence == 60 for x in reads)


def _guarded_card(tmp_path: Path, threshold: float) -> Path:
    """A tiny 64-px model whose domain guard flags every frame (threshold < 0) or none."""
    import torch

    from fetal_viewer.core.model.artifacts import add_artifact
    from fetal_viewer.core.model.checkpoint import ModelCard, save_checkpoint
    from fetal_viewer.core.model.guard import GUARD_ARTIFACT, GUARD_FILE, DomainGuard, save_guard
    from fetal_viewer.core.model.network import build_resnet34

    torch.manual_seed(0)
    card = save_checkpoint(
        build_resnet34(5), ModelCard(name="tiny", version="1", input_size=64), tmp_path / "m"
    )
    guard = DomainGuard(
        np.zeros((5, 512), np.float32), np.eye(512, dtype=np.float32), threshold, 99.0, 10, 5
    )
    add_artifact(card, GUARD_ARTIFACT, save_guard(guard, card.parent / GUARD_FILE))
    return card


def test_study_ai_and_headless_reads_carry_the_domain_guard(tmp_path: Path) -> None:
    """`study ai` writes what the aided step shows from the study's model, the guard's verdict
    included; the headless reads store it; export and analysis split the aided reads by it."""
    card = _guarded_card(tmp_path, threshold=-1.0)  # every frame outside the domain
    folder = tmp_path / "cases"
    folder.mkdir()
    for i in range(3):
        write_dicom(folder / f"c{i}.dcm", 40 * i + 20)
    (tmp_path / "ref.csv").write_text(
        "path,label\n"
        + "".join(f"c{i}.dcm,{'normal' if i % 2 else 'anencephaly'}\n" for i in range(3))
    )
    db = tmp_path / "s.db"
    r = run_cli(
        "study", "--db", str(db), "create", "s", "--folder", str(folder),
        "--reference", str(tmp_path / "ref.csv"), "--model-card", str(card),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert run_cli("study", "--db", str(db), "add-reader", "s", "R1").returncode == 0
    ai = tmp_path / "ai.json"
    r = run_cli("study", "--db", str(db), "ai", "s", "--model", str(card), "--out", str(ai))
    assert r.returncode == 0, r.stderr
    doc = json.loads(ai.read_text())
    assert len(doc) == 3
    for entry in doc.values():
        assert entry["domain_threshold"] == -1.0 and entry["domain_score"] >= 0.0
        assert set(entry["probabilities"]) == {
            "normal", "anencephaly", "encephalocele", "holoprosencephaly", "rachischisis",
        }  # fmt: skip
    # another model's card is refused: the AI file must be the study's
    other = _guarded_card(tmp_path / "other", threshold=5.0)
    r = run_cli("study", "--db", str(db), "ai", "s", "--model", str(other), "--out", str(ai))
    assert r.returncode == 1 and "not the study's model" in r.stderr
    answers = tmp_path / "answers.csv"
    answers.write_text("label,anomaly_prob\n" + "normal,30\n" * 6)
    # an AI file edited or written from another model is refused, nothing stored
    forged = tmp_path / "forged.json"
    forged.write_text(
        json.dumps({k: {**v, "model_sha": "0" * 64} for k, v in doc.items()}), encoding="utf-8"
    )
    r = run_cli(
        "study", "--db", str(db), "read", "s", "R1", "--answers", str(answers),
        "--ai-json", str(forged),
    )  # fmt: skip
    assert r.returncode == 1 and "the AI JSON is from another model" in r.stderr, r.stderr
    assert _reads(db) == []
    r = run_cli(
        "study", "--db", str(db), "read", "s", "R1", "--answers", str(answers),
        "--ai-json", str(ai),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    flags = {(x.condition, x.ai_out_of_domain) for x in _reads(db)}
    assert flags == {("unaided", None), ("aided", True)}
    out = tmp_path / "export"
    assert run_cli("study", "--db", str(db), "export", "s", "--out", str(out)).returncode == 0
    long_csv = out / "s_reads.csv"
    with long_csv.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["ai_out_of_domain"] for r in rows if r["condition"] == "aided"} == {"true"}
    report = tmp_path / "report"
    assert run_cli("study", "--db", str(db), "add-reader", "s", "R2").returncode == 0
    r = run_cli("analyze", "--db", str(db), "--study", "s", "--out", str(report))
    assert r.returncode == 0, r.stderr
    # R2 has read nothing yet: the figures are interim, and the report says so
    interim = "The study is not finished: 6 of 12 reads are in"
    assert f"note: {interim}" in r.stdout and interim in (report / "report.html").read_text()
    split = json.loads((report / "analysis.json").read_text())["by_ai_domain"]
    assert set(split) == {"AI out of domain"} and split["AI out of domain"]["reads"] == 3
    assert "domain guard's verdict on the AI shown" in (report / "report.html").read_text()


def test_a_mistyped_database_path_is_an_error_not_a_new_database(tmp_path: Path) -> None:
    db = _small_study(tmp_path)
    missing = tmp_path / "typo" / "s.db"
    for args in (
        ("study", "--db", str(missing), "list"),
        ("study", "--db", str(missing), "status", "s"),
        ("study", "--db", str(db), "merge", "s", "--from", str(missing)),
        ("analyze", "--db", str(missing), "--study", "s", "--out", str(tmp_path / "a")),
    ):
        r = run_cli(*args)
        assert r.returncode == 1 and "There is no study database at this path" in r.stderr, args
        assert "Traceback" not in r.stderr
    assert not missing.parent.exists()
    both = run_cli(
        "analyze", "--db", str(db), "--study", "s", "--reads", str(tmp_path / "r.csv"),
        "--out", str(tmp_path / "a"),
    )  # fmt: skip
    assert both.returncode == 1 and "not both" in both.stderr
