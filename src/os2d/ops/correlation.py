"""Dense correlation of scene features with class features."""
from __future__ import annotations

import torch


def correlate(scene_fm: torch.Tensor, class_fm: torch.Tensor) -> torch.Tensor:
    """Dot products of every scene location with every class location.

    Channel ``s`` of the output corresponds to class location ``(h_t, w_t)`` with
    ``s = w_t * h + h_t`` (width-major, the reference implementation's order, which the
    TransformNet's first convolution weights depend on).

    Args:
        scene_fm: ``Tensor[B, C, H, W]`` scene features (L2-normalised per location).
        class_fm: ``Tensor[K, C, h, w]`` class features (L2-normalised per location).

    Returns:
        ``Tensor[B, K, w*h, H, W]`` correlations.
    """
    b, c, height, width = scene_fm.shape
    k, c2, h, w = class_fm.shape
    if c != c2:
        raise ValueError(f"channel mismatch: scene features have {c}, class features {c2}")
    class_flat = class_fm.transpose(2, 3).reshape(k, c, w * h)
    # [K, C, w*h]
    scene_flat = scene_fm.reshape(b, c, height * width)
    # [B, C, H*W]
    corr = torch.einsum("kcs,bcn->bksn", class_flat, scene_flat)
    # [B, K, w*h, H*W]
    return corr.reshape(b, k, w * h, height, width)
    # [B, K, w*h, H, W]
