"""A scene being detected: the image, its pyramid levels, and their features computed on demand."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import torch
from PIL import Image

from os2d.data.preprocess import resize, to_tensor
from os2d.inference.pyramid import Level, _base_size, pyramid_levels
from os2d.inference.settings import DetectSettings


class Scene:
    """One scene image and its pyramid.

    Args:
        image: the scene, 8-bit RGB.
        settings: the pyramid settings.
        embed: normalised pixels ``Tensor[1, 3, Hi, Wi]`` -> scene features ``Tensor[1, C, H, W]``.
        mean, std: pixel normalisation of the backbone.
        anchor: anchor size (px), for the ``auto`` pyramid rule.
        stride: the backbone's stride (px per feature cell).
        device: where features are computed.
        on_level: called with ``(level index, number of levels)`` after each level's features.
    """

    def __init__(self, image: Image.Image, settings: DetectSettings, *, embed: Callable[[torch.Tensor], torch.Tensor],
                 mean, std, anchor: float, device: torch.device, stride: int = 16,
                 on_level: Optional[Callable[[int, int], None]] = None) -> None:
        self.image = image
        self.settings = settings
        self.levels: List[Level] = pyramid_levels(image.width, image.height, settings, anchor=anchor)
        self._embed, self._mean, self._std, self._device = embed, mean, std, device
        self._features: Dict[int, torch.Tensor] = {}
        self.stride = stride
        self._base: Optional[Image.Image] = None
        self._on_level = on_level

    @property
    def size(self):
        """(width, height) of the original image."""
        return self.image.size

    def __len__(self) -> int:
        return len(self.levels)

    def level_image(self, index: int) -> Image.Image:
        """The scene resized to level ``index`` (from the original or from the base image)."""
        source = self.image
        if self.settings.pyramid_from == "base":
            if self._base is None:
                self._base = resize(self.image, _base_size(self.image.width, self.image.height, self.settings),
                                    interpolation=self.settings.interpolation)
            source = self._base
        return resize(source, self.levels[index].size, interpolation=self.settings.interpolation)

    @torch.no_grad()
    def features(self, index: int) -> torch.Tensor:
        """Scene features of level ``index``: ``Tensor[1, C, H, W]`` (computed once)."""
        if index not in self._features:
            pixels = to_tensor(self.level_image(index), mean=self._mean, std=self._std).unsqueeze(0)
            self._features[index] = self._embed(pixels.to(self._device))
            if self._on_level is not None:
                self._on_level(len(self._features), len(self.levels))
        return self._features[index]
