"""Class activation maps for the ResNet classifier.

Fast path (``"gradcam"``): torchvision's ResNet ends in global average pooling and one
linear layer, so the gradient of logit ``c`` with respect to the ``layer4[-1]`` activations
``A`` (K, h, w) is ``W_c / (h*w)`` at every position. Grad-CAM's weights are therefore
``W_c / (h*w)`` and its map is ``relu(W_c . A) / (h*w)``: one forward pass that keeps ``A``
gives the map of every class. :func:`cams_from_features` computes them and normalises
exactly as ``pytorch_grad_cam`` does (``scale_cam_image``: per-map min-max with a 1e-7
guard), so at the cells they equal
``GradCAM(model, [model.layer4[-1]])(x, [ClassifierOutputTarget(c)])`` (tested).

Alignment: :func:`to_input_size` does *not* upsample the library's way. The library's
``cv2.resize`` puts cell ``j`` at input pixel ``32 j + 15.5``, but torchvision's ResNet pads
every stride-2 convolution and its max pool so that output ``j`` is centred on input ``2 j``:
a ``layer4`` cell responds to the image around pixel ``32 j``. The library's maps therefore
sit half a cell (16 px at a 128 px input) below and right of what they mark. Here each
cell's value is placed on its receptive field's centre (tested against the gradient of a
ResNet34), and library maps are first sampled back at their cells.

Shift-and-stitch (``"gradcam-stitch"``): the ``layer4`` grid is coarse (4x4 at 128 px), so
the map's maximum can only sit on one of 16 cell centres. Running the network ``k x k``
times on copies of the input whose content is moved up and left by ``32 a / k`` and ``32 b
/ k`` pixels puts the cells of copy ``(a, b)`` on input pixels ``32 i + 32 a / k``; their
Grad-CAM values interleave into one map ``k`` times finer, with cell ``j`` centred on pixel
``32 j / k`` (the FCN paper's shift-and-stitch, Long et al. 2015). The maps are the same
Grad-CAM of the same model; only where it is sampled changes. :func:`stitched_cams` takes
the raw, ReLU'd maps of every copy and normalises the stitched map once.

Other methods (Grad-CAM++, HiResCAM, LayerCAM, EigenCAM, ScoreCAM, and the library's own
Grad-CAM) run through ``pytorch_grad_cam`` in :func:`library_cams`, each inside a ``with``
block so its hooks are released.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray

from fetal_viewer.core.progress import CancelToken, ProgressFn, no_progress
from fetal_viewer.errors import InferenceError

if TYPE_CHECKING:
    import torch


class Geometry(Protocol):
    """How a frame was mapped onto the network input (``preprocess.Geometry``): the CAM
    package needs only this much of it, and does not depend on the model package."""

    @property
    def input_size(self) -> int: ...

    def to_frame(self, heatmap: NDArray) -> NDArray[np.float32]: ...


#: the fast all-class path
FAST_METHOD = "gradcam"
#: the same all-class Grad-CAM on a grid STITCH times finer, from STITCH**2 shifted passes
STITCH_METHOD = "gradcam-stitch"
STITCH = 2
#: method name -> pytorch_grad_cam class name
LIBRARY_METHODS: dict[str, str] = {
    "gradcam-lib": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "hirescam": "HiResCAM",
    "layercam": "LayerCAM",
    "eigencam": "EigenCAM",
    "scorecam": "ScoreCAM",
}
#: every method name accepted by the predictor and the CLI
CAM_METHODS: tuple[str, ...] = (FAST_METHOD, STITCH_METHOD, *LIBRARY_METHODS)

_EPS = 1e-7  # pytorch_grad_cam.utils.image.scale_cam_image


def _minmax(maps: NDArray[np.float32]) -> NDArray[np.float32]:
    """Per-map ``(m - min) / (1e-7 + max)`` over the last two axes, like the library."""
    lo = maps.min(axis=(-2, -1), keepdims=True)
    shifted = maps - lo
    return (shifted / (np.float32(_EPS) + shifted.max(axis=(-2, -1), keepdims=True))).astype(
        np.float32
    )


#: input pixels per ``layer4`` cell; cell ``j`` is centred on input pixel ``STRIDE * j``
STRIDE = 32


def grid_side(input_size: int) -> int:
    """Cells a side of a ResNet's last block, where every CAM method here reads: input / 32,
    rounded up (stride-2 stem, max pool and three stride-2 stages)."""
    return -(-input_size // STRIDE)


def resolution_note(input_size: int, method: str = FAST_METHOD) -> str:
    """What a reader should know about a heatmap's coarseness, in one sentence."""
    side = grid_side(input_size) * (STITCH if method == STITCH_METHOD else 1)
    return (
        f"Heatmap on a {side}×{side} grid over the {input_size} px model input: it marks a "
        "region, not the outline of a lesion."
    )


def is_empty(heat: NDArray) -> bool:
    """True when a class map has no heat anywhere, as Grad-CAM gives when no region of the
    frame raises the class's score (a map with nothing to point at)."""
    return not float(np.max(heat)) > 0


def empty_note(class_name: str) -> str:
    """What a reader should know when a class map :func:`is_empty`, in one sentence: an
    overlay that shows nothing must not read as a map that was not drawn."""
    return f"No heat for {class_name}: no region of this frame raises its score, its map is empty."


def cams_from_features(features: NDArray, fc_weight: NDArray) -> NDArray[np.float32]:
    """Grad-CAM of every class from ``layer4`` activations ``(N, K, h, w)`` and the final
    layer's weight ``(C, K)``: ``(N, C, h, w)``, ReLU'd and min-max normalised per map."""
    return _minmax(_raw_cams(features, fc_weight))


def _raw_cams(features: NDArray, fc_weight: NDArray) -> NDArray[np.float32]:
    """``relu(W_c . A) / (h*w)`` of every class, not normalised."""
    a = np.asarray(features, dtype=np.float32)
    w = np.asarray(fc_weight, dtype=np.float32)
    if a.ndim != 4 or w.ndim != 2 or a.shape[1] != w.shape[1]:
        raise InferenceError(
            f"Features {a.shape} and final-layer weight {w.shape} do not fit together."
        )
    n, k, h, wd = a.shape
    w = w / np.float32(h * wd)  # Grad-CAM weight = spatial mean of dlogit/dA = W_c / (h*w)
    cams = (w @ a.reshape(n, k, h * wd)).reshape(n, w.shape[0], h, wd)
    return np.maximum(cams, np.float32(0.0))


def shifted(x: NDArray, dy: int, dx: int, fill: NDArray) -> NDArray[np.float32]:
    """A batch ``(N, 3, S, S)`` with its content moved up by ``dy`` and left by ``dx``
    pixels; the uncovered bottom and right edges take the per-channel value ``fill``."""
    out = np.empty_like(np.asarray(x, dtype=np.float32))
    out[...] = np.asarray(fill, dtype=np.float32).reshape(1, -1, 1, 1)
    s = x.shape[-1]
    out[:, :, : s - dy, : s - dx] = x[:, :, dy:, dx:]
    return out


def shifted_batch(x: NDArray, fill: NDArray, k: int = STITCH) -> NDArray[np.float32]:
    """The ``k * k`` copies of the batch ``x`` (N, 3, S, S) that shift-and-stitch runs, as one
    batch ``(k*k*N, 3, S, S)``: copy ``(a, b)`` (row-major, ``(0, 0)`` = ``x`` itself) moved up
    by ``32 a / k`` and left by ``32 b / k`` pixels, uncovered edges filled with ``fill``."""
    if k < 1 or STRIDE % k:
        raise InferenceError(f"Shift-and-stitch needs a divisor of {STRIDE}, got {k}.")
    step = STRIDE // k
    x = np.asarray(x, dtype=np.float32)
    return np.concatenate(
        [
            x if a == b == 0 else shifted(x, a * step, b * step, fill)
            for a in range(k)
            for b in range(k)
        ]
    )


def stitch_features(features: NDArray, fc_weight: NDArray, k: int = STITCH) -> NDArray[np.float32]:
    """All-class Grad-CAM ``(N, C, k h, k w)`` from the ``layer4`` activations
    ``(k*k*N, K, h, w)`` of a :func:`shifted_batch`: each copy's ReLU'd maps interleaved into
    one grid ``k`` times finer, normalised once."""
    raw = _raw_cams(features, fc_weight)
    kk, c, h, w = raw.shape
    n = kk // (k * k)
    if n * k * k != kk:
        raise InferenceError(f"{kk} feature maps are not {k * k} shifted copies of a batch.")
    out = np.empty((n, c, h * k, w * k), dtype=np.float32)
    for i, (a, b) in enumerate((a, b) for a in range(k) for b in range(k)):
        out[:, :, a::k, b::k] = raw[i * n : (i + 1) * n]
    return _minmax(out)


def stitched_cams(
    features_of: Callable[[NDArray[np.float32]], NDArray],
    x: NDArray,
    fc_weight: NDArray,
    fill: NDArray,
    k: int = STITCH,
    unshifted: NDArray | None = None,
) -> NDArray[np.float32]:
    """All-class Grad-CAM ``(N, C, k h, k w)`` of the batch ``x`` by shift-and-stitch (module
    notes): ``features_of`` returns the ``layer4`` activations of a batch and is called once,
    on every copy still needed (``unshifted``: those of ``x`` itself, when already
    computed); ``fill`` is the normalised value of a black pixel, what the preprocessing
    pads with."""
    copies = shifted_batch(x, fill, k)
    n = len(x)
    if unshifted is None:
        return stitch_features(features_of(copies), fc_weight, k)
    rest = np.asarray(features_of(copies[n:]))
    return stitch_features(np.concatenate([np.asarray(unshifted), rest]), fc_weight, k)


def interp_weights(at: NDArray, n: int) -> NDArray[np.float32]:
    """``(len(at), n)`` weights of linear interpolation between ``n`` samples at positions
    ``at`` (in samples), constant beyond the first and last."""
    eye = np.eye(n)
    grid = np.arange(n)
    return np.stack([np.interp(at, grid, eye[j]) for j in range(n)], axis=1).astype(np.float32)


def cell_weights(size: int, cells: int) -> NDArray[np.float32]:
    """``(size, cells)``: how much each cell of a map ``cells`` wide contributes to each input
    pixel along one axis. ``layer4`` (``grid_side(size)`` cells) has cell ``j`` centred on
    pixel ``STRIDE * j`` (see the module notes); a map twice as fine is an earlier block with
    half the stride, centred on ``STRIDE / 2 * j``, and so on."""
    stride = STRIDE * grid_side(size) / cells
    return interp_weights(np.arange(size, dtype=np.float64) / stride, cells)


def to_input_size(cams: NDArray, size: int, side: int | None = None) -> NDArray[np.float32]:
    """Square class maps ``(..., n, n)`` of a ResNet block (``layer4``: ``grid_side(size)``
    cells), or pytorch-grad-cam's ``(..., size, size)`` maps of a block ``side`` cells wide
    (default ``layer4``'s), as ``(..., size, size)`` maps over the network input: each cell's
    value on its receptive field's centre (:func:`cell_weights`), linear in between and
    constant beyond the outer centres; then ReLU and min-max, as the library does."""
    arr = np.asarray(cams, dtype=np.float32)
    if arr.ndim < 2 or arr.shape[-2] != arr.shape[-1]:
        raise InferenceError(f"A class map must be square, got shape {arr.shape}.")
    side = grid_side(size) if side is None else side
    if arr.shape[-1] == size and size != side:
        # the library's map: its cv2.resize put cell j at pixel (j + 0.5) * size / side - 0.5
        back = interp_weights((np.arange(side) + 0.5) * size / side - 0.5, size)
        arr = (back @ arr @ back.T).astype(np.float32)
    up = cell_weights(size, arr.shape[-1])
    out = up @ arr @ up.T
    return _minmax(np.maximum(out, np.float32(0.0)))


def frame_heatmap(cam: NDArray, geometry: Geometry) -> NDArray[np.float32]:
    """One class map ``(h, w)`` (feature or input resolution) as ``[0, 1]`` over the original
    frame: resized and normalised as pytorch-grad-cam does, then mapped through the
    preprocessing ``geometry`` (zero outside the field of view)."""
    return geometry.to_frame(to_input_size(cam, geometry.input_size))


def library_cams(
    model: torch.nn.Module,
    inputs: torch.Tensor,
    method: str,
    class_indices: list[int] | None = None,
    progress: ProgressFn = no_progress,
    cancel: CancelToken | None = None,
) -> NDArray[np.float32]:
    """Maps of ``method`` (a :data:`LIBRARY_METHODS` name) for ``inputs`` ``(N, 3, S, S)``:
    ``(N, len(class_indices), S, S)`` float32 in [0, 1], via ``pytorch_grad_cam``.

    The model's train/eval state and gradient flags are restored afterwards; hooks are
    released by the library's context manager.
    """
    import pytorch_grad_cam
    import torch
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    if method not in LIBRARY_METHODS:
        raise InferenceError(
            f"Unknown CAM method {method!r}.", fix=f"Use one of: {', '.join(CAM_METHODS)}."
        )
    layer = getattr(model, "layer4", None)
    if layer is None:
        raise InferenceError("The model has no layer4; CAM needs a torchvision ResNet.")
    n = int(inputs.shape[0])
    fc = getattr(model, "fc", None)
    n_classes = int(fc.out_features) if isinstance(fc, torch.nn.Linear) else 0
    classes = list(range(n_classes)) if class_indices is None else list(class_indices)
    cls = getattr(pytorch_grad_cam, LIBRARY_METHODS[method])
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    size = int(inputs.shape[-1])
    out = np.empty((n, len(classes), int(inputs.shape[-2]), size), dtype=np.float32)
    model.eval()
    try:
        with (
            torch.inference_mode(False),
            torch.enable_grad(),
            cls(model=model, target_layers=[layer[-1]]) as cam,
        ):
            if method == "scorecam":
                cam.batch_size = 16
            x = inputs.detach().clone()
            for j, c in enumerate(classes):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                out[:, j] = cam(input_tensor=x, targets=[ClassifierOutputTarget(c)] * n)
                progress(j + 1, len(classes), f"{method} class {c}")
    finally:
        model.train(was_training)
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
        model.zero_grad(set_to_none=True)
    return out
