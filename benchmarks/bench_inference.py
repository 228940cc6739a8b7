"""Inference benchmark: the app's predictor against every runtime measured beside it.

1. The app's predictor (``auto``: the fastest runtime measured on this machine whose
   outputs agree with float32 torch) against each backend of
   :mod:`fetal_viewer.core.runtime` run directly in the same process, interleaved, at
   batch 1 and 16. Goal: the app within 1.1x of the fastest runtime that agrees with the
   reference (the fastest of all, including backends ``auto`` refused, is printed too).
2. Heatmaps: one frame's stitched heatmap on the app against its plain heatmap on the
   ONNX Runtime predictor the app used before ``auto`` (item 4 of issue 43: stitched
   becomes the viewer's default where it costs no more).
3. *Analyse study*: prediction with all-class heatmaps over a 120-frame 300x400 DICOM cine,
   decoding and preprocessing included, in the viewer's chunks of 16, the network on every
   core but one as in the viewer. Goal >= 150 frames/s.
   With a card's second look, also the whole frame alone, to show what the look costs,
   and the look with its head finder in the app's process instead of worker processes.
4. Cold start of ``fetal-viewer --demo`` offscreen to the first AI result shown (the
   smoke test's log line), in a fresh process, with the user cache warm from an earlier
   start (the first start, which measures the runtimes, is reported too). Goal <= 3 s.
5. The lean bundle's size and cold start when ``dist/fetal-viewer`` is built (goal <= 800
   MB).

The demo model (128 px) when present, else a random ResNet34 at 128 px. Runs in one
process, interleaved, so load on a shared machine hits every candidate alike; compare the
ratios. The last printed line is one JSON object of the figures.

    .venv/bin/python benchmarks/bench_inference.py [--skip-cold-start]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))


def interleaved(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Median seconds of each function, run in rotating order so load hits all alike. Each
    timed call follows an untimed one of the same function: the runtime run before may
    leave its threads spinning (OpenMP, ONNX Runtime), which slowed the next one's first
    pass by up to a third on two cores."""
    for fn in fns.values():
        fn()
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fns[name]()
            t = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t)
    return {n: float(np.median(v)) for n, v in times.items()}


def cold_start(cache: Path, runs: int, command: list[str]) -> tuple[float, list[float]]:
    """Seconds from launching ``command --demo --smoke-test`` to the log line of the first
    AI result: the first start on an empty cache, then ``runs`` warm starts."""

    def once() -> float:
        logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", FETAL_VIEWER_CACHE_DIR=str(cache))
        env["FETAL_VIEWER_LOG_DIR"] = str(logs)
        env["FETAL_VIEWER_SETTINGS"] = str(logs / "settings.ini")
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        env.pop("FETAL_VIEWER_BACKEND", None)
        log = logs / "fetal-viewer.log"
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [*command, "--demo", "--smoke-test"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shown = None
        while proc.poll() is None or shown is None:
            if log.is_file() and "prediction shown" in log.read_text(errors="replace"):
                shown = time.perf_counter() - t0
                break
            if proc.poll() is not None:
                break
            time.sleep(0.01)
        proc.wait(timeout=300)
        if shown is None:
            raise RuntimeError(f"the smoke test showed no result (exit {proc.returncode})")
        return shown

    first = once()
    return first, [once() for _ in range(runs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-cold-start", action="store_true")
    args = parser.parse_args()

    from fetal_viewer.core.model.checkpoint import ModelCard, load_checkpoint
    from fetal_viewer.core.model.predictor import Predictor
    from fetal_viewer.core.runtime.backends import NAMES, default_threads
    from fetal_viewer.core.spawning import allow_workers
    from fetal_viewer.errors import InferenceError

    allow_workers()  # as the app does
    from fetal_viewer.resources import DEMO_MODEL_CARD

    work = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    if Path(DEMO_MODEL_CARD).is_file():
        card_path, model_note = Path(DEMO_MODEL_CARD), "demo model"
    else:
        import torch

        from fetal_viewer.core.model.checkpoint import save_checkpoint
        from fetal_viewer.core.model.network import build_resnet34

        torch.manual_seed(0)
        card_path = save_checkpoint(
            build_resnet34(5), ModelCard(name="bench", version="0", input_size=128), work
        )
        model_note = "random ResNet34, 128 px"
    loaded = load_checkpoint(card_path)
    size = loaded.card.input_size
    cache = work / "runtime"

    # the app's predictor: auto, measured on first use, then from the cache
    t0 = time.perf_counter()
    first = Predictor(loaded, cache_dir=cache)
    measure_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    app = Predictor(loaded, cache_dir=cache)
    startup_s = time.perf_counter() - t0
    choice = app.choice
    print(f"model: {model_note}, {size} px; {default_threads()} threads, {os.cpu_count()} cores")
    print(f"auto: {app.runtime_description}")
    for name, trial in choice.trials.items():
        extra = f" max|dprob| {trial.max_dprob:.2g}" if trial.max_dprob is not None else ""
        print(f"  {name:14s} {trial.status:11s}{extra} {trial.ms} {trial.why}")
    print(f"first use (measuring, exporting) {measure_s:.1f} s; cached start {startup_s:.2f} s")
    del first

    # every runtime beside it
    runtimes = {}
    for name in NAMES:
        try:
            runtimes[name] = Predictor(loaded, backend=name, cache_dir=cache).runtime
        except InferenceError as exc:
            print(f"  {name}: unavailable ({exc.what})")
    agreeing = {n for n, t in choice.trials.items() if t.status in ("chosen", "ok", "slower")}
    rng = np.random.default_rng(0)
    figures: dict[str, object] = {
        "model": model_note,
        "input_size": size,
        "backend": app.runtime.name,
        "backend_choice": choice.how,
        "first_use_s": round(measure_s, 2),
        "cached_startup_s": round(startup_s, 3),
        "rejected": {n: t.why for n, t in choice.trials.items() if t.status == "disagrees"},
    }
    for batch, reps in ((1, 31), (16, 7)):
        x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
        fns: dict[str, Callable[[], object]] = {"app": lambda x=x: app.run_arrays(x)}
        fns.update({n: (lambda b=b, x=x: b.run(x)) for n, b in runtimes.items()})
        t = interleaved(fns, reps)
        best_ok = min((v, n) for n, v in t.items() if n in agreeing)
        best_any = min((v, n) for n, v in t.items() if n != "app")
        print(
            f"batch {batch}: app {t['app'] * 1e3:.1f} ms; "
            + ", ".join(f"{n} {v * 1e3:.1f}" for n, v in t.items() if n != "app")
        )
        print(
            f"  app / fastest agreeing ({best_ok[1]}): {t['app'] / best_ok[0]:.2f}x; "
            f"/ fastest of all ({best_any[1]}): {t['app'] / best_any[0]:.2f}x"
        )
        figures[f"batch_{batch}_ms"] = {n: round(v * 1e3, 2) for n, v in t.items()}
        figures[f"batch_{batch}_ms_per_frame_app"] = round(t["app"] * 1e3 / batch, 2)
        figures[f"batch_{batch}_ratio_vs_fastest_agreeing"] = round(t["app"] / best_ok[0], 3)
        figures[f"batch_{batch}_fastest_agreeing"] = best_ok[1]
        figures[f"batch_{batch}_ratio_vs_fastest_any"] = round(t["app"] / best_any[0], 3)
        figures[f"batch_{batch}_fastest_any"] = best_any[1]

    # heatmaps: stitched on the app vs plain on the ONNX Runtime predictor of before
    old = Predictor(loaded, backend="onnxruntime", cache_dir=cache)
    x1 = rng.standard_normal((1, 3, size, size)).astype(np.float32)
    t = interleaved(
        {
            "stitched_app": lambda: app.run_arrays(x1, with_cam=True, stitch=True),
            "plain_app": lambda: app.run_arrays(x1, with_cam=True),
            "plain_onnxruntime": lambda: old.run_arrays(x1, with_cam=True),
        },
        15,
    )
    ratio = t["stitched_app"] / t["plain_onnxruntime"]
    print(
        f"one frame's heatmaps: stitched on the app {t['stitched_app'] * 1e3:.1f} ms, plain on "
        f"the app {t['plain_app'] * 1e3:.1f} ms, plain on ONNX Runtime "
        f"{t['plain_onnxruntime'] * 1e3:.1f} ms (stitched / old plain {ratio:.2f}x); the "
        f"viewer's default: {app.default_cam_method}"
    )
    figures["heatmap_1_ms"] = {k: round(v * 1e3, 2) for k, v in t.items()}
    figures["stitched_vs_old_plain"] = round(ratio, 3)
    figures["default_cam_method"] = app.default_cam_method

    # all-class heatmaps against prediction alone, and against pytorch-grad-cam's GradCAM
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x16 = rng.standard_normal((16, 3, size, size)).astype(np.float32)
    t = interleaved(
        {
            "heatmaps": lambda: app.run_arrays(x16, with_cam=True),
            "prediction": lambda: app.run_arrays(x16),
        },
        5,
    )
    figures["heatmaps_all_classes_vs_prediction"] = round(t["heatmaps"] / t["prediction"], 3)
    model, xt = loaded.model, torch.from_numpy(x16)
    with GradCAM(model=model, target_layers=[model.layer4[-1]]) as cam:
        t0 = time.perf_counter()
        for c in range(len(app.classes)):
            cam(input_tensor=xt, targets=[ClassifierOutputTarget(c)] * 16)
        lib_all = time.perf_counter() - t0
    figures["gradcam_lib_all_classes_vs_app_all_classes"] = round(lib_all / t["heatmaps"], 1)
    print(
        f"16 frames: all-class heatmaps / prediction alone {t['heatmaps'] / t['prediction']:.3f}x; "
        f"pytorch-grad-cam, every class: {lib_all / t['heatmaps']:.0f}x the app"
    )

    # the domain guard: prediction with it against prediction alone, same runtime, 16 frames
    # through the whole predict() path (preprocessing included); a card without a guard gets
    # one fitted on random features of the right size: the cost does not depend on its values
    from fetal_viewer.core.model.guard import fit_guard

    guard = loaded.guard
    if guard is None:
        feats = rng.standard_normal((400, app.fc_weight.shape[1]))
        guard = fit_guard(feats, np.arange(400) % len(app.classes), feats[:50])
    guarded, bare = (Predictor(loaded, cache_dir=cache) for _ in range(2))
    guarded.guard, bare.guard = guard, None
    # the guard reads the whole frames alone: the second look, timed under Analyse study
    # below, would only add the same head finder to both
    guarded.second_look = bare.second_look = False
    bare.runtime = guarded.runtime  # one runtime instance: the guard is the only difference
    frames16 = [rng.integers(0, 255, (300, 400, 3), dtype=np.uint8) for _ in range(16)]
    t = interleaved(
        {
            "with_guard": lambda: guarded.predict(frames16, batch_size=16),
            "prediction": lambda: bare.predict(frames16, batch_size=16),
        },
        11,
    )
    figures["guard_vs_prediction"] = round(t["with_guard"] / t["prediction"], 3)
    print(
        f"16 frames: prediction with the domain guard / prediction alone "
        f"{t['with_guard'] / t['prediction']:.3f}x (goal <= 1.05)"
    )

    # Analyse study: 120 frames of a DICOM cine, decoded, preprocessed, with heatmaps
    from bench_ui import N_FRAMES, write_cine

    from fetal_viewer.core.io import open_path

    series = open_path(write_cine(work / "cine.dcm", N_FRAMES)).patients[0].studies[0].series[0]

    def analyse(predictor: Predictor) -> None:
        for start in range(0, N_FRAMES, 16):
            frames = [series.frame(i) for i in range(start, min(N_FRAMES, start + 16))]
            predictor.predict(frames, batch_size=16, with_cam=True)

    # as the viewer runs it: the network on every core but one (gui.workers.model_threads),
    # the card's second look (a close-up of each head found) against the whole frame alone
    # and against its head finder kept in this process
    threads = max(1, (os.cpu_count() or 2) - 1)
    viewer, whole_only, heads_here = (
        Predictor(loaded, cache_dir=cache, num_threads=threads) for _ in range(3)
    )
    whole_only.second_look = False
    heads_here.head_workers = False
    runs = {"app": lambda: analyse(viewer), "onnxruntime": lambda: analyse(old)}
    if app.second_look:
        runs["whole_frame_only"] = lambda: analyse(whole_only)
        runs["heads_in_process"] = lambda: analyse(heads_here)
    t = interleaved(runs, 3)
    fps = N_FRAMES / t["app"]
    print(
        f"Analyse study, {N_FRAMES} frames: {fps:.1f} frames/s "
        f"(ONNX Runtime as before: {N_FRAMES / t['onnxruntime']:.1f})"
    )
    figures["analyse_120_fps"] = round(fps, 1)
    figures["analyse_120_fps_onnxruntime"] = round(N_FRAMES / t["onnxruntime"], 1)
    if "whole_frame_only" in t:
        print(
            f"  the card's second look costs {t['app'] / t['whole_frame_only']:.1f}x the whole "
            f"frame alone ({N_FRAMES / t['whole_frame_only']:.1f} frames/s)"
        )
        figures["analyse_120_fps_whole_frame_only"] = round(N_FRAMES / t["whole_frame_only"], 1)
        figures["second_look_cost"] = round(t["app"] / t["whole_frame_only"], 2)
        print(
            f"  its head finder in worker processes: {t['heads_in_process'] / t['app']:.2f}x "
            f"faster than in the app's process ({N_FRAMES / t['heads_in_process']:.1f} frames/s)"
        )
        figures["analyse_120_fps_heads_in_process"] = round(N_FRAMES / t["heads_in_process"], 1)

    if not args.skip_cold_start:
        first_s, warm = cold_start(work / "user-cache", 3, [sys.executable, "-m", "fetal_viewer"])
        cold = float(np.median(warm))
        print(
            f"cold start of fetal-viewer --demo to the first AI result: {cold:.2f} s (median "
            f"of {len(warm)} with a warm cache; the very first start, measuring: {first_s:.1f} s)"
        )
        figures["cold_start_s"] = round(cold, 2)
        figures["first_start_s"] = round(first_s, 2)

    bundle = REPO / "dist" / "fetal-viewer"
    if bundle.is_dir():
        # as du counts it: PyInstaller links some files into place, count those once
        size_b = sum(
            f.stat().st_size for f in bundle.rglob("*") if f.is_file() and not f.is_symlink()
        )
        print(f"lean bundle: {size_b / 1e6:.0f} MB ({size_b / 2**20:.0f} MiB, what du -sh shows)")
        figures["lean_bundle_mb"] = round(size_b / 1e6)
        figures["lean_bundle_mib"] = round(size_b / 2**20)
        if not args.skip_cold_start:
            first_b, warm_b = cold_start(work / "bundle-cache", 3, [str(bundle / "fetal-viewer")])
            cold_b = float(np.median(warm_b))
            print(f"  its cold start: {cold_b:.2f} s warm (first start {first_b:.1f} s)")
            figures["lean_bundle_cold_start_s"] = round(cold_b, 2)
            figures["lean_bundle_first_start_s"] = round(first_b, 2)

    figures["cpu_count"] = os.cpu_count()
    figures["goals"] = {
        "latency_ratio_le_1.1": max(
            figures["batch_1_ratio_vs_fastest_agreeing"],  # type: ignore[type-var]
            figures["batch_16_ratio_vs_fastest_agreeing"],  # type: ignore[type-var]
        )
        <= 1.1,
        "analyse_ge_150_fps": fps >= 150,
        "guard_le_1.05": figures["guard_vs_prediction"] <= 1.05,  # type: ignore[operator]
        "cold_start_le_3_s": figures.get("cold_start_s", 99) <= 3.0,  # type: ignore[operator]
        # in du -sh's units, as the 4.6 GB it replaces was measured
        "bundle_le_800_mb": figures.get("lean_bundle_mib", 1e9) <= 800,  # type: ignore[operator]
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
