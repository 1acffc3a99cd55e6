"""Sliding-window baselines of the paper (section 6.2), sharing the OS2D feature extractor.

* ``sliding-window-square``: class feature map resized to g x g and matched with the identity
  transform, i.e. the OS2D head with the TransformNet replaced by the identity.
* ``sliding-window-ar``: the class feature map at its own size and aspect ratio, matched by
  convolution; the box is the window itself.
"""
from __future__ import annotations

import copy
from typing import List, Tuple

import torch
import torch.nn.functional as F

from os2d.model.head import OS2DHead


def identity_head(head: OS2DHead) -> OS2DHead:
    """A copy of ``head`` (sharing nothing trainable) whose transform is always the identity."""
    clone = copy.copy(head)
    clone._modules = dict(head._modules)
    clone._buffers = dict(head._buffers)
    clone._modules["transform_net"] = None
    return clone


def aspect_ratio_windows(scene_fm: torch.Tensor, class_fms: List[torch.Tensor], *,
                         stride: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean cosine similarity of each class window placed at every scene location.

    Args:
        scene_fm: ``Tensor[1, C, H, W]`` L2-normalised scene features.
        class_fms: K tensors ``Tensor[C, hc, wc]``, L2-normalised, at their own aspect ratio.
        stride: feature stride in pixels.

    Returns:
        scores ``Tensor[K, H*W]``, boxes ``Tensor[K, H*W, 4]`` (xyxy pixels, the window centred on
        the location), corners ``Tensor[K, H*W, 4, 2]`` (the window's corners).
    """
    _, _, height, width = scene_fm.shape
    scores, boxes = [], []
    for fm in class_fms:
        hc, wc = fm.shape[-2:]
        out = F.conv2d(scene_fm, fm.unsqueeze(0), padding=(hc // 2, wc // 2)) / float(hc * wc)
        # [1, 1, H + 1 - hc % 2, W + 1 - wc % 2]
        scores.append(out[0, 0, :height, :width].reshape(-1))
        rows = torch.arange(height, dtype=scene_fm.dtype, device=scene_fm.device)
        cols = torch.arange(width, dtype=scene_fm.dtype, device=scene_fm.device)
        y1 = ((rows - hc // 2) * stride)[:, None].expand(height, width)
        x1 = ((cols - wc // 2) * stride)[None, :].expand(height, width)
        box = torch.stack([x1, y1, x1 + wc * stride, y1 + hc * stride], -1).reshape(-1, 4)
        # [H*W, 4]
        boxes.append(box)
    boxes_t = torch.stack(boxes)
    x1, y1, x2, y2 = boxes_t.unbind(-1)
    corners = torch.stack([torch.stack([x1, y1], -1), torch.stack([x2, y1], -1),
                           torch.stack([x1, y2], -1), torch.stack([x2, y2], -1)], -2)
    return torch.stack(scores), boxes_t, corners
