"""What every feature extractor provides."""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn


class Backbone(nn.Module):
    """A Siamese feature extractor with output stride 16.

    Subclasses set the class attributes below and implement ``forward``:
    ``Tensor[B, 3, Hi, Wi]`` (normalised pixels) -> ``Tensor[B, C, H, W]`` with
    ``H = ceil(Hi / 16)`` (up to the padding rules of the network).

    Attributes:
        out_channels: C, channels of the output feature map.
        stride: output stride in pixels (16).
        pixel_mean, pixel_std: per-channel RGB normalisation applied to pixels in [0, 1].
    """

    out_channels: int = 0
    stride: int = 16
    pixel_mean: Tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: Tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __init__(self, *, frozen_bn: bool = True) -> None:
        super().__init__()
        self.frozen_bn = frozen_bn

    def train(self, mode: bool = True) -> "Backbone":
        """Like ``nn.Module.train`` but keeps batch-norm layers in eval mode when ``frozen_bn``."""
        super().train(mode)
        if self.frozen_bn:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """``Tensor[B, 3, Hi, Wi]`` in [0, 1] -> normalised network input."""
        mean = pixels.new_tensor(self.pixel_mean).view(1, 3, 1, 1)
        std = pixels.new_tensor(self.pixel_std).view(1, 3, 1, 1)
        return (pixels - mean) / std
