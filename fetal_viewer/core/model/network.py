"""The classifier network: torchvision ResNet34 with its last layer sized to the classes.

ImageNet initialisation is offered only when torchvision's weight file is already in the
local torch hub cache; nothing is ever downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fetal_viewer.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

#: the architecture name written in model cards
ARCHITECTURE = "resnet34"


def resnet34_shapes(num_classes: int) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor in a ResNet34's state dict with ``num_classes``
    outputs, as torchvision names them, worked out without torch (so a checkpoint can be
    checked where torch is not installed)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv_bn(conv: str, bn: str, cout: int, cin: int, k: int) -> None:
        shapes[f"{conv}.weight"] = (cout, cin, k, k)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{bn}.{stat}"] = (cout,)
        shapes[f"{bn}.num_batches_tracked"] = ()

    conv_bn("conv1", "bn1", 64, 3, 7)
    cin = 64
    for layer, (planes, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), 1):
        for b in range(blocks):
            p = f"layer{layer}.{b}"
            conv_bn(f"{p}.conv1", f"{p}.bn1", planes, cin if b == 0 else planes, 3)
            conv_bn(f"{p}.conv2", f"{p}.bn2", planes, planes, 3)
            if b == 0 and cin != planes:
                conv_bn(f"{p}.downsample.0", f"{p}.downsample.1", planes, cin, 1)
        cin = planes
    shapes["fc.weight"] = (num_classes, 512)
    shapes["fc.bias"] = (num_classes,)
    return shapes


def imagenet_weights_path() -> Path:
    """Where torchvision keeps ResNet34's ImageNet weights in the local torch hub cache."""
    import torch
    from torchvision.models import ResNet34_Weights

    filename = ResNet34_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def build_resnet34(num_classes: int, pretrained: bool = False) -> torch.nn.Module:
    """A ResNet34 whose final linear layer has ``num_classes`` outputs.

    ``pretrained=True`` initialises the backbone from torchvision's ImageNet weights when
    that file is already cached locally; otherwise :class:`ModelLoadError` says how to get
    it. The final layer is always freshly initialised.
    """
    import torch
    from torchvision.models import resnet34

    if num_classes < 2:
        raise ModelLoadError(
            f"A classifier needs at least 2 classes, got {num_classes}.",
            fix="List two or more classes in the model card.",
        )
    model = resnet34(weights=None)
    if pretrained:
        path = imagenet_weights_path()
        if not path.is_file():
            raise ModelLoadError(
                "ImageNet weights for ResNet34 are not in the local torch hub cache.",
                why=f"{path} does not exist and fetal-viewer never downloads weights.",
                fix=(
                    "Copy torchvision's resnet34-b627a593.pth into that folder (or set "
                    "TORCH_HOME), or train from random initialisation."
                ),
                path=path,
            )
        try:
            # weights_only=True: tensors only, no arbitrary objects are unpickled
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as exc:
            raise ModelLoadError(
                "The cached ImageNet weights could not be loaded.",
                why=str(exc),
                fix="Delete the file and copy a fresh one from torchvision.",
                path=path,
            ) from exc
    model.fc = torch.nn.Linear(model.fc.in_features, num_classes)
    return model
