"""train and evaluate as a user runs them (subprocesses), on a handful of tiny phantoms."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fetal_viewer.core.model.checkpoint import load_checkpoint
from fetal_viewer.core.training.summary import PredictionTable, summarise
from tests.factories import run_cli

FAST = [
    "--input-size",
    "64",
    "--batch-size",
    "8",
    "--device",
    "cpu",
    "--max-frames-per-patient",
    "2",
]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fetal_viewer.core.phantoms import generate_dataset

    out = tmp_path_factory.mktemp("phantoms")
    # 2 centers x 5 classes x 1 patient, small frames
    return generate_dataset(
        out, patients_per_class=1, centers=2, seed=3, fmt="png", size=(160, 120)
    )


def test_train_then_score_then_cross_validate(phantoms: Path, tmp_path: Path) -> None:
    out = tmp_path / "model"
    r = run_cli("train", "--manifest", str(phantoms), "--out", str(out), "--epochs", "1", *FAST)
    assert r.returncode == 0, r.stderr
    assert "manifest OK: " in r.stdout and "class weights" in r.stdout
    loaded = load_checkpoint(out / "card.json")
    card = loaded.card
    assert card.input_size == 64 and len(card.classes) == 5
    assert card.metrics["class_weights"].keys() == set(card.classes)
    assert json.loads(card.training_data)["patients"] == 10
    assert (out / "history.json").is_file()
    # a second run into the same folder overwrites nothing
    weights = (out / "weights.safetensors").read_bytes()
    again = run_cli("train", "--manifest", str(phantoms), "--out", str(out), "--epochs", "1", *FAST)
    assert again.returncode == 1 and "already holds a trained model" in again.stderr
    assert (out / "weights.safetensors").read_bytes() == weights
    # train fits the domain guard on the training frames, threshold on the validation split
    assert loaded.guard is not None and "joint threshold" in r.stdout
    assert card.artifacts["guard"]["file"] == "guard.safetensors"
    assert card.metrics["domain_guard"]["validation_frames"] == loaded.guard.n_val > 0

    def score(dest: Path, *options: str) -> dict:
        r = run_cli(
            "evaluate",
            "--manifest",
            str(phantoms),
            "--out",
            str(dest),
            "--model",
            str(out / "card.json"),
            "--bootstrap",
            "50",
            *options,
        )
        assert r.returncode == 0, r.stderr
        return json.loads((dest / "metrics.json").read_text())

    scored = tmp_path / "scored"
    foreign = tmp_path / "foreign"  # not fetal heads: flat fields, bars, noise
    foreign.mkdir()
    rng = np.random.default_rng(0)
    for k, img in enumerate(
        [np.full((90, 120), 200, np.uint8), np.tile(np.arange(120, dtype=np.uint8), (90, 1))]
        + [rng.integers(0, 255, (90, 120), dtype=np.uint8) for _ in range(2)]
    ):
        cv2.imwrite(str(foreign / f"f{k}.png"), img)
    metrics = score(scored, "--backend", "torch", "--ood", str(foreign))
    guard = metrics["domain_guard"]
    assert guard["ood"]["frames"] == 4 and 0.0 <= guard["ood"]["auroc"] <= 1.0
    assert guard["by_center"].keys() == {"A", "B"}
    assert set(guard["by_class"]) == set(card.classes)
    flagged = 1 - np.mean([int(r["in_domain"]) for r in _rows(scored / "predictions.csv")])
    assert guard["images_flagged"] == pytest.approx(flagged, abs=1e-6)
    assert guard["in_domain_only"]["images"] == round((1 - flagged) * metrics["images"])
    assert metrics["patients"] == 10
    assert 0.0 <= metrics["patient_level"]["accuracy"] <= 1.0
    assert set(metrics["by_ga_band"]) <= {"<20", "20-28", ">28"}
    assert metrics["localisation"]["all"]["images"] > 0
    html = (scored / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4 and "Research use only" in html
    with (scored / "predictions.csv").open(newline="") as fh:
        predicted = list(csv.DictReader(fh))
    assert len(predicted) == metrics["images"]
    # paths as the manifest gives them, relative to its folder
    with phantoms.open(newline="") as fh:
        listed = {r["path"] for r in csv.DictReader(fh)}
    assert {r["path"] for r in predicted} <= listed

    # the same model's maps on the stitched grid: same predictions, a finer grid whose
    # lattice holds the plain one, so at least the plain pointing-game ceiling
    # (on the same runtime: auto may pick a bfloat16 one, whose answers may differ)
    fine_m = score(tmp_path / "fine", "--backend", "torch", "--cam-method", "gradcam-stitch")
    assert fine_m["setup"]["heatmap"] == "gradcam-stitch"
    assert metrics["setup"]["heatmap"] == "gradcam"
    assert fine_m["patient_level"]["accuracy"] == metrics["patient_level"]["accuracy"]
    plain_loc, fine_loc = metrics["localisation"]["all"], fine_m["localisation"]["all"]
    assert fine_loc["images"] == plain_loc["images"]
    assert fine_loc["pointing_ceiling"] >= plain_loc["pointing_ceiling"]
    for loc in (plain_loc, fine_loc):  # the 15 px tolerance of Zhang et al. only adds hits
        assert loc["pointing_game"] <= loc["pointing_game_15px"] <= 1.0

    # each center scored on its own, then pooled: the same figures as scoring them together
    with phantoms.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    per_center = []
    for center in ("A", "B"):
        part = phantoms.parent / f"manifest_{center}.csv"
        with part.open("w", newline="") as fh:
            w = csv.DictWriter(fh, list(rows[0]))
            w.writeheader()
            w.writerows(r for r in rows if r["center"] == center)
        dest = tmp_path / f"center_{center}"
        r = run_cli(
            "evaluate", "--manifest", str(part), "--out", str(dest),
            "--model", str(out / "card.json"), "--bootstrap", "50", "--backend", "torch",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        per_center.append(str(dest))
    pooled_dir = tmp_path / "pooled"
    r = run_cli(
        "evaluate", "--manifest", str(phantoms), "--out", str(pooled_dir),
        "--pool", *per_center, "--bootstrap", "50",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "pooling 10 of the manifest's 10 patients from 2 runs" in r.stdout
    pooled = json.loads((pooled_dir / "metrics.json").read_text())
    assert pooled["setup"]["protocol"] == "pooled predictions of 2 runs"
    assert pooled["setup"]["run 1"] == f"{per_center[0]}: {card.name} (version 1), 5 patients"
    assert set(pooled["by_fold"]) == {"center_A", "center_B"}
    for key in ("patients", "images"):
        assert pooled[key] == metrics[key], key
    for key in ("accuracy", "confusion_matrix"):
        assert pooled["patient_level"][key] == metrics["patient_level"][key], key
    # AUROCs and heat shares from the tables as written (probabilities to 6 decimals, as a resumed --cv reads
    # them): the pooled table is the whole-manifest one, row for row
    whole, _ = summarise(PredictionTable.read_csv(scored / "predictions.csv", card.classes))
    for key in ("macro_auroc", "micro_auroc"):
        assert pooled["patient_level"][key] == whole["patient_level"][key], key
    for center in ("A", "B"):
        assert pooled["by_center"][center] == whole["by_center"][center], center
    assert pooled["localisation"]["all"] == whole["localisation"]["all"]
    assert (pooled_dir / "report.html").is_file()
    # a patient in two of the runs would count twice: refused, nothing written
    r = run_cli(
        "evaluate", "--manifest", str(phantoms), "--out", str(tmp_path / "twice"),
        "--pool", per_center[0], str(scored),
    )  # fmt: skip
    assert r.returncode == 1 and "is in both center_A and scored" in r.stderr
    assert not (tmp_path / "twice").exists()
    # a card that aggregates by majority vote is scored by its rule, as the viewer shows it
    vote_model = tmp_path / "vote_model"
    shutil.copytree(out, vote_model, ignore=shutil.ignore_patterns("state"))
    vote_card = json.loads((vote_model / "card.json").read_text())
    vote_card["aggregation"] = "vote"
    (vote_model / "card.json").write_text(json.dumps(vote_card))
    vote_dir = tmp_path / "vote_B"
    r = run_cli(
        "evaluate", "--manifest", str(phantoms.parent / "manifest_B.csv"), "--out",
        str(vote_dir), "--model", str(vote_model / "card.json"), "--bootstrap", "20",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    voted = json.loads((vote_dir / "metrics.json").read_text())
    assert voted["setup"]["patient_aggregation"] == "vote"
    assert metrics["setup"]["patient_aggregation"] == "mean"
    by_vote, _ = summarise(
        PredictionTable.read_csv(vote_dir / "predictions.csv", card.classes), rule="vote", n_boot=20
    )
    assert voted["patient_level"] == by_vote["patient_level"]
    # and runs aggregated by different rules are not pooled
    r = run_cli(
        "evaluate", "--manifest", str(phantoms), "--out", str(tmp_path / "mixed"),
        "--pool", per_center[0], str(vote_dir),
    )  # fmt: skip
    assert r.returncode == 1 and "different rules (mean, vote)" in r.stderr

    cv = tmp_path / "cv"
    cv_args = [
        "evaluate",
        "--manifest",
        str(phantoms),
        "--out",
        str(cv),
        "--cv",
        "leave-one-center-out",
        "--task",
        "anomalies",
        "--epochs",
        "1",
        "--bootstrap",
        "50",
        "--backend",
        "torch",
        "--val-fraction",
        "0",
        "--name",
        "demo",
        "--fp16",
        *FAST,
    ]
    r = run_cli(*cv_args, "--cam-method", "gradcam-stitch")
    assert r.returncode == 1 and "--cam-method applies to --model only" in r.stderr
    # folds can run one at a time (on several machines); a later run gathers them
    r = run_cli(*cv_args, "--only-fold", "center=Z")
    assert r.returncode != 0 and "No fold named center=Z" in r.stderr and "center=B" in r.stderr
    r = run_cli(*cv_args, "--only-fold", "center=B")
    assert r.returncode == 0, r.stderr
    assert "2 folds over" in r.stdout and "running only center=B" in r.stdout
    assert set(json.loads((cv / "metrics.json").read_text())["by_fold"]) == {"center=B"}
    assert not (cv / "folds" / "center_A").exists()
    # a run with other settings refuses to put B into its report, before training anything
    r = run_cli(*cv_args, "--only-fold", "center=A", "--seed", "5")
    assert r.returncode == 1 and "other settings" in r.stderr and "seed: saved 0, now 5" in r.stderr
    assert not (cv / "folds" / "center_A").exists()
    # the next fold's run reports on both: B, scored earlier (or copied in), is gathered
    r = run_cli(*cv_args, "--only-fold", "center=A")
    assert r.returncode == 0, r.stderr
    assert "gathering the scored center=B into the report" in r.stdout
    assert r.stdout.count("already scored") == 1 and r.stdout.count("epoch 1/1") == 1
    m = json.loads((cv / "metrics.json").read_text())
    assert m["classes"] == ["anencephaly", "encephalocele", "holoprosencephaly", "rachischisis"]
    assert set(m["by_fold"]) == {"center=A", "center=B"}
    assert m["patients"] == 8  # normal patients left out in anomaly-only mode
    head = json.loads(r.stdout.strip().splitlines()[-1])
    assert head["protocol"] == "leave-one-center-out"
    assert not (cv / "folds" / "center_A" / "state").exists()
    # each fold model is a shippable checkpoint carrying the figures of the center it never saw
    fold_card = cv / "folds" / "center_A" / "card.json"
    fold = load_checkpoint(fold_card).card
    assert fold.name == "demo, leave-one-center-out center=A" and fold.dtype == "float16"
    assert json.loads(fold.training_data)["centers"] == ["B"]
    held_out = fold.metrics["held_out"]
    assert held_out["protocol"] == "leave-one-center-out center=A held out"
    assert held_out["patients"] == 4 and held_out["images"] == m["by_fold"]["center=A"]["images"]
    assert held_out["patient_accuracy"] == m["by_fold"]["center=A"]["patient_accuracy"]
    report = (cv / "report.html").read_text()
    loc = m["localisation"]["all"]
    assert loc["pointing_game"] <= loc["pointing_ceiling"] <= 1.0

    # an interrupted or repeated run resumes: scored folds are reused, not retrained, and
    # the report still carries its heatmap examples. A fold scored before the pointing
    # ceiling existed gets that column added from its frames and masks.
    (cv / "report.html").unlink()
    old = cv / "folds" / "center_A" / "predictions.csv"
    with old.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    with old.open("w", newline="") as fh:
        w = csv.DictWriter(fh, [k for k in rows[0] if k != "pointing_reachable"])
        w.writeheader()
        w.writerows({k: v for k, v in row.items() if k != "pointing_reachable"} for row in rows)
    r = run_cli(*cv_args, "--resume", "--update-card", str(fold_card))
    assert r.returncode == 0, r.stderr
    fold = load_checkpoint(fold_card).card  # the weights' sha256 still holds
    assert fold.metrics["held_out"] == held_out
    assert fold.metrics["leave-one-center-out"]["patients"] == 8
    assert r.stdout.count("already scored") == 2 and "epoch 1/1" not in r.stdout
    assert r.stdout.count("adding the pointing-game ceiling") == 1
    again_loc = json.loads((cv / "metrics.json").read_text())["localisation"]
    assert json.dumps(again_loc, sort_keys=True) == json.dumps(m["localisation"], sort_keys=True)
    again_fold = json.loads((cv / "metrics.json").read_text())["by_fold"]
    assert json.dumps(again_fold, sort_keys=True) == json.dumps(m["by_fold"], sort_keys=True)
    again = (cv / "report.html").read_text()
    assert again.count("data:image/png;base64,") == report.count("data:image/png;base64,")


def test_bad_manifest_is_reported_before_training(phantoms: Path, tmp_path: Path) -> None:
    bad = phantoms.parent / "bad.csv"
    text = phantoms.read_text().splitlines()
    text[1] = (
        text[1]
        .replace(",anencephaly,", ",hydrocephalus,")
        .replace(",rachischisis,", ",hydrocephalus,")
        .replace(",normal,", ",hydrocephalus,")
    )
    text[2] = "png/missing.png" + text[2][text[2].index(",") :]
    bad.write_text("\n".join(text) + "\n")
    r = run_cli("train", "--manifest", str(bad), "--out", str(tmp_path / "x"), *FAST)
    assert r.returncode == 1
    assert "unknown label (1)" in r.stderr and "hydrocephalus" in r.stderr
    assert "missing file (1)" in r.stderr
    assert not (tmp_path / "x").exists()


def test_training_options_out_of_range_are_usage_errors_before_any_work(
    phantoms: Path, tmp_path: Path
) -> None:
    for option, value, said in (
        ("--input-size", "100000", "from 32 to 1024"),  # would exhaust the memory
        ("--epochs", "0", "at least 1"),
        ("--lr", "-1", "above 0"),
        ("--lr", "nan", "above 0"),
        ("--val-fraction", "1.5", "from 0 to 0.9"),
        ("--workers", "-1", "at least 0"),
    ):
        r = run_cli(
            "train", "--manifest", str(phantoms), "--out", str(tmp_path / "x"), option, value
        )
        assert r.returncode == 2 and said in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "x").exists()


def test_unreadable_outlier_paths_are_reported_before_training(
    phantoms: Path, tmp_path: Path
) -> None:
    out = tmp_path / "x"
    exposure = ["--outlier-exposure", "0.5", "--outliers", str(tmp_path / "no-such-folder")]
    r = run_cli("train", "--manifest", str(phantoms), "--out", str(out), *FAST, *exposure)
    assert r.returncode == 1
    assert "No frames could be read from the --outliers paths." in r.stderr
    assert "Traceback" not in r.stderr and not (out / "card.json").exists()
    r = run_cli("train", "--manifest", str(phantoms), "--out", str(out), *FAST, *exposure[2:])
    assert r.returncode == 1 and "--outlier-exposure W" in r.stderr


def test_ddp_two_processes_gloo(phantoms: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "fetal_viewer",
            "train",
            "--manifest",
            str(phantoms),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--val-fraction",
            "0",
            "--input-size",
            "32",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--max-frames-per-patient",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 processes" in r.stdout
    assert r.stdout.count("checkpoint: ") == 1  # only rank 0 writes
    history = json.loads((out / "history.json").read_text())
    # no validation split: no val figures, and no NaN that strict JSON readers refuse
    for name in ("history.json", "card.json"):
        assert "NaN" not in (out / name).read_text(), name
    # 20 training images: each rank sees 10; the all-reduced count covers both ranks
    assert history[0]["images"] == 16  # 2 ranks x 2 full batches of 4 (drop_last)
    load_checkpoint(out / "card.json")
