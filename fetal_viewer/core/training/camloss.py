"""Grad-CAM terms of the training loss (``train --cam-guidance``, ``--cam-pointing``): cheap
and differentiable, because for this network Grad-CAM at ``layer4`` is the class-weighted sum
of the feature maps."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def cam_outside(
    features: torch.Tensor, fc_weight: torch.Tensor, y: torch.Tensor, masks: torch.Tensor
) -> torch.Tensor:
    """Share of the true class's Grad-CAM heat that falls outside the lesion mask, averaged
    over the samples whose mask is not empty (0 when none is).

    ``features`` is the ``layer4`` output (B, K, h, w) and ``fc_weight`` the final layer's
    (C, K): for this network Grad-CAM is ``relu(sum_k w_ck A_k)`` up to a positive factor
    (the viewer's analytic Grad-CAM), so the term is cheap and differentiable. The heat is
    taken through softplus instead of ReLU: with ReLU a map pushed below zero everywhere has
    no heat outside the mask, a perfect score, and a fine-tune at weight 2 learned to erase
    the maps of hard frames (half of center D's encephaloceles) instead of moving them. With
    softplus a map below zero still weighs its cells (as a softmax would), and where the map
    is well above zero (tens, in trained models) softplus and ReLU agree. ``masks``
    (B, S, S) in [0, 1] are pooled to the (h, w) grid with the weights that draw each cell
    onto the input (:func:`~fetal_viewer.core.cam.gradcam.cell_weights`), so "inside" means
    inside where the viewer shows the heat.
    """
    import torch

    from fetal_viewer.core.cam.gradcam import cell_weights

    raw = torch.einsum("bkhw,bk->bhw", features, fc_weight[y]).float()
    # log softplus, exactly enough and without log(0): softplus(c) = e^c (1 + O(e^c)) below -15
    log_heat = torch.where(
        raw < -15.0, raw, torch.log(torch.nn.functional.softplus(raw.clamp(min=-15.0)))
    )
    h, w = (int(n) for n in features.shape[-2:])
    wy = torch.from_numpy(cell_weights(int(masks.shape[-2]), h)).to(masks)
    wx = torch.from_numpy(cell_weights(int(masks.shape[-1]), w)).to(masks)
    inside = torch.einsum("bst,sj,tk->bjk", masks, wy, wx) / torch.outer(wy.sum(0), wx.sum(0))
    has = masks.flatten(1).amax(1) > 0
    if not bool(has.any()):
        return raw.sum() * 0.0
    # each cell's share of the heat: a softmax of the log heat (no constant in a denominator
    # that a map of tiny heat could hide behind)
    weight = torch.softmax(log_heat.flatten(1), dim=1)
    share = (weight * (1.0 - inside).flatten(1)).sum(1)
    return share[has].mean()


def cam_miss(
    features: torch.Tensor, fc_weight: torch.Tensor, y: torch.Tensor, masks: torch.Tensor
) -> torch.Tensor:
    """A smooth pointing-game miss: how far the peak of the true class's Grad-CAM lies below
    the higher of the map's peak outside the lesion and zero, in units of the map's spread
    (``softplus`` of that gap over the cells' standard deviation, which is not trained),
    averaged over the samples whose lesion holds a cell centre (0 when none does).

    The viewer draws a map linearly between the cells' centres, so its maximum lies on the
    centre of its highest cell and the pointing game is won when that centre is inside the
    mask and the map is not empty (:func:`~fetal_viewer.core.cam.gradcam.is_empty`): the
    term compares the raw map (as in :func:`cam_outside`) at the centres inside the mask with
    those outside, and with zero, so an erased map misses as it does in ``evaluate``. A lesion
    between centres cannot be hit at this resolution and does not count.
    """
    import torch

    from fetal_viewer.core.cam.gradcam import cell_weights

    raw = torch.einsum("bkhw,bk->bhw", features, fc_weight[y]).float()
    h, w = (int(n) for n in features.shape[-2:])
    cy = torch.from_numpy(cell_weights(int(masks.shape[-2]), h).argmax(0)).to(masks.device)
    cx = torch.from_numpy(cell_weights(int(masks.shape[-1]), w).argmax(0)).to(masks.device)
    inside = masks[:, cy][:, :, cx] > 0.5  # (B, h, w): the mask at each cell's centre
    has = inside.flatten(1).any(1)
    if not bool(has.any()):
        return raw.sum() * 0.0
    low = torch.finfo(raw.dtype).min
    peak_in = raw.masked_fill(~inside, low).flatten(1).amax(1)
    peak_out = raw.masked_fill(inside, low).flatten(1).amax(1).clamp(min=0.0)
    spread = raw.detach().flatten(1).std(1).clamp(min=1e-3)
    gap = torch.nn.functional.softplus((peak_out - peak_in) / spread)
    return gap[has].mean()
