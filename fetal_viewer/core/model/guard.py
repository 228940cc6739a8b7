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
it inverts). A frame whose score exceeds the threshold is out of domain; the threshold is
the ``percentile`` of the scores of the inner-validation frames (frames of patients the
statistics never saw), so that share of in-domain frames is expected to pass. Why this
score and not k-nearest-neighbour distance or the energy score: docs/domain-guard.md, which
gives the measurement (``experiments/guard_methods.py``).

The arrays are stored as ``guard.safetensors`` beside the weights and named in the model
card's ``artifacts`` with their sha256, so they are verified like the weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.errors import InferenceError, ModelLoadError

#: the artifact name in the model card, and its file name beside the weights
GUARD_ARTIFACT = "guard"
GUARD_FILE = "guard.safetensors"
#: the only method so far (on unit-length pooled features); stored in the file so that
#: another can follow
METHOD = "mahalanobis-l2"
#: default percentile of the in-domain validation scores that sets the threshold
DEFAULT_PERCENTILE = 99.0
#: covariance shrinkage towards the mean variance (fraction of it added to the diagonal)
SHRINKAGE = 1e-3

#: what the AI surfaces say when a card carries no guard
NO_GUARD_NOTE = "no domain check for this model"
#: what they say when a frame is flagged
WITHHELD_NOTE = "Outside what this model was trained on: its output is withheld"


@dataclass(frozen=True)
class DomainGuard:
    """Fitted statistics of a model's training features and the threshold on their score."""

    means: NDArray[np.float32]  # (C, D) per-class mean pooled feature
    precision: NDArray[np.float32]  # (D, D) inverse tied covariance
    threshold: float
    percentile: float
    n_train: int
    n_val: int
    method: str = METHOD

    def __post_init__(self) -> None:
        c, d = self.means.shape
        if self.precision.shape != (d, d) or c < 1 or not np.isfinite(self.threshold):
            raise ModelLoadError(
                "The domain guard's arrays do not fit together.",
                why=f"means {self.means.shape}, precision {self.precision.shape}, "
                f"threshold {self.threshold}",
                fix="Fit the guard again with `fetal-viewer guard fit`.",
            )

    @property
    def n_features(self) -> int:
        return int(self.means.shape[1])

    def score(self, pooled: NDArray) -> NDArray[np.float32]:
        """Out-of-domain scores ``(N,)`` of pooled features ``(N, D)``: higher is further."""
        x = _unit(np.asarray(pooled, dtype=np.float64))
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise InferenceError(
                f"The domain guard expects (frames, {self.n_features}) features, got {x.shape}.",
                fix="Use the guard fitted for this model (`fetal-viewer guard fit`).",
            )
        p = self.precision.astype(np.float64)
        mu = self.means.astype(np.float64)
        xp = x @ p
        # (x - mu)^T P (x - mu) = x P x - 2 x P mu + mu P mu, for every class at once
        d2 = (xp * x).sum(1)[:, None] - 2.0 * xp @ mu.T + ((mu @ p) * mu).sum(1)[None, :]
        return np.sqrt(np.maximum(d2.min(axis=1), 0.0)).astype(np.float32)

    def in_domain(self, scores: NDArray) -> NDArray[np.bool_]:
        return np.asarray(scores) <= self.threshold

    def summary(self) -> dict[str, float | int | str]:
        """What the model card, reports and ``--json`` say about the guard."""
        return {
            "method": self.method,
            "threshold": round(self.threshold, 4),
            "percentile": self.percentile,
            "train_frames": self.n_train,
            "validation_frames": self.n_val,
        }


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
) -> DomainGuard:
    """Fit class means and the tied covariance on ``train`` pooled features ``(N, D)`` with
    integer ``labels``; set the threshold at ``percentile`` of the ``val`` frames' scores."""
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
    precision = np.linalg.inv(cov)
    provisional = DomainGuard(
        means=means.astype(np.float32),
        precision=precision.astype(np.float32),
        threshold=0.0,
        percentile=percentile,
        n_train=len(x),
        n_val=len(v),
    )
    threshold = float(np.percentile(provisional.score(v), percentile))
    return DomainGuard(
        means=provisional.means,
        precision=provisional.precision,
        threshold=threshold,
        percentile=percentile,
        n_train=len(x),
        n_val=len(v),
    )


def save_guard(guard: DomainGuard, path: str | Path) -> Path:
    """Write the guard as safetensors (arrays) with its scalars in the header's metadata."""
    from safetensors.numpy import save_file

    out = Path(path)
    tmp = out.with_suffix(".tmp")
    save_file(
        {"means": guard.means, "precision": guard.precision},
        str(tmp),
        metadata={
            "method": guard.method,
            "threshold": repr(guard.threshold),
            "percentile": repr(guard.percentile),
            "n_train": str(guard.n_train),
            "n_val": str(guard.n_val),
        },
    )
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
        if meta.get("method") != METHOD:
            raise ValueError(f"unknown method {meta.get('method')!r}")
        return DomainGuard(
            means=means,
            precision=precision,
            threshold=float(meta["threshold"]),
            percentile=float(meta["percentile"]),
            n_train=int(meta["n_train"]),
            n_val=int(meta["n_val"]),
            method=METHOD,
        )
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise ModelLoadError(
            "The domain guard file cannot be read.",
            why=f"{type(exc).__name__}: {exc}",
            fix="Fit the guard again with `fetal-viewer guard fit`.",
            path=path,
        ) from exc
