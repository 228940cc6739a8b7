"""All-class Grad-CAM fast path against pytorch-grad-cam, map alignment with the network's
receptive fields, library methods, overlays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from fetal_viewer.core.cam.gradcam import (
    CAM_METHODS,
    LIBRARY_METHODS,
    STITCH_METHOD,
    STRIDE,
    cams_from_features,
    library_cams,
    resolution_note,
    shifted,
    stitched_cams,
    to_input_size,
)
from fetal_viewer.core.cam.overlay import HEATMAP_FLOOR, blend, colorize, echo_mask
from fetal_viewer.core.model.network import build_resnet34
from fetal_viewer.errors import InferenceError


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(7)
    return build_resnet34(5).eval()


def test_fast_path_equals_pytorch_grad_cam_for_every_class(model: torch.nn.Module) -> None:
    torch.manual_seed(1)
    x = torch.randn(3, 3, 128, 128)
    feats: list[torch.Tensor] = []
    handle = model.layer4[-1].register_forward_hook(lambda m, i, o: feats.append(o.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    cells = cams_from_features(feats[0].numpy(), model.fc.weight.detach().numpy())
    assert cells.shape == (3, 5, 4, 4)
    fast = to_input_size(cells, 128)
    assert fast.shape == (3, 5, 128, 128)
    for c in range(5):
        with GradCAM(model=model, target_layers=[model.layer4[-1]]) as cam:
            ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(c)] * 3)
        # the library's map at its cell centres (pixels 32 j + 15 and + 16) is the cell value
        centres = (ref[:, 15::32, 15::32] + ref[:, 16::32, 16::32]) / 2
        assert np.abs(centres - cells[:, c]).max() < 0.02, c
        # and re-aligned it is the fast path's map
        assert np.abs(to_input_size(ref, 128) - fast[:, c]).max() < 0.02, c
    # maps differ between classes: the check above is not trivially satisfied
    assert np.abs(fast[:, 0] - fast[:, 1]).max() > 0.05


def test_maps_sit_on_the_receptive_fields_of_the_cells() -> None:
    """A layer4 cell's value is drawn where the image it responds to is: the centre of its
    receptive field, found from the gradient of a ResNet34 with uniform weights (so no learnt
    asymmetry moves it), not half a cell down and right as cv2.resize would put it."""
    net = build_resnet34(5).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.fill_(1.0 / m.weight[0].numel())
    body = torch.nn.Sequential(*list(net.children())[:-2])  # up to layer4
    size, j = 384, 6  # 12x12 cells; cell 6 is centred in the input, so padding pulls it no way
    x = torch.ones(1, 3, size, size, requires_grad=True)
    body(x)[0, :, j, j].sum().backward()
    g = x.grad[0].abs().sum(0).numpy()
    at = np.arange(size)
    centre = ((g.sum(1) * at).sum() / g.sum(), (g.sum(0) * at).sum() / g.sum())
    one = np.zeros((size // STRIDE, size // STRIDE), np.float32)
    one[j, j] = 1.0
    peak = np.unravel_index(int(np.argmax(to_input_size(one, size))), (size, size))
    assert peak == (STRIDE * j, STRIDE * j)
    assert abs(centre[0] - peak[0]) < 4 and abs(centre[1] - peak[1]) < 4, centre
    assert abs(centre[0] - (STRIDE * j + 15.5)) > 10  # where the library's resize puts it


def test_stitched_cells_sit_on_the_pixels_their_shifted_pass_sampled() -> None:
    """A "network" whose one feature channel is the input at each cell's receptive-field
    centre (pixel 32 j): the four passes of a 2x2 stitch must sample pixels 16 j, so the
    stitched map is the input on a 16 px lattice, and it is drawn where it was sampled."""
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 128, 128)).astype(np.float32)
    calls: list[np.ndarray] = []

    def features_of(batch: np.ndarray) -> np.ndarray:
        calls.append(batch)
        return batch[:, :1, ::STRIDE, ::STRIDE]

    fill = np.array([-1.0, -2.0, -3.0], np.float32)
    out = stitched_cams(features_of, x, np.ones((1, 1), np.float32), fill, k=2)
    # one call on every shifted copy at once (a batch of 4 x 2): a backend runs one pass
    assert out.shape == (2, 1, 8, 8) and [len(c) for c in calls] == [8]
    want = x[:, :1, ::16, ::16]
    lo = want.min(axis=(-2, -1), keepdims=True)
    want = (want - lo) / (1e-7 + (want - lo).max(axis=(-2, -1), keepdims=True))
    np.testing.assert_allclose(out, want, atol=1e-5)
    # a stitched cell's value is drawn at pixel 16 j, where its pass sampled it
    one = np.zeros((8, 8), np.float32)
    one[3, 5] = 1.0
    peak = np.unravel_index(int(np.argmax(to_input_size(one, 128))), (128, 128))
    assert peak == (48, 80)
    # the shifted copy moves content up and left and pads with the fill value
    moved = shifted(x, 16, 0, fill)
    np.testing.assert_array_equal(moved[:, :, :112], x[:, :, 16:])
    assert (moved[:, 1, 112:] == -2.0).all()
    # the unshifted activations, when given, are not computed again
    calls.clear()
    again = stitched_cams(
        features_of, x, np.ones((1, 1), np.float32), fill, unshifted=x[:, :1, ::32, ::32]
    )
    assert [len(c) for c in calls] == [6]
    np.testing.assert_allclose(again, out, atol=1e-6)
    with pytest.raises(InferenceError):
        stitched_cams(features_of, x, np.ones((1, 1), np.float32), fill, k=3)


def test_stitch_of_one_is_the_fast_path_and_notes_its_grid(model: torch.nn.Module) -> None:
    x = torch.randn(2, 3, 128, 128)
    body = torch.nn.Sequential(*list(model.children())[:-2]).eval()

    def features_of(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return body(torch.from_numpy(batch)).numpy()

    w = model.fc.weight.detach().numpy()
    plain = cams_from_features(features_of(x.numpy()), w)
    np.testing.assert_allclose(
        stitched_cams(features_of, x.numpy(), w, np.zeros(3), k=1), plain, atol=1e-6
    )
    fine = stitched_cams(features_of, x.numpy(), w, np.zeros(3))
    assert fine.shape == (2, 5, 8, 8)
    assert "4×4 grid" in resolution_note(128)
    assert "8×8 grid" in resolution_note(128, STITCH_METHOD)


@pytest.mark.parametrize("method", ["gradcam++", "hirescam", "layercam", "eigencam"])
def test_library_methods_release_hooks(model: torch.nn.Module, method: str) -> None:
    x = torch.randn(2, 3, 64, 64)
    maps = library_cams(model, x, method, class_indices=[0, 3])
    assert maps.shape == (2, 2, 64, 64)
    assert maps.min() >= 0.0 and maps.max() <= 1.0 + 1e-6
    assert not model.training
    for m in model.modules():
        assert not m._forward_hooks and not m._backward_hooks
    assert all(p.grad is None for p in model.parameters())


def test_scorecam_and_unknown_method(model: torch.nn.Module) -> None:
    assert set(LIBRARY_METHODS) < set(CAM_METHODS)
    maps = library_cams(model, torch.randn(1, 3, 32, 32), "scorecam", class_indices=[1])
    assert maps.shape == (1, 1, 32, 32)
    with pytest.raises(InferenceError, match="Unknown CAM method"):
        library_cams(model, torch.randn(1, 3, 64, 64), "nope")


def test_overlay_blends_in_frame_geometry() -> None:
    frame = np.full((20, 30, 3), 100, np.uint8)
    heat = np.zeros((20, 30), np.float32)
    heat[5:10, 5:10] = 1.0
    out = blend(frame, heat, alpha=0.5, colormap="jet")
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert (out[0, 0] == 100).all()  # zero heat keeps the frame
    red = colorize(np.ones((1, 1)), "jet")[0, 0]
    np.testing.assert_array_equal(out[7, 7], np.rint(0.5 * 100 + 0.5 * red.astype(float)))
    np.testing.assert_array_equal(blend(frame, heat, alpha=0.0), frame)
    assert (blend(frame[:, :, 0], heat, alpha=1.0)[7, 7] == red).all()
    with pytest.raises(InferenceError, match="does not match"):
        blend(frame, heat[:10])
    with pytest.raises(InferenceError, match="Unknown colormap"):
        colorize(heat, "rainbowz")


def test_overlay_leaves_background_and_faint_heat_alone() -> None:
    # a fan of echo on black background, heat over both: only the echo is tinted, as in the
    # viewer's heatmap layer (the study summary and predict --heatmaps use this blend)
    frame = np.zeros((60, 80, 3), np.uint8)
    frame[:, 40:] = 90
    heat = np.full((60, 80), 0.8, np.float32)
    heat[:, 60:] = HEATMAP_FLOOR  # at the floor: not coloured
    out = blend(frame, heat, alpha=0.5)
    assert (out[:, :30] == 0).all()  # background far from the fan stays black
    assert (out[:, 45:55] != 90).any(axis=2).all()  # echo under heat is tinted
    assert (out[:, 60:] == 90).all()
    assert not echo_mask(frame)[:, :30].any() and echo_mask(frame)[:, 48:].all()
