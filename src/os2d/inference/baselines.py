"""The paper's sliding-window baselines as candidate generators (section 6.2).

* ``sliding-window-square``: exact mode with the identity transform (class map resized to g x g);
* ``sliding-window-ar``: the class feature map at its own aspect ratio, matched by convolution.
"""
from __future__ import annotations

import torch

from os2d.baselines.sliding_window import aspect_ratio_windows, identity_head
from os2d.errors import InvalidInputError
from os2d.inference.bank import ClassBank
from os2d.inference.candidates import Candidates, level_candidates, reduce_per_class
from os2d.inference.exact import exact_candidates
from os2d.inference.scene import Scene
from os2d.ops.grid import location_centers


def square_candidates(detector, scene: Scene, bank: ClassBank) -> Candidates:
    return exact_candidates(detector, scene, bank, head=identity_head(detector.model.head))


@torch.no_grad()
def aspect_ratio_candidates(detector, scene: Scene, bank: ClassBank) -> Candidates:
    if bank.raw_features is None:
        raise InvalidInputError("method 'sliding-window-ar' needs class features prepared for it "
                                "(prepare the classes with a detector whose method is sliding-window-ar)")
    settings, stride = detector.settings, detector.model.backbone.stride
    parts = []
    for level in range(len(scene)):
        fm = scene.features(level)
        height, width = fm.shape[-2:]
        scores, boxes, corners = aspect_ratio_windows(fm, bank.raw_features, stride=stride)
        # scores [K, H*W], boxes [K, H*W, 4], corners [K, H*W, 4, 2]
        k = scores.shape[0]
        centers = location_centers(height, width).reshape(1, -1, 2).expand(k, -1, -1).reshape(-1, 2)
        # [K*H*W, 2]
        parts.append(level_candidates(
            scores=scores.reshape(-1), boxes=boxes.reshape(-1, 4), corners=corners.reshape(-1, 4, 2), centers=centers,
            entries=torch.arange(k).repeat_interleave(height * width), level=level,
            level_size=scene.levels[level].size, scale=scene.levels[level].scale, stride=stride,
            anchor_size=detector.model.head.anchor_size, score_threshold=detector.candidate_thresholds(bank)))
    return reduce_per_class(Candidates.cat(parts), bank.entry_labels, settings)
