"""Feature normalisation and class-feature resampling."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def l2_normalize(x: torch.Tensor, *, dim: int = 1, eps: float = 1e-5) -> torch.Tensor:
    """``x / (||x||_2 + eps)`` along ``dim`` (the reference's convention, eps added to the norm)."""
    return x / (torch.linalg.vector_norm(x, dim=dim, keepdim=True) + eps)


def resize_class_features(class_fm: torch.Tensor, *, size: int = 15) -> torch.Tensor:
    """Corner-aligned bilinear resampling of class feature maps to ``size x size``.

    Args:
        class_fm: ``Tensor[K, C, hc, wc]`` class feature maps (any aspect ratio).

    Returns:
        ``Tensor[K, C, size, size]``; the aspect ratio is not kept (paper, section 3).
    """
    if class_fm.dim() != 4:
        raise ValueError(f"class feature maps must be Tensor[K, C, h, w], got shape {tuple(class_fm.shape)}")
    return F.interpolate(class_fm, size=(size, size), mode="bilinear", align_corners=True)
