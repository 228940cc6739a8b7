"""Grad-CAM guidance: masks follow the augmentation, the loss term is the share of the
true class's heat outside the mask, and training with it moves the heat into the masks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fetal_viewer.core.model.labels import CLASSES
from fetal_viewer.core.training import data as data_mod
from fetal_viewer.core.training.augment import AugmentSpec, augment, augment_pair
from fetal_viewer.core.training.data import FrameDataset, SquareCache, collate
from fetal_viewer.core.training.manifest import Manifest, Record
from fetal_viewer.core.training.train import TrainConfig, cam_miss, cam_outside, train_model
from fetal_viewer.errors import DataError


def test_the_mask_moves_with_the_image_and_the_draws_do_not_change() -> None:
    img = np.zeros((64, 64, 3), np.uint8)
    img[10:26, 36:52] = 255
    mask = np.zeros((64, 64), np.uint8)
    mask[10:26, 36:52] = 255
    spec = replace(AugmentSpec(), speckle=0.0, blur=0.0, gamma=(1.0, 1.0), gain=(1.0, 1.0))
    spec = replace(spec, depth_ramp=0.0, tint=0.0, dynamic_range=(1.0, 1.0))
    for seed in range(8):
        alone = augment(img, np.random.default_rng(seed), AugmentSpec())
        paired, _ = augment_pair(img, mask, np.random.default_rng(seed), AugmentSpec())
        np.testing.assert_array_equal(alone, paired)  # same draws with or without a mask
        moved, moved_mask = augment_pair(img, mask, np.random.default_rng(seed), spec)
        assert moved_mask is not None
        np.testing.assert_array_equal(moved[..., 0], moved_mask)


def test_cam_outside_is_the_share_of_true_class_heat_outside_the_mask() -> None:
    feats = torch.zeros(2, 3, 2, 2)
    feats[:, 0, 0, 0] = 60.0  # channel 0 fires top-left, channel 1 bottom-right
    feats[:, 1, 1, 1] = 20.0
    fc = torch.tensor([[1.0, 1.0, 0.0], [1.0, -5.0, 0.0]])  # class 1: negative bottom-right
    masks = torch.zeros(2, 64, 64)  # a 64 px input: cells centred on pixels 0 and 32
    masks[0, :32, :32] = 1.0  # top-left quarter
    y = torch.tensor([0, 1])
    # sample 0, class 0: heat 60 on the top-left cell, drawn over pixels 0-31 (inside); 20 on
    # the bottom-right cell, drawn rising from pixel 0 to 32 and flat beyond: along each axis
    # 15.5 of its 47.5 weight lies in 0-31, so q^2 of it is inside; the two cells at 0 carry
    # softplus(0) = log 2 each, a share q inside
    q, z = 15.5 / 47.5, float(np.log(2.0))
    outside = (20.0 * (1.0 - q**2) + 2 * z * (1.0 - q)) / (80.0 + 2 * z)
    # sample 1 has no mask and does not count
    assert float(cam_outside(feats, fc, y, masks)) == pytest.approx(outside, abs=1e-4)
    masks[1, 32:, 32:] = 1.0  # class 1's heat is top-left, bottom-right is -100: all outside
    assert float(cam_outside(feats, fc, y, masks)) == pytest.approx((outside + 1) / 2, abs=1e-4)
    assert float(cam_outside(feats, fc, y, torch.zeros(2, 64, 64))) == 0.0


def test_erasing_the_map_does_not_score() -> None:
    """A map below zero everywhere shows no heat at all; with ReLU it would have none outside
    the mask either, a perfect 0 that training learned to reach by erasing hard frames' maps."""
    # far below where float32 softplus underflows to 0; the top-left cell is least negative
    feats = torch.tensor([[[[-199.0, -200.0], [-200.0, -200.0]]]], requires_grad=True)
    masks = torch.zeros(1, 64, 64)
    masks[0, :32, :32] = 1.0
    erased = cam_outside(feats, torch.ones(1, 1), torch.tensor([0]), masks)
    erased.backward()
    q, e = 15.5 / 47.5, float(np.e)
    # weighed as a softmax of the cells: no better than putting the heat on the best cell
    assert float(erased.detach()) == pytest.approx(
        (2 * (1.0 - q) + (1.0 - q**2)) / (e + 3.0), abs=1e-4
    )
    assert feats.grad is not None and bool(torch.isfinite(feats.grad).all())
    assert float(feats.grad[0, 0, 0, 0]) < 0  # raising the inside cell lowers the term


def _frame(record: Record) -> np.ndarray:
    """A grey fan with two bright blobs; only the one at the class's row is the lesion."""
    img = np.zeros((96, 96, 3), np.uint8)
    img[4:92, 4:92] = 60
    k = CLASSES.index(record.label)
    img[8 + 16 * k : 20 + 16 * k, 10:30] = 230  # the lesion, left half
    img[70:86, 60:90] = 230  # a distractor present in every class, right half
    return img


@pytest.fixture
def manifest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Manifest:
    monkeypatch.setattr(data_mod, "read_record_frame", _frame)
    records = []
    for p in range(10):
        label = CLASSES[p % 5]
        k = CLASSES.index(label)
        mask = np.zeros((96, 96), np.uint8)
        mask[8 + 16 * k : 20 + 16 * k, 10:30] = 255
        mask_path = tmp_path / f"m{p}.png"
        cv2.imwrite(str(mask_path), mask)
        for f in range(2):
            path = tmp_path / f"p{p}_{f}.png"
            records.append(Record(path, 0, f"p{p}", "c0", label, 21.0, mask_path, len(records)))
    return Manifest(tmp_path / "manifest.csv", tuple(records))


def test_masks_reach_the_batch_through_the_same_crop(manifest: Manifest) -> None:
    cache = SquareCache(manifest.records, 48, masks=True)
    ds = FrameDataset(cache, [0, 2], [0, 1], TrainConfig(input_size=48).spec, with_masks=True)
    x, y, m = collate([ds[0], ds[1]])
    assert x.shape == (2, 3, 48, 48) and m.shape == (2, 48, 48) and y.tolist() == [0, 1]
    square = cache.get(0)
    lesion = m[0].numpy() > 0.5
    assert lesion.any() and square[lesion].mean() > 200  # the mask lies on the bright lesion
    with pytest.raises(ValueError):
        FrameDataset(SquareCache(manifest.records, 48), [0], [0], ds.spec, with_masks=True)


def test_the_term_pulls_the_heat_into_the_masks(manifest: Manifest) -> None:
    """Descending the guidance term alone, through the real network, empties the outside."""
    from fetal_viewer.core.model.network import build_resnet34

    torch.manual_seed(0)
    torch.set_num_threads(1)
    cache = SquareCache(manifest.records, 128, masks=True)  # 4x4 cells
    ds = FrameDataset(cache, range(0, 20, 2), [k % 5 for k in range(10)], TrainConfig().spec)
    ds = FrameDataset(
        cache, ds.indices, ds.targets, TrainConfig(input_size=128).spec, with_masks=True
    )
    x, y, m = collate([ds[i] for i in range(len(ds))])
    model = build_resnet34(5)
    feats: list[torch.Tensor] = []
    model.layer4.register_forward_hook(lambda _m, _i, out: feats.append(out))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    shares = []
    for _ in range(12):
        feats.clear()
        model(x)
        share = cam_outside(feats[0], model.fc.weight, y, m)
        opt.zero_grad()
        share.backward()
        opt.step()
        shares.append(float(share.detach()))
    assert shares[-1] < shares[0] - 0.15, shares  # 0.94 -> 0.73 here


def test_guided_training_logs_the_heat_outside(manifest: Manifest, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = TrainConfig(
        input_size=64, epochs=2, batch_size=4, patience=9, cam_guidance=0.5, cam_pointing=1.0
    )
    result = train_model(manifest, range(len(manifest)), config, tmp_path / "g", log=print)
    assert all(0.0 <= h["train_cam_outside"] <= 1.0 for h in result.history)
    assert all(h["train_cam_miss"] >= 0.0 for h in result.history)
    no_masks = Manifest(
        manifest.source, tuple(replace(r, mask_path=None) for r in manifest.records)
    )
    with pytest.raises(DataError, match="masks"):
        train_model(no_masks, range(len(no_masks)), config, tmp_path / "n", log=print)


def test_cam_miss_is_a_smooth_pointing_game() -> None:
    """Small when the map's peak lies on a cell centre inside the mask, large when it lies
    outside, and an erased map (no cell above zero) misses as in ``evaluate``."""
    masks = torch.zeros(1, 64, 64)  # a 64 px input: cells centred on pixels 0 and 32
    masks[0, :16, :16] = 1.0  # holds the top-left cell's centre only
    y, fc = torch.tensor([0]), torch.ones(1, 1)

    def miss(cells: list[list[float]]) -> float:
        return float(cam_miss(torch.tensor([[cells]]), fc, y, masks))

    hit, missed = miss([[9.0, 1.0], [1.0, 1.0]]), miss([[1.0, 9.0], [1.0, 1.0]])
    assert hit < 0.2 < 2.0 < missed  # softplus(-2) and softplus(2): the gap is 8, the spread 4
    assert miss([[-1.0, -5.0], [-5.0, -5.0]]) > 0.6  # the peak is inside, but the map is empty
    feats = torch.tensor([[[[1.0, 9.0], [1.0, 1.0]]]], requires_grad=True)
    cam_miss(feats, fc, y, masks).backward()
    assert feats.grad is not None
    assert float(feats.grad[0, 0, 0, 0]) < 0 < float(feats.grad[0, 0, 0, 1])
    masks[0] = 0.0
    masks[0, 8:24, 8:24] = 1.0  # between centres: out of reach at this resolution, not counted
    assert miss([[1.0, 9.0], [1.0, 1.0]]) == 0.0
