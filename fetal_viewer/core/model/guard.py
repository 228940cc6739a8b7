"""The domain guard: says when a frame lies outside what a model was trained on.

A classifier answers every input with some class, however foreign the input is: the phantom
model calls an echocardiogram "rachischisis 0.96". The guard scores each frame from the
pass the prediction already made, with no second network: the ``layer4`` activations,
average-pooled to the 512 features the final linear layer reads and scaled to unit length,
are compared with the training frames' features by the class-conditional Mahalanobis
distance with one tied covariance (Lee et al., NeurIPS 2018)::

    x = pooled / |pooled|
    score(x) = min over classes c of sqrt((x - mu_c)^T P (x - mu_c))

where ``mu_c`` is the mean feature of class ``c`` over the training frames and ``P`` the
inverse of their pooled within-class covariance (shrunk towards its mean variance so that
it inverts). The distance knows only what lies inside; most foreign *ultrasound* is close
enough to pass it. So a guard fitted with outliers (``fit_guard(..., outliers=...)``: the
synthetic non-head frames of :mod:`fetal_viewer.core.phantoms.outliers`, and a clinic's own
other views) adds an **outlier probe**, a logistic regression on the same unit-length
features, in-domain training frames against outliers (outlier exposure, Hendrycks et al.,
ICLR 2019, without retraining the network). The two are read together::

    z(x) = w . x + b                      log-odds that x is an outlier
    j(x) = d(x) * sigmoid(z(x))           far from the training frames *and* on the outliers' side
    score(x) = max(d(x) / t_d, j(x) / t_j)

``t_j`` is the ``percentile`` of the joint score on the inner-validation frames (patients the
statistics never saw); ``t_d``, a backstop for frames far from everything the model saw
whatever the probe says, is the distance's :data:`BACKSTOP_PERCENTILE`. The score is the
larger ratio to its threshold, so the guard's threshold is 1. A frame that only one part finds
a little odd stays in; one that both find odd is flagged: with 3 in 100 in-domain frames
flagged, the joint score withholds more foreign frames than the two parts read apart
(docs/domain-guard.md). A guard without a probe (fitted without outliers, or
by an older version) scores the distance alone against its ``percentile``. Why these scores and not
k-nearest-neighbour distance or the energy score: docs/domain-guard.md, which gives the
measurements (``experiments/guard_methods.py``).

The arrays are stored as ``guard.safetensors`` beside the weights and named in the model
card's ``artifacts`` with their sha256, so they are verified like the weights.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.errors import InferenceError, ModelLoadError

#: the artifact name in the model card, and its file name beside the weights
GUARD_ARTIFACT = "guard"
GUARD_FILE = "guard.safetensors"
#: the distance alone (on unit-length pooled features); stored in the file
METHOD = "mahalanobis-l2"
#: the distance backstop and the joint score of distance and outlier probe
PROBE_METHOD = "mahalanobis-l2+outlier-probe-joint"
#: inverse L2 penalty of the outlier probe's logistic regression (as scikit-learn's ``C``)
PROBE_C = 10.0
#: default percentile of the in-domain validation scores that sets the threshold: 3 in 100
#: in-domain frames are flagged by design (docs/domain-guard.md measures the trade-off)
DEFAULT_PERCENTILE = 97.0
#: percentile of the validation distances for the distance backstop (with a probe)
BACKSTOP_PERCENTILE = 99.5
#: covariance shrinkage towards the mean variance (fraction of it added to the diagonal)
SHRINKAGE = 1e-3

#: what the AI surfaces say when a card carries no guard
NO_GUARD_NOTE = "no domain check for this model"
#: what they say when a frame is flagged
WITHHELD_NOTE = "Outside what this model was trained on: its output is withheld"
#: a cine is one acquisition of one view: when the guard flags more than this share of a
#: cine's frames, the view is foreign and none of its frames is assessable (the frames that
#: pass alone are the guard's misses on that view, docs/domain-guard.md)
CINE_SHARE = 0.5


@dataclass(frozen=True)
class DomainGuard:
    """Fitted statistics of a model's training features and the threshold on their score."""

    means: NDArray[np.float32]  # (C, D) per-class mean pooled feature
    precision: NDArray[np.float32]  # (D, D) inverse tied covariance
    threshold: float
    percentile: float
    n_train: int
    n_val: int
    #: the outlier probe: ``(D + 1,)`` weights then bias, or None (the distance alone)
    probe: NDArray[np.float32] | None = None
    #: the distance backstop's and the joint score's thresholds (with a probe; ``threshold``
    #: is then 1)
    distance_threshold: float = 0.0
    joint_threshold: float = 0.0
    n_outliers: int = 0

    def __post_init__(self) -> None:
        c, d = self.means.shape
        fits = self.precision.shape == (d, d) and c >= 1 and np.isfinite(self.threshold)
        if self.probe is not None:
            fits = fits and self.probe.shape == (d + 1,) and self.distance_threshold > 0
            fits = fits and bool(np.isfinite(self.probe).all())
            fits = fits and self.joint_threshold > 0
        if not fits:
            raise ModelLoadError(
                "The domain guard's arrays do not fit together.",
                why=f"means {self.means.shape}, precision {self.precision.shape}, "
                f"probe {None if self.probe is None else self.probe.shape}, "
                f"threshold {self.threshold}",
                fix="Fit the guard again with `fetal-viewer guard fit`.",
            )

    @property
    def method(self) -> str:
        return METHOD if self.probe is None else PROBE_METHOD

    @property
    def backstop_percentile(self) -> float:
        """Where the distance backstop sits among the validation distances (with a probe)."""
        return max(self.percentile, BACKSTOP_PERCENTILE)

    @property
    def n_features(self) -> int:
        return int(self.means.shape[1])

    def score(self, pooled: NDArray) -> NDArray[np.float32]:
        """Out-of-domain scores ``(N,)`` of pooled features ``(N, D)``: higher is further."""
        x = self._checked(pooled)
        d = self._distance(x)
        if self.probe is None:
            return d.astype(np.float32)
        joint = d * _sigmoid(self._log_odds(x)) / self.joint_threshold
        return np.maximum(d / self.distance_threshold, joint).astype(np.float32)

    def parts(self, pooled: NDArray) -> tuple[NDArray[np.float64], NDArray[np.float64] | None]:
        """The distance and the probe's log-odds (None without a probe), for fitting and
        for the docs' measurements."""
        x = self._checked(pooled)
        return self._distance(x), None if self.probe is None else self._log_odds(x)

    def _checked(self, pooled: NDArray) -> NDArray[np.float64]:
        x = _unit(np.asarray(pooled, dtype=np.float64))
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise InferenceError(
                f"The domain guard expects (frames, {self.n_features}) features, got {x.shape}.",
                fix="Use the guard fitted for this model (`fetal-viewer guard fit`).",
            )
        return x

    def _distance(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        p = self.precision.astype(np.float64)
        mu = self.means.astype(np.float64)
        xp = x @ p
        # (x - mu)^T P (x - mu) = x P x - 2 x P mu + mu P mu, for every class at once
        d2 = (xp * x).sum(1)[:, None] - 2.0 * xp @ mu.T + ((mu @ p) * mu).sum(1)[None, :]
        return np.sqrt(np.maximum(d2.min(axis=1), 0.0))

    def _log_odds(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        assert self.probe is not None
        return _log_odds(self.probe, x)

    def in_domain(self, scores: NDArray) -> NDArray[np.bool_]:
        return np.asarray(scores) <= self.threshold

    def summary(self) -> dict[str, float | int | str]:
        """What the model card, reports and ``--json`` say about the guard."""
        out: dict[str, float | int | str] = {
            "method": self.method,
            "threshold": round(self.threshold, 4),
            "percentile": self.percentile,
            "train_frames": self.n_train,
            "validation_frames": self.n_val,
        }
        if self.probe is not None:
            out["distance_threshold"] = round(self.distance_threshold, 4)
            out["distance_percentile"] = self.backstop_percentile
            out["joint_threshold"] = round(self.joint_threshold, 4)
            out["outlier_frames"] = self.n_outliers
        return out


def cine_flagged(inside: NDArray[np.bool_]) -> tuple[int, int] | None:
    """The cine rule on the guard's per-frame verdicts ``inside`` over *every* frame of one
    file: ``(frames flagged, frames)`` when the cine is withheld as a whole (several frames,
    more than :data:`CINE_SHARE` of them flagged), else ``None``."""
    inside = np.asarray(inside, dtype=bool)
    flagged = int((~inside).sum())
    if inside.size > 1 and flagged > CINE_SHARE * inside.size:
        return flagged, int(inside.size)
    return None


def cine_words(flagged: tuple[int, int]) -> str:
    """Why a frame the guard lets through alone is withheld with its cine."""
    return f"{flagged[0]} of the {flagged[1]} frames of this cine are outside it"


#: DICOM modalities the model may read: ultrasound, and what plain images, screen captures and
#: exports of ultrasound screens come as ("" when a file does not say)
READ_MODALITIES = frozenset({"US", "OT", "SC", ""})
_MODALITY_NAMES = {
    "MR": "magnetic resonance",
    "CT": "computed tomography",
    "PT": "positron emission tomography",
    "NM": "nuclear medicine",
    "CR": "computed radiography",
    "DX": "digital radiography",
    "MG": "mammography",
    "RF": "fluoroscopy",
    "XA": "X-ray angiography",
    "IVUS": "intravascular ultrasound",
    "SEG": "a segmentation",
    "RTDOSE": "a radiotherapy dose",
    "RTSTRUCT": "radiotherapy structures",
    "OP": "ophthalmic photography",
    "OPT": "ophthalmic tomography",
    "ES": "endoscopy",
    "XC": "external-camera photography",
    "SM": "slide microscopy",
    "ECG": "an electrocardiogram",
    "FV-AI": "a capture of fetal-viewer's own AI result",
}


def foreign_modality(modality: str) -> str | None:
    """The header rule, read before any pixel: ``modality`` (a DICOM Modality) in words when
    it says the series is not ultrasound ("MR (magnetic resonance)"), else ``None``. Every AI
    surface withholds such a series' output whatever the guard scores: a model of fetal
    ultrasound has nothing to say about it, and a header that says so is surer than a score."""
    code = modality.strip().upper()
    if code in READ_MODALITIES:
        return None
    name = _MODALITY_NAMES.get(code)
    return f"{code} ({name})" if name else code


def modality_words(foreign: str) -> str:
    """Why a series :func:`foreign_modality` names is withheld, as the AI surfaces print it
    (the header rule's :data:`WITHHELD_NOTE`)."""
    return (
        f"Not ultrasound: the series is {foreign}, and this model reads ultrasound only: "
        "its output is withheld"
    )


def describe(guard: DomainGuard) -> str:
    """One line for the command line: what the guard was fitted on and its thresholds."""
    where = f"the {guard.percentile:g}th percentile of {guard.n_val} validation frames"
    if guard.probe is None:
        return f"{guard.n_train} training frames, threshold {guard.threshold:.3f} at {where}"
    return (
        f"{guard.n_train} training frames, {guard.n_outliers} outlier frames; joint threshold "
        f"{guard.joint_threshold:.3f} at {where}, distance backstop "
        f"{guard.distance_threshold:.3f} at the "
        f"{guard.backstop_percentile:g}th"
    )


def _log_odds(probe: NDArray[np.float32], x: NDArray[np.float64]) -> NDArray[np.float64]:
    """The probe's log-odds that unit-length features ``x`` are an outlier."""
    w = probe.astype(np.float64)
    return x @ w[:-1] + w[-1]


def _sigmoid(z: NDArray[np.float64] | np.float64) -> NDArray[np.float64]:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64))))


def _unit(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Rows scaled to unit length: the guard compares directions of feature vectors, which
    separates foreign images better than their raw values (docs/domain-guard.md)."""
    if x.ndim != 2:
        return x
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def pool(features: NDArray) -> NDArray[np.float32]:
    """``(N, D, h, w)`` layer4 activations -> ``(N, D)``, as the network's average pool."""
    f = np.asarray(features, dtype=np.float32)
    return f.mean(axis=(2, 3)) if f.ndim == 4 else f


def fit_guard(
    train: NDArray,
    labels: NDArray,
    val: NDArray,
    percentile: float = DEFAULT_PERCENTILE,
    outliers: NDArray | None = None,
) -> DomainGuard:
    """Fit class means and the tied covariance on ``train`` pooled features ``(N, D)`` with
    integer ``labels`` and, given ``outliers`` (pooled features of frames that are not the
    model's domain), the outlier probe; set the threshold at ``percentile`` of the ``val``
    frames' scores (with a probe: of the joint score; the distance backstop at
    :data:`BACKSTOP_PERCENTILE` or ``percentile``, whichever is higher)."""
    x = _unit(np.asarray(train, dtype=np.float64))
    y = np.asarray(labels)
    v = np.asarray(val, dtype=np.float64)
    if not 50.0 <= percentile < 100.0:
        raise InferenceError(
            f"The guard's percentile must be in [50, 100), got {percentile}.",
            fix="Use e.g. 99: one in a hundred in-domain frames is flagged.",
        )
    if x.ndim != 2 or len(x) != len(y) or len(v) == 0 or v.ndim != 2 or v.shape[1] != x.shape[1]:
        raise InferenceError(
            "The domain guard needs (frames, features) training and validation features.",
            why=f"train {x.shape}, labels {y.shape}, validation {v.shape}",
            fix="Fit on a manifest with a validation split (val_fraction > 0).",
        )
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < 2:
        raise InferenceError(
            "The domain guard needs at least two training frames of every class.",
            why=f"{int(counts.min())} frame(s) of class index {int(classes[counts.argmin()])}",
            fix="Fit it on the model's whole training manifest.",
        )
    means = np.stack([x[y == c].mean(axis=0) for c in classes])
    centred = x - means[np.searchsorted(classes, y)]
    cov = centred.T @ centred / len(x)
    cov += SHRINKAGE * float(np.trace(cov)) / cov.shape[0] * np.eye(cov.shape[0])
    base = DomainGuard(
        means=means.astype(np.float32),
        precision=np.linalg.inv(cov).astype(np.float32),
        threshold=0.0,
        percentile=percentile,
        n_train=len(x),
        n_val=len(v),
    )
    distance, _ = base.parts(v)
    if outliers is None or len(outliers) == 0:
        return replace(base, threshold=float(np.percentile(distance, percentile)))
    o = _unit(np.asarray(outliers, dtype=np.float64))
    if o.ndim != 2 or o.shape[1] != x.shape[1]:
        raise InferenceError(
            "The outlier frames' features do not match the training frames'.",
            why=f"outliers {o.shape}, train {x.shape}",
        )
    probe = fit_probe(x, o)
    joint = distance * _sigmoid(_log_odds(probe, _unit(v)))
    return replace(
        base,
        threshold=1.0,
        probe=probe,
        distance_threshold=float(np.percentile(distance, max(percentile, BACKSTOP_PERCENTILE))),
        joint_threshold=float(np.percentile(joint, percentile)),
        n_outliers=len(o),
    )


def fit_probe(inside: NDArray[np.float64], outside: NDArray[np.float64]) -> NDArray[np.float32]:
    """L2-penalised logistic regression, ``outside`` (1) against ``inside`` (0), the two
    weighted equally whatever their counts; Newton's method, as scikit-learn's ``lbfgs``
    minimises ``0.5 |w|^2 + C sum_i s_i logloss_i`` (bias not penalised). Returns ``(D + 1,)``:
    the weights, then the bias."""
    x = np.c_[np.r_[inside, outside], np.ones(len(inside) + len(outside))]
    t = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    s = np.r_[np.ones(len(inside)), np.full(len(outside), len(inside) / len(outside))] * PROBE_C
    penalty = np.r_[np.ones(x.shape[1] - 1), 0.0]
    w = np.zeros(x.shape[1])
    for _ in range(100):
        p = _sigmoid(x @ w)
        grad = x.T @ (s * (p - t)) + penalty * w
        hess = (x * (s * p * (1.0 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return w.astype(np.float32)


def save_guard(guard: DomainGuard, path: str | Path) -> Path:
    """Write the guard as safetensors (arrays) with its scalars in the header's metadata."""
    from safetensors.numpy import save_file

    out = Path(path)
    tmp = out.with_suffix(".tmp")
    arrays = {"means": guard.means, "precision": guard.precision}
    metadata = {
        "method": guard.method,
        "threshold": repr(guard.threshold),
        "percentile": repr(guard.percentile),
        "n_train": str(guard.n_train),
        "n_val": str(guard.n_val),
    }
    if guard.probe is not None:
        arrays["probe"] = guard.probe
        metadata |= {
            "distance_threshold": repr(guard.distance_threshold),
            "joint_threshold": repr(guard.joint_threshold),
            "n_outliers": str(guard.n_outliers),
        }
    save_file(arrays, str(tmp), metadata=metadata)
    tmp.replace(out)
    return out


def load_guard(path: str | Path) -> DomainGuard:
    """Read a guard written by :func:`save_guard` (the caller has verified its sha256)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            means = fh.get_tensor("means").astype(np.float32)
            precision = fh.get_tensor("precision").astype(np.float32)
            method = meta.get("method")
            if method not in (METHOD, PROBE_METHOD):
                raise ValueError(f"unknown method {method!r}")
            probe = fh.get_tensor("probe").astype(np.float32) if method == PROBE_METHOD else None
        return DomainGuard(
            means=means,
            precision=precision,
            threshold=float(meta["threshold"]),
            percentile=float(meta["percentile"]),
            n_train=int(meta["n_train"]),
            n_val=int(meta["n_val"]),
            probe=probe,
            distance_threshold=float(meta.get("distance_threshold", 0.0)),
            joint_threshold=float(meta.get("joint_threshold", 0.0)),
            n_outliers=int(meta.get("n_outliers", 0)),
        )
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise ModelLoadError(
            "The domain guard file cannot be read.",
            why=f"{type(exc).__name__}: {exc}",
            fix="Fit the guard again with `fetal-viewer guard fit`.",
            path=path,
        ) from exc
