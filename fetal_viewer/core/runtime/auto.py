"""``auto``: the fastest backend on this machine that still gives the reference's answers.

Which runtime and precision is fastest depends on the CPU (OpenVINO in bfloat16 where the
CPU has AMX or AVX-512 BF16, ONNX Runtime on some AMD parts without them...), so it is
measured, not written in code. On the first use of a model on a machine, :func:`select`:

1. builds every backend available here (:data:`~.backends.NAMES`);
2. runs each on a fixed probe batch (``ModelSource.probe``: the predictor gives eight
   phantoms of every class on every scanner style, :mod:`fetal_viewer.core.model.probe`)
   and keeps those that agree with the float32 reference (torch,
   or ONNX Runtime where torch is not installed), on the probabilities as the app shows
   them (with the model's operating point, ``ModelSource.logit_offsets``): a float32 backend within
   :data:`FLOAT32_TOLERANCE` of every probability; a bfloat16 one within
   :data:`BFLOAT16_TOLERANCE`, with the same top class and the same peak cell of that
   class's heatmap on every probe frame;
3. drops those more than :data:`PRUNE` times slower than the best on a second pass over
   the probe batch, times the rest at batch 1 (a frame in the viewer), at
   ``ModelSource.stitch_batch`` (one frame's stitched heatmap) and at :data:`ANALYSIS_BATCH`,
   interleaved so that load on a shared machine hits them alike, and keeps the one whose
   worse ratio to the best at batch 1 and at the analysis batch is smallest.

The choice is written to the user cache under a key of the machine (CPU model and flags,
cores, threads, the runtimes' versions) and the weights' sha256: a later start builds that
backend directly, without measuring or exporting. A cache entry that cannot be read or
belongs to another key is ignored (with a log line) and measured again. A backend named
instead of ``auto`` is built as asked, without measuring.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.runtime.backends import (
    AUTO,
    BFLOAT16,
    CHOICES,
    NAMES,
    RUNTIMES,
    Backend,
    build,
    default_threads,
    parse,
    softmax,
    torch_available,
    version,
)
from fetal_viewer.core.runtime.graph import cached_graph
from fetal_viewer.errors import InferenceError

log = logging.getLogger(__name__)

#: bump when the measuring or the cache's content changes (older entries are then ignored)
CHOICE_FORMAT = 2
FLOAT32_TOLERANCE = 1e-4
BFLOAT16_TOLERANCE = 0.01
ANALYSIS_BATCH = 16
#: rounds over the candidates, each timing every candidate in turn (in a rotating order, so
#: that load on the machine hits them alike)
ROUNDS = 3
#: timed passes per round at batch 1, at the stitched heatmap's batch and at the analysis
#: batch, after one untimed pass: the runtime timed before may leave its threads spinning
#: for a while (OpenMP, ONNX Runtime), which slowed the next one's first pass by up to a
#: third on two cores
REPEATS = (5, 2, 1)
#: untimed passes at each batch size first: kernels, buffers and thread pools settle
WARMUP = 2
#: candidates this many times slower than the best on a first timed pass are not timed on
PRUNE = 2.0
#: the backend the stitched heatmap is compared with (the predictor's plain map before auto)
PLAIN_BASELINE = "onnxruntime"


@dataclass(frozen=True)
class ModelSource:
    """What a runtime needs of a checkpoint: the weights' sha256 (the cache key), the input
    size, the final layer's weight (heatmap peaks), the probe batch ``(N, 3, S, S)`` the
    backends are checked on, a verified ONNX graph when the checkpoint carries one, the
    torch module (``None`` without torch), the batch of one frame's stitched heatmap, and
    the card's operating point (added to the logits before the softmax, or ``None``)."""

    weights_sha256: str
    input_size: int
    fc_weight: NDArray[np.float32]
    probe: Callable[[], NDArray[np.float32]]
    graph: Path | None = None
    torch_model: Callable[[], Any] | None = None
    stitch_batch: int = 4
    logit_offsets: NDArray[np.float32] | None = None

    def probs(self, logits: NDArray[np.float32]) -> NDArray[np.float32]:
        """The probabilities the app shows for these logits."""
        return softmax(logits, self.logit_offsets)


@dataclass
class Trial:
    """One candidate's outcome: ``status`` is ``chosen``, ``ok``, ``slower`` (dropped after
    its first timed pass), ``disagrees`` or ``unavailable``; ``ms``: median milliseconds
    per pass, by batch size."""

    status: str
    why: str = ""
    max_dprob: float | None = None
    ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Choice:
    """Which backend runs the model and how that was decided: ``how`` is ``measured`` (now),
    ``cached`` (measured before on this machine) or ``forced``."""

    backend: str
    how: str
    reference: str = ""
    trials: dict[str, Trial] = field(default_factory=dict)
    measured_at: str = ""

    def stitch_is_cheaper(self, stitch_batch: int) -> bool:
        """Whether one frame's stitched heatmap (a pass at ``stitch_batch``) on the chosen
        backend cost no more than its plain heatmap on :data:`PLAIN_BASELINE` when measured
        (False when not measured)."""
        chosen = self.trials.get(self.backend)
        base = self.trials.get(PLAIN_BASELINE)
        if chosen is None or base is None:
            return False
        stitched, plain = chosen.ms.get(str(stitch_batch)), base.ms.get("1")
        return stitched is not None and plain is not None and stitched <= plain

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "reference": self.reference,
            "measured_at": self.measured_at,
            "trials": {k: asdict(v) for k, v in self.trials.items()},
        }

    @classmethod
    def from_dict(cls, data: Any, how: str) -> Choice:
        """Parse a cache entry; ``ValueError`` when it is not one."""
        if not isinstance(data, dict) or data.get("backend") not in NAMES:
            raise ValueError("it names no known backend")
        trials = data.get("trials", {})
        if not isinstance(trials, dict):
            raise ValueError("its trials are not an object")
        parsed = {}
        for name, t in trials.items():
            if not isinstance(t, dict):
                raise ValueError(f"trial {name!r} is not an object")
            ms = {str(k): float(v) for k, v in dict(t.get("ms", {})).items()}
            dp = t.get("max_dprob")
            parsed[str(name)] = Trial(
                str(t.get("status", "")),
                str(t.get("why", "")),
                None if dp is None else float(dp),
                ms,
            )
        return cls(
            backend=str(data["backend"]),
            how=how,
            reference=str(data.get("reference", "")),
            trials=parsed,
            measured_at=str(data.get("measured_at", "")),
        )


def runtime_cache() -> Path:
    """Where the choices, exported graphs and OpenVINO's compiled models are kept."""
    from fetal_viewer.core.appdirs import cache_dir

    return cache_dir() / "runtime"


def _cpu() -> tuple[str, str]:
    """CPU model name and instruction-set flags, as precisely as the platform tells."""
    model, flags = "", ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = " ".join(sorted(value.split()))
                if model and flags:
                    break
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def cache_key(source: ModelSource, threads: int) -> dict[str, Any]:
    """What a measured choice depends on."""
    model, flags = _cpu()
    versions = {dist: version(dist) for _, dist in RUNTIMES.values()}
    if not torch_available():
        versions["torch"] = ""
    return {
        "format": CHOICE_FORMAT,
        "cpu": model,
        "cpu_flags": hashlib.sha256(flags.encode()).hexdigest()[:16],
        "cores": os.cpu_count() or 1,
        "system": f"{platform.system()} {platform.machine()}",
        "threads": threads,
        "versions": versions,
        "weights_sha256": source.weights_sha256,
        "logit_offsets": None if source.logit_offsets is None else source.logit_offsets.tolist(),
        "input_size": source.input_size,
        "graph": "checkpoint" if source.graph is not None else "exported",
    }


def choice_path(cache: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache / "choices" / f"{digest}.json"


def read_choice(path: Path, key: dict[str, Any]) -> Choice | None:
    """The cached choice at ``path`` for ``key``, or ``None`` (logged when the file exists
    but cannot be used)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("key") != key:
            raise ValueError("it was written for another machine, model or version")
        return Choice.from_dict(data.get("choice"), how="cached")
    except (OSError, ValueError, TypeError, UnicodeDecodeError, RecursionError) as exc:
        log.warning("Ignoring the cached runtime choice %s (%s); measuring again.", path.name, exc)
        return None


def write_choice(path: Path, key: dict[str, Any], choice: Choice) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(
            json.dumps({"key": key, "choice": choice.to_dict()}, indent=1), encoding="utf-8"
        )
        tmp.replace(path)
    except OSError as exc:
        log.warning("Could not cache the runtime choice (%s); it will be measured again.", exc)


def _peaks(feats: NDArray, fc_weight: NDArray, classes: NDArray) -> NDArray[np.int64]:
    """Flat index of the hottest cell of each frame's Grad-CAM of ``classes[i]``, -1 where
    it is empty. The map is ``relu(W_c . A)`` up to a positive scale and a min-max
    (:func:`fetal_viewer.core.cam.gradcam.cams_from_features`), which keep its peak."""
    a = np.asarray(feats, dtype=np.float32)
    w = np.asarray(fc_weight, dtype=np.float32)[np.asarray(classes)]  # (N, K)
    maps = np.einsum("nk,nkp->np", w, a.reshape(a.shape[0], a.shape[1], -1))
    return np.where(maps.max(axis=1) > 0, maps.argmax(axis=1), -1)


def _agreement(
    backend: Backend,
    source: ModelSource,
    probe: NDArray[np.float32],
    ref_probs: NDArray[np.float32],
    ref_peaks: NDArray[np.int64],
) -> tuple[bool, str, float]:
    logits, feats = backend.run(probe)
    probs = source.probs(logits)
    dprob = float(np.abs(probs - ref_probs).max())
    if backend.precision != BFLOAT16:
        ok = dprob <= FLOAT32_TOLERANCE
        return ok, "" if ok else f"max |Δprob| {dprob:.2e} > {FLOAT32_TOLERANCE:g}", dprob
    if dprob > BFLOAT16_TOLERANCE:
        return False, f"max |Δprob| {dprob:.3f} > {BFLOAT16_TOLERANCE:g}", dprob
    top = ref_probs.argmax(axis=1)
    flipped = int((probs.argmax(axis=1) != top).sum())
    if flipped:
        return False, f"another top class on {flipped} probe frame(s)", dprob
    moved = int((_peaks(feats, source.fc_weight, top) != ref_peaks).sum())
    if moved:
        return False, f"another heatmap peak cell on {moved} probe frame(s)", dprob
    return True, "", dprob


def _time(backend: Backend, x: NDArray[np.float32]) -> float:
    t = time.perf_counter()
    backend.run(x)
    return time.perf_counter() - t


def measure(source: ModelSource, make: Callable[[str], Backend]) -> tuple[Backend, Choice]:
    """Build, check and time every candidate (module notes); the winner and the record."""
    t_start = time.perf_counter()
    trials: dict[str, Trial] = {}
    built: dict[str, Backend] = {}

    def get(name: str) -> Backend | None:
        if name not in built and name not in trials:
            try:
                built[name] = make(name)
            except InferenceError as exc:
                trials[name] = Trial(
                    "unavailable", why=exc.what + (f" {exc.why}" if exc.why else "")
                )
        return built.get(name)

    probe = np.ascontiguousarray(source.probe(), dtype=np.float32)
    order = ["torch", "onnxruntime", "openvino"]
    if not torch_available() or source.torch_model is None:
        order.remove("torch")
    reference = next((n for n in order if get(n) is not None), None)
    if reference is None:
        raise InferenceError(
            "No inference runtime can run this model here.",
            why="; ".join(f"{n}: {t.why}" for n, t in trials.items()),
            fix="Install onnxruntime or openvino (and torch for models without an ONNX graph).",
        )
    ref_logits, ref_feats = built[reference].run(probe)
    ref_probs = source.probs(ref_logits)
    ref_peaks = _peaks(ref_feats, source.fc_weight, ref_probs.argmax(axis=1))

    for name in NAMES:
        backend = get(name)
        if backend is not None:
            ok, why, dprob = _agreement(backend, source, probe, ref_probs, ref_peaks)
            trials[name] = Trial("ok" if ok else "disagrees", why=why, max_dprob=dprob)
    built = {n: b for n, b in built.items() if n in NAMES and trials[n].status == "ok"}
    if not built:
        raise InferenceError(
            "No inference runtime here agrees with the reference on this model.",
            why="; ".join(f"{n}: {t.status} {t.why}" for n, t in trials.items()),
            fix="Force a backend with --backend (or FETAL_VIEWER_BACKEND in the viewer).",
        )

    first = {name: _time(backend, probe) for name, backend in built.items()}
    best_first = min(first.values())
    for name, t in first.items():
        if t > PRUNE * best_first and name != PLAIN_BASELINE:
            trials[name].status = "slower"
            trials[name].ms[str(len(probe))] = round(t * 1e3, 3)
    timed = [n for n in built if trials[n].status == "ok"]
    sizes = dict(zip((1, source.stitch_batch, ANALYSIS_BATCH), REPEATS, strict=True))
    batches = {n: np.resize(probe, (n, *probe.shape[1:])) for n in sizes}
    for name in timed:
        for x in batches.values():
            for _ in range(WARMUP):
                built[name].run(x)
    samples: dict[tuple[str, int], list[float]] = {(n, b): [] for n in timed for b in sizes}
    for b, reps in sizes.items():
        for r in range(ROUNDS):
            for name in timed[r % len(timed) :] + timed[: r % len(timed)]:  # rotate the order
                built[name].run(batches[b])  # absorbs the previous runtime's spinning threads
                samples[name, b].extend(_time(built[name], batches[b]) for _ in range(reps))
    for (name, b), ts in samples.items():
        trials[name].ms[str(b)] = round(float(np.median(ts)) * 1e3, 3)

    best = {b: min(trials[n].ms[str(b)] for n in timed) for b in (1, ANALYSIS_BATCH)}

    def score(name: str) -> tuple[float, float]:
        ratios = [trials[name].ms[str(b)] / best[b] for b in best]
        return max(ratios), sum(ratios)

    winner = min(timed, key=score)
    trials[winner].status = "chosen"
    choice = Choice(
        backend=winner,
        how="measured",
        reference=reference,
        trials=trials,
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    log.info(
        "Measured %d inference backends in %.1f s; chose %s (%s).",
        len(timed),
        time.perf_counter() - t_start,
        winner,
        ", ".join(f"{n}: {t.status} {t.ms}" for n, t in trials.items()),
    )
    return built[winner], choice


def select(
    source: ModelSource,
    requested: str = AUTO,
    threads: int | None = None,
    cache: Path | None = None,
) -> tuple[Backend, Choice]:
    """The backend ``requested`` (one of :data:`~.backends.CHOICES`) for ``source``, and how
    it was chosen; ``auto`` measures once per machine and model (module notes)."""
    if requested not in CHOICES:
        raise InferenceError(
            f"Unknown backend {requested!r}.", fix=f"Use one of: {', '.join(CHOICES)}."
        )
    n_threads = threads or default_threads()
    root = runtime_cache() if cache is None else cache

    def graph() -> Path:
        if source.graph is not None:
            return source.graph
        return cached_graph(source.weights_sha256, source.input_size, source.torch_model, root)

    def make(name: str) -> Backend:
        return build(name, graph, source.torch_model, n_threads, root / "openvino")

    if source.torch_model is None:
        graph()  # without torch the graph is all there is: say at once when it is missing

    if requested != AUTO:
        parse(requested)
        return make(requested), Choice(backend=requested, how="forced")
    key = cache_key(source, n_threads)
    path = choice_path(root, key)
    cached = read_choice(path, key)
    if cached is not None:
        try:
            return make(cached.backend), cached
        except InferenceError as exc:
            log.warning(
                "The cached runtime choice %s cannot be built here (%s); measuring again.",
                cached.backend,
                exc.what,
            )
    backend, choice = measure(source, make)
    write_choice(path, key, choice)
    return backend, choice
