"""The pointing-game ceiling: which masks a map at the model's heatmap resolution can hit."""

from __future__ import annotations

import numpy as np
import pytest

from fetal_viewer.core.cam.gradcam import frame_heatmap, grid_side
from fetal_viewer.core.model.preprocess import Geometry
from fetal_viewer.core.training.evaluate import pointing_reachable
from fetal_viewer.core.training.metrics import pointing_game

# a 128 px frame fed as is: 4 x 4 layer4 cells, their maps peak on pixels 0, 32, 64 and 96
SAME = Geometry((128, 128), (0, 0, 128, 128), 128, 128, 128, 0, 0)


def _mask(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((128, 128), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def test_a_lesion_between_cell_peaks_cannot_be_hit() -> None:
    between = _mask(40, 56, 40, 56)  # 16 px square between the peaks at 32 and 64
    assert not pointing_reachable(SAME, (4, 4), between)
    assert pointing_reachable(SAME, (8, 8), between)  # a finer map (peaks 16 px apart) can
    assert pointing_reachable(SAME, (4, 4), _mask(24, 40, 24, 40))  # covers a peak


def test_no_map_beats_the_ceiling() -> None:
    rng = np.random.default_rng(5)
    hits = reachable = 0
    for _ in range(300):
        y, x = rng.integers(0, 112, size=2)
        h, w = rng.integers(4, 24, size=2)
        mask = _mask(y, y + h, x, x + w)
        can = pointing_reachable(SAME, (4, 4), mask)
        reachable += can
        for _ in range(5):
            hit = pointing_game(frame_heatmap(rng.random((4, 4), dtype=np.float32), SAME), mask)
            hits += hit
            assert can or not hit
    assert 0 < reachable < 300 and hits > 0  # both outcomes were exercised


@pytest.mark.parametrize("size", [64, 100, 128, 224])
def test_grid_side_is_the_last_block_of_a_resnet34(size: int) -> None:
    import torch

    from fetal_viewer.core.model.network import build_resnet34

    m = build_resnet34(5).eval()
    with torch.inference_mode():
        x = m.maxpool(m.relu(m.bn1(m.conv1(torch.zeros(1, 3, size, size)))))
        a = m.layer4(m.layer3(m.layer2(m.layer1(x))))
    assert a.shape[-2:] == (grid_side(size), grid_side(size))
