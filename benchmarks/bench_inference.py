"""Inference benchmark: the app's predictor against baselines measured in the same run.

1. single-frame latency and 16-frame throughput of ``Predictor`` against a plain ONNX
   Runtime session of the same weights (goal: latency ratio <= 1.1);
2. prediction + heatmaps of every class against prediction alone (goal: <= 1.15), and
   against pytorch-grad-cam's GradCAM for the same frames (one class, and all classes);
3. the stitched heatmaps (``gradcam-stitch``: four shifted passes, a grid twice as fine)
   against prediction alone (expected near 4x: three more forward passes).

224x224 input, randomly initialised ResNet34 (timing does not depend on the weights).
The last printed line is one JSON object of the figures.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch


def _median_time(fn: Callable[[], object], reps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _paired(a: Callable[[], object], b: Callable[[], object], reps: int) -> tuple[float, float]:
    """Median times of a and b, interleaved so machine load hits both alike."""
    for _ in range(2):
        a()
        b()
    ta, tb = [], []
    for _ in range(reps):
        t = time.perf_counter()
        a()
        ta.append(time.perf_counter() - t)
        t = time.perf_counter()
        b()
        tb.append(time.perf_counter() - t)
    return float(np.median(ta)), float(np.median(tb))


def main() -> None:
    import onnxruntime as ort
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from fetal_viewer.core.cam.gradcam import to_input_size
    from fetal_viewer.core.model.checkpoint import ModelCard, load_checkpoint, save_checkpoint
    from fetal_viewer.core.model.network import build_resnet34
    from fetal_viewer.core.model.predictor import Predictor

    threads = torch.get_num_threads()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        card = save_checkpoint(build_resnet34(5), ModelCard(name="bench", version="0"), tmp)
        loaded = load_checkpoint(card)
    t0 = time.perf_counter()
    predictor = Predictor(loaded)
    startup = time.perf_counter() - t0
    model = loaded.model
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    x16 = rng.standard_normal((16, 3, 224, 224)).astype(np.float32)

    # baseline: a plain ONNX Runtime session of the same weights (logits only)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.from_numpy(x1),), buf, dynamo=False, input_names=["x"],
            output_names=["logits"], dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}},
            opset_version=17,
        )  # fmt: skip
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    session = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])

    app1, ort1 = _paired(lambda: predictor.run_arrays(x1), lambda: session.run(None, {"x": x1}), 20)
    app16, ort16 = _paired(
        lambda: predictor.run_arrays(x16), lambda: session.run(None, {"x": x16}), 4
    )
    torch_pred = Predictor(loaded, backend="torch")
    eager1 = _median_time(lambda: torch_pred.run_arrays(x1), 10)

    def with_heatmaps() -> None:
        _, cams = predictor.run_arrays(x16, with_cam=True)
        assert cams is not None
        to_input_size(cams, 224)  # every class at input size, as the library returns them

    heat16, pred16 = _paired(with_heatmaps, lambda: predictor.run_arrays(x16), 4)

    def with_stitched() -> None:
        _, cams = predictor.run_arrays(x16, with_cam=True, stitch=True)
        assert cams is not None
        to_input_size(cams, 224)

    stitch16, pred16b = _paired(with_stitched, lambda: predictor.run_arrays(x16), 3)

    xt = torch.from_numpy(x16)
    with torch.no_grad():
        fwd16 = _median_time(lambda: model(xt), 2, warmup=1)
    with GradCAM(model=model, target_layers=[model.layer4[-1]]) as cam:
        lib_one = _median_time(
            lambda: cam(input_tensor=xt, targets=[ClassifierOutputTarget(0)] * 16), 2, warmup=1
        )
        t = time.perf_counter()
        for c in range(5):
            cam(input_tensor=xt, targets=[ClassifierOutputTarget(c)] * 16)
        lib_all = time.perf_counter() - t

    figures = {
        "threads": threads,
        "backend": predictor.backend,
        "startup_s": round(startup, 3),
        "latency_1_ms": round(app1 * 1e3, 2),
        "ort_latency_1_ms": round(ort1 * 1e3, 2),
        "latency_ratio_vs_ort": round(app1 / ort1, 3),
        "torch_eager_latency_1_ms": round(eager1 * 1e3, 2),
        "throughput_16_fps": round(16 / app16, 2),
        "ort_throughput_16_fps": round(16 / ort16, 2),
        "throughput_ratio_vs_ort": round(ort16 / app16, 3),
        "heatmaps_all_classes_vs_prediction": round(heat16 / pred16, 3),
        "stitched_heatmaps_vs_prediction": round(stitch16 / pred16b, 3),
        "gradcam_lib_one_class_vs_torch_forward": round(lib_one / fwd16, 3),
        "gradcam_lib_all_classes_vs_app_all_classes": round(lib_all / heat16, 2),
    }
    print(
        f"predictor ({predictor.backend}) 1 frame {app1 * 1e3:.1f} ms vs ONNX Runtime "
        f"{ort1 * 1e3:.1f} ms ({app1 / ort1:.2f}x; torch eager {eager1 * 1e3:.1f} ms)"
    )
    print(f"16 frames: {16 / app16:.1f} fps vs ONNX Runtime {16 / ort16:.1f} fps")
    print(f"prediction + all-class heatmaps / prediction alone: {heat16 / pred16:.3f}x")
    print(f"prediction + stitched heatmaps / prediction alone: {stitch16 / pred16b:.3f}x")
    print(
        f"pytorch-grad-cam: one class {lib_one / fwd16:.2f}x a torch forward; all 5 classes "
        f"{lib_all:.2f} s vs app {heat16:.2f} s ({lib_all / heat16:.1f}x)"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
